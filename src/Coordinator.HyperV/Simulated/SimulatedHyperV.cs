using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Microsoft.Data.Sqlite;

namespace Coordinator.HyperV.Simulated;

/// <summary>
/// One node of a simulated Hyper-V failover cluster: the node's hypervisor (<see cref="IHyperVHost"/>) and its view of
/// the cluster (<see cref="IFailoverCluster"/>), over the cluster database every node process shares
/// (<see cref="SimulatedClusterDatabase"/>). <see cref="StartAsync"/> joins the cluster and starts the node's share of
/// the cluster service: its heartbeat and the failover scan, which, like WSFC, restarts the groups of a node whose
/// heartbeat stopped on the surviving nodes by itself. Disposing stops the loop without leaving the cluster, which is
/// what a crash looks like to the others.
/// </summary>
public sealed class SimulatedHyperV : IHyperVHost, IFailoverCluster, IAsyncDisposable
{
    /// <summary>The code carried by JobFailed errors (Msvm_ConcreteJob's "Failed").</summary>
    public const long JobFailedCode = 32768;

    /// <summary>How long after its expected end (move delay + failover-after) the cluster service settles a move whose
    /// requester died while the group was Pending.</summary>
    public static readonly TimeSpan AbandonedMoveGrace = TimeSpan.FromSeconds(5);

    private readonly long _memoryMb;
    private readonly int _logicalProcessors;
    private readonly SimulatedHyperVOptions _options;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, bool> _unreachable = new(StringComparer.OrdinalIgnoreCase);
    private readonly CancellationTokenSource _stopping = new();
    private readonly object _gate = new();
    private Task? _loop;
    private bool _disposed;

