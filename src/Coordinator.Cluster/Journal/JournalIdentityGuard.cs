using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;
using Akka.Event;

namespace Coordinator.Cluster.Journal;

/// <summary>
/// Admits to the cluster only nodes whose journal answers with the cluster's id. Each node carries its journal's id as
/// the member role <c>journal:&lt;id&gt;</c> (and in <c>coordinator.journal.cluster-id</c>); this actor runs on every
/// node and compares the roles it sees with its own:
/// <list type="bullet">
/// <item>a member older than this node with another id: this node is the one joining with the wrong journal. It logs
/// an error naming <c>coordinator.persistence.connection-string</c>, downs itself and shuts its ActorSystem down (the
/// service then exits non-zero, see <see cref="RefusedReason"/>);</item>
/// <item>a younger member with another id: it is refused from this side too, downed after <see cref="Grace"/> if it
/// has not gone by itself (it might never run this check: a hung process, an old version).</item>
/// </list>
/// Akka.NET 1.5 has no join-time configuration check (the JVM's <c>JoinConfigCompatChecker</c> was never ported: no
/// such type exists in Akka.Cluster 1.5.73), so the refused node is briefly a Joining member. It never hosts the ledger
/// meanwhile: the singleton runs on the oldest member, and a joining member is the youngest.
/// </summary>
public sealed class JournalIdentityGuard : ReceiveActor, IWithTimers
{
    public const string RolePrefix = "journal:";
    public const string ConfigPath = "coordinator.journal.cluster-id";
    public const string SettingToFix = "coordinator.persistence.connection-string";

    /// <summary>How long a member with another journal may stay before this side downs it.</summary>
    public static readonly TimeSpan Grace = TimeSpan.FromSeconds(2);

    private static string? _refusedReason;

    /// <summary>Set when this node was refused because of its journal: why, for the service's exit message.</summary>
    public static string? RefusedReason => Volatile.Read(ref _refusedReason);

    public static string RoleFor(Guid clusterId) => RolePrefix + clusterId.ToString("D");

    /// <summary>The role and the config key that carry this node's journal identity into its ActorSystem.</summary>
    public static Config ConfigFor(Guid clusterId) => ConfigurationFactory.ParseString(
        $"{ConfigPath} = \"{clusterId:D}\"");

    public static Guid? JournalIdOf(Member m)
    {
        foreach (var r in m.Roles)
            if (r.StartsWith(RolePrefix, StringComparison.Ordinal) && Guid.TryParse(r.AsSpan(RolePrefix.Length), out var id))
                return id;
        return null;
    }

    private readonly Guid _clusterId;
    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly HashSet<UniqueAddress> _warned = [];
    private bool _refused;

    public ITimerScheduler Timers { get; set; } = null!;

    private sealed record DownIfStillThere(UniqueAddress Member, Guid Id);

    public JournalIdentityGuard(Guid clusterId)
    {
        _clusterId = clusterId;
        Receive<ClusterEvent.IMemberEvent>(e => Check(e.Member));
        Receive<DownIfStillThere>(d =>
        {
            var member = _cluster.State.Members.FirstOrDefault(m => m.UniqueAddress.Equals(d.Member));
            if (member is null || member.Status is MemberStatus.Down or MemberStatus.Removed) return;
            _log.Warning("Downing {0}: its journal belongs to cluster {1}, this cluster's journal is {2} (every node must use the same {3})",
                member.Address, d.Id, _clusterId, SettingToFix);
            _cluster.Down(member.Address);
        });
    }

    public static Props Props(Guid clusterId) => Akka.Actor.Props.Create(() => new JournalIdentityGuard(clusterId));

    protected override void PreStart() =>
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.IMemberEvent));

    protected override void PostStop() => _cluster.Unsubscribe(Self);

    private void Check(Member member)
    {
        if (_refused || member.UniqueAddress.Equals(_cluster.SelfUniqueAddress)) return;
        if (member.Status is MemberStatus.Down or MemberStatus.Removed or MemberStatus.Exiting) return;
        var theirs = JournalIdOf(member);
        if (theirs is null || theirs == _clusterId) return; // no role: a member from before journal identity (tolerated)

        // Which side joined with the wrong journal: the younger one. Before this node sees itself in the membership it
        // is joining, so every member it sees is older.
        var self = _cluster.State.Members.FirstOrDefault(m => m.UniqueAddress.Equals(_cluster.SelfUniqueAddress));
        if (self is null || member.IsOlderThan(self))
        {
            _refused = true;
            var reason = $"refused by the cluster: this node's journal belongs to cluster {_clusterId}, but the cluster it joins " +
                         $"({member.Address} and the others) uses the journal of cluster {theirs}. Every node of a cluster must use " +
                         $"the same journal: set {SettingToFix} (and coordinator.persistence.provider) on this node to the " +
                         "cluster's shared journal (a per-node SQLite file under data-dir is not shared).";
            Volatile.Write(ref _refusedReason, reason);
            _log.Error("This node is " + reason);
            _cluster.Down(_cluster.SelfAddress);
            CoordinatedShutdown.Get(Context.System).Run(CoordinatedShutdown.ClusterDowningReason.Instance);
        }
        else if (_warned.Add(member.UniqueAddress))
        {
            _log.Warning("{0} joins with the journal of cluster {1}, this cluster's journal is {2}; it is refused (downed in {3:0.#} s unless it leaves)",
                member.Address, theirs, _clusterId, Grace.TotalSeconds);
            Timers.StartSingleTimer(member.UniqueAddress, new DownIfStillThere(member.UniqueAddress, theirs.Value), Grace);
        }
    }
}
