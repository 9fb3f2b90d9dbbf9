using Coordinator.Domain;
using static Coordinator.Domain.Tests.LedgerDriver;

namespace Coordinator.Domain.Tests;

/// <summary>
/// The image-fetch leases (etcd-like: TTL, renewal, fencing tokens) and the image cache they fill, by example.
/// </summary>
public class ImageLeaseTests
{
    private const string Vol = "Volume1";
    private const string Root = @"C:\ClusterStorage\Volume1";
    private const string Vol2 = "Volume2";
    private const string Root2 = @"C:\ClusterStorage\Volume2";

    private static LedgerDriver Volume(long capacity = 100 * GiB, long headroom = 0)
    {
        var d = new LedgerDriver();
        d.Configure(Vol, Root, capacity, headroom);
        return d;
    }

    /// <summary>Runs <paramref name="act"/> and asserts it changed nothing: no events, same journal, same state.</summary>
    private static T Unchanged<T>(LedgerDriver d, Func<T> act, Func<T, IReadOnlyList<LedgerEvent>> events)
    {
        var journal = d.Journal.Count;
        var state = StateOf(d.Ledger);
        var result = act();
        Assert.Empty(events(result));
        Assert.Equal(journal, d.Journal.Count);
        Assert.Equal(state, StateOf(d.Ledger));
        return result;
    }

    private static Decision<LeaseOutcome> Unchanged(LedgerDriver d, Func<Decision<LeaseOutcome>> act) => Unchanged(d, act, x => x.Events);

    private static Decision<LeaseActionOutcome> Unchanged(LedgerDriver d, Func<Decision<LeaseActionOutcome>> act) => Unchanged(d, act, x => x.Events);

    private static void AssertClaim(LedgerDriver d, string volume, string image, string node, long bytes)
    {
        var claim = d.Ledger.Find(volume, CsvLedger.ImageClaim(image));
        Assert.NotNull(claim);
        Assert.Equal(("_image-" + image, node, bytes, $"{CacheFolder}/{image}", image),
            (claim.ConsumerId, claim.Node, claim.Bytes, claim.Path, claim.ImageId));
    }

    // ---------------------------------------------------------------- grants

    [Fact]
    public void A_grant_claims_the_size_and_another_node_is_pending()
    {
        var d = Volume();

        var first = d.Acquire("img1", "hv1", 10 * GiB, Vol);

        Assert.Equal(LeaseStatus.Granted, first.Outcome.Status);
        var granted = Assert.IsType<ImageLeaseGranted>(Assert.Single(first.Events));
        var lease = first.Outcome.Lease!;
        Assert.Equal(("img1", "hv1", 1L, Vol, "images/img1", 10 * GiB), (lease.ImageId, lease.Node, lease.FencingToken, lease.Volume, lease.Folder, lease.SizeBytes));
        Assert.Equal(lease, d.Ledger.FindLease("img1"));
        Assert.Equal((granted.LeaseId, granted.FencingToken, granted.File), (lease.LeaseId, lease.FencingToken, lease.File));
        Assert.Equal(lease.GrantedAt + Ttl, lease.ExpiresAt);
        Assert.StartsWith(lease.Folder + "/", lease.File);
        Assert.Equal(1, d.Ledger.LastFencingToken);
        AssertClaim(d, Vol, "img1", "hv1", 10 * GiB);
        Assert.Equal(90 * GiB, first.Outcome.FreeBytes);
        Assert.Equal(90 * GiB, d.Free(Vol));
        Assert.Contains(CsvLedger.ImageClaim("img1"), d.Ledger.MeasuredDirectories(Vol).Keys);

        var other = Unchanged(d, () => d.Acquire("img1", "hv2", 10 * GiB, Vol));

        Assert.Equal(LeaseStatus.Pending, other.Outcome.Status);
        Assert.Equal(lease, other.Outcome.Lease);
        Assert.Null(other.Outcome.Cached);
    }

    [Fact]
    public void The_holder_asking_again_gets_its_own_grant_back_and_nothing_changes()
    {
        var d = Volume();
        var lease = d.Grant("img1", "hv1", 10 * GiB, Vol);
        d.Advance(TimeSpan.FromSeconds(30));

        // Even with another size or volume: the lease is the holder's, as granted.
        foreach (var (size, volume) in new[] { (10 * GiB, Vol), (20 * GiB, Vol), (GiB, "nowhere") })
        {
            var again = Unchanged(d, () => d.Acquire("img1", "hv1", size, volume));
            Assert.Equal(LeaseStatus.Granted, again.Outcome.Status);
            Assert.Equal(lease, again.Outcome.Lease);
        }
        Assert.Equal(1, d.Ledger.LastFencingToken);
    }

