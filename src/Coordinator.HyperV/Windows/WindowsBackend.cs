using System.Runtime.InteropServices;

namespace Coordinator.HyperV.Windows;

public sealed record WindowsBackendOptions
{
    public WindowsHyperVHostOptions Host { get; init; } = new();

    public WindowsFailoverClusterOptions Cluster { get; init; } = new();
}

/// <summary>
/// Entry point of coordinator.hyperv.backend = windows: checks that the platform has what the back-end needs and wires
/// <see cref="WindowsHyperVHost"/> and <see cref="WindowsFailoverCluster"/> over the real seams (<see cref="MiCimGateway"/>,
/// <see cref="NativeClusApi"/>). Everywhere else it refuses with PlatformUnsupported before touching MI or clusapi.
/// </summary>
public static class WindowsBackend
{
    public const string UnsupportedMessage =
        "the windows backend needs Windows with the Hyper-V and Failover Clustering features (root/virtualization/v2, clusapi.dll); "
        + "use coordinator.hyperv.backend = simulated here";

    /// <summary>Throws PlatformUnsupported unless this is Windows with clusapi.dll loadable (the WMI namespaces are
    /// probed by <see cref="Create"/>, which needs a CIM session for it).</summary>
    public static void EnsureSupported()
    {
        if (!OperatingSystem.IsWindows())
            throw new HyperVException(HyperVErrorKind.PlatformUnsupported, $"{UnsupportedMessage} (this is {RuntimeInformation.OSDescription})");
        if (!NativeLibrary.TryLoad("clusapi.dll", out var clusapi))
            throw new HyperVException(HyperVErrorKind.PlatformUnsupported, $"{UnsupportedMessage} (clusapi.dll cannot be loaded)");
        NativeLibrary.Free(clusapi);
    }

    /// <summary>
    /// The node's Hyper-V host and cluster view. Probes root/virtualization/v2 (Msvm_VirtualSystemManagementService)
    /// and root/MSCluster (MSCluster_Cluster) and refuses (PlatformUnsupported) when either is missing. The CIM session
    /// lives as long as the process.
    /// </summary>
    public static (IHyperVHost Host, IFailoverCluster Cluster) Create(string nodeName, WindowsBackendOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nodeName);
        EnsureSupported();
        options ??= new WindowsBackendOptions();
        var cim = new MiCimGateway();
        try
        {
            Probe(cim, CimNames.Virtualization, "Msvm_VirtualSystemManagementService", "Hyper-V");
            Probe(cim, CimNames.Cluster, "MSCluster_Cluster", "Failover Clustering");
        }
        catch
        {
            cim.Dispose();
            throw;
        }

        return (new WindowsHyperVHost(cim, nodeName, options.Host), new WindowsFailoverCluster(cim, new NativeClusApi(), options.Cluster));
    }

    /// <summary>Refuses (PlatformUnsupported) when <paramref name="className"/> has no instance in <paramref name="ns"/>
    /// or the namespace cannot be queried.</summary>
    public static void Probe(ICimGateway cim, string ns, string className, string feature)
    {
        IReadOnlyList<CimRecord> found;
        try
        {
            found = cim.QueryAsync(ns, $"SELECT * FROM {className}", CancellationToken.None).GetAwaiter().GetResult();
        }
        catch (HyperVException e)
        {
            throw new HyperVException(HyperVErrorKind.PlatformUnsupported, $"{UnsupportedMessage} ({feature}: {e.Message})", e.Code, e);
        }

        if (found.Count == 0)
            throw new HyperVException(HyperVErrorKind.PlatformUnsupported, $"{UnsupportedMessage} ({feature}: no {className} in {ns})");
    }
}
