namespace Coordinator.HyperV.Simulated;

/// <summary>A row of the simulated cluster's node table.</summary>
public sealed record SimulatedNode(string Name, long MemoryMb, int LogicalProcessors, DateTimeOffset LastHeartbeat, bool Up);

/// <summary>A row of the simulated cluster's VM table: the VM, the node it lives on, and whether it is a clustered role.</summary>
public sealed record SimulatedVm(
    string Name, string HostNode, VmPowerState State, int MemoryMb, int Vcpus, string? DiskPath, bool Clustered);

/// <summary>A row of the append-only owner-change log. <see cref="Actor"/> names who wrote it: a node name when that
/// node's cluster service (or a request made on that node) did, "admin" for the test hooks.</summary>
public sealed record SimulatedOwnerChange(long Seq, string VmName, string OwnerNode, GroupState State, DateTimeOffset At, string Actor)
{
    public OwnerChange ToOwnerChange() => new(VmName, OwnerNode, State, At);
}