    [Fact]
    public void Fencing_tokens_strictly_increase_across_images_grants_and_snapshots()
    {
        var d = Volume();
        d.Configure(Vol2, Root2, 100 * GiB);
        var tokens = new List<long>();

        var a = d.Grant("img1", "hv1", GiB, Vol);
        tokens.Add(a.FencingToken);
        tokens.Add(d.Grant("img2", "hv1", GiB, Vol).FencingToken);
        Assert.Equal(LeaseActionStatus.Done, d.Abort(a).Outcome.Status);
        var b = d.Grant("img1", "hv2", GiB, Vol);
        tokens.Add(b.FencingToken);
        tokens.Add(d.Grant("img3", "hv3", GiB, Vol2).FencingToken);
        d.Advance(2 * Ttl);
        var c = d.Grant("img1", "hv3", GiB, Vol); // takes over the expired lease of hv2
        tokens.Add(c.FencingToken);
        d.Complete(c, GiB);

        Assert.Equal([1L, 2, 3, 4, 5], tokens);
        Assert.Equal(5, d.Ledger.LastFencingToken);

        // A new leader restores from a snapshot (as the cluster serializes it): the counter, images and leases survive.
        var snapshot = RoundTrip(d.Ledger.ToSnapshot());
        Assert.Equal(5, snapshot.LastFencingToken);
        var restored = CsvLedger.FromSnapshot(snapshot);
        Assert.Equal(d.Ledger.LastFencingToken, restored.LastFencingToken);
        Assert.Equal(d.Ledger.Images, restored.Images);
        Assert.Equal(d.Ledger.Leases, restored.Leases);
        Assert.Equal(StateOf(d.Ledger), StateOf(restored));

        // Even when every lease is gone, the next grant continues the sequence.
        var empty = Volume();
        var gone = empty.Grant("img1", "hv1", GiB, Vol);
        empty.Abort(gone);
        var fresh = CsvLedger.FromSnapshot(RoundTrip(empty.Ledger.ToSnapshot()));
        Assert.Empty(fresh.Leases);
        var next = fresh.AcquireImage("img1", "hv2", GiB, Vol, CacheFolder, Ttl, empty.Now);
        Assert.Equal(2, next.Outcome.Lease!.FencingToken);

        // Replaying the journal gives the same counter as well.
        var replayed = new CsvLedger();
        foreach (var e in d.Journal) replayed.Apply(RoundTrip(e));
        Assert.Equal(StateOf(d.Ledger), StateOf(replayed));
        var after = restored.AcquireImage("img9", "hv1", GiB, Vol, CacheFolder, Ttl, d.Now);
        Assert.Equal(6, after.Outcome.Lease!.FencingToken);
    }

    // ---------------------------------------------------------------- stale holders

    public static TheoryData<string, string> StaleCases()
    {
        var data = new TheoryData<string, string>();
        foreach (var how in new[] { "older token", "newer token", "wrong lease id", "after expiry", "after a newer grant", "after abort", "after completion" })
            foreach (var action in new[] { "renew", "complete", "abort" })
                data.Add(how, action);
        return data;
    }

    [Theory]
    [MemberData(nameof(StaleCases))]
    public void Stale_holders_are_refused_and_change_nothing(string how, string action)
    {
        var d = Volume();
        d.Grant("img0", "hv1", GiB, Vol); // so that token 1 exists as an older token
        var lease = d.Grant("img1", "hv1", 10 * GiB, Vol);
        Assert.Equal(2, lease.FencingToken);
        var (leaseId, token) = (lease.LeaseId, lease.FencingToken);
        switch (how)
        {
            case "older token": token -= 1; break;
            case "newer token": token += 1; break;
            case "wrong lease id": leaseId = "img1.99"; break;
            case "after expiry": d.Advance(Ttl); break; // expired, not yet swept
            case "after a newer grant":
                d.Advance(Ttl);
                Assert.Equal(3, d.Grant("img1", "hv2", 10 * GiB, Vol).FencingToken);
                break;
            case "after abort": d.Abort(lease); break;
            case "after completion": d.Complete(lease, 8 * GiB); break;
        }

        var r = Unchanged(d, () => action switch
        {
            "renew" => d.Renew("img1", leaseId, token),
            "complete" => d.Complete("img1", leaseId, token, 9 * GiB),
            _ => d.Abort("img1", leaseId, token),
        });

        Assert.Equal(LeaseActionStatus.Stale, r.Outcome.Status);
        Assert.False(string.IsNullOrEmpty(r.Outcome.Error));
        if (how == "after completion") Assert.Equal(d.Ledger.FindImage("img1"), r.Outcome.Cached);
        else if (how != "after abort") Assert.Equal(d.Ledger.FindLease("img1"), r.Outcome.Lease);
    }

    [Fact]
    public void An_action_on_an_image_that_was_never_leased_is_not_found()
    {
        var d = Volume();
        var r = Unchanged(d, () => d.Renew("img1", "img1.1", 1));
        Assert.Equal(LeaseActionStatus.NotFound, r.Outcome.Status);

        // Once token 1 was handed out (to any image), the same request is known to be stale.
        d.Grant("img2", "hv1", GiB, Vol);
        Assert.Equal(LeaseActionStatus.Stale, Unchanged(d, () => d.Abort("img1", "img1.1", 1)).Outcome.Status);
    }

