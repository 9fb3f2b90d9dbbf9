namespace Coordinator.Domain;

/// <summary>A node's host capacity as its node actor reported it (memory exact, as the blueprint's option B wants).</summary>
public sealed record NodeCapacityReported(string Node, long MemoryMb, int LogicalProcessors, DateTimeOffset At) : LedgerEvent;

public sealed record NodeDrainChanged(string Node, bool Draining, DateTimeOffset At) : LedgerEvent;

/// <summary>
/// A VM is placed on a node: its memory and vCPUs count against the node, its disk is claimed on the volume
/// (a reservation keyed by the VM's name, in its instance folder). Reason: spawn, arrival (from outside the cluster)
/// or adopted (found on a host at reconciliation).
/// </summary>
public sealed record VmPlaced(
    string Name, string Node, int MemoryMb, int Vcpus, string Volume, long DiskBytes, string? ImageId, string Folder,
    string Reason, DateTimeOffset At) : LedgerEvent;

public sealed record VmPhaseChanged(string Name, VmPhase Phase, DateTimeOffset At) : LedgerEvent;

/// <summary>The VM's owner changed (cluster move or failover): node accounting and the disk claim follow it.</summary>
public sealed record VmMoved(string Name, string From, string To, string Reason, DateTimeOffset At) : LedgerEvent;

/// <summary>The VM is gone from this cluster (destroyed, or migrated out): its claim is released.</summary>
public sealed record VmRemoved(string Name, string Reason, DateTimeOffset At) : LedgerEvent;
