using System.Diagnostics;

namespace CoordinatorBench;

/// <summary>
/// One logical operation started inside the measured window: its final outcome (Ok, Refused, GivenUp, Error), the
/// time from its first attempt to that final answer (Stopwatch ticks, every retry included), the attempts that
/// answered "unavailable" on the way, and the optimistic-concurrency conflicts inside its attempts (etcd).
/// </summary>
public readonly record struct Sample(OutcomeKind Kind, long Ticks, int Conflicts, bool Granted, int UnavailableAnswers = 0);

/// <summary>
/// Throughput and latency of one workload on one target. Every operation started in the window is counted, also
/// when it ends after the window. Latencies (ms) are over every operation's final answer: ok, refused and given up
/// alike, from the first attempt, retries included. ops/s counts ok operations per second of the window.
/// </summary>
public sealed record Stats(
    string Target, string Workload, int Clients, double WindowSeconds, long Operations, long Ok, double OpsPerSecond,
    double? P50, double? P95, double? P99, double? Max, double ConflictsPerOp, long Refused, long UnavailableAnswers,
    long GivenUp, long Errors, long OkInPhase, string? Note = null)
{
    /// <param name="okInPhase">Successful operations of the whole phase, warm-up included: none at all fails the run.</param>
    public static Stats Of(string target, string workload, int clients, double windowSeconds, IReadOnlyCollection<Sample> samples, long okInPhase,
        string? note = null)
    {
        var all = samples.Select(s => s.Ticks).Order().ToList();
        var ok = samples.LongCount(s => s.Kind == OutcomeKind.Ok);
        var conflicts = samples.Sum(s => (long)s.Conflicts);
        return new Stats(target, workload, clients, windowSeconds, samples.Count, ok, ok / Math.Max(windowSeconds, 1e-3),
            Percentile(all, 0.50), Percentile(all, 0.95), Percentile(all, 0.99), all.Count == 0 ? null : Ms(all[^1]),
            samples.Count == 0 ? 0 : conflicts / (double)samples.Count,
            samples.LongCount(s => s.Kind == OutcomeKind.Refused),
            samples.Sum(s => (long)s.UnavailableAnswers),
            samples.LongCount(s => s.Kind == OutcomeKind.GivenUp),
            samples.LongCount(s => s.Kind == OutcomeKind.Error), Math.Max(okInPhase, ok), note);
    }

    /// <summary>Nearest-rank percentile of sorted ticks, in milliseconds.</summary>
    public static double? Percentile(List<long> sorted, double p) =>
        sorted.Count == 0 ? null : Ms(sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Count) - 1, 0, sorted.Count - 1)]);

    public static double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;

    public static double Median(IReadOnlyList<double> xs)
    {
        var s = xs.Order().ToList();
        return s.Count == 0 ? double.NaN : s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }
}
