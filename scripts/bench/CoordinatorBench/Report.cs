using System.Globalization;
using System.Text.Json;

namespace CoordinatorBench;

/// <summary>
/// Markdown tables (printable into the README as they are): what each target is, throughput and latency with the
/// outcome counts, ratios ours/etcd, the design comparison of etcd's two key layouts, failover and recovery; the
/// issue's targets; the result JSON; and the failures that make the run exit non-zero.
/// </summary>
public sealed class Report(TextWriter console, List<Stats> stats, List<FailoverResult> failovers, RecoveryResult? recovery,
    Dictionary<string, IReadOnlyList<long>> rss, Dictionary<string, string> described, string machine, BenchOptions opts)
{
    private static string F(double? v, string format = "0.0") => v is { } d && !double.IsNaN(d) ? d.ToString(format, CultureInfo.InvariantCulture) : "-";

    private static string N(long v) => v.ToString("#,0", CultureInfo.InvariantCulture);

    /// <summary>Milliseconds with 2-3 significant digits.</summary>
    private static string Ms(double? v) => v is not { } d ? "-" : d < 10 ? F(d, "0.00") : d < 100 ? F(d, "0.0") : d.ToString("#,0", CultureInfo.InvariantCulture);

    private static string X(double? v) => v is { } d && !double.IsNaN(d) && !double.IsInfinity(d) ? F(d, d < 10 ? "0.00" : "0.0") + "x" : "-";

    private Stats? Find(string target, string workload) => stats.FirstOrDefault(s => s.Target == target && s.Workload == workload);

    private static double? Ratio(double? a, double? b) => a is { } x && b is { } y && y > 0 ? x / y : null;

    private List<string> TargetOrder => stats.Select(s => s.Target).Distinct()
        .OrderBy(t => Array.IndexOf(BenchOptions.KnownTargets, t) is var i and >= 0 ? i : 99).ToList();

    private void Row(params string[] cells) => console.WriteLine("| " + string.Join(" | ", cells) + " |");

    private void Header(params string[] cells)
    {
        Row(cells);
        // Text columns left-aligned, figures right-aligned.
        console.WriteLine("|" + string.Join("|", cells.Select(c => c is "workload" or "target" or "ours" or "what runs" ? "---" : "---:")) + "|");
    }

    /// <summary>A workload or target without one successful operation, or any operation that ended in an error.</summary>
    public IEnumerable<string> Failures()
    {
        foreach (var s in stats)
        {
            if (s.OkInPhase == 0)
                yield return $"{s.Target} {s.Workload}: no successful operation, warm-up included ({N(s.Operations)} started in the window: " +
                             $"refused {N(s.Refused)}, given up {N(s.GivenUp)}, errors {N(s.Errors)}, unavailable answers {N(s.UnavailableAnswers)})";
            if (s.Errors > 0) yield return $"{s.Target} {s.Workload}: {N(s.Errors)} operations ended in an error";
        }
    }

    public void Print()
    {
        var w = console;
        w.WriteLine();
        w.WriteLine($"### Run: {machine}");
        w.WriteLine();
        w.WriteLine($"{opts.Concurrency} clients spread over every node/member, {opts.Warmup:0.#} s warm-up + {opts.Duration:0.#} s per workload, " +
                    $"an operation given up {opts.GiveUp:0.#} s after its first attempt{(opts.Smoke ? " (smoke: too short for figures)" : "")}.");
        w.WriteLine();
        Header("target", "what runs");
        foreach (var t in TargetOrder) Row(t, described.GetValueOrDefault(t, "?").Replace("|", "/", StringComparison.Ordinal));
        w.WriteLine();

        w.WriteLine("Throughput and latency. One operation is one sample, timed from its first attempt to its final answer (retries of " +
                    "\"unavailable\" included); every operation started in the window counts, also when it ends after it. ok/s: successful " +
                    "operations per second. Latency (ms) over every final answer: ok, refused and given up.");
        w.WriteLine();
        Header("workload", "target", "ok/s", "p50", "p95", "p99", "max", "ok", "refused", "given up", "unavailable answers", "conflicts/op", "errors");
        foreach (var s in stats.OrderBy(s => Array.IndexOf(Workloads.All, s.Workload)).ThenBy(s => TargetOrder.IndexOf(s.Target)))
            Row(s.Workload, s.Target, F(s.OpsPerSecond, s.OpsPerSecond < 100 ? "0.0" : "#,0"), Ms(s.P50), Ms(s.P95), Ms(s.P99), Ms(s.Max), N(s.Ok), N(s.Refused),
                N(s.GivenUp), N(s.UnavailableAnswers), F(s.ConflictsPerOp, "0.00"), N(s.Errors));
        w.WriteLine();
        foreach (var s in stats.Where(s => s.Note is not null)) w.WriteLine($"- {s.Target} {s.Workload}: {s.Note}");
        if (stats.Any(s => s.Note is not null)) w.WriteLine();

        var etcds = TargetOrder.Where(n => n.StartsWith("etcd", StringComparison.Ordinal)).ToList();
        var ours = TargetOrder.Where(n => n.StartsWith("ours", StringComparison.Ordinal)).ToList();
        if (ours.Count > 0 && etcds.Count > 0)
        {
            w.WriteLine("Ours / etcd: throughput ratio (above 1: ours does more) and p99 ratio (below 1: ours is faster). Like for like on " +
                        "durability: ours-3 and ours-3-pg against etcd-1 (one fsynced copy each); etcd-3 keeps three.");
            w.WriteLine();
            var cols = new List<string> { "workload", "ours" };
            foreach (var e in etcds) { cols.Add($"ok/s vs {e}"); cols.Add($"p99 vs {e}"); }
            Header(cols.ToArray());
            foreach (var wl in Workloads.All)
            foreach (var o in ours)
            {
                if (Find(o, wl) is not { } mine) continue;
                var cells = new List<string> { wl, o };
                foreach (var e in etcds)
                {
                    var other = Find(e, wl);
                    cells.Add(X(Ratio(mine.OpsPerSecond, other?.OpsPerSecond)));
                    cells.Add(X(Ratio(mine.P99, other?.P99)));
                }
                Row(cells.ToArray());
            }
            w.WriteLine();
        }

        if (etcds.Contains("etcd-3") && etcds.Contains("etcd-3-pernode"))
        {
            w.WriteLine("Design or implementation: etcd with one hot usage key (etcd-3) against per-node usage keys (etcd-3-pernode), " +
                        "and ours against the better of the two designs.");
            w.WriteLine();
            var cols = new List<string> { "workload", "etcd-3 ok/s", "etcd-3-pernode ok/s", "pernode / etcd-3", "conflicts/op etcd-3 → pernode" };
            cols.AddRange(ours.Select(o => $"{o} / pernode"));
            Header(cols.ToArray());
            foreach (var wl in Workloads.All)
            {
                if (Find("etcd-3", wl) is not { } hot || Find("etcd-3-pernode", wl) is not { } part) continue;
                var cells = new List<string> { wl, F(hot.OpsPerSecond, "#,0"), F(part.OpsPerSecond, "#,0"), X(Ratio(part.OpsPerSecond, hot.OpsPerSecond)),
                    $"{F(hot.ConflictsPerOp, "0.00")} → {F(part.ConflictsPerOp, "0.00")}" };
                cells.AddRange(ours.Select(o => X(Ratio(Find(o, wl)?.OpsPerSecond, part.OpsPerSecond))));
                Row(cells.ToArray());
            }
            w.WriteLine();
        }

        if (failovers.Count > 0)
        {
            w.WriteLine("Leader SIGKILL → next acknowledged write (probe every 20 ms through a survivor):");
            w.WriteLine();
            Header("target", "trials", "median s", "min s", "max s", "each (s)");
            foreach (var x in failovers)
                Row(x.Target, x.Trials.Count.ToString(CultureInfo.InvariantCulture), F(x.MedianMs / 1000, "0.00"), F(x.MinMs / 1000, "0.00"),
                    F(x.MaxMs / 1000, "0.00"), string.Join(" ", x.Trials.Select(t => F(t.WritesBackAfterMs / 1000, "0.00"))));
            w.WriteLine();
        }

        if (recovery is { } rec)
        {
            w.WriteLine($"Recovery/size (ours, 3 nodes, SQLite): {rec.Reservations} reservations + {rec.Images} images loaded in {rec.LoadSeconds:0.0} s; " +
                        $"journal {rec.JournalBytes / (1024.0 * 1024):0.0} MiB");
            w.WriteLine($"  RSS per node loaded {Recovery.Mib(rec.RssLoadedBytes)}; after restart {Recovery.Mib(rec.RssRecoveredBytes)}");
            w.WriteLine($"  restart of every node -> ready {rec.RestartToReadySeconds:0.0} s; ledger recovery {F(rec.LedgerRecoveryMs, "0")} ms " +
                        $"(snapshot at sequence number {rec.SnapshotSequenceNr}, {rec.EventsReplayed} events replayed on top)");
            w.WriteLine($"  leader SIGKILL with that state -> writes back after {F(rec.FailoverWithStateMs / 1000, "0.00")} s " +
                        $"(new leader's recovery {F(rec.FailoverLedgerRecoveryMs, "0")} ms)");
        }
        foreach (var (target, bytes) in rss) w.WriteLine($"RSS after the workloads, {target}: {Recovery.Mib(bytes)}");

        w.WriteLine();
        foreach (var line in Targets()) w.WriteLine(line);
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
        // Issue 12: the same reservation against the like-for-like baselines (informational, no target set).
        foreach (var (o, e, why) in new[] { ("ours-3", "etcd-1", "one durable copy each"), ("ours-3-pg", "etcd-1", "one durable copy each"),
                     ("ours-3", "etcd-3-pernode", "etcd without the hot key") })
            if (Find(o, "reserve") is { } a && Find(e, "reserve") is { } b)
                yield return $"like for like ({why}): reservations {o} / {e}: {a.OpsPerSecond / Math.Max(b.OpsPerSecond, 1e-9):0.00}x, " +
                             $"p99 {F(a.P99, "0.0")} vs {F(b.P99, "0.0")} ms";
        // Issue 13: what mutual TLS between the nodes costs (the HTTP API stays plain on loopback in both).
        foreach (var wl in Workloads.All)
            if (Find("ours-3-tls", wl) is { } tls && Find("ours-3", wl) is { } plain)
                yield return $"TLS cost ({wl}): ours-3-tls / ours-3 throughput {tls.OpsPerSecond / Math.Max(plain.OpsPerSecond, 1e-9):0.00}x, " +
                             $"p50 {F(tls.P50, "0.0")} vs {F(plain.P50, "0.0")} ms, p99 {F(tls.P99, "0.0")} vs {F(plain.P99, "0.0")} ms";
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
            giveUpS = opts.GiveUp,
            failures = Failures().ToList(),
            workloads = stats,
            ratios = stats.Where(s => s.Target.StartsWith("ours", StringComparison.Ordinal)).Select(o => new
            {
                workload = o.Workload,
                target = o.Target,
                vsEtcd1 = Round(Ratio(o.OpsPerSecond, Find("etcd-1", o.Workload)?.OpsPerSecond)),
                vsEtcd3 = Round(Ratio(o.OpsPerSecond, Find("etcd-3", o.Workload)?.OpsPerSecond)),
                vsEtcd3PerNode = Round(Ratio(o.OpsPerSecond, Find("etcd-3-pernode", o.Workload)?.OpsPerSecond)),
                p99VsEtcd1 = Round(Ratio(o.P99, Find("etcd-1", o.Workload)?.P99)),
                p99VsEtcd3 = Round(Ratio(o.P99, Find("etcd-3", o.Workload)?.P99)),
            }),
            failover = failovers.Select(f => new { f.Target, medianMs = Math.Round(f.MedianMs), trialsMs = f.Trials.Select(t => Math.Round(t.WritesBackAfterMs)) }),
            recovery,
            rss,
            targetsReached = Targets().ToList(),
        }, new JsonSerializerOptions(JsonSerializerDefaults.Web) { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals });

    private static double? Round(double? v) => v is { } d ? Math.Round(d, 3) : null;
}