    [Fact]
    public void Renewal_extends_the_lease_from_now()
    {
        var d = Volume();
        var lease = d.Grant("img1", "hv1", GiB, Vol);
        d.Advance(TimeSpan.FromSeconds(45));

        var r = d.Renew(lease, TimeSpan.FromMinutes(2));

        Assert.Equal(LeaseActionStatus.Done, r.Outcome.Status);
        var renewed = Assert.IsType<ImageLeaseRenewed>(Assert.Single(r.Events));
        Assert.Equal(d.Now + TimeSpan.FromMinutes(2), renewed.ExpiresAt);
        Assert.Equal(lease with { ExpiresAt = renewed.ExpiresAt }, d.Ledger.FindLease("img1"));
        Assert.Equal(d.Ledger.FindLease("img1"), r.Outcome.Lease);

        d.Advance(TimeSpan.FromSeconds(90)); // past the first expiry, not the renewed one
        Assert.Empty(d.ExpireLeases());
        Assert.Equal(LeaseStatus.Pending, d.Acquire("img1", "hv2", GiB, Vol).Outcome.Status);
        Assert.Equal(LeaseActionStatus.Done, d.Renew(lease).Outcome.Status);
    }

    // ---------------------------------------------------------------- ending leases

    [Fact]
    public void Abort_releases_the_claim_and_the_next_node_gets_a_higher_token()
    {
        var d = Volume();
        d.Reserve(Vol, "vm1", "hv1", 5 * GiB);
        var before = d.Free(Vol);
        var lease = d.Grant("img1", "hv1", 10 * GiB, Vol);
        Assert.Equal(before - 10 * GiB, d.Free(Vol));

        var r = d.Abort(lease);

        Assert.Equal(LeaseActionStatus.Done, r.Outcome.Status);
        var ended = Assert.IsType<ImageLeaseEnded>(Assert.Single(r.Events));
        Assert.Equal(("img1", lease.LeaseId, LeaseEndReason.Aborted), (ended.ImageId, ended.LeaseId, ended.Reason));
        Assert.Null(d.Ledger.FindLease("img1"));
        Assert.Null(d.Ledger.Find(Vol, CsvLedger.ImageClaim("img1")));
        Assert.Equal(before, d.Free(Vol));

        var next = d.Grant("img1", "hv2", 12 * GiB, Vol);
        Assert.True(next.FencingToken > lease.FencingToken);
        Assert.NotEqual(lease.LeaseId, next.LeaseId);
        Assert.NotEqual(lease.File, next.File); // a fenced-off holder can never overwrite the next one's file
        AssertClaim(d, Vol, "img1", "hv2", 12 * GiB);
        Assert.Equal(before - 12 * GiB, d.Free(Vol));
    }

    [Fact]
    public void Expiry_releases_the_claim_and_the_next_node_gets_a_higher_token()
    {
        var d = Volume();
        var before = d.Free(Vol);
        var lease = d.Grant("img1", "hv1", 10 * GiB, Vol);
        var other = d.Grant("img2", "hv1", 10 * GiB, Vol, TimeSpan.FromHours(1));

        d.Advance(TimeSpan.FromSeconds(30));
        Assert.Empty(d.ExpireLeases());
        d.Advance(TimeSpan.FromSeconds(30));
        var events = d.ExpireLeases();

        var ended = Assert.IsType<ImageLeaseEnded>(Assert.Single(events));
        Assert.Equal(("img1", lease.LeaseId, LeaseEndReason.Expired), (ended.ImageId, ended.LeaseId, ended.Reason));
        Assert.Null(d.Ledger.FindLease("img1"));
        Assert.Equal(other, d.Ledger.FindLease("img2"));
        Assert.Null(d.Ledger.Find(Vol, CsvLedger.ImageClaim("img1")));
        Assert.Equal(before - 10 * GiB, d.Free(Vol));
        Assert.Empty(d.ExpireLeases());

        var next = d.Grant("img1", "hv2", 10 * GiB, Vol);
        Assert.Equal(3, next.FencingToken);
        Assert.Equal(before - 20 * GiB, d.Free(Vol));
    }

    [Fact]
    public void A_lease_ends_at_exactly_its_expiry()
    {
        var d = Volume();
        var lease = d.Grant("img1", "hv1", GiB, Vol);
        var (before, at) = (lease.ExpiresAt - TimeSpan.FromTicks(1), lease.ExpiresAt);
        var l = d.Ledger;

        // Decisions only: nothing is applied, so each question is asked of the same state.
        Assert.Empty(l.ExpireLeases(before));
        Assert.Single(l.ExpireLeases(at));
        Assert.Equal(LeaseActionStatus.Done, l.RenewLease("img1", lease.LeaseId, lease.FencingToken, Ttl, before).Outcome.Status);
        Assert.Equal(LeaseActionStatus.Stale, l.RenewLease("img1", lease.LeaseId, lease.FencingToken, Ttl, at).Outcome.Status);
        Assert.Equal(LeaseActionStatus.Stale, l.CompleteLease("img1", lease.LeaseId, lease.FencingToken, GiB, "ab", at).Outcome.Status);
        Assert.Equal(LeaseActionStatus.Stale, l.AbortLease("img1", lease.LeaseId, lease.FencingToken, at).Outcome.Status);
        Assert.Equal(LeaseStatus.Pending, l.AcquireImage("img1", "hv2", GiB, Vol, CacheFolder, Ttl, before).Outcome.Status);
        var next = l.AcquireImage("img1", "hv2", GiB, Vol, CacheFolder, Ttl, at);
        Assert.Equal(LeaseStatus.Granted, next.Outcome.Status);
        Assert.Equal(2, next.Events.Count);
    }

