using System.Collections.Concurrent;
using System.Diagnostics;

namespace CoordinatorBench;

/// <summary>
/// The workload of issue 7, the same for every target: a fixed number of clients, client w always through endpoint
/// w % endpoints. An operation without a definite answer (503, timeout, no leader) is retried after 20 ms with the same
/// arguments (every write is idempotent) until its budget (--give-up) is spent; one operation is one sample, timed from
/// its first attempt to its final answer (ok, refused or given up), also when it ends after the window.
/// </summary>
public sealed class Workloads(ITarget target, BenchOptions opts, string runId, TextWriter log)
{
    public const long ClaimBytes = 1 << 20;

    // Consumer ids each client created in the reservation phase, for its resize and release phases.
    private readonly List<string>[] _created = Enumerable.Range(0, opts.Concurrency).Select(_ => new List<string>()).ToArray();

    public static readonly string[] All = ["reserve", "resize", "release", "quota", "lease", "contention"];

    public async Task<List<Stats>> RunAsync(IEnumerable<string> workloads, CancellationToken ct)
    {
        var results = new List<Stats>();
        foreach (var w in workloads)
        {
            ct.ThrowIfCancellationRequested();
            var s = w switch
            {
                "reserve" => await PhaseAsync("reserve", (c, n) =>
                {
                    var id = $"{runId}-c{c}-{n}";
                    lock (_created[c]) _created[c].Add(id);
                    return (id, ep => target.ReserveAsync(ep, id, ClaimBytes));
                }, ct),
                "resize" => await PhaseAsync("resize", (c, n) =>
                {
                    var ids = _created[c];
                    if (ids.Count == 0) return null;
                    var id = ids[(int)(n % ids.Count)];
                    var bytes = (n / ids.Count) % 2 == 0 ? 2 * ClaimBytes : ClaimBytes; // grow, then shrink back, ...
                    return (id, ep => target.ResizeAsync(ep, id, bytes));
                }, ct),
                // No warm-up: the work is bounded (what the reserve phase created), and a warm-up could use it all.
                "release" => await PhaseAsync("release", (c, n) =>
                {
                    var ids = _created[c];
                    if (n >= ids.Count) return null; // this client released all it had
                    var id = ids[(int)n];
                    return (id, ep => target.ReleaseAsync(ep, id));
                }, ct, warmup: 0),
                "quota" => await PhaseAsync("quota", (c, _) => ("quota", ep => target.ReadQuotaAsync(ep, $"hv{ep + 1:00}")), ct),
                "lease" => await PhaseAsync("lease", (c, n) =>
                {
                    var image = $"{runId}-img-c{c}-{n}";
                    return (image, ep => target.LeaseGrantAndCompleteAsync(ep, image, ClaimBytes));
                }, ct),
                "contention" => await ContentionAsync(ct),
                _ => throw new ArgumentException($"unknown workload '{w}'"),
            };
            results.Add(s);
            log.WriteLine($"   {target.Name,-14} {s.Workload,-10} {s.Ok,8} ok {s.OpsPerSecond,9:0.0}/s  p50 {F(s.P50)} p99 {F(s.P99)} max {F(s.Max)} ms  " +
                          $"conflicts/op {s.ConflictsPerOp:0.00}  refused {s.Refused}  unavailable answers {s.UnavailableAnswers}  " +
                          $"given up {s.GivenUp}  errors {s.Errors}{(s.Note is null ? "" : "  " + s.Note)}");
        }
        return results;
    }

    private static string F(double? ms) => ms is { } d ? d.ToString("0.0", System.Globalization.CultureInfo.InvariantCulture) : "-";

    /// <summary>
    /// Runs <paramref name="next"/>'s operations from every client for warmup + duration. next(client, n) gives the
    /// n-th operation of a client, or null when that client has nothing left to do (release of all it created).
    /// Every operation started in the measured window is one sample, also when it ends after the window: its latency
    /// runs from its first attempt to its final answer. An attempt without a definite answer (503, timeout, no leader)
    /// is retried after 20 ms with the same arguments (every write is idempotent) until the operation's budget
    /// (--give-up, 10 s) has passed; then the operation is "given up", and its latency is that whole time.
    /// </summary>
    private async Task<Stats> PhaseAsync(string name, Func<int, long, (string Key, Func<int, Task<Outcome>> Op)?> next, CancellationToken ct,
        double? warmup = null)
    {
        var start = Stopwatch.GetTimestamp();
        var measureFrom = start + (long)((warmup ?? opts.Warmup) * Stopwatch.Frequency);
        var end = measureFrom + (long)(opts.Duration * Stopwatch.Frequency);
        var budget = (long)(opts.GiveUp * Stopwatch.Frequency);
        var retryPause = Stopwatch.Frequency / 50; // 20 ms
        var samples = new ConcurrentBag<List<Sample>>();
        long lastDone = measureFrom, okInPhase = 0;
        var errorsLogged = 0;

        async Task Client(int c)
        {
            await Task.Yield();
            var mine = new List<Sample>(4096);
            var ep = c % target.Endpoints;
            for (long n = 0; !ct.IsCancellationRequested && Stopwatch.GetTimestamp() < end; n++)
            {
                if (next(c, n) is not { } op) break;
                var first = Stopwatch.GetTimestamp();
                int conflicts = 0, unavailable = 0;
                Outcome o;
                OutcomeKind kind;
                while (true)
                {
                    o = await op.Op(ep);
                    conflicts += o.Conflicts;
                    kind = o.Kind;
                    if (o.Kind == OutcomeKind.Error && Interlocked.Increment(ref errorsLogged) <= 3)
                        log.WriteLine($"   ! {target.Name} {name} {op.Key}: {o.Detail}");
                    if (o.Kind != OutcomeKind.Unavailable) break;
                    unavailable++;
                    if (Stopwatch.GetTimestamp() + retryPause - first >= budget || ct.IsCancellationRequested)
                    {
                        kind = OutcomeKind.GivenUp;
                        break;
                    }
                    await Task.Delay(20, CancellationToken.None);
                }
                var t1 = Stopwatch.GetTimestamp();
                if (kind == OutcomeKind.Ok) Interlocked.Increment(ref okInPhase);
                if (first >= measureFrom) mine.Add(new Sample(kind, t1 - first, conflicts, o.Granted, unavailable));
            }
            InterlockedMax(ref lastDone, Stopwatch.GetTimestamp());
            samples.Add(mine);
        }

        await Task.WhenAll(Enumerable.Range(0, opts.Concurrency).Select(Client));
        // The window is the measured duration (or less when every client ran out of work before its end: release).
        var window = Math.Max(1e-3, (Math.Min(end, lastDone) - measureFrom) / (double)Stopwatch.Frequency);
        return Stats.Of(target.Name, name, opts.Concurrency, window, samples.SelectMany(x => x).ToList(), okInPhase);
    }

