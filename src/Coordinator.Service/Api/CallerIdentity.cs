namespace Coordinator.Service.Api;

/// <summary>Who a request comes from. Agents act for one node; an admin for any; a peer cluster may only hand over VMs.</summary>
public enum CallerKind
{
    /// <summary>No credential, from loopback on a node with no agent credential: the local node agent.</summary>
    AnonymousLocal,

    /// <summary>A node agent: acts only as <see cref="CallerIdentity.Node"/>.</summary>
    Agent,

    /// <summary>An operator: may act for any node and use the admin routes.</summary>
    Admin,

    /// <summary>Another cluster's coordinator: only the routes a peer calls (<see cref="CallerIdentity.PeerRoutes"/>).</summary>
    Peer,
}

/// <summary>
/// The identity of one request, set by the authentication middleware (<see cref="Authentication"/>) from its bearer
/// token or, without one, from where it comes. <see cref="Name"/> is safe to log (never the token).
/// </summary>
public sealed record CallerIdentity(CallerKind Kind, string Name, string? Node)
{
    public bool IsAdmin => Kind == CallerKind.Admin;

    /// <summary>Whether the caller may act as (claim, lease, release, spawn for) <paramref name="node"/>.</summary>
    public bool MayActFor(string node) => IsAdmin || (Node is not null && string.Equals(Node, node, StringComparison.Ordinal));

    /// <summary>The node a lease action is checked against in the ledger: null for an admin (any holder).</summary>
    public string? LeaseCaller => IsAdmin ? null : Node ?? "";

    public override string ToString() => Node is null ? $"{Kind.ToString().ToLowerInvariant()} '{Name}'" : $"{Kind.ToString().ToLowerInvariant()} '{Name}' (node {Node})";

    /// <summary>
    /// What a peer cluster's coordinator calls (see Vms/HttpPeerClusters): it reads the volumes (to learn where the
    /// arriving VM's files go) and announces an arrival on this node.
    /// </summary>
    public static bool PeerRoutes(string method, PathString path) =>
        (HttpMethods.IsGet(method) && (path.Equals("/v1/volumes") || path.Equals("/v1/leader")))
        || (HttpMethods.IsPost(method) && path.Equals("/v1/vms/arrivals"));
}
