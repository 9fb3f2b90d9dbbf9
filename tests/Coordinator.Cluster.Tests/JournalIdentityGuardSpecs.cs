using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;
using Coordinator.Cluster.Journal;

namespace Coordinator.Cluster.Tests;

/// <summary>
/// The members' side of the journal identity check (the joining node's own side, which exits the process, is shown by
/// JournalIdentityTests with real processes): a member that joins with another journal's id and does not go by itself
/// (an older version without the check, a hung process) is downed by the cluster; one with the same id stays.
/// </summary>
public sealed class JournalIdentityGuardSpecs : IDisposable
{
    private readonly List<ActorSystem> _systems = [];
    private static readonly Guid ClusterId = Guid.NewGuid();

    [Fact]
    public async Task A_member_joining_with_another_journal_is_downed_and_one_with_the_same_journal_stays()
    {
        var first = Start(ClusterId, out var seed);
        first.ActorOf(JournalIdentityGuard.Props(ClusterId), "journal-identity-guard");
        Akka.Cluster.Cluster.Get(first).Join(seed);

        // Neither joiner runs a guard of its own: only the cluster's side decides here.
        var same = Start(ClusterId, out var sameAddress);
        Akka.Cluster.Cluster.Get(same).Join(seed);
        var foreign = Start(Guid.NewGuid(), out var foreignAddress);
        Akka.Cluster.Cluster.Get(foreign).Join(seed);

        var cluster = Akka.Cluster.Cluster.Get(first);
        await Eventually(() => cluster.State.Members.Any(m => m.Address == foreignAddress && m.Status == MemberStatus.Down)
                               || (cluster.State.Members.All(m => m.Address != foreignAddress) && cluster.State.Members.Any(m => m.Address == sameAddress)),
            "the member with another journal downed");
        await Eventually(() => cluster.State.Members.All(m => m.Address != foreignAddress), "the member with another journal removed");
        await Eventually(() => cluster.State.Members.Any(m => m.Address == sameAddress && m.Status == MemberStatus.Up), "the member with the same journal Up");
        await Task.Delay(JournalIdentityGuard.Grace + TimeSpan.FromSeconds(1));
        Assert.Contains(cluster.State.Members, m => m.Address == sameAddress && m.Status == MemberStatus.Up);
        Assert.Null(JournalIdentityGuard.RefusedReason); // the cluster's side never refuses itself
    }

    [Fact]
    public void The_journal_id_is_read_from_a_members_role()
    {
        var id = Guid.NewGuid();
        Assert.Equal($"journal:{id:D}", JournalIdentityGuard.RoleFor(id));
        Assert.Equal(id.ToString("D"), JournalIdentityGuard.ConfigFor(id).GetString(JournalIdentityGuard.ConfigPath));
    }

    private ActorSystem Start(Guid journal, out Address address)
    {
        var config = ConfigurationFactory.ParseString($$"""
            akka.actor.provider = cluster
            akka.remote.dot-netty.tcp { hostname = 127.0.0.1, port = 0 }
            akka.cluster {
              roles = ["{{JournalIdentityGuard.RoleFor(journal)}}"]
              run-coordinated-shutdown-when-down = off
              leader-actions-interval = 200ms
            }
            akka.loglevel = WARNING
            """);
        var system = ActorSystem.Create("guard-spec", config);
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