    public SimulatedHyperV(
        string nodeName, long memoryMb, int logicalProcessors, string databasePath,
        SimulatedHyperVOptions? options = null, TimeProvider? timeProvider = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nodeName);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(memoryMb);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(logicalProcessors);
        NodeName = nodeName;
        _memoryMb = memoryMb;
        _logicalProcessors = logicalProcessors;
        _options = options ?? new SimulatedHyperVOptions();
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(_options.HeartbeatInterval, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(_options.FailoverAfter, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(_options.VcpuOvercommit, 1);
        _time = timeProvider ?? TimeProvider.System;
        foreach (var host in _options.UnreachableHosts)
            _unreachable[host] = true;
        Database = new SimulatedClusterDatabase(databasePath, _time);
    }

    public string NodeName { get; }

    /// <summary>The shared cluster database this node uses (its test hooks act for every node process).</summary>
    public SimulatedClusterDatabase Database { get; }

    /// <summary>The last error of the background loop (the database stayed busy, ...); the loop keeps going.</summary>
    public Exception? LastBackgroundError { get; private set; }

    /// <summary>Joins the cluster (up, fresh heartbeat; a node that rejoins gets no groups back) and starts the heartbeat
    /// and failover loop. Calling it again re-registers and keeps the running loop.</summary>
    public async Task StartAsync(CancellationToken ct = default)
    {
        ThrowIfDisposed();
        await Db(() => Database.RegisterNode(NodeName, _memoryMb, _logicalProcessors), ct).ConfigureAwait(false);
        lock (_gate)
        {
            ThrowIfDisposed();
            _loop ??= StartServiceThread(_stopping.Token);
        }
    }

    /// <summary>One heartbeat and one failover scan, as the background loop does at each interval. Returns the owner
    /// changes this node's scan wrote (empty when there was nothing to fail over, or another node did it). A node that
    /// is not an up member of the cluster (never started, or declared down) only heartbeats: it does not take part.</summary>
    public IReadOnlyList<SimulatedOwnerChange> RunServiceOnce() =>
        Database.Heartbeat(NodeName) ? Database.RunFailoverScan(_options.FailoverAfter, NodeName) : [];

    /// <summary>Makes outside migrations from this node to <paramref name="host"/> fail (or succeed again).</summary>
    public void SetUnreachableHost(string host, bool unreachable)
    {
        if (unreachable)
            _unreachable[host] = true;
        else
            _unreachable.TryRemove(host, out _);
    }

    /// <summary>Stops the heartbeat and failover loop. The node stays registered (up, with a heartbeat that ages): to
    /// the other nodes this is a crash, and they fail its groups over after <see cref="SimulatedHyperVOptions.FailoverAfter"/>.</summary>
    public async ValueTask DisposeAsync()
    {
        Task? loop;
        lock (_gate)
        {
            if (_disposed)
                return;
            _disposed = true;
            loop = _loop;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        if (loop is not null)
        {
            await loop.ConfigureAwait(false); // the thread catches everything
        }

        _stopping.Dispose();
    }

    // ------------------------------------------------------------------ IHyperVHost

    public Task<HostCapacity> GetCapacityAsync(CancellationToken ct) =>
        Task.FromResult(new HostCapacity(NodeName, _memoryMb, _logicalProcessors));

    public Task<IReadOnlyList<VmInfo>> ListVmsAsync(CancellationToken ct) => Db<IReadOnlyList<VmInfo>>(
        () => Database.ListVms(NodeName).Select(ToInfo).ToList(), ct);

    public Task<VmInfo?> GetVmAsync(string name, CancellationToken ct) => Db(() =>
    {
        var vm = Database.GetVm(name);
        return vm is not null && IsHere(vm) ? ToInfo(vm) : null;
    }, ct);

    /// <summary>Creates a sparse simulated VHDX (see <see cref="SimulatedDisks"/>). The folder must exist (NotFound), the
    /// file must not (AlreadyExists, and the file is left as it is), a base must exist (NotFound). Names resolve as on
    /// NTFS (<see cref="NtfsNames"/>): <c>VM1.vhdx</c> is an existing <c>vm1.vhdx</c>. A copy is extended to
    /// <paramref name="sizeBytes"/> when the base is smaller; a differencing disk's virtual size is the larger of the
    /// base's and <paramref name="sizeBytes"/>.</summary>
    public Task CreateDiskAsync(string path, string? basePath, DiskKind kind, long sizeBytes, CancellationToken ct) => Db(() =>
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentOutOfRangeException.ThrowIfNegative(sizeBytes);
        if (basePath is null)
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(sizeBytes);
        var full = Resolve(path);
        var folder = Path.GetDirectoryName(full);
        if (folder is not null && !Directory.Exists(folder))
            throw new HyperVException(HyperVErrorKind.NotFound, $"folder '{folder}' does not exist");
        if (Directory.Exists(full))
            throw new HyperVException(HyperVErrorKind.AlreadyExists, $"'{full}' is a folder");
        if (basePath is not null)
        {
            basePath = Resolve(basePath);
            if (!File.Exists(basePath))
                throw new HyperVException(HyperVErrorKind.NotFound, $"base image '{basePath}' does not exist");
        }

        FileStream stream;
        try
        {
            stream = new FileStream(full, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        }
        catch (IOException e) when (File.Exists(full))
        {
            throw new HyperVException(HyperVErrorKind.AlreadyExists, $"disk '{full}' already exists", inner: e);
        }
        catch (IOException e)
        {
            throw new HyperVException(HyperVErrorKind.Failed, $"cannot create disk '{full}': {e.Message}", inner: e);
        }

        try
        {
            using (stream)
            {
                if (basePath is null)
                    SimulatedDisks.WriteEmpty(stream, sizeBytes);
                else if (kind == DiskKind.Differencing)
                    SimulatedDisks.WriteDifferencing(stream, basePath, sizeBytes);
                else
                    SimulatedDisks.WriteSparseCopy(basePath, stream, sizeBytes);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(full);
            throw new HyperVException(HyperVErrorKind.Failed, $"cannot create disk '{full}': {e.Message}", inner: e);
        }
    }, ct);

    /// <summary>Deletes the disk file; a missing file is fine. Refused (InvalidState) while a running VM uses it, as
    /// Windows refuses to delete an open file.</summary>
    public Task DeleteDiskAsync(string path, CancellationToken ct) => Db(() =>
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var full = Resolve(path);
        var user = Database.ListVms().FirstOrDefault(v =>
            v.State != VmPowerState.Off && v.DiskPath is not null && PathsEqual(v.DiskPath, full));
        if (user is not null)
            throw new HyperVException(HyperVErrorKind.InvalidState, $"disk '{full}' is in use by VM '{user.Name}' ({user.State})");
        try
        {
            File.Delete(full); // no error when the file does not exist
        }
        catch (DirectoryNotFoundException)
        {
        }
        catch (IOException e)
        {
            throw new HyperVException(HyperVErrorKind.Failed, $"cannot delete disk '{full}': {e.Message}", inner: e);
        }
    }, ct);

    /// <summary>See <see cref="IHyperVHost.CreateFolderAsync"/>. <c>instances/VM1</c> is an existing
    /// <c>instances/vm1</c> here too, as on NTFS.</summary>
    public Task<bool> CreateFolderAsync(string path, CancellationToken ct) => Db(() =>
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var full = Resolve(path);
        if (File.Exists(full))
            throw new HyperVException(HyperVErrorKind.AlreadyExists, $"'{full}' is a file");
        if (Directory.Exists(full))
        {
            return HoldsFiles(full)
                ? throw new HyperVException(HyperVErrorKind.AlreadyExists, $"folder '{full}' already exists and holds files")
                : false;
        }

        try
        {
            Directory.CreateDirectory(full);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HyperVException(HyperVErrorKind.Failed, $"cannot create folder '{full}': {e.Message}", inner: e);
        }
    }, ct);

    public Task<bool> RemoveEmptyFolderAsync(string path, CancellationToken ct) => Db(() =>
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var full = Resolve(path);
        if (!Directory.Exists(full))
            return true;
        if (HoldsFiles(full))
            return false;
        try
        {
            Directory.Delete(full, recursive: true); // empty subfolders only
            return true;
        }
        catch (DirectoryNotFoundException)
        {
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HyperVException(HyperVErrorKind.Failed, $"cannot remove folder '{full}': {e.Message}", inner: e);
        }
    }, ct);

