using Akka.Actor;
using Akka.Event;
using Coordinator.Cluster.Ledger;
using Coordinator.Domain;
using Coordinator.HyperV;

namespace Coordinator.Cluster.Vms;

/// <summary>
/// One VM's operations, one at a time (ReceiveAsync suspends this actor's mailbox while an operation runs), so two
/// operations on the same VM never interleave while different VMs proceed in parallel. Carries out the blueprint's
/// rules: cluster on spawn, uncluster before destroy, cluster move inside the cluster, uncluster + classic migration
/// to a host outside it, re-cluster on the source when that fails.
/// </summary>
public sealed class VmActor : ReceiveActor
{
    private readonly NodeSettings _settings;
    private readonly IHyperVHost _host;
    private readonly IFailoverCluster _cluster;
    private readonly IActorRef _ledger;
    private readonly IImageSource? _images;
    private readonly IPeerClusters? _peers;
    private readonly ILoggingAdapter _log = Context.GetLogger();

    public VmActor(NodeSettings settings, IHyperVHost host, IFailoverCluster cluster, IActorRef ledger, IImageSource? images, IPeerClusters? peers)
    {
        _settings = settings;
        _host = host;
        _cluster = cluster;
        _ledger = ledger;
        _images = images;
        _peers = peers;
        ReceiveAsync<SpawnVm>(async m => Sender.Tell(await Guard(() => Spawn(m))));
        ReceiveAsync<DestroyVm>(async m => Sender.Tell(await Guard(() => Destroy(m))));
        ReceiveAsync<MigrateVm>(async m => Sender.Tell(await Guard(() => Migrate(m))));
        ReceiveAsync<ArriveVm>(async m => Sender.Tell(await Guard(() => Arrive(m))));
    }

    private async Task<VmOpReply> Spawn(SpawnVm m)
    {
        var placed = await Ledger<PlaceReply>(new PlaceVm(new PlaceVmRequest(m.Name, _settings.NodeName, m.MemoryMb, m.Vcpus, m.Volume, m.DiskBytes, m.ImageId)));
        var o = placed.Outcome;
        switch (o.Status)
        {
            case PlaceStatus.Placed:
                break;
            case PlaceStatus.Unchanged when o.Vm!.Phase == VmPhase.Running:
                return VmOpReply.Done(200, o.Vm); // the same spawn again: idempotent
            case PlaceStatus.Unchanged:
                return VmOpReply.Fail(409, "operation-in-progress", $"'{m.Name}' is still being spawned");
            default:
                return Refused(o);
        }

        // Every host step records what it created; a failure undoes exactly those (never a folder or disk that was
        // there before: `VM1` names vm1's folder on NTFS), then releases the placement.
        var folder = Folder(m.Volume, m.Name);
        VmSpawn? spawn = null;
        try
        {
            string? basePath = null;
            if (m.ImageId is not null)
            {
                if (_images is null) throw new HyperVException(HyperVErrorKind.Failed, "no image source is configured");
                basePath = await _images.EnsureImageAsync(m.ImageId, CancellationToken.None);
            }
            spawn = new VmSpawn(_host, _cluster,
                new VmSpawnPlan(m.Name, m.MemoryMb, m.Vcpus, folder, Path.Combine(folder, m.Name + ".vhdx"), basePath, m.DiskBytes));
            await spawn.RunAsync(CancellationToken.None);
            var ack = await Ledger<VmAck>(new SetVmPhase(m.Name, VmPhase.Running));
            _log.Info("VM {0} spawned on {1} ({2} MiB, {3} vCPUs, {4})", m.Name, _settings.NodeName, m.MemoryMb, m.Vcpus, ByteSize.Format(m.DiskBytes));
            return VmOpReply.Done(201, ack.Vm);
        }
        catch (Exception e)
        {
            if (spawn is not null)
            {
                _log.Warning("Spawn of {0} failed ({1}); undoing what it created: [{2}]{3}", m.Name, e.Message, string.Join(", ", spawn.Created),
                    spawn.FolderWasThere ? "; its folder was there before and is kept" : "");
                foreach (var f in await spawn.UndoAsync())
                    _log.Error(f.Error, "Undo of {0} for {1} failed", f.Step, m.Name);
            }
            else _log.Warning("Spawn of {0} failed ({1}); nothing was created", m.Name, e.Message);
            await Ledger<VmAck>(new RemoveVm(m.Name, "spawn-failed"));
            return Failure(e);
        }
    }

