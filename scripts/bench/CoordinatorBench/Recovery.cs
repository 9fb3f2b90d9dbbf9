using System.Diagnostics;
using CoordinatorBench.Ours;

namespace CoordinatorBench;

public sealed record RecoveryResult(
    long Reservations, long Images, double LoadSeconds, IReadOnlyList<long> RssLoadedBytes,
    double RestartToReadySeconds, double LedgerRecoveryMs, long SnapshotSequenceNr, long EventsReplayed,
    IReadOnlyList<long> RssRecoveredBytes, double FailoverWithStateMs, double FailoverLedgerRecoveryMs, long JournalBytes);

/// <summary>
/// Recovery and size (issue 7): fill a fresh 3-node ledger with N reservations and M cached images through the API,
/// read each node's RSS, stop every node and start them again; report the time until the cluster is ready and the
/// ledger's own recovery figures (snapshot used, events replayed, duration, from /v1/leader). Then SIGKILL the leader's
/// host once: failover with that state.
/// </summary>
public static class Recovery
{
    public static async Task<RecoveryResult> RunAsync(CoordinatorTarget target, long reservations, long images, int concurrency,
        string runId, TextWriter log, CancellationToken ct, bool failover = true)
    {
        var sw = Stopwatch.StartNew();
        long nextRes = 0, nextImg = 0, failures = 0;
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async c =>
        {
            await Task.Yield();
            var ep = c % target.Endpoints;
            while (!ct.IsCancellationRequested)
            {
                var r = Interlocked.Increment(ref nextRes) - 1;
                Outcome o;
                if (r < reservations)
                {
                    do o = await target.ReserveAsync(ep, $"{runId}-rec-{r}", 1 << 20);
                    while (o.Kind == OutcomeKind.Unavailable);
                }
                else
                {
                    var i = Interlocked.Increment(ref nextImg) - 1;
                    if (i >= images) break;
                    do o = await target.LeaseGrantAndCompleteAsync(ep, $"{runId}-recimg-{i}", 1 << 20);
                    while (o.Kind == OutcomeKind.Unavailable);
                }
                if (o.Kind != OutcomeKind.Ok && Interlocked.Increment(ref failures) <= 3) log.WriteLine($"   ! recovery load: {o.Kind} {o.Detail}");
            }
        }));
        var loadSeconds = sw.Elapsed.TotalSeconds;
        if (failures > 0) throw new InvalidOperationException($"{failures} operations of the recovery load were not acknowledged");
        var rssLoaded = target.RssBytes();
        log.WriteLine($"   loaded {reservations} reservations and {images} images in {loadSeconds:0.0} s " +
                      $"({(reservations + 2 * images) / loadSeconds:0} req/s); RSS per node {Mib(rssLoaded)}");

        // The smoke (failover: false) leaves out the restart of every node and the failover (a minute on a loaded
        // machine with the default profile; the full run has them): it reads the recovery figures of the current leader.
        sw.Restart();
        if (failover) await target.RestartAllAsync(ct);
        var restart = failover ? sw.Elapsed.TotalSeconds : double.NaN;
        var (recMs, snap, replayed) = await LeaderRecoveryAsync(target);
        var rssRecovered = target.RssBytes();
        log.WriteLine((failover ? $"   restart of all nodes: ready after {restart:0.0} s; ledger recovery" : "   (smoke: no restart) the ledger's recovery at start:") +
                      $" {recMs:0} ms (snapshot at {snap}, {replayed} events replayed); RSS per node {Mib(rssRecovered)}");

        var failoverMs = double.NaN;
        var failRecMs = double.NaN;
        if (failover)
        {
            failoverMs = (await Failover.RunAsync(target, 1, runId + "-rec", log, ct)).MedianMs;
            (failRecMs, _, _) = await LeaderRecoveryAsync(target);
        }
        var journal = new DirectoryInfo(target.DataDir).EnumerateFiles("ledger.db*").Sum(f => f.Length);
        return new RecoveryResult(reservations, images, loadSeconds, rssLoaded, restart, recMs, snap, replayed, rssRecovered,
            failoverMs, failRecMs, journal);
    }

    private static async Task<(double Ms, long Snapshot, long Replayed)> LeaderRecoveryAsync(CoordinatorTarget target)
    {
        for (var i = 0; i < target.Endpoints; i++)
        {
            using var doc = await target.LeaderInfoAsync(i);
            if (doc is null || !doc.RootElement.TryGetProperty("recovery", out var r) || r.ValueKind != System.Text.Json.JsonValueKind.Object) continue;
            return (r.GetProperty("durationMs").GetDouble(), r.GetProperty("snapshotSequenceNr").GetInt64(), r.GetProperty("eventsReplayed").GetInt64());
        }
        return (double.NaN, 0, 0);
    }

    public static string Mib(IEnumerable<long> bytes) => string.Join(" / ", bytes.Select(b => $"{b / (1024.0 * 1024):0} MiB"));
}