    public Task DeleteFolderAsync(string path, CancellationToken ct) => Db(() =>
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var full = Resolve(path);
        try
        {
            if (Directory.Exists(full))
                Directory.Delete(full, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new HyperVException(HyperVErrorKind.Failed, $"cannot delete folder '{full}': {e.Message}", inner: e);
        }
    }, ct);

    public Task DefineVmAsync(VmDefinition definition, CancellationToken ct) => Db(() =>
    {
        ArgumentNullException.ThrowIfNull(definition);
        ArgumentException.ThrowIfNullOrWhiteSpace(definition.Name);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(definition.MemoryMb);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(definition.Vcpus);
        ArgumentException.ThrowIfNullOrWhiteSpace(definition.DiskPath);
        var disk = Resolve(definition.DiskPath);
        if (!File.Exists(disk))
            throw new HyperVException(HyperVErrorKind.NotFound, $"disk '{disk}' does not exist");
        Database.Write(c =>
        {
            if (SimulatedClusterDatabase.GetVm(c, definition.Name) is { } existing)
                throw new HyperVException(HyperVErrorKind.AlreadyExists, $"VM '{definition.Name}' already exists (on {existing.HostNode})");
            var (memory, vcpus) = Usage(c, NodeName);
            if (memory + definition.MemoryMb > _memoryMb)
                throw new HyperVException(HyperVErrorKind.InsufficientResources,
                    $"VM '{definition.Name}' needs {definition.MemoryMb} MiB; {NodeName} has {_memoryMb - memory} MiB left of {_memoryMb}");
            var maxVcpus = (long)_logicalProcessors * _options.VcpuOvercommit;
            if (vcpus + definition.Vcpus > maxVcpus)
                throw new HyperVException(HyperVErrorKind.InsufficientResources,
                    $"VM '{definition.Name}' needs {definition.Vcpus} vCPUs; {NodeName} has {maxVcpus - vcpus} left of {maxVcpus}");
            SimulatedClusterDatabase.Exec(c, """
                INSERT INTO vms(name, host_node, state, memory_mb, vcpus, disk_path, clustered)
                VALUES(@n, @h, 'Off', @m, @c, @d, 0)
                """, ("@n", definition.Name), ("@h", NodeName), ("@m", definition.MemoryMb), ("@c", definition.Vcpus), ("@d", disk));
            return 0;
        });
    }, ct);

