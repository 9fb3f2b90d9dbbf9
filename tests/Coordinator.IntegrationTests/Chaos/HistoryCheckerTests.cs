using Coordinator.IntegrationTests.Chaos;

namespace Coordinator.IntegrationTests;

/// <summary>The checker itself: each kind of violation in a small synthetic history is found, a clean one passes.</summary>
public sealed class HistoryCheckerTests
{
    private const long GiB = 1L << 30;
    private static TimeSpan S(double s) => TimeSpan.FromSeconds(s);

    private static History Clean()
    {
        var h = new History();
        h.Add(new OpRecord(0, OpKind.Put, "a", 4 * GiB, 0, S(0), S(1), 201, 1, 1));
        h.Add(new OpRecord(0, OpKind.Put, "a", 2 * GiB, 0, S(2), S(3), 200, 1, 1));
        h.Add(new OpRecord(1, OpKind.Put, "b", 6 * GiB, 0, S(1), S(2), 201, 1, 1));
        h.Add(new OpRecord(1, OpKind.Put, "b", 9 * GiB, 0, S(3), S(4), 409, 1, 1));
        h.Add(new OpRecord(2, OpKind.Put, "c", 3 * GiB, 0, S(1), S(2), 201, 1, 1));
        h.Add(new OpRecord(2, OpKind.Delete, "c", 0, 0, S(5), S(6), 204, 2, 2));
        h.Add(new OpRecord(3, OpKind.Grant, "img", 0, 1, S(0), S(1), 201, 1, 1));
        h.Add(new OpRecord(3, OpKind.Renew, "img", 0, 1, S(1), S(2), 200, 1, 1));
        h.Add(new OpRecord(4, OpKind.Grant, "img", 0, 2, S(5), S(6), 201, 2, 1));
        h.Add(new OpRecord(3, OpKind.Complete, "img", 0, 1, S(7), S(8), 409, 2, 1));
        return h;
    }

    private static readonly Dictionary<string, long> CleanFinal = new() { ["a"] = 2 * GiB, ["b"] = 6 * GiB };

    [Fact]
    public void A_clean_history_passes() => Assert.Empty(HistoryChecker.Check(Clean(), 13 * GiB, CleanFinal));

    [Fact]
    public void An_older_epoch_answering_after_a_newer_one_is_a_stale_leader()
    {
        var h = Clean();
        // Epoch 2 answered at 6 s; a PUT sent at 7 s refused by epoch 1 means the old ledger still decided.
        h.Add(new OpRecord(5, OpKind.Put, "d", GiB, 0, S(7), S(7.5), 409, 1, 1));
        Assert.Contains(HistoryChecker.Check(h, 13 * GiB, CleanFinal), v => v.Contains("stale leader") && v.Contains("epoch 1 after epoch 2"));
        // Sent before epoch 2 answered anything: the old ledger may still have answered it.
        var overlap = Clean();
        overlap.Add(new OpRecord(5, OpKind.Put, "d", GiB, 0, S(5.5), S(7.5), 409, 1, 1));
        Assert.Empty(HistoryChecker.Check(overlap, 13 * GiB, CleanFinal));
    }

    [Fact]
    public void A_lost_write_a_phantom_write_and_a_refusal_that_took_effect_are_found()
    {
        Assert.Contains(HistoryChecker.Check(Clean(), 13 * GiB, new Dictionary<string, long> { ["b"] = 6 * GiB }), v => v.Contains("consumer a"));
        Assert.Contains(HistoryChecker.Check(Clean(), 13 * GiB, new Dictionary<string, long>(CleanFinal) { ["c"] = 3 * GiB }), v => v.Contains("consumer c"));
        Assert.Contains(HistoryChecker.Check(Clean(), 13 * GiB, new Dictionary<string, long>(CleanFinal) { ["b"] = 9 * GiB }), v => v.Contains("consumer b"));
    }

