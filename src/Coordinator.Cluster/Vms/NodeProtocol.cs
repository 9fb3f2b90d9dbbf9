using Coordinator.Cluster.Ledger;
using Coordinator.Domain;

namespace Coordinator.Cluster.Vms;

/// <summary>An operation on one VM, carried out by the node actor of the node that hosts it (one VM actor per VM).</summary>
public interface IVmCommand : ICoordinatorMessage
{
    string Name { get; }
}

public sealed record SpawnVm(string Name, int MemoryMb, int Vcpus, long DiskBytes, string Volume, string? ImageId) : IVmCommand;

public sealed record DestroyVm(string Name) : IVmCommand;

public enum MigrationMode { Live, Cold }

public sealed record MigrateVm(string Name, string Target, MigrationMode Mode) : IVmCommand;

/// <summary>A VM that came to this node's host from outside the cluster: cluster it and claim its disk here.</summary>
public sealed record ArriveVm(string Name, int MemoryMb, int Vcpus, long DiskBytes, string Volume, string? ImageId) : IVmCommand;

public sealed record DrainNode(string Node) : ICoordinatorMessage;

/// <summary>The outcome of a VM operation, shaped for the HTTP answer.</summary>
public sealed record VmOpReply(int Status, string? ProblemType, string? Error, VmRecord? Vm) : ICoordinatorMessage
{
    public bool Ok => Status is >= 200 and < 300;

    public static VmOpReply Done(int status, VmRecord? vm) => new(status, null, null, vm);

    public static VmOpReply Fail(int status, string type, string error) => new(status, type, error, null);
}

/// <summary>Where the node's images come from: the cluster-wide cache (issue "Image-fetch leases").</summary>
public interface IImageSource
{
    /// <summary>Makes the image present in the cache and returns its absolute path on the CSV.</summary>
    Task<string> EnsureImageAsync(string imageId, CancellationToken ct);
}

/// <summary>Another cluster's coordinator, for migrations out of this cluster.</summary>
public interface IPeerClusters
{
    /// <summary>The coordinator endpoint that serves <paramref name="host"/>, or null when the host is unknown.</summary>
    Uri? EndpointFor(string host);

    /// <summary>Where the VM's files go on the receiving cluster's CSV (its first volume's instance folder).</summary>
    Task<string> DestinationFolderAsync(Uri endpoint, string vmName, CancellationToken ct);

    /// <summary>Tells the receiving cluster's coordinator that the VM arrived on its host.</summary>
    Task AnnounceArrivalAsync(Uri endpoint, ArriveVm arrival, CancellationToken ct);
}
