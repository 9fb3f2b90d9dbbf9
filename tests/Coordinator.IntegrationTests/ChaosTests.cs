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

    /// <summary>
    /// The converge failure of a 5-node CI run, made on purpose: the first seed node restarts while the others cannot
    /// answer its InitJoin (frozen), so it joins itself and forms a cluster of its own with a second ledger. Once the
    /// others are back, it must see that more seed nodes are alive outside its cluster than members in it, down itself
    /// and exit 3; restarted, it joins the others and every node names one leader.
    /// </summary>
    [Fact]
    public async Task A_first_seed_node_that_formed_a_cluster_of_its_own_leaves_it_and_rejoins()
    {
        using var cluster = new LocalCluster(3, "coordinator.split-brain-resolver.island-timeout = 5s");
        cluster.Http.Timeout = TimeSpan.FromSeconds(10);
        cluster.StartAll();
        await cluster.WaitReadyAsync(cluster.Nodes, TimeSpan.FromSeconds(120));
        var (first, others) = (cluster.Nodes[0], cluster.Nodes.Skip(1).ToList());

        cluster.Kill(first);
        await WaitFor(async () => (await Leaders(cluster, others)).All(l => l is not null && l.StartsWith(others[0].Name) || l?.StartsWith(others[1].Name) == true),
            TimeSpan.FromSeconds(60), "the other two to elect a leader between them");
        foreach (var n in others) LocalCluster.Signal(cluster.Pid(n), "STOP");
        try
        {
            cluster.Start(first);
            await WaitFor(async () => (await Leaders(cluster, [first]))[0]?.StartsWith(first.Name) == true, TimeSpan.FromSeconds(90),
                $"{first.Name} to form a cluster of its own");
        }
        finally
        {
            foreach (var n in others) LocalCluster.Signal(cluster.Pid(n), "CONT");
        }
        output.WriteLine($"{first.Name} formed an island: {string.Join(", ", await Leaders(cluster, cluster.Nodes))}");

        // 3: removed from the cluster, so a service manager restarts it (4 is kept for a node refused for its journal,
        // which is not restarted).
        var code = await cluster.WaitForExitAsync(first, TimeSpan.FromSeconds(90));
        Assert.Equal(3, code);
        cluster.Start(first);
        await WaitFor(async () =>
        {
            var all = await Leaders(cluster, cluster.Nodes);
            return all.All(l => l is not null) && all.Distinct().Count() == 1;
        }, TimeSpan.FromSeconds(120), "one leader on every node");
        output.WriteLine($"converged: {string.Join(", ", await Leaders(cluster, cluster.Nodes))}");
    }

    private static async Task<string?[]> Leaders(LocalCluster cluster, IEnumerable<NodeInfo> nodes) =>
        await Task.WhenAll(nodes.Select(async n =>
        {
            try
            {
                var l = await cluster.LeaderAsync(n);
                return $"{l.Node}@{l.Epoch}";
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or System.Text.Json.JsonException) { return null; }
        }));

    private static async Task WaitFor(Func<Task<bool>> condition, TimeSpan limit, string what)
    {
        var deadline = DateTime.UtcNow + limit;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"waited {limit} for {what}");
            await Task.Delay(500);
        }
    }
}