    [Fact]
    public void An_expired_lease_not_yet_swept_is_ended_in_the_same_decision_as_the_next_grant()
    {
        var d = Volume(capacity: 30 * GiB);
        var lease = d.Grant("img1", "hv1", 20 * GiB, Vol);
        Assert.Equal(10 * GiB, d.Free(Vol));
        d.Advance(Ttl);

        // 25 GiB fits only once the expired claim is returned.
        var r = d.Acquire("img1", "hv2", 25 * GiB, Vol);

        Assert.Equal(LeaseStatus.Granted, r.Outcome.Status);
        Assert.Collection(r.Events,
            e => Assert.Equal(new ImageLeaseEnded("img1", lease.LeaseId, LeaseEndReason.Expired, d.Now), e),
            e => Assert.Equal(2, Assert.IsType<ImageLeaseGranted>(e).FencingToken));
        AssertClaim(d, Vol, "img1", "hv2", 25 * GiB);
        Assert.Equal(5 * GiB, d.Free(Vol));
        Assert.Equal(5 * GiB, r.Outcome.FreeBytes);

        // The expired holder asking again is a new request too (with a new token), here pending behind hv2.
        Assert.Equal(LeaseStatus.Pending, d.Acquire("img1", "hv1", GiB, Vol).Outcome.Status);
    }

    [Fact]
    public void The_expired_holder_itself_gets_a_new_grant_with_a_new_token()
    {
        var d = Volume();
        var lease = d.Grant("img1", "hv1", 10 * GiB, Vol);
        d.Advance(Ttl);

        var r = d.Acquire("img1", "hv1", 10 * GiB, Vol);

        Assert.Equal(LeaseStatus.Granted, r.Outcome.Status);
        Assert.Equal(2, r.Events.Count);
        Assert.Equal(2, r.Outcome.Lease!.FencingToken);
        Assert.Equal(90 * GiB, d.Free(Vol));
        Assert.Equal(LeaseActionStatus.Stale, Unchanged(d, () => d.Renew(lease)).Outcome.Status);
    }

    [Fact]
    public void An_expired_lease_whose_folder_was_measured_does_not_make_the_next_grant_overcommit()
    {
        // hv1 downloaded 20 GiB into the image folder (measured), then died; the bytes stay on disk until a scan
        // says otherwise, so a grant in the same decision as the expiry must not count them as free.
        var d = Volume(capacity: 100 * GiB);
        var lease = d.Grant("img1", "hv1", 20 * GiB, Vol);
        d.Measure(Vol, 20 * GiB, new Dictionary<string, long> { [CsvLedger.ImageClaim("img1")] = 20 * GiB });
        Assert.Equal(80 * GiB, d.Free(Vol));
        d.Advance(Ttl);

        // What the free space is once the expired lease has ended (as a separate decision would see it).
        var probe = CsvLedger.FromSnapshot(d.Ledger.ToSnapshot());
        foreach (var e in probe.ExpireLeases(d.Now)) probe.Apply(e);
        var freeAfterEnd = probe.View(Vol)!.FreeBytes;
        Assert.Equal(80 * GiB, freeAfterEnd);

        var tooBig = Unchanged(d, () => d.Acquire("img1", "hv2", freeAfterEnd + 1, Vol));
        Assert.Equal(LeaseStatus.InsufficientSpace, tooBig.Outcome.Status);
        Assert.Equal(freeAfterEnd, tooBig.Outcome.FreeBytes);
        Assert.Equal(lease, d.Ledger.FindLease("img1")); // nothing was ended either

        var fits = d.Acquire("img1", "hv2", freeAfterEnd, Vol);
        Assert.Equal(LeaseStatus.Granted, fits.Outcome.Status);
        Assert.Equal(0, d.Free(Vol));
        Assert.Equal(d.Free(Vol), fits.Outcome.FreeBytes);
    }