    [Fact]
    public void An_operation_without_an_answer_allows_the_state_before_it_or_after_it_and_nothing_else()
    {
        var h = Clean();
        h.Add(new OpRecord(0, OpKind.Delete, "a", 0, 0, S(9), S(10), -1, 0, 3)); // cut off: "a" is 2 GiB or absent
        Assert.Empty(HistoryChecker.Check(h, 13 * GiB, new Dictionary<string, long> { ["b"] = 6 * GiB }));
        Assert.Empty(HistoryChecker.Check(h, 13 * GiB, CleanFinal));
        Assert.Contains(HistoryChecker.Check(h, 13 * GiB, new Dictionary<string, long>(CleanFinal) { ["a"] = 4 * GiB }),
            v => v.Contains("consumer a") && v.Contains("lost or phantom write"));
        var put = Clean();
        put.Add(new OpRecord(0, OpKind.Put, "a", 5 * GiB, 0, S(9), S(10), -1, 0, 3)); // cut off: 2 GiB or 5 GiB
        Assert.Empty(HistoryChecker.Check(put, 13 * GiB, new Dictionary<string, long>(CleanFinal) { ["a"] = 5 * GiB }));
        Assert.Contains(HistoryChecker.Check(put, 13 * GiB, new Dictionary<string, long> { ["b"] = 6 * GiB }), v => v.Contains("consumer a"));
    }

    [Fact]
    public void A_consumer_no_operation_named_comes_from_nowhere()
    {
        Assert.Contains(HistoryChecker.Check(Clean(), 13 * GiB, new Dictionary<string, long>(CleanFinal) { ["zz"] = GiB }),
            v => v.Contains("consumer zz") && v.Contains("from nowhere"));
    }

    // ---------------------------------------------------------------- the image cache, its claims, double grants

    private const long Img = 64L << 20;

    /// <summary>Image "img" granted (token 1) and completed; "other" granted (token 1), evicted nothing, still leased.</summary>
    private static History Images()
    {
        var h = new History();
        h.Add(new OpRecord(0, OpKind.Grant, "img", Img, 1, S(0), S(1), 201, 1, 1, ValidUntil: S(5)));
        h.Add(new OpRecord(0, OpKind.Renew, "img", 0, 1, S(2), S(2.5), 200, 1, 1, ValidUntil: S(6.5)));
        h.Add(new OpRecord(0, OpKind.Complete, "img", 0, 1, S(3), S(3.5), 200, 1, 1));
        h.Add(new OpRecord(1, OpKind.Grant, "img", Img, 0, S(4), S(4.5), 200, 1, 1)); // cached
        h.Add(new OpRecord(2, OpKind.Grant, "other", Img, 1, S(5), S(5.5), 201, 1, 1, ValidUntil: S(9.5)));
        return h;
    }

    private static FinalState ImagesFinal(bool cached = true, long? claim = Img, bool otherClaim = true) => new(
        new Dictionary<string, long>(otherClaim ? [new("_image-other", Img)] : [])
            .Concat(claim is { } c ? [new KeyValuePair<string, long>("_image-img", c)] : []).ToDictionary(),
        cached ? new Dictionary<string, long> { ["img"] = Img } : new Dictionary<string, long>(),
        new Dictionary<string, long> { ["other"] = 1 });

    [Fact]
    public void A_clean_image_history_passes() => Assert.Empty(HistoryChecker.Check(Images(), 13 * GiB, ImagesFinal()));

    [Fact]
    public void A_completed_image_missing_from_the_cache_or_without_its_claim_is_found()
    {
        Assert.Contains(HistoryChecker.Check(Images(), 13 * GiB, ImagesFinal(cached: false, claim: null)), v => v.Contains("lost image"));
        Assert.Contains(HistoryChecker.Check(Images(), 13 * GiB, ImagesFinal(claim: null)), v => v.Contains("image img: cached") && v.Contains("absent"));
        Assert.Contains(HistoryChecker.Check(Images(), 13 * GiB, ImagesFinal(claim: Img / 2)), v => v.Contains("its claim _image-img is"));
    }

