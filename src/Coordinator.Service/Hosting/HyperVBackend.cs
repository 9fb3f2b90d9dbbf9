using Coordinator.Cluster.Configuration;
using Coordinator.HyperV;
using Coordinator.HyperV.Simulated;
using Coordinator.HyperV.Windows;

namespace Coordinator.Service.Hosting;

/// <summary>
/// The node's hypervisor and failover cluster, chosen by coordinator.hyperv.backend. The windows back-end refuses to
/// start where Hyper-V and Failover Clustering are missing (on Linux it always does).
/// </summary>
public sealed class HyperVBackend : IHostedService, IAsyncDisposable
{
    private readonly SimulatedHyperV? _simulated;

    public IHyperVHost Host { get; }
    public IFailoverCluster Cluster { get; }

    public HyperVBackend(CoordinatorSettings settings, ILogger<HyperVBackend> log)
    {
        var h = settings.HyperV;
        if (h.Backend == "windows")
        {
            // Refuses clearly (PlatformUnsupported) where Hyper-V, Failover Clustering or clusapi.dll are missing.
            var (host, cluster) = WindowsBackend.Create(settings.NodeName);
            Host = host;
            Cluster = cluster;
            return;
        }
        Directory.CreateDirectory(Path.GetDirectoryName(h.SimulatedDatabase)!);
        _simulated = new SimulatedHyperV(settings.NodeName, h.SimulatedMemoryMb, h.SimulatedLogicalProcessors, h.SimulatedDatabase,
            new SimulatedHyperVOptions { HeartbeatInterval = h.SimulatedHeartbeat, FailoverAfter = h.SimulatedFailoverAfter });
        Host = _simulated;
        Cluster = _simulated;
        log.LogInformation("Simulated Hyper-V host {Node}: {Memory} MiB, {Cpus} logical processors, cluster database {Db}",
            settings.NodeName, h.SimulatedMemoryMb, h.SimulatedLogicalProcessors, h.SimulatedDatabase);
    }

    public Task StartAsync(CancellationToken cancellationToken) => _simulated?.StartAsync(cancellationToken) ?? Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public ValueTask DisposeAsync() => _simulated?.DisposeAsync() ?? ValueTask.CompletedTask;
}