    [Fact]
    public void An_expired_lease_on_another_volume_is_ended_and_the_grant_goes_to_the_requested_volume()
    {
        // The image volume was reconfigured while a lease on the old one had expired unswept.
        var d = Volume();
        d.Configure(Vol2, Root2, 50 * GiB);
        var lease = d.Grant("img1", "hv1", 10 * GiB, Vol);
        d.Advance(Ttl);

        var r = d.Acquire("img1", "hv2", 50 * GiB, Vol2);

        Assert.Equal(LeaseStatus.Granted, r.Outcome.Status);
        Assert.IsType<ImageLeaseEnded>(r.Events[0]);
        Assert.Null(d.Ledger.Find(Vol, CsvLedger.ImageClaim("img1")));
        Assert.Equal(100 * GiB, d.Free(Vol));
        AssertClaim(d, Vol2, "img1", "hv2", 50 * GiB);
        Assert.Equal(0, d.Free(Vol2));
        Assert.Equal(0, r.Outcome.FreeBytes);
        Assert.True(r.Outcome.Lease!.FencingToken > lease.FencingToken);

        // The bytes freed on the old volume are not counted on the new one.
        var d2 = Volume();
        d2.Configure(Vol2, Root2, 50 * GiB);
        d2.Grant("img1", "hv1", 10 * GiB, Vol);
        d2.Advance(Ttl);
        Assert.Equal(LeaseStatus.InsufficientSpace, Unchanged(d2, () => d2.Acquire("img1", "hv2", 50 * GiB + 1, Vol2)).Outcome.Status);
    }

    [Fact]
    public void Ending_the_leases_of_a_removed_node_ends_only_that_nodes_leases()
    {
        var d = Volume();
        var cached = d.Cache("img0", "hv1", 5 * GiB, Vol);
        var a = d.Grant("img1", "hv1", 10 * GiB, Vol);
        var b = d.Grant("img2", "hv1", 10 * GiB, Vol);
        var c = d.Grant("img3", "hv2", 10 * GiB, Vol);
        d.Reserve(Vol, "vm1", "hv1", 10 * GiB, image: "img0");
        var before = d.Free(Vol);

        var events = d.EndLeasesOf("hv1");

        Assert.Equal(
            [("img1", a.LeaseId, LeaseEndReason.HolderRemoved), ("img2", b.LeaseId, LeaseEndReason.HolderRemoved)],
            events.Cast<ImageLeaseEnded>().Select(e => (e.ImageId, e.LeaseId, e.Reason)));
        Assert.Equal([c], d.Ledger.Leases);
        Assert.Null(d.Ledger.Find(Vol, CsvLedger.ImageClaim("img1")));
        Assert.Null(d.Ledger.Find(Vol, CsvLedger.ImageClaim("img2")));
        AssertClaim(d, Vol, "img3", "hv2", 10 * GiB);
        AssertClaim(d, Vol, "img0", "hv1", 5 * GiB); // the cache entry hv1 filled stays
        Assert.Equal([cached], d.Ledger.Images);
        Assert.NotNull(d.Ledger.Find(Vol, "vm1"));
        Assert.Equal(before + 20 * GiB, d.Free(Vol));
        Assert.Empty(d.EndLeasesOf("hv1"));
        Assert.Empty(d.EndLeasesOf("hv9"));

        // The removed holder's late requests are stale; others may take the images.
        Assert.Equal(LeaseActionStatus.Stale, Unchanged(d, () => d.Complete(a, 10 * GiB)).Outcome.Status);
        Assert.True(d.Grant("img1", "hv2", GiB, Vol).FencingToken > c.FencingToken);
    }

    [Fact]
    public void A_new_leader_gives_every_lease_a_fresh_ttl()
    {
        var d = Volume();
        var a = d.Grant("img1", "hv1", GiB, Vol);
        d.Advance(TimeSpan.FromSeconds(30));
        var b = d.Grant("img2", "hv2", GiB, Vol);
        d.Advance(TimeSpan.FromMinutes(5)); // both expired while there was no leader

        var events = d.RefreshLeases(TimeSpan.FromMinutes(2));

        Assert.Equal(
            [new ImageLeaseRenewed("img1", a.LeaseId, d.Now + TimeSpan.FromMinutes(2)), new ImageLeaseRenewed("img2", b.LeaseId, d.Now + TimeSpan.FromMinutes(2))],
            events);
        Assert.All(d.Ledger.Leases, l => Assert.Equal(d.Now + TimeSpan.FromMinutes(2), l.ExpiresAt));
        Assert.Empty(d.ExpireLeases());
        Assert.Equal(LeaseActionStatus.Done, d.Renew(a).Outcome.Status);
        Assert.Equal(LeaseStatus.Pending, d.Acquire("img2", "hv1", GiB, Vol).Outcome.Status);
    }

    // ---------------------------------------------------------------- completion and the cache

    [Fact]
    public void Completion_creates_the_entry_and_the_claim_becomes_the_real_size()
    {
        var d = Volume();
        var lease = d.Grant("img1", "hv1", 10 * GiB, Vol);

        var r = d.Complete(lease, 7 * GiB, "ABCdef0123");

        Assert.Equal(LeaseActionStatus.Done, r.Outcome.Status);
        var done = Assert.IsType<ImageCached>(Assert.Single(r.Events));
        Assert.Equal(("img1", lease.LeaseId, 7 * GiB, "abcdef0123"), (done.ImageId, done.LeaseId, done.SizeBytes, done.Checksum));
        var entry = r.Outcome.Cached!;
        Assert.Equal(new CachedImage("img1", Vol, lease.File, 7 * GiB, "abcdef0123", d.Now, d.Now), entry);
        Assert.Equal(entry, d.Ledger.FindImage("img1"));
        Assert.Null(d.Ledger.FindLease("img1"));
        AssertClaim(d, Vol, "img1", "hv1", 7 * GiB);
        Assert.Equal(93 * GiB, d.Free(Vol));

        var hit = d.Acquire("img1", "hv2", 10 * GiB, Vol);
        Assert.Equal(LeaseStatus.Cached, hit.Outcome.Status);
        Assert.Equal(entry, hit.Outcome.Cached);
        Assert.Null(hit.Outcome.Lease);
        Assert.Empty(hit.Events); // used a second ago: not recorded again

        // A real size above the estimate is claimed as well.
        var big = d.Grant("img2", "hv1", GiB, Vol);
        d.Complete(big, 3 * GiB);
        AssertClaim(d, Vol, "img2", "hv1", 3 * GiB);
        Assert.Equal(90 * GiB, d.Free(Vol));
    }

