namespace Coordinator.IntegrationTests.Chaos;

/// <summary>
/// Checks a run's history against the ledger's final state, jepsen-style: what was acknowledged is there, what was
/// refused had no effect, capacity was never exceeded, and no two holders held an image lease at once.
/// </summary>
public static class HistoryChecker
{
    public static List<string> Check(History history, long capacityBytes, IReadOnlyDictionary<string, long> finalReservations)
    {
        var violations = new List<string>();
        var ops = history.Ops.ToList();

        // 1. Per consumer, operations are sequential (one client owns each id and waits for a definite answer), so
        //    the final state must be the effect of the last acknowledged operation; refusals (409) change nothing.
        foreach (var perKey in ops.Where(o => o.Kind is OpKind.Put or OpKind.Delete).GroupBy(o => o.Key))
        {
            long? expected = null; // null: absent
            var uncertain = false;
            foreach (var op in perKey.OrderBy(o => o.Start))
            {
                // An operation cut off by the end of the run (no definite answer) may or may not have happened.
                if (op.Status < 0) { uncertain = true; continue; }
                uncertain = false;
                if (op.Kind == OpKind.Put && op.Status is 200 or 201) expected = op.Bytes;
                else if (op.Kind == OpKind.Delete && op.Status is 204 or 404) expected = null;
            }
            var actual = finalReservations.TryGetValue(perKey.Key, out var b) ? b : (long?)null;
            if (actual != expected && !uncertain)
                violations.Add($"consumer {perKey.Key}: final state {Show(actual)} but the last acknowledged operation left {Show(expected)} (lost or phantom write)");
        }

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