    [Fact]
    public void An_evicted_image_must_be_gone_unless_the_eviction_overlapped_a_completion_or_had_no_answer()
    {
        var h = Images();
        h.Add(new OpRecord(1, OpKind.Evict, "*", 0, 0, S(6), S(6.5), 200, 1, 1, Evicted: ["img"]));
        Assert.Empty(HistoryChecker.Check(h, 13 * GiB, ImagesFinal(cached: false, claim: null)));
        Assert.Contains(HistoryChecker.Check(h, 13 * GiB, ImagesFinal()), v => v.Contains("phantom image"));
        // The eviction ran while the completion was in flight: either order is possible.
        var overlap = Images();
        overlap.Add(new OpRecord(1, OpKind.Evict, "*", 0, 0, S(3.2), S(3.6), 200, 1, 1, Evicted: ["img"]));
        Assert.Empty(HistoryChecker.Check(overlap, 13 * GiB, ImagesFinal()));
        Assert.Empty(HistoryChecker.Check(overlap, 13 * GiB, ImagesFinal(cached: false, claim: null)));
        // An eviction cut off by the end of the run may have removed it.
        var cut = Images();
        cut.Add(new OpRecord(1, OpKind.Evict, "*", 0, 0, S(6), S(9), -1, 0, 2));
        Assert.Empty(HistoryChecker.Check(cut, 13 * GiB, ImagesFinal(cached: false, claim: null)));
    }

    [Fact]
    public void An_image_or_a_claim_nobody_asked_for_comes_from_nowhere_and_a_claim_without_image_or_lease_is_an_orphan()
    {
        var withGhost = ImagesFinal();
        withGhost = withGhost with { Images = new Dictionary<string, long>(withGhost.Images) { ["ghost"] = Img },
            Reservations = new Dictionary<string, long>(withGhost.Reservations) { ["_image-ghost"] = Img } };
        var v = HistoryChecker.Check(Images(), 13 * GiB, withGhost);
        Assert.Contains(v, x => x.Contains("image ghost") && x.Contains("image from nowhere"));
        Assert.Contains(v, x => x.Contains("claim _image-ghost") && x.Contains("claim from nowhere"));
        // "other" is no longer leased, yet its claim stayed.
        var orphan = ImagesFinal() with { Leases = new Dictionary<string, long>() };
        Assert.Contains(HistoryChecker.Check(Images(), 13 * GiB, orphan), x => x.Contains("_image-other") && x.Contains("orphan claim"));
    }

    [Fact]
    public void A_second_grant_while_the_first_lease_is_valid_is_a_double_grant_even_if_the_old_holder_never_returns()
    {
        var h = Images();
        // Token 1 of "other" is valid until 9.5 s and was never given back; token 2 granted by 7 s.
        h.Add(new OpRecord(3, OpKind.Grant, "other", Img, 2, S(6.5), S(7), 201, 1, 1, ValidUntil: S(11)));
        Assert.Contains(HistoryChecker.Check(h, 13 * GiB, ImagesFinal() with { Leases = new Dictionary<string, long> { ["other"] = 2 } }),
            v => v.Contains("image other") && v.Contains("double grant"));
        // After the expiry (the holder paused past the TTL), or after an abort was sent, a new grant is right.
        var expired = Images();
        expired.Add(new OpRecord(3, OpKind.Grant, "other", Img, 2, S(9.6), S(10), 201, 2, 1, ValidUntil: S(14)));
        expired.Add(new OpRecord(2, OpKind.Renew, "other", 0, 1, S(11), S(11.2), 409, 2, 1));
        Assert.Empty(HistoryChecker.Check(expired, 13 * GiB, ImagesFinal() with { Leases = new Dictionary<string, long> { ["other"] = 2 } }));
        var aborted = Images();
        aborted.Add(new OpRecord(2, OpKind.Abort, "other", 0, 1, S(6), S(6.2), 204, 1, 1));
        aborted.Add(new OpRecord(3, OpKind.Grant, "other", Img, 2, S(6.5), S(7), 201, 1, 1, ValidUntil: S(11)));
        Assert.Empty(HistoryChecker.Check(aborted, 13 * GiB, ImagesFinal() with { Leases = new Dictionary<string, long> { ["other"] = 2 } }));
    }

