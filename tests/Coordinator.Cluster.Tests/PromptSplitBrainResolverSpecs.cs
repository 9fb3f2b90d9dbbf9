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
    public void The_tick_interval_is_read_from_configuration()
    {
        var system = Start("coordinator.split-brain-resolver.tick-interval = 250ms", out _);
        Assert.Equal(TimeSpan.FromMilliseconds(250), new PromptSplitBrainResolverProvider(system, Akka.Cluster.Cluster.Get(system)).TickInterval);
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

    /// <summary>
    /// The speed-up itself, on a virtual clock: Akka's SBR notices a passed stable-after deadline only when its tick
    /// arrives, on its own once a second; under the provider the tick reaches it every tick-interval. A probe stands in
    /// for Akka's SBR and counts the ticks of Akka's own type while the test scheduler advances three seconds.
    /// </summary>
    [Theory]
    [InlineData(100, 10)]
    [InlineData(250, 4)]
    [InlineData(1000, 1)]
    public async Task Akkas_sbr_receives_its_tick_every_tick_interval(int intervalMs, int ticksPerSecond)
    {
        Assert.NotNull(PromptSplitBrainResolverProvider.AkkaSbrTick);
        var system = ActorSystem.Create("sbr-tick-spec", ConfigurationFactory.ParseString("""
            akka.scheduler.implementation = "Akka.TestKit.TestScheduler, Akka.TestKit"
            akka.loglevel = WARNING
            """));
        _systems.Add(system);
        var scheduler = (Akka.TestKit.TestScheduler)system.Scheduler;
        var ticks = System.Threading.Channels.Channel.CreateUnbounded<object>();
        var ticker = system.ActorOf(PromptSplitBrainResolverProvider.TickerProps(
            Props.Create(() => new TickCounter(ticks.Writer)), TimeSpan.FromMilliseconds(intervalMs)), "downingProvider");
        // The ticker creates its child and starts its timer in PreStart, before it handles any message: once it has
        // answered, the timer is scheduled and the virtual clock may move.
        await ticker.Ask<ActorIdentity>(new Identify(null), TimeSpan.FromSeconds(30));
        await system.ActorSelection(ticker.Path / "sbr").ResolveOne(TimeSpan.FromSeconds(30));

        var received = new List<object>();
        for (var second = 1; second <= 3; second++)
        {
            // 10 ms steps: a repeating timer fires once per due time, however the scheduler batches.
            for (var i = 0; i < 100; i++) scheduler.Advance(TimeSpan.FromMilliseconds(10));
            var expected = second * ticksPerSecond;
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (received.Count < expected && DateTime.UtcNow < deadline)
            {
                using var wait = new CancellationTokenSource(deadline - DateTime.UtcNow);
                try { received.Add(await ticks.Reader.ReadAsync(wait.Token)); } catch (OperationCanceledException) { }
            }
            // Nothing beyond the due ticks: the virtual clock stands still while the test waits.
            await Task.Delay(200);
            while (ticks.Reader.TryRead(out var extra)) received.Add(extra);
            Assert.Equal(expected, received.Count);
        }
        Assert.All(received, t => Assert.Same(PromptSplitBrainResolverProvider.AkkaSbrTick, t));
    }

    /// <summary>Stands in for Akka's SBR: hands on whatever it receives.</summary>
    private sealed class TickCounter(System.Threading.Channels.ChannelWriter<object> ticks) : UntypedActor
    {
        protected override void OnReceive(object message) => ticks.TryWrite(message);
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
