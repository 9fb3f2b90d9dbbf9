using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;
using Coordinator.Cluster.Downing;
using Xunit.Abstractions;

namespace Coordinator.Cluster.Tests;

/// <summary>
/// The downing provider that polls Akka's SBR more often: the internal tick it depends on still exists in this Akka,
/// the SBR runs under it, and a member that goes silent is downed and removed by it (three ActorSystems on loopback;
/// the victim's remoting stops without leaving, as after a SIGKILL).
/// </summary>
public sealed class PromptSplitBrainResolverSpecs(ITestOutputHelper output) : IDisposable
{
    private readonly List<ActorSystem> _systems = [];

    [Fact]
    public void Akkas_sbr_tick_message_is_found_by_name()
    {
        // If an Akka upgrade renames SplitBrainResolverBase+Tick, this fails instead of failover silently slowing by ~0.5 s.
        Assert.NotNull(PromptSplitBrainResolverProvider.AkkaSbrTick);
        Assert.Equal("Akka.Cluster.SBR.SplitBrainResolverBase+Tick", PromptSplitBrainResolverProvider.AkkaSbrTick!.GetType().FullName);
    }

    [Fact]
    public void A_configuration_without_a_positive_tick_interval_is_refused()
    {
        var system = Start("coordinator.split-brain-resolver.tick-interval = 0s", out _);
        Assert.Throws<ConfigurationException>(() => new PromptSplitBrainResolverProvider(system, Akka.Cluster.Cluster.Get(system)));
    }

    [Fact]
    public async Task A_silent_member_is_downed_and_removed_by_akkas_sbr_under_the_provider()
    {
        var first = Start("", out var seed);
        Akka.Cluster.Cluster.Get(first).Join(seed);
        var second = Start("", out _);
        Akka.Cluster.Cluster.Get(second).Join(seed);
        var victim = Start("akka.coordinated-shutdown.run-by-actor-system-terminate = off", out var victimAddress);
        Akka.Cluster.Cluster.Get(victim).Join(seed);

        await Eventually(() => Akka.Cluster.Cluster.Get(first).State.Members.Count(m => m.Status == MemberStatus.Up) == 3, "three members Up");

        // Akka's SBR actor runs as the child "sbr" of the provider's actor on every node.
        var sbr = await first.ActorSelection("/system/cluster/core/daemon/downingProvider/sbr").ResolveOne(TimeSpan.FromSeconds(5));
        Assert.NotNull(sbr);

        // No leaving, no downing of itself: its remoting simply stops, like a process that was killed.
        await victim.Terminate();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        await Eventually(() => Akka.Cluster.Cluster.Get(first).State.Members.All(m => m.Address != victimAddress)
                               && Akka.Cluster.Cluster.Get(second).State.Members.All(m => m.Address != victimAddress),
            "the victim removed on both survivors");
        output.WriteLine($"victim removed {sw.ElapsedMilliseconds} ms after its ActorSystem stopped");
        Assert.All(new[] { first, second }, s => Assert.Equal(MemberStatus.Up, Akka.Cluster.Cluster.Get(s).SelfMember.Status));
    }

    private ActorSystem Start(string extra, out Address address)
    {
        var config = ConfigurationFactory.ParseString($$"""
            akka.actor.provider = cluster
            akka.remote.dot-netty.tcp { hostname = 127.0.0.1, port = 0 }
            akka.cluster {
              downing-provider-class = "Coordinator.Cluster.Downing.PromptSplitBrainResolverProvider, Coordinator.Cluster"
              split-brain-resolver { active-strategy = keep-majority, stable-after = 1s }
              failure-detector { heartbeat-interval = 200ms, acceptable-heartbeat-pause = 1s }
              run-coordinated-shutdown-when-down = off
            }
            coordinator.split-brain-resolver.tick-interval = 100ms
            akka.loglevel = WARNING
            {{extra}}
            """);
        var system = ActorSystem.Create("sbr-spec", config);
        _systems.Add(system);
        address = Akka.Cluster.Cluster.Get(system).SelfAddress;
        return system;
    }

    private static async Task Eventually(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"not within 30 s: {what}");
            await Task.Delay(50);
        }
    }

    public void Dispose()
    {
        foreach (var s in _systems) s.Terminate().Wait(TimeSpan.FromSeconds(10));
    }
}