    /// <summary>
    /// Rounds of one image each: every client asks for the same new image at once; the one granted completes it, the
    /// others wait (long poll / watch) until it is cached. A sample is one client's time from the round's start until
    /// it has the image; a round with more than one grant is a correctness failure and is reported as errors.
    /// </summary>
    private async Task<Stats> ContentionAsync(CancellationToken ct)
    {
        var all = new List<Sample>();
        var start = Stopwatch.GetTimestamp();
        var measureFrom = start + (long)(opts.Warmup * Stopwatch.Frequency);
        var end = measureFrom + (long)(opts.Duration * Stopwatch.Frequency);
        long rounds = 0, doubleGrants = 0, noGrant = 0, reported = 0, okInPhase = 0;
        for (var r = 0; Stopwatch.GetTimestamp() < end && !ct.IsCancellationRequested; r++)
        {
            var image = $"{runId}-hot-{r}";
            var t0 = Stopwatch.GetTimestamp();
            var outcomes = await Task.WhenAll(Enumerable.Range(0, opts.Concurrency).Select(async c =>
            {
                await Task.Yield();
                // The same budget as every other operation: waits and retries included, given up after --give-up.
                var unavailable = 0;
                while (true)
                {
                    var left = TimeSpan.FromSeconds(opts.GiveUp) - Stopwatch.GetElapsedTime(t0);
                    var o = left > TimeSpan.Zero
                        ? await target.AcquireOrWaitAsync(c % target.Endpoints, image, ClaimBytes, left)
                        : Outcome.Unavailable("budget spent");
                    if (o.Kind != OutcomeKind.Unavailable) return (o: o, Stopwatch.GetTimestamp() - t0, unavailable);
                    unavailable++;
                    if (Stopwatch.GetElapsedTime(t0) + TimeSpan.FromMilliseconds(20) >= TimeSpan.FromSeconds(opts.GiveUp) || ct.IsCancellationRequested)
                        return (o: o with { Kind = OutcomeKind.GivenUp }, Stopwatch.GetTimestamp() - t0, unavailable);
                    await Task.Delay(20, CancellationToken.None);
                }
            }));
            foreach (var bad in outcomes.Where(x => x.o.Kind == OutcomeKind.Error).Take(Math.Max(0, 3 - (int)reported)))
            {
                reported++;
                log.WriteLine($"   ! {target.Name} contention {image}: {bad.o.Detail}");
            }
            okInPhase += outcomes.Count(x => x.o.Kind == OutcomeKind.Ok);
            if (t0 < measureFrom) continue;
            rounds++;
            var grants = outcomes.Count(x => x.o.Granted);
            if (grants > 1) doubleGrants++;
            if (grants == 0 && outcomes.All(x => x.o.Kind == OutcomeKind.Ok)) noGrant++; // cached before: not a fresh image
            all.AddRange(outcomes.Select(x => new Sample(grants > 1 ? OutcomeKind.Error : x.o.Kind, x.Item2, x.o.Conflicts, x.o.Granted, x.Item3)));
        }
        var window = Math.Max(1e-3, (Stopwatch.GetTimestamp() - measureFrom) / (double)Stopwatch.Frequency);
        var s = Stats.Of(target.Name, "contention", opts.Concurrency, window, all, okInPhase,
            $"{rounds} rounds ({rounds / window:0.0}/s), rounds with >1 grant: {doubleGrants}, without a grant: {noGrant}");
        return s;
    }

    private static void InterlockedMax(ref long location, long value)
    {
        var current = Interlocked.Read(ref location);
        while (value > current)
        {
            var seen = Interlocked.CompareExchange(ref location, value, current);
            if (seen == current) return;
            current = seen;
        }
    }
}
