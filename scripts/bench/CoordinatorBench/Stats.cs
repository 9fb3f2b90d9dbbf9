using System.Diagnostics;

namespace CoordinatorBench;

/// <summary>One finished operation inside a measured window: its outcome, latency (Stopwatch ticks), conflict retries.</summary>
public readonly record struct Sample(OutcomeKind Kind, long Ticks, int Conflicts, bool Granted);

/// <summary>Throughput and latency of one workload on one target. Latencies are of acknowledged (Ok) operations, ms.</summary>
public sealed record Stats(
    string Target, string Workload, int Clients, double WindowSeconds, long Ok, double OpsPerSecond,
    double? P50, double? P90, double? P99, double? Max, double ConflictsPerOp, long Refused, long Unavailable, long Errors,
    string? Note = null)
{
    public static Stats Of(string target, string workload, int clients, double windowSeconds, IReadOnlyCollection<Sample> samples, string? note = null)
    {
        var ok = samples.Where(s => s.Kind == OutcomeKind.Ok).Select(s => s.Ticks).Order().ToList();
        var conflicts = samples.Sum(s => (long)s.Conflicts);
        return new Stats(target, workload, clients, windowSeconds, ok.Count, ok.Count / Math.Max(windowSeconds, 1e-3),
            Percentile(ok, 0.50), Percentile(ok, 0.90), Percentile(ok, 0.99), ok.Count == 0 ? null : Ms(ok[^1]),
            samples.Count == 0 ? 0 : conflicts / (double)samples.Count,
            samples.LongCount(s => s.Kind == OutcomeKind.Refused),
            samples.LongCount(s => s.Kind == OutcomeKind.Unavailable),
            samples.LongCount(s => s.Kind == OutcomeKind.Error), note);
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