    private async Task<VmOpReply> Destroy(DestroyVm m)
    {
        var vm = await _host.GetVmAsync(m.Name, CancellationToken.None);
        if (vm is not null)
        {
            await _host.StopVmAsync(m.Name, CancellationToken.None);
            // Blueprint: an instance is removed from the cluster before it is destroyed.
            await Ignore404(() => _cluster.RemoveVmRoleAsync(m.Name, CancellationToken.None));
            await Ignore404(() => _host.DestroyVmAsync(m.Name, CancellationToken.None));
            if (vm.DiskPath is not null) await Ignore404(() => _host.DeleteDiskAsync(vm.DiskPath, CancellationToken.None));
        }
        var record = (await Ledger<VmsReply>(GetVms.Instance)).Vms.FirstOrDefault(v => v.Name == m.Name);
        if (record is null && vm is null) return VmOpReply.Fail(404, "not-found", $"no VM named '{m.Name}'");
        if (vm is null && (await _cluster.ListVmRolesAsync(CancellationToken.None)).FirstOrDefault(r => r.VmName == m.Name) is { } role)
            // The ledger has not yet seen a move: the VM runs elsewhere, so nothing here may be released.
            return VmOpReply.Fail(409, "vm-moving", $"'{m.Name}' is owned by {role.OwnerNode} ({role.State}) now; retry");
        if (record is not null) await _host.DeleteFolderAsync(Folder(record.Volume, m.Name), CancellationToken.None);
        await Ledger<VmAck>(new RemoveVm(m.Name, "destroyed"));
        _log.Info("VM {0} destroyed on {1}", m.Name, _settings.NodeName);
        return VmOpReply.Done(204, null);
    }

    private async Task<VmOpReply> Migrate(MigrateVm m)
    {
        if (await _host.GetVmAsync(m.Name, CancellationToken.None) is null)
            return VmOpReply.Fail(404, "not-found", $"'{m.Name}' is not on {_settings.NodeName}");
        if (m.Target == _settings.NodeName) return VmOpReply.Fail(400, "invalid-request", "the VM already runs on the target");

        var members = await _cluster.ListNodesAsync(CancellationToken.None);
        if (members.Contains(m.Target, StringComparer.OrdinalIgnoreCase))
        {
            // Same cluster: a cluster move of the role; the disk stays on the CSV and the claim only changes owner.
            await Ledger<VmAck>(new SetVmPhase(m.Name, VmPhase.Migrating));
            try
            {
                await _cluster.MoveVmRoleAsync(m.Name, m.Target, m.Mode == MigrationMode.Live ? ClusterMoveKind.Live : ClusterMoveKind.Quick,
                    _settings.MoveTimeout, CancellationToken.None);
            }
            finally
            {
                await Ledger<VmAck>(new SetVmPhase(m.Name, VmPhase.Running));
            }
            var moved = await Ledger<VmAck>(new ObserveOwner(m.Name, m.Target, m.Mode == MigrationMode.Live ? "live-migration" : "cold-migration"));
            return VmOpReply.Done(200, moved.Vm);
        }

        // Outside the cluster: uncluster, then a classic migration; the receiving cluster clusters it and claims
        // its disk; only then is it released here. A failure re-clusters it on this node.
        var endpoint = _peers?.EndpointFor(m.Target);
        if (endpoint is null)
            return VmOpReply.Fail(400, "unknown-target", $"'{m.Target}' is neither a node of this cluster nor a host of a configured peer cluster");
        var record = (await Ledger<VmsReply>(GetVms.Instance)).Vms.FirstOrDefault(v => v.Name == m.Name)
                     ?? throw new HyperVException(HyperVErrorKind.NotFound, $"'{m.Name}' is not in the ledger");
        var destination = await _peers!.DestinationFolderAsync(endpoint, m.Name, CancellationToken.None);
        await _cluster.RemoveVmRoleAsync(m.Name, CancellationToken.None);
        try
        {
            // The other cluster has its own CSV: the VM and its storage move.
            await _host.MigrateToHostAsync(m.Name, m.Target, includeStorage: true, destinationPath: destination, CancellationToken.None);
        }
        catch (Exception e)
        {
            _log.Warning("Migration of {0} to {1} failed ({2}); clustering it again on {3}", m.Name, m.Target, e.Message, _settings.NodeName);
            await _cluster.AddVmRoleAsync(m.Name, CancellationToken.None);
            return Failure(e);
        }
        await _peers!.AnnounceArrivalAsync(endpoint,
            new ArriveVm(m.Name, record.MemoryMb, record.Vcpus, record.DiskBytes, record.Volume, record.ImageId), CancellationToken.None);
        await Ledger<VmAck>(new RemoveVm(m.Name, "migrated-out"));
        await _host.DeleteFolderAsync(Folder(record.Volume, m.Name), CancellationToken.None);
        return VmOpReply.Done(200, record with { Node = m.Target });
    }

