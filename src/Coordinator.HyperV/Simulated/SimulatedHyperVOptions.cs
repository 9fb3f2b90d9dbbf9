namespace Coordinator.HyperV.Simulated;

/// <summary>Tuning of one simulated Hyper-V node and of its share of the simulated cluster service.</summary>
public sealed record SimulatedHyperVOptions
{
    /// <summary>How often the node writes its heartbeat and runs the cluster service's failover scan.</summary>
    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>A node whose heartbeat is older than this is declared down and its VM groups fail over.</summary>
    public TimeSpan FailoverAfter { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How long a simulated role move (live or quick) stays Pending before it completes.</summary>
    public TimeSpan MoveDelay { get; init; } = TimeSpan.FromMilliseconds(300);

    /// <summary>How often <see cref="IFailoverCluster.WatchOwnerChangesAsync"/> polls the owner-change log.</summary>
    public TimeSpan WatchPollInterval { get; init; } = TimeSpan.FromMilliseconds(200);

    /// <summary>The sum of the vCPUs of a node's VMs may not exceed its logical processors times this.</summary>
    public int VcpuOvercommit { get; init; } = 4;

    /// <summary>Destinations that <see cref="IHyperVHost.MigrateToHostAsync"/> cannot reach (case-insensitive), besides
    /// those set at run time (<see cref="SimulatedHyperV.SetUnreachableHost"/>) or in the shared database
    /// (<see cref="SimulatedClusterDatabase.SetUnreachableHost"/>).</summary>
    public IReadOnlyCollection<string> UnreachableHosts { get; init; } = [];
}
