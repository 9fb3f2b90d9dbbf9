using System.Diagnostics;

namespace CoordinatorBench;

/// <summary>One SIGKILL of the leader's process: how long until a write was accepted again.</summary>
public sealed record FailoverTrial(int Trial, string Killed, double WritesBackAfterMs, int ProbesSent, int ProbesFailed);

public sealed record FailoverResult(string Target, IReadOnlyList<FailoverTrial> Trials)
{
    public double MedianMs => Stats.Median(Trials.Select(t => t.WritesBackAfterMs).ToList());
    public double MinMs => Trials.Count == 0 ? double.NaN : Trials.Min(t => t.WritesBackAfterMs);
    public double MaxMs => Trials.Count == 0 ? double.NaN : Trials.Max(t => t.WritesBackAfterMs);
}

/// <summary>
/// Failover timing (issue 7): a client writes through a surviving endpoint every 20 ms (each probe a new key, each with
/// its own short timeout, not waiting for the previous one); the leader's process is SIGKILLed; the result is the time
/// from the kill until the first probe sent after it is acknowledged. The killed process is then started again and
/// the group left to settle before the next trial.
/// </summary>
public static class Failover
{
    public static async Task<FailoverResult> RunAsync(ITarget target, int trials, string runId, TextWriter log, CancellationToken ct)
    {
        var results = new List<FailoverTrial>();
        for (var t = 1; t <= trials; t++)
        {
            var leader = await target.LeaderEndpointAsync(ct);
            var via = (leader + 1) % target.Endpoints;
            // A healthy write first: the probe path works before the kill.
            var warm = await target.ProbeWriteAsync(via, $"{runId}-f{t}-warm", TimeSpan.FromSeconds(10));
            if (warm.Kind != OutcomeKind.Ok) throw new InvalidOperationException($"{target.Name}: write through endpoint {via} fails before the kill: {warm.Detail}");

            var killedAt = Stopwatch.GetTimestamp();
            target.Kill(leader);
            var firstOk = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
            var inFlight = new List<Task>();
            int sent = 0, failed = 0;
            using var giveUp = CancellationTokenSource.CreateLinkedTokenSource(ct);
            giveUp.CancelAfter(TimeSpan.FromSeconds(120));
            try
            {
                while (!firstOk.Task.IsCompleted)
                {
                    var key = $"{runId}-f{t}-{sent++}";
                    inFlight.Add(Task.Run(async () =>
                    {
                        var o = await target.ProbeWriteAsync(via, key, TimeSpan.FromSeconds(2));
                        if (o.Kind == OutcomeKind.Ok) firstOk.TrySetResult(Stopwatch.GetTimestamp());
                        else Interlocked.Increment(ref failed);
                    }, CancellationToken.None));
                    await Task.WhenAny(firstOk.Task, Task.Delay(20, giveUp.Token));
                }
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw new TimeoutException($"{target.Name}: no write accepted within 120 s of the kill");
            }
            var ms = Stats.Ms(await firstOk.Task - killedAt);
            await Task.WhenAll(inFlight);
            results.Add(new FailoverTrial(t, $"endpoint {leader}", ms, sent, failed));
            log.WriteLine($"   {target.Name} failover {t}/{trials}: killed the leader (endpoint {leader}), writes through endpoint {via} " +
                          $"accepted again after {ms / 1000:0.00} s ({sent} probes, {failed} failed)");

            await target.RestartAsync(leader, ct);
            await Task.Delay(TimeSpan.FromSeconds(2), ct); // let the group settle (heartbeats, gossip) before the next kill
        }
        return new FailoverResult(target.Name, results);
    }
}
