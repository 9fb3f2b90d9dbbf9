using Akka.Actor;
using Akka.Event;
using Coordinator.Cluster.Ledger;
using Coordinator.HyperV;

namespace Coordinator.Cluster.Vms;

/// <summary>A refusal from a collaborator (the image cache, a peer cluster) with the HTTP status it implies.</summary>
public sealed class OperationRefusedException(int status, string type, string message) : Exception(message)
{
    public int Status { get; } = status;
    public string Type { get; } = type;
}

/// <summary>
/// The node actor: one per node service. Owns the local VMs through one child per VM, reports the host's capacity
/// and VMs to the ledger, observes the failover cluster's owner changes (it never performs failovers: the cluster
/// service does, on Windows as in the simulator) and reconciles the ledger with them, and drains its node.
/// </summary>
public sealed class NodeActor : ReceiveActor, IWithTimers
{
    public const string Name = "vm-node";

    private readonly NodeSettings _settings;
    private readonly IHyperVHost _host;
    private readonly IFailoverCluster _cluster;
    private readonly IActorRef _ledger;
    private readonly IImageSource? _images;
    private readonly IPeerClusters? _peers;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly CancellationTokenSource _stop = new();
    private bool _draining;

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(NodeSettings settings, IHyperVHost host, IFailoverCluster cluster, IActorRef ledger,
        IImageSource? images, IPeerClusters? peers) =>
        Akka.Actor.Props.Create(() => new NodeActor(settings, host, cluster, ledger, images, peers));

    public NodeActor(NodeSettings settings, IHyperVHost host, IFailoverCluster cluster, IActorRef ledger, IImageSource? images, IPeerClusters? peers)
    {
        _settings = settings;
        _host = host;
        _cluster = cluster;
        _ledger = ledger;
        _images = images;
        _peers = peers;

        Receive<IVmCommand>(c => Child(c.Name).Forward(c));
        Receive<OwnerSeen>(OnOwnerSeen);
        Receive<SettleCheck>(c => SettleAsync(c.Vm).PipeTo(Self, success: () => Done.Instance, failure: ex => new Failed("settle " + c.Vm, ex)));
        Receive<ReconcileTick>(_ => ReadForReconcileAsync().PipeTo(Self, failure: ex => new Failed("reconcile", ex)));
        Receive<ReconcileRead>(r => ReportAsync(Settled(r)).PipeTo(Self, success: () => Done.Instance, failure: ex => new Failed("reconcile", ex)));
        Receive<DrainNode>(d => StartDrain(d));
        Receive<DrainFinished>(_ => _draining = false);
        Receive<Failed>(f => _log.Warning("{0} failed: {1}", f.What, f.Cause.GetBaseException().Message));
        Receive<Done>(_ => { });
    }

    protected override void PreStart()
    {
        Timers.StartPeriodicTimer("reconcile", ReconcileTick.Instance, TimeSpan.FromMilliseconds(200), _settings.ReconcileInterval);
        var self = Self;
        var token = _stop.Token;
        // The cluster's owner-change stream is read on the thread pool and fed to this actor as messages.
        _ = Task.Run(async () =>
        {
            while (!token.IsCancellationRequested)
            {
                try
                {
                    await foreach (var change in _cluster.WatchOwnerChangesAsync(token))
                        self.Tell(new OwnerSeen(change));
                }
                catch (OperationCanceledException) { return; }
                catch (Exception e)
                {
                    self.Tell(new Failed("owner-change watch", e));
                    await Task.Delay(1000, token).ContinueWith(_ => { });
                }
            }
        }, token);
    }

    protected override void PostStop() => _stop.Cancel();

    private IActorRef Child(string vm)
    {
        var name = Uri.EscapeDataString(vm);
        var existing = Context.Child(name);
        return !existing.Equals(ActorRefs.Nobody)
            ? existing
            : Context.ActorOf(Akka.Actor.Props.Create(() => new VmActor(_settings, _host, _cluster, _ledger, _images, _peers)), name);
    }

    /// <summary>
    /// Owner changes are settled before they are believed: a group that bounces between nodes (CSV trouble) reports
    /// many owners in a short time; the ledger learns only the owner it ends with, once it is no longer Pending.
    /// </summary>
    private void OnOwnerSeen(OwnerSeen seen) =>
        Timers.StartSingleTimer("settle-" + seen.Change.VmName, new SettleCheck(seen.Change.VmName), _settings.OwnerSettle);

    private async Task SettleAsync(string vm)
    {
        var role = (await _cluster.ListVmRolesAsync(CancellationToken.None)).FirstOrDefault(r => r.VmName == vm);
        if (role is null) return;
        if (role.State != GroupState.Online)
        {
            Self.Tell(new OwnerSeen(new OwnerChange(vm, role.OwnerNode, role.State, DateTimeOffset.UtcNow))); // check again later
            return;
        }
        await _ledger.AskWithDeadline<VmAck>(new ObserveOwner(vm, role.OwnerNode, "failover"), _settings.LedgerTimeout, _settings.MaxClockSkew);
    }

