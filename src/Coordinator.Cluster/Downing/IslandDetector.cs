using Akka.Actor;
using Akka.Cluster;
using Akka.Event;

namespace Coordinator.Cluster.Downing;

/// <summary>
/// Leaves a cluster that is an island: one this node formed or joined while more of the configured seed nodes are alive
/// outside it than there are members in it.
/// <para>
/// The first seed node joins itself and forms a new cluster when no other seed answers its InitJoin within
/// <c>akka.cluster.seed-node-timeout</c>. On a restart under load, or frozen (a long GC, a paused VM) while joining,
/// the answers of a cluster that is alive can come too late: the node then forms a second cluster with its own ledger
/// singleton. The shared journal fences the two ledgers' writes, so nothing is decided twice, but they take turns
/// failing and the cluster never converges again by itself (found by the 5-node chaos run: hv01 restarted, was
/// SIGSTOPped for 5 s while joining, and answered "hv01@10" while the four others answered "hv03@11" for good).
/// </para>
/// <para>
/// Every <see cref="Interval"/> this actor asks each configured seed node that is not a member of this node's cluster
/// whether its cluster daemon is alive (Identify). When the alive outsiders outnumber this cluster's members for
/// <c>coordinator.split-brain-resolver.island-timeout</c> in a row, the node downs itself: the service exits non-zero
/// (exit 3) and its service manager starts it again, and it joins the larger cluster. A larger cluster never sees more
/// alive outsiders than members, and a node only briefly an outsider (starting, joining) is not one for that long.
/// </para>
/// <para>
/// The others' answers may never reach the island (the 3-node chaos run: the peers' InitJoinAcks and Identify answers
/// to the restarted hv01 were lost on their side's old association to its address), so there is a second sign that
/// needs nothing from them: this node's side (reachable members, not leaving) is smaller than a majority of the
/// configured seed nodes (a 3-node run: a resumed leader host alone in its old cluster), for
/// <c>island-timeout</c> in a row, and meanwhile a ledger write on this node failed (<see cref="Ledger.LedgerWriteFailures"/>:
/// another ledger wrote to the shared journal). A majority cluster never downs itself for that.
/// </para>
/// </summary>
public sealed class IslandDetector : ReceiveActor, IWithTimers
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(2);

    private sealed class Tick
    {
        public static readonly Tick Instance = new();
    }

    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly TimeSpan _timeout;
    private readonly HashSet<Address> _alive = [];
    private DateTime? _since;
    private DateTime? _minoritySince;

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(TimeSpan timeout) => Akka.Actor.Props.Create(() => new IslandDetector(timeout));

    public IslandDetector(TimeSpan timeout)
    {
        _timeout = timeout;
        Receive<Tick>(_ => OnTick());
        Receive<ActorIdentity>(id =>
        {
            if (id.Subject is not null && id.MessageId is string s && Address.TryParse(s, out var a)) _alive.Add(a);
        });
    }

    protected override void PreStart()
    {
        if (_timeout > TimeSpan.Zero && _cluster.Settings.SeedNodes.Count > 1)
            Timers.StartPeriodicTimer("tick", Tick.Instance, Interval);
    }

    private void OnTick()
    {
        var state = _cluster.State;
        var members = state.Members.Select(m => m.Address).ToHashSet();
        var self = state.Members.FirstOrDefault(m => m.UniqueAddress == _cluster.SelfUniqueAddress);
        var outsiders = _alive.Where(a => !members.Contains(a)).ToList();
        _alive.Clear();
        if (self is null || self.Status is not (MemberStatus.Up or MemberStatus.WeaklyUp))
        {
            _since = null; // not (yet) in a cluster: the join process is still at work
        }
        else if (outsiders.Count > members.Count)
        {
            _since ??= DateTime.UtcNow;
            if (DateTime.UtcNow - _since >= _timeout)
            {
                _log.Warning("This node is in a cluster of {0} member(s) while {1} other seed node(s) are alive outside it ({2}) " +
                             "for {3:0} s: it is an island (it formed a cluster of its own); it downs itself to join the others",
                    members.Count, outsiders.Count, string.Join(", ", outsiders), _timeout.TotalSeconds);
                Timers.CancelAll();
                _cluster.Down(_cluster.SelfAddress);
                return;
            }
        }
        else _since = null;

        // This side's size: reachable members that are not leaving (a downed or unreachable old incarnation of a peer
        // can stay a member here for long, but it is not on this side).
        var unreachable = state.Unreachable.Select(m => m.UniqueAddress).ToHashSet();
        var side = state.Members.Count(m => !unreachable.Contains(m.UniqueAddress)
                                            && m.Status is MemberStatus.Up or MemberStatus.WeaklyUp or MemberStatus.Joining);
        var majority = _cluster.Settings.SeedNodes.Count / 2 + 1;
        if (self is not null && self.Status is MemberStatus.Up or MemberStatus.WeaklyUp && side < majority)
        {
            var now = DateTime.UtcNow;
            _minoritySince ??= now;
            if (now - _minoritySince >= _timeout
                && Ledger.LedgerWriteFailures.Get(Context.System).SinceLastFailure() is { } failed && failed <= now - _minoritySince)
            {
                _log.Warning("This node is in a cluster of {0} reachable member(s), fewer than a majority ({1}) of the configured seed nodes, " +
                             "for {2:0} s, and a ledger write on it failed {3:0} ms ago (another ledger writes to the journal): it is an " +
                             "island; it downs itself to join the others", side, majority, (now - _minoritySince.Value).TotalSeconds,
                    failed.TotalMilliseconds);
                Timers.CancelAll();
                _cluster.Down(_cluster.SelfAddress);
                return;
            }
        }
        else _minoritySince = null;

        foreach (var seed in _cluster.Settings.SeedNodes.Where(s => s != _cluster.SelfAddress && !members.Contains(s)))
            Context.ActorSelection(new RootActorPath(seed) / "system" / "cluster" / "core" / "daemon").Tell(new Identify(seed.ToString()), Self); // a string id: Akka's own serializer carries it (an Address has none)
    }
}
