using Akka.Actor;
using Akka.Cluster;
using Akka.Hosting;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Vms;

namespace Coordinator.Service.Vms;

/// <summary>Registry key of this node's node actor.</summary>
public sealed class NodeActorKey;

/// <summary>Finds the node actor of any node of the cluster by its Hyper-V host name (the member role node:NAME).</summary>
public sealed class NodeDirectory(ActorSystem system, IRequiredActor<NodeActorKey> local, CoordinatorSettings settings)
{
    public async Task<T> AskAsync<T>(string node, object message, TimeSpan timeout, CancellationToken ct)
    {
        if (node == settings.NodeName) return await (await local.GetAsync(ct)).Ask<T>(message, timeout, ct);
        var member = Akka.Cluster.Cluster.Get(system).State.Members
            .FirstOrDefault(m => m.Status == MemberStatus.Up && m.Roles.Contains(CoordinatorSettings.NodeRolePrefix + node));
        if (member is null) throw new NodeUnavailableException($"node {node} is not an Up member of the cluster");
        return await system.ActorSelection(new RootActorPath(member.Address) / "user" / NodeActor.Name).Ask<T>(message, timeout, ct);
    }

    public async Task TellAsync(string node, object message, CancellationToken ct)
    {
        if (node == settings.NodeName) { (await local.GetAsync(ct)).Tell(message); return; }
        var member = Akka.Cluster.Cluster.Get(system).State.Members
            .FirstOrDefault(m => m.Status == MemberStatus.Up && m.Roles.Contains(CoordinatorSettings.NodeRolePrefix + node))
            ?? throw new NodeUnavailableException($"node {node} is not an Up member of the cluster");
        system.ActorSelection(new RootActorPath(member.Address) / "user" / NodeActor.Name).Tell(message);
    }
}

public sealed class NodeUnavailableException(string message) : Exception(message);