    /// <summary>Off or Saved → Running; already Running is success (like 32775). A clustered VM's group follows
    /// (Online), as the cluster notices when a VM is started through Hyper-V; refused (InvalidState) while the role is
    /// moving.</summary>
    public Task StartVmAsync(string name, CancellationToken ct) => Db(() => Database.Write(c =>
    {
        var vm = RequireHere(c, name);
        if (vm.State == VmPowerState.Running)
            return 0;
        SimulatedClusterDatabase.SetVmState(c, vm.Name, VmPowerState.Running);
        SyncGroup(c, vm, GroupState.Online);
        return 0;
    }), ct);

    /// <summary>→ Off; already Off is success. A clustered VM's group follows (Offline); refused (InvalidState) while the
    /// role is moving.</summary>
    public Task StopVmAsync(string name, CancellationToken ct) => Db(() => Database.Write(c =>
    {
        var vm = RequireHere(c, name);
        if (vm.State == VmPowerState.Off)
            return 0;
        SimulatedClusterDatabase.SetVmState(c, vm.Name, VmPowerState.Off);
        SyncGroup(c, vm, GroupState.Offline);
        return 0;
    }), ct);

    /// <summary>Removes the VM's definition, whatever its power state. Refused (InvalidState) while the VM is a clustered
    /// role: WSFC itself would let Hyper-V delete it and leave a broken role behind, the simulator insists that the role
    /// is removed first so that such a leak shows up in tests.</summary>
    public Task DestroyVmAsync(string name, CancellationToken ct) => Db(() => Database.Write(c =>
    {
        var vm = RequireHere(c, name);
        if (vm.Clustered)
            throw new HyperVException(HyperVErrorKind.InvalidState, $"VM '{vm.Name}' is a clustered role: remove the role first");
        SimulatedClusterDatabase.Exec(c, "DELETE FROM vms WHERE name = @n", ("@n", vm.Name));
        return 0;
    }), ct);