    /// <summary>
    /// Reads the host's capacity and VMs and the cluster's roles; clusters any VM found unclustered on this host (it
    /// arrived from outside). What is reported is decided on the actor's thread (<see cref="Settled"/>).
    /// </summary>
    private async Task<ReconcileRead> ReadForReconcileAsync()
    {
        var capacity = await _host.GetCapacityAsync(CancellationToken.None);
        var vms = await _host.ListVmsAsync(CancellationToken.None);
        var roles = await _cluster.ListVmRolesAsync(CancellationToken.None);
        foreach (var vm in vms.Where(v => roles.All(r => r.VmName != v.Name)))
        {
            _log.Info("VM {0} on {1} is not clustered; clustering it (arrival from outside the cluster)", vm.Name, _settings.NodeName);
            await _cluster.AddVmRoleAsync(vm.Name, CancellationToken.None);
        }
        var hosted = vms.Select(v => new HostedVm(v.Name, v.MemoryMb, v.Vcpus, v.DiskPath,
            v.DiskPath is not null && File.Exists(v.DiskPath) ? new FileInfo(v.DiskPath).Length : 0)).ToList();
        return new ReconcileRead(capacity.MemoryMb, capacity.LogicalProcessors, hosted, roles);
    }

    /// <summary>
    /// A VM whose owner is still settling (a group bouncing between nodes) is left out: the settle check reports its
    /// owner once it stopped moving. A reconcile that read it mid-bounce would otherwise tell the ledger an owner it
    /// held for a moment, and the ledger would record moves that never settled.
    /// </summary>
    private ReconcileRead Settled(ReconcileRead read)
    {
        bool Settling(string vm) => Timers.IsTimerActive("settle-" + vm);
        return read with
        {
            Hosted = read.Hosted.Where(v => !Settling(v.Name)).ToList(),
            Roles = read.Roles.Where(r => !Settling(r.VmName)).ToList(),
        };
    }

    /// <summary>
    /// Reports capacity and the host's VMs; tells the ledger the settled owner of every VM role (failovers that
    /// happened while this service was down).
    /// </summary>
    private async Task ReportAsync(ReconcileRead read)
    {
        await _ledger.AskWithDeadline<VmAck>(new ReportNode(_settings.NodeName, read.MemoryMb, read.LogicalProcessors, read.Hosted), _settings.LedgerTimeout, _settings.MaxClockSkew);
        foreach (var role in read.Roles.Where(r => r.State == GroupState.Online))
            await _ledger.AskWithDeadline<VmAck>(new ObserveOwner(role.VmName, role.OwnerNode, "reconciled"), _settings.LedgerTimeout, _settings.MaxClockSkew);
    }

    private void StartDrain(DrainNode d)
    {
        if (_draining) return;
        _draining = true;
        var self = Self;
        var ledger = _ledger;
        var settings = _settings;
        var log = _log;
        Task.Run(async () =>
        {
            using var slots = new SemaphoreSlim(settings.DrainConcurrency);
            var vms = (await ledger.AskWithDeadline<VmsReply>(GetVms.Instance, settings.LedgerTimeout, settings.MaxClockSkew)).Vms.Where(v => v.Node == settings.NodeName).ToList();
            log.Info("Draining {0}: {1} VM(s), {2} at a time", settings.NodeName, vms.Count, settings.DrainConcurrency);
            await Task.WhenAll(vms.Select(async vm =>
            {
                await slots.WaitAsync();
                try
                {
                    var target = (await ledger.AskWithDeadline<TargetReply>(new PickTarget(vm.Name), settings.LedgerTimeout, settings.MaxClockSkew)).Target;
                    if (target is null)
                    {
                        log.Warning("Drain of {0}: no node can hold {1}", settings.NodeName, vm.Name);
                        return;
                    }
                    var r = await self.Ask<VmOpReply>(new MigrateVm(vm.Name, target, MigrationMode.Live), settings.MoveTimeout + TimeSpan.FromSeconds(30));
                    if (!r.Ok) log.Warning("Drain of {0}: moving {1} to {2} failed: {3}", settings.NodeName, vm.Name, target, r.Error);
                }
                finally { slots.Release(); }
            }));
            log.Info("Drain of {0} finished", settings.NodeName);
        }).PipeTo(self, success: () => new DrainFinished(), failure: ex => new DrainFinished());
    }

    private sealed record OwnerSeen(OwnerChange Change);

    private sealed record SettleCheck(string Vm);

    private sealed record ReconcileTick
    {
        public static readonly ReconcileTick Instance = new();
    }

    private sealed record ReconcileRead(long MemoryMb, int LogicalProcessors, IReadOnlyList<HostedVm> Hosted, IReadOnlyList<GroupOwner> Roles);

    private sealed record DrainFinished;

    private sealed record Failed(string What, Exception Cause);

    private sealed record Done
    {
        public static readonly Done Instance = new();
    }
}
