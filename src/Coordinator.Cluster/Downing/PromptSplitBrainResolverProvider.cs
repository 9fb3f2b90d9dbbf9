using System.Reflection;
using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.SBR;
using Akka.Event;

namespace Coordinator.Cluster.Downing;

/// <summary>
/// Akka's Split Brain Resolver, deciding exactly as Akka decides, but looking at its deadline more often.
/// <para>
/// Akka's SBR actor checks whether membership has been stable for <c>stable-after</c> on a fixed one-second tick
/// (<c>SplitBrainResolverBase.TickInterval</c>, not configurable), so a downing decision lands 0-1 s after the
/// stable-after period ends: half a second on average, on a leader failover that otherwise takes about 2.5 s with
/// hocon/fast-failover.hocon. This provider starts Akka's own SBR actor (from <see cref="SplitBrainResolverProvider"/>)
/// as a child and sends it Akka's own tick message every <c>coordinator.split-brain-resolver.tick-interval</c>.
/// A tick only compares the clock with deadlines the SBR keeps itself, so extra ticks change when a decision is
/// noticed, never what is decided.
/// </para>
/// <para>
/// The tick message is an internal type of Akka.Cluster, found by name. If a later Akka renames it, the provider logs a
/// warning and the SBR keeps its own one-second tick (a test pins the name so an upgrade fails loudly instead).
/// </para>
/// Enabled with <c>akka.cluster.downing-provider-class = "Coordinator.Cluster.Downing.PromptSplitBrainResolverProvider, Coordinator.Cluster"</c>.
/// </summary>
public sealed class PromptSplitBrainResolverProvider : IDowningProvider
{
    /// <summary>Akka.Cluster's internal <c>SplitBrainResolverBase.Tick</c>, or null when this Akka has no such type.</summary>
    public static readonly object? AkkaSbrTick = FindAkkaSbrTick();

    private static object? FindAkkaSbrTick()
    {
        var tick = typeof(SplitBrainResolverProvider).Assembly.GetType("Akka.Cluster.SBR.SplitBrainResolverBase+Tick");
        const BindingFlags staticMembers = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static;
        // A static field in Akka 1.5.73, a static property in later sources.
        return tick?.GetField("Instance", staticMembers)?.GetValue(null)
               ?? tick?.GetProperty("Instance", staticMembers)?.GetValue(null);
    }

    private readonly SplitBrainResolverProvider _akka;
    private readonly TimeSpan _tickInterval;

    // Akka creates downing providers reflectively with (ExtendedActorSystem, Cluster).
    public PromptSplitBrainResolverProvider(ActorSystem system, Akka.Cluster.Cluster cluster)
    {
        _akka = new SplitBrainResolverProvider(system, cluster);
        _tickInterval = system.Settings.Config.GetTimeSpan("coordinator.split-brain-resolver.tick-interval", TimeSpan.FromMilliseconds(200));
        if (_tickInterval <= TimeSpan.Zero)
            throw new Akka.Configuration.ConfigurationException("coordinator.split-brain-resolver.tick-interval must be positive");
    }

    public TimeSpan DownRemovalMargin => _akka.DownRemovalMargin;

    /// <summary>How often Akka's SBR is ticked (<c>coordinator.split-brain-resolver.tick-interval</c>).</summary>
    internal TimeSpan TickInterval => _tickInterval;

    public Props DowningActorProps => TickerProps(_akka.DowningActorProps, _tickInterval);

    /// <summary>The parent that starts <paramref name="sbr"/> as its child "sbr" and sends it Akka's tick every <paramref name="interval"/>.</summary>
    internal static Props TickerProps(Props sbr, TimeSpan interval) => Props.Create(() => new SbrTicker(sbr, interval));

    /// <summary>Parent of Akka's SBR actor: forwards Akka's tick to it at the configured interval.</summary>
    private sealed class SbrTicker : UntypedActor, IWithTimers
    {
        private sealed class Tick
        {
            public static readonly Tick Instance = new();
        }

        private readonly Props _sbrProps;
        private readonly TimeSpan _interval;
        private IActorRef _sbr = ActorRefs.Nobody;

        public SbrTicker(Props sbrProps, TimeSpan interval)
        {
            _sbrProps = sbrProps;
            _interval = interval;
        }

        public ITimerScheduler Timers { get; set; } = null!;

        protected override void PreStart()
        {
            // Same dispatcher as this actor (the cluster daemon gives its downing actor Akka's internal dispatcher).
            _sbr = Context.ActorOf(_sbrProps.WithDispatcher(Context.Props.Dispatcher), "sbr");
            if (AkkaSbrTick is null)
                Context.GetLogger().Warning("Akka.Cluster has no SplitBrainResolverBase+Tick; the SBR keeps its own 1 s tick");
            else
                Timers.StartPeriodicTimer("tick", Tick.Instance, _interval);
        }

        protected override void OnReceive(object message)
        {
            if (message is Tick && AkkaSbrTick is { } tick) _sbr.Tell(tick, Self);
            else Unhandled(message);
        }
    }
}
