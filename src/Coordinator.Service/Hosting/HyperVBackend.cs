using Coordinator.Cluster.Configuration;
using Coordinator.HyperV;
using Coordinator.HyperV.Simulated;

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
            throw new HyperVException(HyperVErrorKind.PlatformUnsupported, "the windows backend is not wired in this build");
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
