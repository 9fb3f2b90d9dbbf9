using Coordinator.Domain;

namespace Coordinator.Cluster.Ledger;

/// <summary>A node actor's report: its host's capacity and the VMs its host runs (for reconciliation).</summary>
public sealed record ReportNode(string Node, long MemoryMb, int LogicalProcessors, IReadOnlyList<HostedVm> Vms) : ILedgerRequest;

public sealed record HostedVm(string Name, int MemoryMb, int Vcpus, string? DiskPath, long DiskBytes);

public sealed record PlaceVm(PlaceVmRequest Request) : ILedgerRequest;

/// <summary>
/// Another cluster announces a VM migrated to this node: claimed (or refused, answered with a <see cref="PlaceReply"/>)
/// before the node creates any file for it.
/// </summary>
public sealed record AcceptArrival(PlaceVmRequest Request) : ILedgerRequest;

public sealed record SetVmPhase(string Name, VmPhase Phase) : ILedgerRequest;

/// <summary>The failover cluster settled the VM's group on <see cref="Node"/> (a move or a failover).</summary>
public sealed record ObserveOwner(string Name, string Node, string Reason) : ILedgerRequest;

public sealed record RemoveVm(string Name, string Reason) : ILedgerRequest;

public sealed record SetDrain(string Node, bool Draining) : ILedgerRequest;

public sealed record PickTarget(string Vm) : ILedgerRequest;

public sealed record GetVms : ILedgerRequest
{
    public static readonly GetVms Instance = new();
}

public sealed record GetNodes : ILedgerRequest
{
    public static readonly GetNodes Instance = new();
}

/// <summary>Long poll of the arrival/departure feed, optionally for one node.</summary>
public sealed record GetFeed(long After, string? Node, int WaitMs) : ILedgerRequest;

public sealed record PlaceReply(long Epoch, PlaceOutcome Outcome) : ICoordinatorMessage;

public sealed record VmAck(long Epoch, VmRecord? Vm) : ICoordinatorMessage;

public sealed record TargetReply(long Epoch, string? Target) : ICoordinatorMessage;

public sealed record VmsReply(long Epoch, IReadOnlyList<VmRecord> Vms) : ICoordinatorMessage;

public sealed record NodeView(string Node, string State, long MemoryMb, long FreeMemoryMb, int LogicalProcessors, int FreeVcpus,
    int Vms, bool Draining);

public sealed record NodesReply(long Epoch, IReadOnlyList<NodeView> Nodes) : ICoordinatorMessage;

public sealed record FeedReply(long Epoch, long Head, IReadOnlyList<FeedEntry> Entries) : ICoordinatorMessage;