    [Theory]
    [InlineData(0L, "abc")]
    [InlineData(-1L, "abc")]
    [InlineData(ByteSize.MaxBytes + 1, "abc")]
    [InlineData(GiB, "")]
    [InlineData(GiB, "not-hex")]
    public void Completion_with_a_bad_size_or_checksum_is_invalid_and_changes_nothing(long size, string checksum)
    {
        var d = Volume();
        var lease = d.Grant("img1", "hv1", 10 * GiB, Vol);

        var r = Unchanged(d, () => d.Complete(lease, size, checksum));

        Assert.Equal(LeaseActionStatus.Invalid, r.Outcome.Status);
        Assert.Equal(lease, d.Ledger.FindLease("img1"));
    }

    [Fact]
    public void A_grant_that_does_not_fit_is_refused_and_changes_nothing()
    {
        var d = Volume(capacity: 100 * GiB, headroom: 5 * GiB);
        d.Reserve(Vol, "vm1", "hv1", 85 * GiB);

        var r = Unchanged(d, () => d.Acquire("img1", "hv1", 10 * GiB + 1, Vol));

        Assert.Equal(LeaseStatus.InsufficientSpace, r.Outcome.Status);
        Assert.Equal(10 * GiB, r.Outcome.FreeBytes);
        Assert.Null(r.Outcome.Lease);
        Assert.False(string.IsNullOrEmpty(r.Outcome.Error));
        Assert.Equal(0, d.Ledger.LastFencingToken);

        var exact = d.Acquire("img1", "hv1", 10 * GiB, Vol);
        Assert.Equal(LeaseStatus.Granted, exact.Outcome.Status);
        Assert.Equal(0, d.Free(Vol));
        Assert.Equal(0, exact.Outcome.FreeBytes);

        // On an overcommitted volume nothing fits, and the reply never reports negative free space.
        d.Configure(Vol, Root, 90 * GiB, 5 * GiB);
        var over = Unchanged(d, () => d.Acquire("img2", "hv1", 1, Vol));
        Assert.Equal(LeaseStatus.InsufficientSpace, over.Outcome.Status);
        Assert.Equal(0, over.Outcome.FreeBytes);
    }

    [Fact]
    public void An_expired_lease_is_kept_when_the_next_grant_does_not_fit()
    {
        var d = Volume(capacity: 30 * GiB);
        var lease = d.Grant("img1", "hv1", 20 * GiB, Vol);
        d.Advance(Ttl);

        var r = Unchanged(d, () => d.Acquire("img1", "hv2", 30 * GiB + 1, Vol));

        Assert.Equal(LeaseStatus.InsufficientSpace, r.Outcome.Status);
        Assert.Equal(30 * GiB, r.Outcome.FreeBytes);
        Assert.Equal(lease, d.Ledger.FindLease("img1"));
    }

    [Fact]
    public void An_unknown_volume_is_refused_and_changes_nothing()
    {
        var d = Volume();
        var r = Unchanged(d, () => d.Acquire("img1", "hv1", GiB, "nowhere"));
        Assert.Equal(LeaseStatus.UnknownVolume, r.Outcome.Status);
        Assert.False(string.IsNullOrEmpty(r.Outcome.Error));
    }

    [Fact]
    public void Cache_hits_are_recorded_at_most_once_a_minute()
    {
        var d = Volume();
        var entry = d.Cache("img1", "hv1", GiB, Vol);
        var cachedAt = entry.LastUsedAt;

        Assert.Empty(Unchanged(d, () => d.Acquire("img1", "hv2", GiB, Vol)).Events);
        d.Advance(TimeSpan.FromMinutes(1) - (d.Now - cachedAt) - TimeSpan.FromSeconds(2)); // the next tick is 59 s after caching
        Assert.Empty(Unchanged(d, () => d.Acquire("img1", "hv2", GiB, Vol)).Events);

        var used = d.Acquire("img1", "hv3", GiB, Vol); // exactly one minute after
        Assert.Equal(cachedAt + TimeSpan.FromMinutes(1), d.Now);
        Assert.Equal(LeaseStatus.Cached, used.Outcome.Status);
        Assert.Equal(new ImageUsed("img1", d.Now), Assert.Single(used.Events));
        Assert.Equal(d.Now, d.Ledger.FindImage("img1")!.LastUsedAt);
        Assert.Equal(entry.CachedAt, d.Ledger.FindImage("img1")!.CachedAt);

        Assert.Empty(d.Acquire("img1", "hv1", GiB, Vol).Events);
        Assert.Empty(d.Ledger.Touch("img1", d.Now + TimeSpan.FromSeconds(30)));
        Assert.Single(d.Ledger.Touch("img1", d.Now + TimeSpan.FromMinutes(2)));
        Assert.Empty(d.Ledger.Touch("img2", d.Now + TimeSpan.FromMinutes(2)));
    }

