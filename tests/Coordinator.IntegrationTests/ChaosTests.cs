using Coordinator.IntegrationTests.Chaos;
using Coordinator.IntegrationTests.Harness;
using Xunit.Abstractions;

namespace Coordinator.IntegrationTests;

/// <summary>
/// CI-sized chaos runs (CHAOS_SECONDS overrides the length; scripts/chaos.sh runs them longer): real clusters of 3
/// and 5 node processes under process faults, then the history checker. Invariant violations must be 0.
/// </summary>
public sealed class ChaosTests(ITestOutputHelper output)
{
    private static TimeSpan Duration => TimeSpan.FromSeconds(
        int.TryParse(Environment.GetEnvironmentVariable("CHAOS_SECONDS"), out var s) && s > 0 ? s : 45);

    [Theory]
    [InlineData(3)]
    [InlineData(5)]
    public async Task Nothing_acknowledged_is_lost_and_nothing_is_double_granted_under_process_faults(int nodes)
    {
        using var cluster = new LocalCluster(nodes, """
            coordinator.images.lease-ttl = 4s
            coordinator.hyperv.reconcile-interval = 10s
            """);
        cluster.Http.Timeout = TimeSpan.FromSeconds(10);
        cluster.StartAll();
        await cluster.WaitReadyAsync(cluster.Nodes, TimeSpan.FromSeconds(120));

        var run = new ChaosRun(cluster, new ChaosOptions(nodes, Duration, LeaseTtl: TimeSpan.FromSeconds(4)), line => output.WriteLine(line));
        var summary = await run.RunAsync();
        output.WriteLine(summary.ToString());
        Console.WriteLine($"[chaos {nodes} nodes, {Duration.TotalSeconds:0}s] {summary}");
        foreach (var v in summary.Violations) output.WriteLine("VIOLATION " + v);
        foreach (var f in summary.Failures) output.WriteLine("FAILURE " + f);

        Assert.Empty(summary.Violations);
        Assert.Empty(summary.Failures);
        Assert.True(summary.Acknowledged > 100, $"only {summary.Acknowledged} operations were acknowledged");
        // The checker saw the faults it is meant to judge: a failover (two epochs answered), each kind of fault, fencing.
        Assert.True(summary.Epochs.Count >= 2, $"only epochs {string.Join(",", summary.Epochs)} answered: no failover was observed");
        foreach (var kind in new[] { FaultKind.LeaderKill, FaultKind.LeaderPause, FaultKind.OtherKill })
            Assert.True(summary.FaultsByKind.GetValueOrDefault(kind) >= 1, $"no {kind} was injected ({summary})");
        Assert.True(summary.Fenced >= 1, "no renew or complete was fenced (409)");
        Assert.True(summary.Convergence < TimeSpan.FromSeconds(60), $"converged only after {summary.Convergence}");
    }
}