    [Fact]
    public void Overcommit_is_found_but_a_shrink_in_flight_is_not_mistaken_for_one()
    {
        Assert.Contains(HistoryChecker.Check(Clean(), 11 * GiB - 1, CleanFinal), v => v.Contains("over the capacity"));
        var h = new History();
        h.Add(new OpRecord(0, OpKind.Put, "a", 8 * GiB, 0, S(0), S(1), 201, 1, 1));
        h.Add(new OpRecord(0, OpKind.Put, "a", 1 * GiB, 0, S(2), S(5), 200, 1, 1)); // shrink, answered late
        h.Add(new OpRecord(1, OpKind.Put, "b", 9 * GiB, 0, S(3), S(4), 201, 1, 1)); // fitted thanks to the shrink
        Assert.Empty(HistoryChecker.Check(h, 10 * GiB, new Dictionary<string, long> { ["a"] = 1 * GiB, ["b"] = 9 * GiB }));
    }

    /// <summary>
    /// Found by a 300 s run: a shrink sent through a node that was SIGSTOPped a moment later had no answer by the end,
    /// yet the ledger had applied it, and later claims fitted only because of it.
    /// </summary>
    [Fact]
    public void A_shrink_without_an_answer_may_have_taken_effect()
    {
        var h = new History();
        h.Add(new OpRecord(0, OpKind.Put, "a", 8 * GiB, 0, S(0), S(1), 201, 1, 1));
        h.Add(new OpRecord(0, OpKind.Put, "a", 1 * GiB, 0, S(2), S(10), -1, 0, 1)); // its node froze: no answer
        h.Add(new OpRecord(1, OpKind.Put, "b", 9 * GiB, 0, S(3), S(4), 201, 1, 1));
        Assert.Empty(HistoryChecker.Check(h, 10 * GiB, new Dictionary<string, long> { ["a"] = 1 * GiB, ["b"] = 9 * GiB }));
        // A growth without an answer does not lower anything: real overcommit is still found.
        var grown = new History();
        grown.Add(new OpRecord(0, OpKind.Put, "a", 8 * GiB, 0, S(0), S(1), 201, 1, 1));
        grown.Add(new OpRecord(0, OpKind.Put, "a", 9 * GiB, 0, S(2), S(10), -1, 0, 1));
        grown.Add(new OpRecord(1, OpKind.Put, "b", 9 * GiB, 0, S(3), S(4), 201, 1, 1));
        Assert.Contains(HistoryChecker.Check(grown, 10 * GiB, new Dictionary<string, long> { ["a"] = 8 * GiB, ["b"] = 9 * GiB }),
            v => v.Contains("over the capacity"));
    }

    [Fact]
    public void A_double_grant_and_a_token_that_did_not_grow_are_found()
    {
        var h = Clean();
        h.Add(new OpRecord(3, OpKind.Renew, "img", 0, 1, S(7), S(7.5), 200, 2, 1)); // old holder renewed after token 2
        Assert.Contains(HistoryChecker.Check(h, 13 * GiB, CleanFinal), v => v.Contains("double grant"));
        var h2 = Clean();
        h2.Add(new OpRecord(5, OpKind.Grant, "img", 0, 2, S(9), S(10), 201, 2, 1));
        Assert.Contains(HistoryChecker.Check(h2, 13 * GiB, CleanFinal), v => v.Contains("granted after token"));
    }
}