    // ---------------------------------------------------------------- eviction

    [Fact]
    public void An_old_unused_image_is_evicted_and_its_bytes_are_free_again()
    {
        var d = Volume();
        d.Reserve(Vol, "vm1", "hv1", 10 * GiB);
        var before = d.Free(Vol);
        d.Cache("img1", "hv1", 20 * GiB, Vol);
        var maxAge = TimeSpan.FromHours(1);

        d.Advance(TimeSpan.FromMinutes(30));
        Assert.Empty(d.Ledger.EvictionCandidates(maxAge, d.Now));
        Assert.Null(Unchanged(d, () => d.Evict("img1", maxAge), x => x.Events).Outcome);

        d.Advance(TimeSpan.FromMinutes(30));
        var entry = Assert.Single(d.Ledger.EvictionCandidates(maxAge, d.Now));
        Assert.Equal("img1", entry.ImageId);
        var r = d.Evict("img1", maxAge);

        Assert.Equal(entry, r.Outcome);
        Assert.Equal(new ImageEvicted("img1", d.Now), Assert.Single(r.Events));
        Assert.Null(d.Ledger.FindImage("img1"));
        Assert.Null(d.Ledger.Find(Vol, CsvLedger.ImageClaim("img1")));
        Assert.Equal(before, d.Free(Vol));
        Assert.Null(Unchanged(d, () => d.Evict("img1", maxAge), x => x.Events).Outcome);

        // The next request fetches it again under a new lease.
        Assert.Equal(2, d.Grant("img1", "hv2", 20 * GiB, Vol).FencingToken);
    }

    [Fact]
    public void A_recently_used_image_is_not_evicted()
    {
        var d = Volume();
        d.Cache("img1", "hv1", GiB, Vol);
        d.Advance(TimeSpan.FromMinutes(50));
        Assert.Single(d.Acquire("img1", "hv2", GiB, Vol).Events); // ImageUsed
        d.Advance(TimeSpan.FromMinutes(50));

        Assert.Empty(d.Ledger.EvictionCandidates(TimeSpan.FromHours(1), d.Now));
        Assert.Single(d.Ledger.EvictionCandidates(TimeSpan.FromMinutes(50), d.Now));
    }

    [Fact]
    public void An_image_named_by_a_reservation_is_never_evicted()
    {
        var d = Volume();
        d.Configure(Vol2, Root2, 100 * GiB);
        d.Cache("img1", "hv1", GiB, Vol);
        d.Cache("img2", "hv1", GiB, Vol);
        d.Reserve(Vol2, "vm1", "hv1", GiB, image: "img1"); // an instance on another volume still counts
        d.Advance(TimeSpan.FromDays(30));

        Assert.Equal(["img2"], d.Ledger.EvictionCandidates(TimeSpan.Zero, d.Now).Select(i => i.ImageId));
        Assert.Null(Unchanged(d, () => d.Evict("img1", TimeSpan.Zero), x => x.Events).Outcome);
        Assert.Equal(1, d.Ledger.UsersOf("img1"));
        Assert.Equal(0, d.Ledger.UsersOf("img2")); // its own claim names it, but is no user

        // Rebased onto another image: no longer a user.
        d.Reserve(Vol2, "vm1", "hv1", GiB, image: "img9");
        Assert.Equal(["img1", "img2"], d.Ledger.EvictionCandidates(TimeSpan.Zero, d.Now).Select(i => i.ImageId));
        d.Reserve(Vol2, "vm1", "hv1", GiB, image: "img1");
        Assert.Equal(LeaseStatus.Cached, d.Acquire("img1", "hv1", GiB, Vol).Outcome.Status);
        d.Advance(TimeSpan.FromDays(30));
        d.Release(Vol2, "vm1");
        Assert.Equal(0, d.Ledger.UsersOf("img1"));
        Assert.Equal(LeaseStatus.Cached, d.Acquire("img1", "hv1", GiB, Vol).Outcome.Status);
        Assert.NotNull(d.Evict("img1", TimeSpan.Zero).Outcome);
        Assert.Null(d.Ledger.FindImage("img1"));
    }