    private async Task<VmOpReply> Arrive(ArriveVm m)
    {
        // A request like any claim: the ledger takes (or refuses) the disk before this node creates a file for it.
        var accepted = await Ledger<PlaceReply>(new AcceptArrival(
            new PlaceVmRequest(m.Name, _settings.NodeName, m.MemoryMb, m.Vcpus, m.Volume, m.DiskBytes, m.ImageId)));
        var o = accepted.Outcome;
        if (o.Status is not (PlaceStatus.Placed or PlaceStatus.Unchanged)) return Refused(o);
        try
        {
            var vm = await _host.GetVmAsync(m.Name, CancellationToken.None);
            if (vm is null)
            {
                // The VM's files came with it but this host has no definition yet (the simulator, or an import): define it.
                var folder = Folder(m.Volume, m.Name);
                var disk = Path.Combine(folder, m.Name + ".vhdx");
                await IgnoreExisting(() => _host.CreateFolderAsync(folder, CancellationToken.None));
                await IgnoreExisting(() => _host.CreateDiskAsync(disk, null, DiskKind.Differencing, m.DiskBytes, CancellationToken.None));
                await _host.DefineVmAsync(new VmDefinition(m.Name, m.MemoryMb, m.Vcpus, disk), CancellationToken.None);
            }
            // Blueprint: an instance that arrives from outside the cluster is clustered on arrival.
            var roles = await _cluster.ListVmRolesAsync(CancellationToken.None);
            if (roles.All(r => !FileNames.Comparer.Equals(r.VmName, m.Name))) await _cluster.AddVmRoleAsync(m.Name, CancellationToken.None);
            await _host.StartVmAsync(m.Name, CancellationToken.None);
        }
        catch (Exception) when (o.Status == PlaceStatus.Placed)
        {
            // This announcement's claim only: the sender keeps (or re-clusters) the VM on its side and may retry.
            await Ledger<VmAck>(new RemoveVm(m.Name, "arrival-failed"));
            throw;
        }
        return VmOpReply.Done(o.Status == PlaceStatus.Placed ? 201 : 200, o.Vm);
    }

    /// <summary>A placement the ledger refused, as the answer of a VM operation (nothing was created on the host).</summary>
    private static VmOpReply Refused(PlaceOutcome o) => o.Status switch
    {
        PlaceStatus.InsufficientMemory => VmOpReply.Fail(409, "insufficient-memory", o.Error!),
        PlaceStatus.InsufficientSpace => VmOpReply.Fail(409, "insufficient-space", o.Error!),
        PlaceStatus.AlreadyExists => VmOpReply.Fail(409, "vm-exists", o.Error!),
        PlaceStatus.UnknownVolume => VmOpReply.Fail(404, "not-found", o.Error!),
        PlaceStatus.NodeUnavailable => VmOpReply.Fail(409, "node-unavailable", o.Error!),
        _ => VmOpReply.Fail(400, "invalid-request", o.Error ?? "invalid"),
    };

    private string Folder(string volume, string name) =>
        _settings.VolumeRoots.TryGetValue(volume, out var root)
            ? Path.Combine(root, CsvLedger.VmFolder(name).Replace('/', Path.DirectorySeparatorChar))
            : throw new HyperVException(HyperVErrorKind.NotFound, $"volume '{volume}' is not configured on {_settings.NodeName}");

    private async Task<T> Ledger<T>(ILedgerRequest request)
    {
        // Ledger writes are idempotent: retried across a leader change for up to a minute.
        var deadline = DateTime.UtcNow.AddMinutes(1);
        while (true)
        {
            try { return await _ledger.AskWithDeadline<T>(request, _settings.LedgerTimeout, _settings.MaxClockSkew); }
            catch (AskTimeoutException) when (DateTime.UtcNow < deadline) { await Task.Delay(500); }
        }
    }

    private static async Task Ignore404(Func<Task> action)
    {
        try { await action(); }
        catch (HyperVException e) when (e.Kind == HyperVErrorKind.NotFound) { }
    }

    private static async Task IgnoreExisting(Func<Task> action)
    {
        try { await action(); }
        catch (HyperVException e) when (e.Kind == HyperVErrorKind.AlreadyExists) { }
    }

    private async Task<VmOpReply> Guard(Func<Task<VmOpReply>> op)
    {
        try { return await op(); }
        catch (Exception e)
        {
            _log.Warning("VM operation failed: {0}", e.Message);
            return Failure(e);
        }
    }

    private static VmOpReply Failure(Exception e) => e switch
    {
        HyperVException { Kind: HyperVErrorKind.NotFound } h => VmOpReply.Fail(404, "not-found", h.Message),
        HyperVException { Kind: HyperVErrorKind.InsufficientResources } h => VmOpReply.Fail(409, "insufficient-memory", h.Message),
        HyperVException { Kind: HyperVErrorKind.AlreadyExists } h => VmOpReply.Fail(409, "vm-exists", h.Message),
        HyperVException { Kind: HyperVErrorKind.InvalidState } h => VmOpReply.Fail(409, "invalid-state", h.Message),
        HyperVException h => VmOpReply.Fail(502, "hypervisor-failed", h.Message),
        OperationRefusedException r => VmOpReply.Fail(r.Status, r.Type, r.Message),
        AskTimeoutException => VmOpReply.Fail(503, "no-leader", "the ledger did not answer"),
        _ => VmOpReply.Fail(502, "operation-failed", e.GetBaseException().Message),
    };
}