    /// <summary>
    /// Live migration outside the cluster. Refused (InvalidState) for clustered VMs (move the role instead). An
    /// unreachable destination (options, <see cref="SetUnreachableHost"/> or the database) fails with JobFailed and
    /// leaves everything as it was. Otherwise the VM leaves this host: to the destination's row when the destination is a
    /// node of the simulated cluster, out of the simulation when it is not. With <paramref name="includeStorage"/> the
    /// disk file moves into the folder <paramref name="destinationPath"/> (created if needed), keeping its name.
    /// </summary>
    public Task MigrateToHostAsync(string name, string destinationHost, bool includeStorage, string? destinationPath, CancellationToken ct) => Db(() =>
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(destinationHost);
        if (string.Equals(destinationHost, NodeName, StringComparison.OrdinalIgnoreCase))
            throw new HyperVException(HyperVErrorKind.InvalidState, $"VM '{name}' is already on {NodeName}");
        if (includeStorage && string.IsNullOrWhiteSpace(destinationPath))
            throw new HyperVException(HyperVErrorKind.InvalidState, "a migration with storage needs a destination path");
        Database.Write(c =>
        {
            var vm = RequireHere(c, name);
            if (vm.Clustered)
                throw new HyperVException(HyperVErrorKind.InvalidState, $"VM '{vm.Name}' is a clustered role: move the role instead");
            if (_unreachable.ContainsKey(destinationHost)
                || SimulatedClusterDatabase.Scalar(c, "SELECT COUNT(*) FROM unreachable_hosts WHERE host = @h", ("@h", destinationHost)) > 0)
                throw new HyperVException(HyperVErrorKind.JobFailed, "migration failed: destination unreachable", JobFailedCode);

            var disk = vm.DiskPath;
            if (includeStorage && disk is not null)
            {
                var folder = Resolve(destinationPath!);
                var moved = Resolve(Path.Combine(folder, Path.GetFileName(disk)));
                if (!PathsEqual(moved, disk))
                {
                    if (File.Exists(moved))
                        throw new HyperVException(HyperVErrorKind.AlreadyExists, $"'{moved}' already exists at the destination");
                    try
                    {
                        Directory.CreateDirectory(folder);
                        if (File.Exists(disk))
                            File.Move(disk, moved);
                    }
                    catch (IOException e)
                    {
                        throw new HyperVException(HyperVErrorKind.JobFailed, $"migration failed: cannot move '{disk}': {e.Message}", JobFailedCode, e);
                    }

                    disk = moved;
                }
            }

            // The file (if moved) is committed on disk before the row: if the commit failed the VM would still be here
            // with a disk path that no longer exists, as after a half-failed storage migration.
            if (SimulatedClusterDatabase.GetNode(c, destinationHost) is not null)
                SimulatedClusterDatabase.Exec(c, "UPDATE vms SET host_node = @h, disk_path = @d WHERE name = @n",
                    ("@h", destinationHost), ("@d", disk), ("@n", vm.Name));
            else
                SimulatedClusterDatabase.Exec(c, "DELETE FROM vms WHERE name = @n", ("@n", vm.Name));
            return 0;
        });
    }, ct);

    // ------------------------------------------------------------------ IFailoverCluster

    public Task<IReadOnlyList<string>> ListNodesAsync(CancellationToken ct) => Db<IReadOnlyList<string>>(
        () => Database.ListNodes().Select(n => n.Name).ToList(), ct);

    /// <summary>Makes the VM (which must live on this node, a registered node) a clustered role owned by this node. The
    /// group is Online when the VM runs, Offline when it does not (as WSFC reports it); one owner change is logged.</summary>
    public Task AddVmRoleAsync(string vmName, CancellationToken ct) => Db(() => Database.Write(c =>
    {
        var vm = RequireHere(c, vmName);
        if (vm.Clustered || SimulatedClusterDatabase.GetGroup(c, vm.Name) is not null)
            throw new HyperVException(HyperVErrorKind.AlreadyExists, $"VM '{vm.Name}' is already a clustered role");
        if (SimulatedClusterDatabase.GetNode(c, NodeName) is not { Up: true })
            throw new HyperVException(HyperVErrorKind.InvalidState, $"{NodeName} is not an up node of the cluster (call StartAsync)");
        var state = vm.State == VmPowerState.Running ? GroupState.Online : GroupState.Offline;
        SimulatedClusterDatabase.Exec(c, "INSERT INTO cluster_groups(vm, owner_node, state) VALUES(@v, @o, @s)",
            ("@v", vm.Name), ("@o", NodeName), ("@s", state.ToString()));
        SimulatedClusterDatabase.Exec(c, "UPDATE vms SET clustered = 1 WHERE name = @v", ("@v", vm.Name));
        Database.LogChange(c, vm.Name, NodeName, state, NodeName);
        return 0;
    }), ct);

    /// <summary>Removes the VM's group (from any node); the VM stays, unclustered, on its current host. NotFound when the
    /// VM has no role (as Remove-ClusterGroup).</summary>
    public Task RemoveVmRoleAsync(string vmName, CancellationToken ct) => Db(() => Database.Write(c =>
    {
        var group = SimulatedClusterDatabase.GetGroup(c, vmName)
            ?? throw new HyperVException(HyperVErrorKind.NotFound, $"no cluster role for VM '{vmName}'");
        if (group.State == GroupState.Pending)
            throw new HyperVException(HyperVErrorKind.InvalidState, $"the role of VM '{vmName}' is moving");
        SimulatedClusterDatabase.Exec(c, "DELETE FROM cluster_groups WHERE vm = @v", ("@v", group.VmName));
        SimulatedClusterDatabase.Exec(c, "UPDATE vms SET clustered = 0 WHERE name = @v", ("@v", group.VmName));
        return 0;
    }), ct);

    /// <summary>
    /// Moves the role (from any node). The target must be a known (NotFound), up (InvalidState) node with the VM's memory
    /// free (InsufficientResources); a role that is already moving or Failed is refused (InvalidState); a role already
    /// on the target is success. The group is Pending on its source for <see cref="SimulatedHyperVOptions.MoveDelay"/>
    /// (a live move keeps the VM Running, a quick one has it Saved meanwhile), then Online on the target with the VM
    /// there in its former power state; the disk does not move (it is on the CSV). An injected failure
    /// (<see cref="SimulatedClusterDatabase.FailNextMoves"/>) or a target that went away returns the role to its source
    /// and throws JobFailed; the timeout (or cancellation) does the same and throws Timeout (or OperationCanceled).
    /// </summary>
    public async Task MoveVmRoleAsync(string vmName, string targetNode, ClusterMoveKind kind, TimeSpan timeout, CancellationToken ct)
    {
        ThrowIfDisposed();
        ArgumentException.ThrowIfNullOrWhiteSpace(targetNode);
        if (timeout != Timeout.InfiniteTimeSpan)
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero);
        var move = await Db(() => Database.Write(c =>
        {
            var group = SimulatedClusterDatabase.GetGroup(c, vmName)
                ?? throw new HyperVException(HyperVErrorKind.NotFound, $"no cluster role for VM '{vmName}'");
            if (group.State is GroupState.Pending or GroupState.Failed)
                throw new HyperVException(HyperVErrorKind.InvalidState, $"the role of VM '{vmName}' is {group.State}");
            var vm = SimulatedClusterDatabase.GetVm(c, group.VmName)
                ?? throw new HyperVException(HyperVErrorKind.NotFound, $"VM '{vmName}' does not exist");
            var target = SimulatedClusterDatabase.GetNode(c, targetNode)
                ?? throw new HyperVException(HyperVErrorKind.NotFound, $"'{targetNode}' is not a node of the cluster");
            if (string.Equals(target.Name, group.OwnerNode, StringComparison.OrdinalIgnoreCase))
                return (Move?)null;
            CheckTarget(c, target, vm);
            // If this process dies before completing the move, the cluster service settles the group after this deadline
            // (generous: a slow but living requester must not lose its move to it).
            var deadline = Database.NowMs() + (long)(_options.MoveDelay + _options.FailoverAfter + AbandonedMoveGrace).TotalMilliseconds;
            SimulatedClusterDatabase.SetGroupState(c, group.VmName, GroupState.Pending, deadline);
            if (kind == ClusterMoveKind.Quick && vm.State == VmPowerState.Running)
                SimulatedClusterDatabase.SetVmState(c, vm.Name, VmPowerState.Saved);
            Database.LogChange(c, group.VmName, group.OwnerNode, GroupState.Pending, NodeName);
            return new Move(group.VmName, group.OwnerNode, target.Name, group.State, vm.State);
        }), ct).ConfigureAwait(false);
        if (move is null)
            return;

        using var timeoutCts = new CancellationTokenSource(timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, timeoutCts.Token);
        try
        {
            await Task.Delay(_options.MoveDelay, _time, linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            await Db(() => Database.Write(c => ReturnToSource(c, move)), CancellationToken.None, checkDisposed: false).ConfigureAwait(false);
            ct.ThrowIfCancellationRequested();
            throw new HyperVException(HyperVErrorKind.Timeout, $"moving the role of VM '{move.Vm}' to {move.Target} timed out after {timeout}");
        }

        var failure = await Db(() => Database.Write(c =>
        {
            if (SimulatedClusterDatabase.GetGroup(c, move.Vm) is not { State: GroupState.Pending } now
                || !string.Equals(now.OwnerNode, move.Source, StringComparison.OrdinalIgnoreCase))
                return $"the role of VM '{move.Vm}' changed while it was moving";
            if (SimulatedClusterDatabase.TakeMoveFault(c, move.Vm))
                return ReturnToSource(c, move) + "simulated move failure";
            var vm = SimulatedClusterDatabase.GetVm(c, move.Vm);
            var target = SimulatedClusterDatabase.GetNode(c, move.Target);
            if (vm is null || target is null)
                return ReturnToSource(c, move) + "the VM or the target vanished";
            try
            {
                CheckTarget(c, target, vm);
            }
            catch (HyperVException e)
            {
                return ReturnToSource(c, move) + e.Message;
            }

            SimulatedClusterDatabase.SetOwner(c, move.Vm, move.Target, move.GroupState);
            SimulatedClusterDatabase.SetVmState(c, move.Vm, move.VmState);
            Database.LogChange(c, move.Vm, move.Target, move.GroupState, NodeName);
            return null;
        }), CancellationToken.None, checkDisposed: false).ConfigureAwait(false);
        if (failure is not null)
            throw new HyperVException(HyperVErrorKind.JobFailed, $"moving the role of VM '{move.Vm}' to {move.Target} failed: {failure}", JobFailedCode);
    }

    public Task<IReadOnlyList<GroupOwner>> ListVmRolesAsync(CancellationToken ct) => Db(Database.ListGroups, ct);

    /// <summary>Every owner change logged after the moment of this call, in order, polled every
    /// <see cref="SimulatedHyperVOptions.WatchPollInterval"/>, until <paramref name="ct"/> is cancelled
    /// (OperationCanceledException).</summary>
    public IAsyncEnumerable<OwnerChange> WatchOwnerChangesAsync(CancellationToken ct)
    {
        ThrowIfDisposed();
        long from;
        try
        {
            from = Database.LastOwnerChangeSeq();
        }
        catch (SqliteException e)
        {
            throw new HyperVException(HyperVErrorKind.Failed, $"simulated cluster database: {e.Message}", e.SqliteErrorCode, e);
        }

        return Watch(from);

        async IAsyncEnumerable<OwnerChange> Watch(long after, [EnumeratorCancellation] CancellationToken enumeratorCt = default)
        {
            using var both = CancellationTokenSource.CreateLinkedTokenSource(ct, enumeratorCt);
            await foreach (var row in Database.TailOwnerChangesAsync(after, _options.WatchPollInterval, both.Token).ConfigureAwait(false))
                yield return row.ToOwnerChange();
        }
    }

    // ------------------------------------------------------------------ internals

    private sealed record Move(string Vm, string Source, string Target, GroupState GroupState, VmPowerState VmState);

    /// <summary>The move is over and failed: the group is back in its former state on its source, the VM in its former
    /// power state; logged. Returns "" so that callers can append the reason.</summary>
    private string ReturnToSource(SqliteConnection c, Move move)
    {
        if (SimulatedClusterDatabase.GetGroup(c, move.Vm) is { State: GroupState.Pending } now
            && string.Equals(now.OwnerNode, move.Source, StringComparison.OrdinalIgnoreCase))
        {
            SimulatedClusterDatabase.SetGroupState(c, move.Vm, move.GroupState);
            SimulatedClusterDatabase.SetVmState(c, move.Vm, move.VmState);
            Database.LogChange(c, move.Vm, move.Source, move.GroupState, NodeName);
        }

        return "";
    }

    private static void CheckTarget(SqliteConnection c, SimulatedNode target, SimulatedVm vm)
    {
        if (!target.Up)
            throw new HyperVException(HyperVErrorKind.InvalidState, $"node {target.Name} is down");
        var free = SimulatedClusterDatabase.FreeMemoryMb(c, target.Name);
        if (free < vm.MemoryMb)
            throw new HyperVException(HyperVErrorKind.InsufficientResources,
                $"VM '{vm.Name}' needs {vm.MemoryMb} MiB; {target.Name} has {free} MiB free");
    }

    /// <summary>A clustered VM's group follows its VM's power: logged when the state changes.</summary>
    private void SyncGroup(SqliteConnection c, SimulatedVm vm, GroupState state)
    {
        if (!vm.Clustered || SimulatedClusterDatabase.GetGroup(c, vm.Name) is not { } group || group.State == state)
            return;
        if (group.State == GroupState.Pending)
            throw new HyperVException(HyperVErrorKind.InvalidState, $"the role of VM '{vm.Name}' is moving");
        SimulatedClusterDatabase.SetGroupState(c, vm.Name, state);
        Database.LogChange(c, vm.Name, group.OwnerNode, state, NodeName);
    }

    private SimulatedVm RequireHere(SqliteConnection c, string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        var vm = SimulatedClusterDatabase.GetVm(c, name);
        return vm is not null && IsHere(vm)
            ? vm
            : throw new HyperVException(HyperVErrorKind.NotFound, $"VM '{name}' does not exist on {NodeName}");
    }

    private bool IsHere(SimulatedVm vm) => string.Equals(vm.HostNode, NodeName, StringComparison.OrdinalIgnoreCase);

    private static (long MemoryMb, long Vcpus) Usage(SqliteConnection c, string node) =>
        SimulatedClusterDatabase.Query(c, "SELECT COALESCE(SUM(memory_mb), 0), COALESCE(SUM(vcpus), 0) FROM vms WHERE host_node = @h",
            r => (r.GetInt64(0), r.GetInt64(1)), ("@h", node))[0];

    private static VmInfo ToInfo(SimulatedVm vm) => new(vm.Name, vm.State, vm.MemoryMb, vm.Vcpus, vm.DiskPath);

    /// <summary>Paths compare as on NTFS, whatever the file system under the simulator.</summary>
    private static bool PathsEqual(string a, string b) => NtfsNames.SamePath(Path.GetFullPath(a), Path.GetFullPath(b));

    /// <summary>The file or folder NTFS would open for <paramref name="path"/> (see <see cref="NtfsNames.ResolveOnDisk"/>).</summary>
    private static string Resolve(string path)
    {
        try
        {
            return NtfsNames.ResolveOnDisk(path);
        }
        catch (ArgumentException e)
        {
            throw new HyperVException(HyperVErrorKind.Failed, e.Message, inner: e);
        }
    }

    private static bool HoldsFiles(string folder) =>
        new DirectoryInfo(folder).EnumerateFiles("*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }).Any();

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    /// <summary>The node's share of the cluster service runs on a thread of its own, as the real cluster service is a
    /// process of its own: a busy thread pool in the product (or several simulated nodes in one test process) must not
    /// delay heartbeats into a false failover.</summary>
    private Task StartServiceThread(CancellationToken ct)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                RunService(ct);
            }
            finally
            {
                done.SetResult();
            }
        })
        {
            IsBackground = true,
            Name = $"simulated cluster service ({NodeName})",
        };
        thread.Start();
        return done.Task;
    }

    private void RunService(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                RunServiceOnce();
            }
            catch (Exception e)
            {
                LastBackgroundError = e; // a thread of its own: nothing may escape it
            }

            if (ReferenceEquals(_time, TimeProvider.System))
            {
                ct.WaitHandle.WaitOne(_options.HeartbeatInterval); // no timer callback through the thread pool
            }
            else
            {
                try
                {
                    Task.Delay(_options.HeartbeatInterval, _time, ct).Wait(ct);
                }
                catch (Exception e) when (e is OperationCanceledException or AggregateException)
                {
                }
            }
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    private Task Db(Action body, CancellationToken ct) => Db(() =>
    {
        body();
        return 0;
    }, ct);

    /// <summary>Runs a database operation off the caller's thread (SQLite is synchronous and may wait for the lock);
    /// SQLite errors become HyperVException(Failed).</summary>
    private Task<T> Db<T>(Func<T> body, CancellationToken ct, bool checkDisposed = true)
    {
        if (checkDisposed)
            ThrowIfDisposed();
        return Task.Run(() =>
        {
            try
            {
                return body();
            }
            catch (SqliteException e)
            {
                throw new HyperVException(HyperVErrorKind.Failed, $"simulated cluster database: {e.Message}", e.SqliteErrorCode, e);
            }
        }, ct);
    }
}