    [Fact]
    public void An_image_under_a_lease_is_never_a_candidate()
    {
        var d = Volume();
        d.Cache("img1", "hv1", GiB, Vol);
        d.Grant("img2", "hv1", GiB, Vol, TimeSpan.FromDays(365));
        d.Advance(TimeSpan.FromDays(30));

        Assert.Equal(["img1"], d.Ledger.EvictionCandidates(TimeSpan.Zero, d.Now).Select(i => i.ImageId));
        var r = Unchanged(d, () => d.Evict("img2", TimeSpan.Zero), x => x.Events);
        Assert.Null(r.Outcome);
        Assert.NotNull(d.Ledger.FindLease("img2"));
        AssertClaim(d, Vol, "img2", "hv1", GiB);
    }

    // ---------------------------------------------------------------- input rules

    public static TheoryData<string> BadImageIds => new()
    {
        "", "a/b", @"a\b", "..", ".", "a..b", ".hidden", "a.", "-a", "_a", new string('a', 129), "a\u0001b", "a\nb", "a b", "img\u00e9",
    };

    [Theory]
    [MemberData(nameof(BadImageIds))]
    public void Bad_image_ids_are_refused_with_no_events(string image)
    {
        var d = Volume();
        d.Grant("img1", "hv1", GiB, Vol);

        var r = Unchanged(d, () => d.Acquire(image, "hv1", GiB, Vol));
        Assert.Equal(LeaseStatus.Invalid, r.Outcome.Status);
        Assert.False(string.IsNullOrEmpty(r.Outcome.Error));

        Assert.Equal(LeaseActionStatus.Invalid, Unchanged(d, () => d.Renew(image, "img1.1", 1)).Outcome.Status);
        Assert.Equal(LeaseActionStatus.Invalid, Unchanged(d, () => d.Complete(image, "img1.1", 1, GiB)).Outcome.Status);
        Assert.Equal(LeaseActionStatus.Invalid, Unchanged(d, () => d.Abort(image, "img1.1", 1)).Outcome.Status);
    }

    [Theory]
    [InlineData("img1", "", GiB)]
    [InlineData("img1", " ", GiB)]
    [InlineData("img1", "hv/1", GiB)]
    [InlineData("img1", "..", GiB)]
    [InlineData("img1", "hv1", 0L)]
    [InlineData("img1", "hv1", -1L)]
    [InlineData("img1", "hv1", ByteSize.MaxBytes + 1)]
    [InlineData("img1", "hv1", long.MinValue)]
    public void Bad_nodes_and_sizes_are_refused_with_no_events(string image, string node, long size)
    {
        var d = Volume();
        var r = Unchanged(d, () => d.Acquire(image, node, size, Vol));
        Assert.Equal(LeaseStatus.Invalid, r.Outcome.Status);
    }

    [Theory]
    [InlineData("a")]
    [InlineData("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0")]
    [InlineData("ubuntu-24.04.qcow2")]
    [InlineData("a_b-c.d_e")]
    public void Good_image_ids_are_granted(string image)
    {
        var d = Volume();
        Assert.Equal(LeaseStatus.Granted, d.Acquire(image, "hv1", GiB, Vol).Outcome.Status);
        Assert.Equal(LeaseStatus.Granted, d.Acquire(new string('a', 128), "hv1", GiB, Vol).Outcome.Status);
    }

    [Fact]
    public void Clients_cannot_touch_image_claims()
    {
        var d = Volume();
        d.Grant("img1", "hv1", 10 * GiB, Vol);
        d.Cache("img2", "hv1", 10 * GiB, Vol);

        foreach (var image in new[] { "img1", "img2", "img3" })
        {
            var reserve = Unchanged(d, () => d.Reserve(Vol, CsvLedger.ImageClaim(image), "hv1", GiB), x => x.Events);
            Assert.Equal(ReserveStatus.Invalid, reserve.Outcome.Status);
            Assert.Contains("_image-", reserve.Outcome.Error);

            var release = Unchanged(d, () => d.Release(Vol, CsvLedger.ImageClaim(image)), x => x.Events);
            Assert.Equal(ReleaseStatus.NotFound, release.Outcome.Status);
        }
        AssertClaim(d, Vol, "img1", "hv1", 10 * GiB);
        AssertClaim(d, Vol, "img2", "hv1", 10 * GiB);
        Assert.Equal(80 * GiB, d.Free(Vol));
    }

    [Fact]
    public void Entry_count_is_reservations_images_and_leases_and_survives_a_snapshot()
    {
        // The ledger actor spaces snapshots by this count: it must count what a snapshot holds.
        var d = Volume();
        Assert.Equal(0, d.Ledger.EntryCount);
        d.Reserve(Vol, "vm1", "hv1", GiB);
        d.Reserve(Vol, "vm2", "hv2", GiB);
        var lease = d.Grant("img1", "hv1", GiB, Vol); // a lease and its claim
        Assert.Equal(4, d.Ledger.EntryCount);
        d.Complete(lease, GiB);                         // the lease becomes a cached image; the claim stays
        d.Grant("img2", "hv2", GiB, Vol);
        Assert.Equal(6, d.Ledger.EntryCount);
        d.Release(Vol, "vm1");
        Assert.Equal(5, d.Ledger.EntryCount);
        Assert.Equal(5, CsvLedger.FromSnapshot(RoundTrip(d.Ledger.ToSnapshot())).EntryCount);
    }
}
