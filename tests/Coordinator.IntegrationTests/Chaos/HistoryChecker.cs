namespace Coordinator.IntegrationTests.Chaos;

/// <summary>
/// Checks a run's history against the ledger's final state, jepsen-style: what was acknowledged is there, what was
/// refused had no effect, nothing appeared from nowhere, capacity was never exceeded, no two holders held an image lease
/// at once, the image cache and its claims match the completions and evictions, and no older ledger answered after a newer one.
/// </summary>
public static class HistoryChecker
{
    /// <summary>The image claim's consumer id (CsvLedger.ImageClaimPrefix).</summary>
    public const string ImageClaimPrefix = "_image-";

    /// <summary>A grant this much before the earlier lease's expiry is a double grant (both on this machine's clock).</summary>
    public static readonly TimeSpan ExpiryMargin = TimeSpan.FromMilliseconds(250);

    public static List<string> Check(History history, long capacityBytes, IReadOnlyDictionary<string, long> finalReservations) =>
        Check(history, capacityBytes, FinalState.Of(finalReservations));

    public static List<string> Check(History history, long capacityBytes, FinalState final)
    {
        var violations = new List<string>();
        var ops = history.Ops.ToList();
        var finalReservations = final.Reservations.Where(r => !r.Key.StartsWith(ImageClaimPrefix, StringComparison.Ordinal))
            .ToDictionary(r => r.Key, r => r.Value);

        // 1. Per consumer, operations are sequential (one client owns each id and waits for a definite answer), so
        //    the final state must be the effect of the last acknowledged operation; refusals (409) change nothing. Only
        //    the last operation can lack an answer (the run ended while it was retried): then the state is the one before
        //    it or the one after it, nothing else. A consumer in the final state that no operation named came from nowhere.
        var keys = new HashSet<string>();
        foreach (var perKey in ops.Where(o => o.Kind is OpKind.Put or OpKind.Delete).GroupBy(o => o.Key))
        {
            keys.Add(perKey.Key);
            long? expected = null; // null: absent
            var allowed = new List<long?>();
            foreach (var op in perKey.OrderBy(o => o.Start))
            {
                if (op.Status < 0)
                {
                    allowed.Add(op.Kind == OpKind.Put ? op.Bytes : null);
                    continue;
                }
                if (op.Kind == OpKind.Put && op.Status is 200 or 201) expected = op.Bytes;
                else if (op.Kind == OpKind.Delete && op.Status is 204 or 404) expected = null;
            }
            allowed.Add(expected);
            var actual = finalReservations.TryGetValue(perKey.Key, out var b) ? b : (long?)null;
            if (!allowed.Contains(actual))
                violations.Add($"consumer {perKey.Key}: final state {Show(actual)} but the operations allow only " +
                               $"{string.Join(" or ", allowed.Distinct().Select(Show))} (lost or phantom write)");
        }
        foreach (var key in finalReservations.Keys.Where(k => !keys.Contains(k)).Order())
            violations.Add($"consumer {key}: in the final state ({Show(finalReservations[key])}) but no operation named it (write from nowhere)");

        // 2. Capacity: a lower bound of the ledger's real claims over time. An acknowledged PUT may take effect anywhere
        //    between its sending and its answer: until the answer the bound keeps the smaller of the old and new size,
        //    after it the new size; a DELETE may take effect from its sending. A PUT left without an answer (its node
        //    froze or the run ended) may have taken effect too: a shrink lowers the bound from its sending, nothing ever
        //    raises it. If even this lower bound exceeds the capacity, the ledger overcommitted.
        var timeline = new List<(TimeSpan At, int Order, string Key, long Bytes, bool Lower)>();
        foreach (var op in ops)
        {
            if (op.Kind == OpKind.Put && op.Status is 200 or 201)
            {
                timeline.Add((op.Start, 0, op.Key, op.Bytes, true));
                timeline.Add((op.End, 1, op.Key, op.Bytes, false));
            }
            if (op.Kind == OpKind.Put && op.Status < 0) timeline.Add((op.Start, 0, op.Key, op.Bytes, true));
            if (op.Kind == OpKind.Delete) timeline.Add((op.Start, 0, op.Key, 0, true));
        }
        var current = new Dictionary<string, long>();
        long sum = 0;
        foreach (var (at, _, key, bytes, lower) in timeline.OrderBy(t => t.At).ThenBy(t => t.Order))
        {
            var old = current.GetValueOrDefault(key);
            var next = lower ? Math.Min(old, bytes) : bytes;
            current[key] = next;
            sum += next - old;
            if (sum > capacityBytes)
            {
                violations.Add($"at {at.TotalSeconds:0.000}s acknowledged claims were at least {sum} bytes, over the capacity {capacityBytes}");
                break;
            }
        }

        // 3. Leases: fencing tokens grow with every grant of an image, and no renew/complete with a token succeeded
        //    after a grant with a higher token had been acknowledged (two valid holders at once).
        foreach (var perImage in ops.Where(o => o.Kind is OpKind.Grant or OpKind.Renew or OpKind.Complete or OpKind.Abort).GroupBy(o => o.Key))
        {
            var grants = perImage.Where(o => o.Kind == OpKind.Grant && o.Status == 201).OrderBy(o => o.End).ToList();
            for (var i = 1; i < grants.Count; i++)
                if (grants[i].Token <= grants[i - 1].Token)
                    violations.Add($"image {perImage.Key}: token {grants[i].Token} granted after token {grants[i - 1].Token}");
            foreach (var ok in perImage.Where(o => o.Kind is OpKind.Renew or OpKind.Complete && o.Status == 200))
            {
                var newer = grants.FirstOrDefault(g => g.Token > ok.Token && g.End < ok.Start);
                if (newer is not null)
                    violations.Add($"image {perImage.Key}: {ok.Kind} with token {ok.Token} succeeded after token {newer.Token} was granted (double grant)");
            }
        }
        // 3b. A double grant: a grant acknowledged while an earlier lease of the same image was still valid (its
        //     acknowledged expiry, extended by acknowledged renewals, still ahead) and not given back (no complete or
        //     abort of it sent before). Found from the grants alone, whether or not the old holder ever came back.
        foreach (var perImage in ops.Where(o => o.Kind is OpKind.Grant or OpKind.Renew or OpKind.Complete or OpKind.Abort).GroupBy(o => o.Key))
        {
            var grants = perImage.Where(o => o.Kind == OpKind.Grant && o.Status == 201).OrderBy(o => o.End).ToList();
            foreach (var first in grants)
            {
                var validUntil = perImage.Where(o => o.Token == first.Token && o.Kind is OpKind.Grant or OpKind.Renew && o.Status is 200 or 201)
                    .Select(o => o.ValidUntil ?? TimeSpan.Zero).DefaultIfEmpty(TimeSpan.Zero).Max();
                var released = perImage.Where(o => o.Token == first.Token && o.Kind is OpKind.Complete or OpKind.Abort)
                    .Select(o => o.Start).DefaultIfEmpty(TimeSpan.MaxValue).Min();
                var second = grants.FirstOrDefault(g => g.Token != first.Token && g.End > first.End && g.End + ExpiryMargin < validUntil && g.End < released);
                if (second is not null)
                    violations.Add($"image {perImage.Key}: token {second.Token} granted by {second.End.TotalSeconds:0.000}s while token {first.Token} " +
                                   $"was valid until {validUntil.TotalSeconds:0.000}s and not given back (double grant)");
            }
        }

        // 3c. The image cache: an image whose last acknowledged change was a completion is in the final cache list, and
        //     has its claim; one an eviction named last is not (when the two overlap in time, either). A completion or
        //     an eviction without an answer allows the state after it. An image or an image claim nobody asked for
        //     came from nowhere; a claim of an image neither cached nor leased at the end is an orphan.
        var imageOps = ops.Where(o => o.Kind is OpKind.Grant or OpKind.Renew or OpKind.Complete or OpKind.Abort).GroupBy(o => o.Key)
            .ToDictionary(g => g.Key, g => g.ToList());
        var evictions = ops.Where(o => o.Kind == OpKind.Evict).ToList();
        foreach (var (image, perImage) in imageOps)
        {
            var lastAdd = perImage.Where(o => o.Kind == OpKind.Complete && o.Status == 200).MaxBy(o => o.End);
            var lastRemove = evictions.Where(o => o.Status == 200 && o.Evicted?.Contains(image) == true).MaxBy(o => o.End);
            var allowed = new HashSet<bool>();
            if (lastAdd is null && lastRemove is null) allowed.Add(false);
            else if (lastAdd is null) allowed.Add(false);
            else if (lastRemove is null || lastAdd.Start > lastRemove.End) allowed.Add(true);
            else if (lastRemove.Start > lastAdd.End) allowed.Add(false);
            else { allowed.Add(true); allowed.Add(false); }
            if (perImage.Any(o => o.Kind == OpKind.Complete && o.Status < 0)) allowed.Add(true);
            if (evictions.Any(o => o.Status < 0)) allowed.Add(false);
            var cached = final.Images.TryGetValue(image, out var size);
            if (!allowed.Contains(cached))
                violations.Add(cached
                    ? $"image {image}: cached at the end, but an acknowledged eviction removed it after its last completion (phantom image)"
                    : $"image {image}: completed at {lastAdd!.End.TotalSeconds:0.000}s and not evicted since, but not in the final cache list (lost image)");
            if (cached && final.Reservations.TryGetValue(ImageClaimPrefix + image, out var claim) is var hasClaim && (!hasClaim || claim != size))
                violations.Add($"image {image}: cached ({size} bytes) but its claim {ImageClaimPrefix}{image} is {(hasClaim ? claim + " bytes" : "absent")}");
        }
        foreach (var image in final.Images.Keys.Where(i => !imageOps.TryGetValue(i, out var p) || !p.Any(o => o.Kind == OpKind.Complete)).Order())
            violations.Add($"image {image}: in the final cache list but no completion was sent (image from nowhere)");
        foreach (var claim in final.Reservations.Keys.Where(k => k.StartsWith(ImageClaimPrefix, StringComparison.Ordinal)).Order())
        {
            var image = claim[ImageClaimPrefix.Length..];
            if (!imageOps.ContainsKey(image))
                violations.Add($"claim {claim}: in the final state but no operation named image {image} (claim from nowhere)");
            else if (!final.Images.ContainsKey(image) && !final.Leases.ContainsKey(image))
                violations.Add($"claim {claim}: image {image} is neither cached nor leased at the end (orphan claim)");
        }

        // 4. One ledger at a time: once an incarnation (epoch) has answered, no older one answers an operation sent after
        //    that (a paused leader that resumes must not decide anything, not even a refusal or an unchanged PUT).
        var answered = ops.Where(o => o.Epoch > 0 && o.Status > 0).OrderBy(o => o.End).ToList();
        var newestBy = new long[answered.Count];
        for (var i = 0; i < answered.Count; i++) newestBy[i] = Math.Max(i > 0 ? newestBy[i - 1] : 0, answered[i].Epoch);
        var ends = answered.Select(o => o.End).ToList();
        foreach (var op in answered)
        {
            var before = ends.BinarySearch(op.Start);
            var count = before >= 0 ? before : ~before; // answers that ended before this operation was sent
            while (count > 0 && ends[count - 1] >= op.Start) count--;
            if (count > 0 && newestBy[count - 1] > op.Epoch)
            {
                violations.Add($"{op.Kind} {op.Key} sent at {op.Start.TotalSeconds:0.000}s was answered by epoch {op.Epoch} after epoch {newestBy[count - 1]} had answered (stale leader)");
                break;
            }
        }
        return violations;
    }

    public static TimeSpan LongestGap(History history, TimeSpan from, TimeSpan to)
    {
        var acks = history.Ops.Where(o => o.Status is >= 200 and < 500).Select(o => o.End).Where(t => t >= from && t <= to)
            .Append(from).Append(to).Order().ToList();
        return acks.Zip(acks.Skip(1), (a, b) => b - a).DefaultIfEmpty(TimeSpan.Zero).Max();
    }

    private static string Show(long? b) => b is null ? "absent" : $"{b} bytes";
}
