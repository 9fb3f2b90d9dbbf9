namespace Coordinator.HyperV;

public enum VmPowerState { Off, Running, Starting, Stopping, Saved, Paused, Unknown }

/// <summary>A VM as its host sees it. Memory in MiB, disk path absolute (on a CSV for clustered VMs).</summary>
public sealed record VmInfo(string Name, VmPowerState State, int MemoryMb, int Vcpus, string? DiskPath);

/// <summary>What the host has in all; the coordinator subtracts its VMs to know what is free.</summary>
public sealed record HostCapacity(string Node, long MemoryMb, int LogicalProcessors);

public sealed record VmDefinition(string Name, int MemoryMb, int Vcpus, string DiskPath);

public enum DiskKind
{
    /// <summary>A differencing VHDX whose parent is the cached base image (fast, shares the base).</summary>
    Differencing,

    /// <summary>A full copy of the base image.</summary>
    Copy,
}

public enum ClusterMoveKind
{
    /// <summary>Live migration of the role: the VM keeps running, its disks stay on the CSV.</summary>
    Live,

    /// <summary>Quick migration: saved, moved, resumed (the "cold" path inside a cluster).</summary>
    Quick,
}

public enum GroupState { Online, Offline, Failed, PartialOnline, Pending, Unknown }

/// <summary>The owner of a clustered VM's group. Pending while the cluster service is still moving or restarting it.</summary>
public sealed record GroupOwner(string VmName, string OwnerNode, GroupState State);

/// <summary>A change of owner node (a move or a failover) reported by the cluster's notification source.</summary>
public sealed record OwnerChange(string VmName, string OwnerNode, GroupState State, DateTimeOffset At);

/// <summary>What a node does to its own hypervisor (Hyper-V on Windows, the simulator elsewhere).</summary>
public interface IHyperVHost
{
    string NodeName { get; }

    Task<HostCapacity> GetCapacityAsync(CancellationToken ct);

    Task<IReadOnlyList<VmInfo>> ListVmsAsync(CancellationToken ct);

    /// <summary>Null when no such VM exists on this host.</summary>
    Task<VmInfo?> GetVmAsync(string name, CancellationToken ct);

    /// <summary>Creates a VHDX at <paramref name="path"/> from a base image (differencing or copy), or empty of <paramref name="sizeBytes"/> when there is no base.</summary>
    Task CreateDiskAsync(string path, string? basePath, DiskKind kind, long sizeBytes, CancellationToken ct);

    Task DeleteDiskAsync(string path, CancellationToken ct);

    /// <summary>
    /// Creates the folder of a new VM (and its parents). True when this call created it; false when an empty folder of
    /// that name was already there (it is left as it was, and is not this call's to remove). AlreadyExists, touching
    /// nothing, when the folder already holds files or a file has its name: it may be another VM's, since names that
    /// differ only by case or by trailing dots and spaces name the same NTFS folder.
    /// </summary>
    Task<bool> CreateFolderAsync(string path, CancellationToken ct);

    /// <summary>Removes the folder when it holds no files (empty subfolders go with it) and answers true, or true when it
    /// is gone already; a folder that holds files is kept and the answer is false. The undo of <see cref="CreateFolderAsync"/>:
    /// it never deletes a file that the undone operation did not create and delete itself.</summary>
    Task<bool> RemoveEmptyFolderAsync(string path, CancellationToken ct);

    /// <summary>Deletes the folder and everything in it (a VM's folder when the VM is destroyed or has left); a missing
    /// folder is fine.</summary>
    Task DeleteFolderAsync(string path, CancellationToken ct);

    Task DefineVmAsync(VmDefinition definition, CancellationToken ct);

    Task StartVmAsync(string name, CancellationToken ct);

    Task StopVmAsync(string name, CancellationToken ct);

    /// <summary>Removes the VM's definition (not its disk files).</summary>
    Task DestroyVmAsync(string name, CancellationToken ct);

    /// <summary>Classic live migration to a host outside this cluster: the VM only (shared storage) or the VM and its storage.</summary>
    Task MigrateToHostAsync(string name, string destinationHost, bool includeStorage, string? destinationPath, CancellationToken ct);
}

/// <summary>What a node does to the failover cluster it belongs to (WSFC on Windows, the simulator elsewhere).</summary>
public interface IFailoverCluster
{
    /// <summary>Names of the cluster's nodes (up or not).</summary>
    Task<IReadOnlyList<string>> ListNodesAsync(CancellationToken ct);

    /// <summary>Makes the VM a highly available role (its group is named after the VM) and sets its failover policy.</summary>
    Task AddVmRoleAsync(string vmName, CancellationToken ct);

    /// <summary>Removes the VM's role; the VM itself is kept.</summary>
    Task RemoveVmRoleAsync(string vmName, CancellationToken ct);

    /// <summary>Moves the VM's role to another node of the cluster and waits until it is Online there (or times out and cancels).</summary>
    Task MoveVmRoleAsync(string vmName, string targetNode, ClusterMoveKind kind, TimeSpan timeout, CancellationToken ct);

    /// <summary>Every VM role of the cluster with its owner node and state.</summary>
    Task<IReadOnlyList<GroupOwner>> ListVmRolesAsync(CancellationToken ct);

    /// <summary>Owner changes of VM groups, as the cluster reports them, until cancelled.</summary>
    IAsyncEnumerable<OwnerChange> WatchOwnerChangesAsync(CancellationToken ct);
}

public enum HyperVErrorKind
{
    NotFound,
    AlreadyExists,
    InvalidState,
    InsufficientResources,
    JobFailed,
    Timeout,
    PlatformUnsupported,
    Failed,
}

/// <summary>A typed failure of a Hyper-V or cluster operation; <see cref="Code"/> carries the WMI/Win32 code when there is one.</summary>
public sealed class HyperVException(HyperVErrorKind kind, string message, long? code = null, Exception? inner = null)
    : Exception(message, inner)
{
    public HyperVErrorKind Kind { get; } = kind;
    public long? Code { get; } = code;
}
