using System.Globalization;
using System.Text.Json;
using Spectre.Console;

namespace CoordinatorBench;

/// <summary>Tables, ratios ours/etcd, the issue's targets reached or not, and the result JSON.</summary>
public sealed class Report(IAnsiConsole console, List<Stats> stats, List<FailoverResult> failovers, RecoveryResult? recovery,
    Dictionary<string, IReadOnlyList<long>> rss)
{
    private static string F(double? v, string format = "0.0") => v is { } d && !double.IsNaN(d) ? d.ToString(format, CultureInfo.InvariantCulture) : "-";

    private Stats? Find(string target, string workload) => stats.FirstOrDefault(s => s.Target == target && s.Workload == workload);

    private static double? Ratio(double? a, double? b) => a is { } x && b is { } y && y > 0 ? x / y : null;

    public void Print()
    {
        console.WriteLine();
        var t = new Table().Title("Throughput and latency (latency of acknowledged operations, ms)").Border(TableBorder.Simple);
        foreach (var c in new[] { "workload", "target", "clients", "ok", "ops/s", "p50", "p90", "p99", "max", "conflicts/op", "refused", "unavail.", "errors" })
            t.AddColumn(new TableColumn(c) { Alignment = c is "workload" or "target" ? Justify.Left : Justify.Right });
        foreach (var s in stats.OrderBy(s => Array.IndexOf(Workloads.All, s.Workload)).ThenBy(s => s.Target, StringComparer.Ordinal))
            t.AddRow(s.Workload, s.Target, s.Clients.ToString(CultureInfo.InvariantCulture), s.Ok.ToString(CultureInfo.InvariantCulture),
                F(s.OpsPerSecond), F(s.P50, "0.00"), F(s.P90, "0.00"), F(s.P99, "0.00"), F(s.Max, "0.00"), F(s.ConflictsPerOp, "0.00"),
                s.Refused.ToString(CultureInfo.InvariantCulture), s.Unavailable.ToString(CultureInfo.InvariantCulture), s.Errors.ToString(CultureInfo.InvariantCulture));
        console.Write(t);
        foreach (var s in stats.Where(s => s.Note is not null)) console.WriteLine($"  {s.Target} {s.Workload}: {s.Note}");

        var etcds = stats.Select(s => s.Target).Where(n => n.StartsWith("etcd", StringComparison.Ordinal)).Distinct().Order().ToList();
        var ourTargets = stats.Select(s => s.Target).Where(n => n.StartsWith("ours", StringComparison.Ordinal)).Distinct().ToList();
        if (ourTargets.Count > 0 && etcds.Count > 0)
        {
            var r = new Table().Title("Ours / etcd (throughput ratio above 1: ours does more; p99 ratio below 1: ours is faster)").Border(TableBorder.Simple);
            r.AddColumn("workload");
            r.AddColumn("ours");
            foreach (var e in etcds) { r.AddColumn(new TableColumn($"ops/s vs {e}").RightAligned()); r.AddColumn(new TableColumn($"p99 vs {e}").RightAligned()); }
            foreach (var w in Workloads.All)
            foreach (var ourName in ourTargets)
            {
                if (Find(ourName, w) is not { } ours) continue;
                var cells = new List<string> { w, ourName };
                foreach (var e in etcds)
                {
                    var other = Find(e, w);
                    cells.Add(F(Ratio(ours.OpsPerSecond, other?.OpsPerSecond), "0.00") + "x");
                    cells.Add(F(Ratio(ours.P99, other?.P99), "0.00") + "x");
                }
                r.AddRow(cells.ToArray());
            }
            console.Write(r);
        }

        if (failovers.Count > 0)
        {
            var f = new Table().Title("Leader SIGKILL -> next acknowledged write (probe every 20 ms through a survivor)").Border(TableBorder.Simple);
            foreach (var c in new[] { "target", "trials", "median s", "min s", "max s", "each (s)" }) f.AddColumn(c);
            foreach (var x in failovers)
                f.AddRow(x.Target, x.Trials.Count.ToString(CultureInfo.InvariantCulture), F(x.MedianMs / 1000, "0.00"), F(x.MinMs / 1000, "0.00"),
                    F(x.MaxMs / 1000, "0.00"), string.Join(" ", x.Trials.Select(t => F(t.WritesBackAfterMs / 1000, "0.00"))));
            console.Write(f);
        }

        if (recovery is { } rec)
        {
            console.WriteLine($"Recovery/size (ours, 3 nodes): {rec.Reservations} reservations + {rec.Images} images loaded in {rec.LoadSeconds:0.0} s; " +
                              $"journal {rec.JournalBytes / (1024.0 * 1024):0.0} MiB");
            console.WriteLine($"  RSS per node loaded {Recovery.Mib(rec.RssLoadedBytes)}; after restart {Recovery.Mib(rec.RssRecoveredBytes)}");
            console.WriteLine($"  restart of every node -> ready {rec.RestartToReadySeconds:0.0} s; ledger recovery {F(rec.LedgerRecoveryMs, "0")} ms " +
                              $"(snapshot at sequence number {rec.SnapshotSequenceNr}, {rec.EventsReplayed} events replayed on top)");
            console.WriteLine($"  leader SIGKILL with that state -> writes back after {F(rec.FailoverWithStateMs / 1000, "0.00")} s " +
                              $"(new leader's recovery {F(rec.FailoverLedgerRecoveryMs, "0")} ms)");
        }
        foreach (var (target, bytes) in rss) console.WriteLine($"RSS after the workloads, {target}: {Recovery.Mib(bytes)}");

        console.WriteLine();
        foreach (var line in Targets()) console.WriteLine(line);
    }

    /// <summary>The issue's targets, each reached or not (only those this run measured).</summary>
    private IEnumerable<string> Targets()
    {
        if (Find("ours-3", "reserve") is { } ours && Find("etcd-3", "reserve") is { } etcd)
        {
            var ratio = ours.OpsPerSecond / Math.Max(etcd.OpsPerSecond, 1e-9);
            yield return $"target: reservations >= 1.5x etcd-3: {ratio:0.00}x -> {(ratio >= 1.5 ? "reached" : "NOT reached")}";
            yield return $"target: reservation p99 no worse than etcd-3: {F(ours.P99, "0.0")} vs {F(etcd.P99, "0.0")} ms -> " +
                         $"{(ours.P99 <= etcd.P99 ? "reached" : "NOT reached")}";
        }
        foreach (var fo in failovers.Where(f => f.Target.StartsWith("ours", StringComparison.Ordinal)))
            yield return $"target: leader SIGKILL -> writes back, median <= 3 s ({fo.Target}): {fo.MedianMs / 1000:0.00} s -> {(fo.MedianMs <= 3000 ? "reached" : "NOT reached")}";
        if (recovery is { Reservations: >= 100_000 } rec)
        {
            // Two restarts: the new leader's ledger after a SIGKILL (its process already running), and the ledger of a
            // cluster whose every process starts at once (here: three processes competing for two cores).
            yield return $"target: recovery of {rec.Reservations} reservations <= 2 s, new leader after a SIGKILL: " +
                         $"{rec.FailoverLedgerRecoveryMs / 1000:0.00} s -> {(rec.FailoverLedgerRecoveryMs <= 2000 ? "reached" : "NOT reached")}";
            yield return $"target: recovery of {rec.Reservations} reservations <= 2 s, every node restarted at once: " +
                         $"{rec.LedgerRecoveryMs / 1000:0.00} s -> {(rec.LedgerRecoveryMs <= 2000 ? "reached" : "NOT reached")}";
        }
    }

    public string ToJson(string machine, string runId, BenchOptions opts, Dictionary<string, string> described) =>
        JsonSerializer.Serialize(new
        {
            runId,
            machine,
            targets = described,
            clients = opts.Concurrency,
            durationS = opts.Duration,
            workloads = stats,
            ratios = stats.Where(s => s.Target.StartsWith("ours", StringComparison.Ordinal)).Select(o => new
            {
                workload = o.Workload,
                target = o.Target,
                vsEtcd1 = Round(Ratio(o.OpsPerSecond, Find("etcd-1", o.Workload)?.OpsPerSecond)),
                vsEtcd3 = Round(Ratio(o.OpsPerSecond, Find("etcd-3", o.Workload)?.OpsPerSecond)),
                p99VsEtcd3 = Round(Ratio(o.P99, Find("etcd-3", o.Workload)?.P99)),
            }),
            failover = failovers.Select(f => new { f.Target, medianMs = Math.Round(f.MedianMs), trialsMs = f.Trials.Select(t => Math.Round(t.WritesBackAfterMs)) }),
            recovery,
            rss,
            targetsReached = Targets().ToList(),
        }, new JsonSerializerOptions(JsonSerializerDefaults.Web) { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals });

    private static double? Round(double? v) => v is { } d ? Math.Round(d, 3) : null;
}
