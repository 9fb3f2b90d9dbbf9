using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace Coordinator.HyperV.Windows;

public sealed record WindowsFailoverClusterOptions
{
    /// <summary>MSCluster_ResourceGroup.FailoverThreshold: failovers allowed within <see cref="FailoverPeriodHours"/>
    /// (os-win's max_failover_count default).</summary>
    public uint FailoverThreshold { get; init; } = 1;

    /// <summary>MSCluster_ResourceGroup.FailoverPeriod, in hours (os-win default 6).</summary>
    public uint FailoverPeriodHours { get; init; } = 6;

    /// <summary>AutoFailbackType 1 (allow failback) or 0 (os-win default: allowed).</summary>
    public bool AutoFailback { get; init; } = true;

    /// <summary>FailbackWindowStart/End, hours of the day (os-win: 0 and 23, i.e. any time).</summary>
    public int FailbackWindowStart { get; init; }

    public int FailbackWindowEnd { get; init; } = 23;

    /// <summary>PersistentState (os-win sets it): the group comes back in its last state after a cluster restart.</summary>
    public bool PersistentState { get; init; } = true;

    /// <summary>How often a move re-reads the group's state even without notifications.</summary>
    public TimeSpan MovePollInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Bounded wait of each GetClusterNotifyV2 call (how fast a pump notices it must stop).</summary>
    public uint NotifyWaitMilliseconds { get; init; } = 500;

    /// <summary>Null: the cluster of the local node.</summary>
    public string? ClusterName { get; init; }
}

/// <summary>
/// <see cref="IFailoverCluster"/> on WSFC. Role management and listings go through WMI (root/MSCluster, as os-win's
/// clusterutils); moves and owner notifications through clusapi.dll (<see cref="IClusApi"/>): WMI's
/// MoveToNewNodeParams left groups stuck Pending on Windows Server 2016, and WMI owner-change events were missed under
/// load, which is why os-win moved those two to clusapi.
/// </summary>
public sealed class WindowsFailoverCluster : IFailoverCluster
{
    private const string Ns = CimNames.Cluster;

    /// <summary>MSCluster_ResourceGroup.DestroyGroup's Options: 1 (None) destroys the group and keeps the VM, as
    /// os-win's delete (os-win sticks to WMI there: clusapi's DestroyClusterGroup re-created VMs asynchronously).</summary>
    public const uint DestroyGroupKeepVm = 1;

    /// <summary>os-win's move flags: queue the move, start it with high priority, and return the group to its source
    /// node when it fails.</summary>
    public const uint MoveFlags = ClusApiConstants.MoveReturnToSourceNodeOnError | ClusApiConstants.MoveQueueEnabled
        | ClusApiConstants.MoveHighPriorityStart;

    /// <summary>What a move listens to (os-win's _ClusterGroupStateChangeListener, plus owner changes).</summary>
    public static readonly IReadOnlyList<NotifyFilter> MoveFilters =
    [
        new(ClusApiConstants.ObjectTypeGroup, ClusApiConstants.GroupStateV2),
        new(ClusApiConstants.ObjectTypeGroup, ClusApiConstants.GroupCommonPropertyV2),
        new(ClusApiConstants.ObjectTypeGroup, ClusApiConstants.GroupOwnerNodeV2),
    ];

    /// <summary>What the owner watch listens to (os-win's _ClusterGroupOwnerChangeListener, plus state changes).</summary>
    public static readonly IReadOnlyList<NotifyFilter> WatchFilters =
    [
        new(ClusApiConstants.ObjectTypeGroup, ClusApiConstants.GroupOwnerNodeV2),
        new(ClusApiConstants.ObjectTypeGroup, ClusApiConstants.GroupStateV2),
    ];

    private readonly ICimGateway _cim;
    private readonly IClusApi _api;
    private readonly WindowsFailoverClusterOptions _options;
    private readonly IHyperVClock _clock;

    public WindowsFailoverCluster(ICimGateway cim, IClusApi clusApi, WindowsFailoverClusterOptions? options = null, IHyperVClock? clock = null)
    {
        ArgumentNullException.ThrowIfNull(cim);
        ArgumentNullException.ThrowIfNull(clusApi);
        _cim = cim;
        _api = clusApi;
        _options = options ?? new WindowsFailoverClusterOptions();
        _clock = clock ?? SystemHyperVClock.Instance;
    }

    // ------------------------------------------------------------------ WMI: roles and listings

    public async Task<IReadOnlyList<string>> ListNodesAsync(CancellationToken ct)
    {
        var nodes = await _cim.QueryAsync(Ns, "SELECT * FROM MSCluster_Node", ct).ConfigureAwait(false);
        return nodes.Select(n => n.GetString("Name") ?? "").Where(n => n.Length > 0).OrderBy(n => n, StringComparer.OrdinalIgnoreCase).ToList();
    }

    /// <summary>MSCluster_Cluster.AddVirtualMachine, then the failover policy written into the new
    /// MSCluster_ResourceGroup (named after the VM), as os-win's add_vm_to_cluster. AlreadyExists when the VM has a role.</summary>
    public async Task AddVmRoleAsync(string vmName, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(vmName);
        if (await FindGroupAsync(vmName, ct).ConfigureAwait(false) is not null)
            throw new HyperVException(HyperVErrorKind.AlreadyExists, $"VM '{vmName}' is already a clustered role");
        var cluster = (await _cim.QueryAsync(Ns, "SELECT * FROM MSCluster_Cluster", ct).ConfigureAwait(false)).FirstOrDefault()
            ?? throw new HyperVException(HyperVErrorKind.PlatformUnsupported, "no MSCluster_Cluster: is this node in a failover cluster?");
        var added = await _cim.InvokeMethodAsync(Ns, cluster.Path, "AddVirtualMachine", new Dictionary<string, object?>
        {
            ["VirtualMachine"] = vmName,
        }, ct).ConfigureAwait(false);
        if (added.ReturnValue != 0)
            throw new HyperVException(HyperVErrorKind.Failed, $"MSCluster_Cluster.AddVirtualMachine({vmName}) returned {added.ReturnValue}", added.ReturnValue);

        var group = await FindGroupAsync(vmName, ct).ConfigureAwait(false)
            ?? throw new HyperVException(HyperVErrorKind.Failed, $"AddVirtualMachine({vmName}) made no MSCluster_ResourceGroup of that name");
        await _cim.ModifyInstanceAsync(Ns, group.Path, new Dictionary<string, object?>
        {
            ["FailoverThreshold"] = _options.FailoverThreshold,
            ["FailoverPeriod"] = _options.FailoverPeriodHours,
            ["PersistentState"] = _options.PersistentState,
            ["AutoFailbackType"] = _options.AutoFailback ? 1u : 0u,
            ["FailbackWindowStart"] = _options.FailbackWindowStart,
            ["FailbackWindowEnd"] = _options.FailbackWindowEnd,
        }, ct).ConfigureAwait(false);
    }

    /// <summary>MSCluster_ResourceGroup.DestroyGroup(Options = 1): the role goes, the VM stays. NotFound without a role,
    /// InvalidState while the group is Pending (moving).</summary>
    public async Task RemoveVmRoleAsync(string vmName, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(vmName);
        var group = await FindGroupAsync(vmName, ct).ConfigureAwait(false)
            ?? throw new HyperVException(HyperVErrorKind.NotFound, $"no cluster role for VM '{vmName}'");
        if (MapState(group.GetUInt64("State")) == GroupState.Pending)
            throw new HyperVException(HyperVErrorKind.InvalidState, $"the role of VM '{vmName}' is moving");
        var result = await _cim.InvokeMethodAsync(Ns, group.Path, "DestroyGroup", new Dictionary<string, object?>
        {
            ["Options"] = DestroyGroupKeepVm,
        }, ct).ConfigureAwait(false);
        if (result.ReturnValue != 0)
            throw new HyperVException(HyperVErrorKind.Failed, $"MSCluster_ResourceGroup.DestroyGroup({vmName}) returned {result.ReturnValue}", result.ReturnValue);
    }

    /// <summary>MSCluster_ResourceGroup with GroupType 111 (ClusGroupTypeVirtualMachine).</summary>
    public async Task<IReadOnlyList<GroupOwner>> ListVmRolesAsync(CancellationToken ct)
    {
        var groups = await _cim.QueryAsync(Ns,
            $"SELECT * FROM MSCluster_ResourceGroup WHERE GroupType = {ClusApiConstants.GroupTypeVirtualMachine.ToString(CultureInfo.InvariantCulture)}", ct)
            .ConfigureAwait(false);
        return groups
            .Select(g => new GroupOwner(g.GetString("Name") ?? "", g.GetString("OwnerNode") ?? "", MapState(g.GetUInt64("State"))))
            .OrderBy(g => g.VmName, StringComparer.OrdinalIgnoreCase)
            .ToList();
    }

    /// <summary>MSCluster_ResourceGroup.State: 0 Online, 1 Offline, 2 Failed, 3 PartialOnline, 4 Pending, else Unknown.</summary>
    public static GroupState MapState(ulong? state) => state switch
    {
        0 => GroupState.Online,
        1 => GroupState.Offline,
        2 => GroupState.Failed,
        3 => GroupState.PartialOnline,
        4 => GroupState.Pending,
        _ => GroupState.Unknown,
    };

    public static GroupState MapState(ClusterGroupStateCode state) => state switch
    {
        ClusterGroupStateCode.Online => GroupState.Online,
        ClusterGroupStateCode.Offline => GroupState.Offline,
        ClusterGroupStateCode.Failed => GroupState.Failed,
        ClusterGroupStateCode.PartialOnline => GroupState.PartialOnline,
        ClusterGroupStateCode.Pending => GroupState.Pending,
        _ => GroupState.Unknown,
    };

    private async Task<CimRecord?> FindGroupAsync(string vmName, CancellationToken ct)
    {
        var found = await _cim.QueryAsync(Ns, $"SELECT * FROM MSCluster_ResourceGroup WHERE Name = {Wql.Quote(vmName)}", ct).ConfigureAwait(false);
        return found.Count switch
        {
            0 => null,
            1 => found[0],
            _ => throw new HyperVException(HyperVErrorKind.Failed, $"duplicate cluster group name '{vmName}'"),
        };
    }

    // ------------------------------------------------------------------ clusapi: moves

    /// <summary>
    /// MoveClusterGroupEx with os-win's flags and property list (<see cref="ClusPropList.ForVmMove"/>), then a wait for
    /// the group to be Online on the target and no longer queued for a move (CLUSGRP_STATUS_WAITING_IN_QUEUE_FOR_MOVE
    /// in StatusInformation), re-reading its state on every notification from a port opened before the move (and every
    /// <see cref="WindowsFailoverClusterOptions.MovePollInterval"/>). Already on the target: success without a move.
    /// Pending or Failed before: InvalidState. Online elsewhere after the move started (the cluster returned it to its
    /// source) or Failed: JobFailed. Timeout: CancelClusterGroupOperation, then Timeout unless the group made it after
    /// all. Cancellation: CancelClusterGroupOperation, then OperationCanceledException.
    /// </summary>
    public async Task MoveVmRoleAsync(string vmName, string targetNode, ClusterMoveKind kind, TimeSpan timeout, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(vmName);
        ArgumentException.ThrowIfNullOrWhiteSpace(targetNode);
        if (timeout != Timeout.InfiniteTimeSpan)
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero);
        ct.ThrowIfCancellationRequested();

        using var cluster = _api.OpenCluster(_options.ClusterName);
        using var group = OpenGroup(cluster, vmName);
        var before = _api.GetClusterGroupState(group);
        if (SameNode(before.OwnerNode, targetNode))
            return;
        if (before.State is ClusterGroupStateCode.Pending or ClusterGroupStateCode.Failed)
            throw new HyperVException(HyperVErrorKind.InvalidState, $"the role of VM '{vmName}' is {MapState(before.State)}");
        using var node = OpenNode(cluster, targetNode);
        await using var pump = new ClusterNotificationPump<ClusterNotification>(_api, cluster, MoveFilters,
            n => string.Equals(n.ObjectName, vmName, StringComparison.OrdinalIgnoreCase) ? n : null, _options.NotifyWaitMilliseconds);

        var operation = $"moving the role of VM '{vmName}' to {targetNode}";
        var rc = _api.MoveClusterGroupEx(group, node, MoveFlags, ClusPropList.ForVmMove(kind));
        if (rc != ClusApiConstants.ErrorSuccess && rc != ClusApiConstants.ErrorIoPending)
            throw ClusErrors.ToException($"MoveClusterGroupEx ({operation})", rc);

        try
        {
            await WaitForMoveAsync(operation, group, targetNode, pump, started: rc == ClusApiConstants.ErrorSuccess, timeout, ct).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            TryCancel(group);
            throw;
        }
    }

    private async Task WaitForMoveAsync(
        string operation, GroupHandle group, string targetNode, ClusterNotificationPump<ClusterNotification> pump, bool started,
        TimeSpan timeout, CancellationToken ct)
    {
        var deadline = timeout == Timeout.InfiniteTimeSpan ? DateTimeOffset.MaxValue : _clock.UtcNow + timeout;
        var moved = started; // seen to leave its initial Online state (or done synchronously)
        Task<bool>? next = null;
        var pumpAlive = true;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            while (pump.Reader.TryRead(out var n))
            {
                if (n.FilterFlags is ClusApiConstants.GroupStateV2 or ClusApiConstants.GroupOwnerNodeV2)
                    moved = true;
                else if (n.FilterFlags == ClusApiConstants.GroupCommonPropertyV2 && IsQueued(n.Buffer))
                    moved = true;
            }

            var (state, owner, queued) = ReadGroup(group);
            if (state != ClusterGroupStateCode.Online || queued)
                moved = true;
            if (state == ClusterGroupStateCode.Failed && !queued)
                throw new HyperVException(HyperVErrorKind.JobFailed, $"{operation} failed: the group is Failed on {owner}", ClusApiConstants.ErrorInvalidState);
            if (state == ClusterGroupStateCode.Online && !queued)
            {
                if (SameNode(owner, targetNode))
                    return;
                if (moved)
                    throw new HyperVException(HyperVErrorKind.JobFailed,
                        $"{operation} failed: the cluster returned the group to {owner}", ClusApiConstants.ErrorInvalidState);
            }

            var now = _clock.UtcNow;
            if (now >= deadline)
            {
                TryCancel(group);
                // os-win checks once more after cancelling: a move that completed meanwhile is not a timeout.
                var (afterState, afterOwner, afterQueued) = ReadGroup(group);
                if (afterState == ClusterGroupStateCode.Online && !afterQueued && SameNode(afterOwner, targetNode))
                    return;
                throw new HyperVException(HyperVErrorKind.Timeout,
                    $"{operation} timed out after {timeout} (group {MapState(afterState)} on {afterOwner}{(afterQueued ? ", queued" : "")}); the move was cancelled");
            }

            var wait = _options.MovePollInterval < deadline - now ? _options.MovePollInterval : deadline - now;
            var delay = _clock.Delay(wait, ct);
            if (pumpAlive)
            {
                next ??= pump.Reader.WaitToReadAsync(ct).AsTask();
                var first = await Task.WhenAny(next, delay).ConfigureAwait(false);
                if (first == next)
                {
                    try
                    {
                        pumpAlive = await next.ConfigureAwait(false);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        pumpAlive = false; // the port failed: keep going by polling alone
                    }

                    next = null;
                    continue;
                }
            }

            await delay.ConfigureAwait(false);
        }
    }

    private (ClusterGroupStateCode State, string Owner, bool Queued) ReadGroup(GroupHandle group)
    {
        var info = _api.GetClusterGroupState(group);
        var queued = false;
        try
        {
            queued = IsQueued(_api.ClusterGroupControl(group, ClusApiConstants.CtlGroupGetRoCommonProperties));
        }
        catch (HyperVException)
        {
            // StatusInformation exists from Windows Server 2016 on; without it the state alone decides.
        }

        return (info.State, info.OwnerNode, queued);
    }

    private static bool IsQueued(byte[] propertyList)
    {
        try
        {
            var status = ClusPropList.GetULargeInteger(ClusPropList.Parse(propertyList), ClusApiConstants.StatusInformationProperty);
            return status is { } s && (s & ClusApiConstants.StatusWaitingInQueueForMove) != 0;
        }
        catch (FormatException)
        {
            return false;
        }
    }

    private void TryCancel(GroupHandle group)
    {
        try
        {
            // 0 cancelled, 997 cancelling, 5023 nothing pending: all fine here.
            _api.CancelClusterGroupOperation(group);
        }
        catch (HyperVException)
        {
        }
    }

    private GroupHandle OpenGroup(ClusterHandle cluster, string vmName)
    {
        try
        {
            return _api.OpenClusterGroup(cluster, vmName);
        }
        catch (HyperVException e) when (e.Kind == HyperVErrorKind.NotFound)
        {
            throw new HyperVException(HyperVErrorKind.NotFound, $"no cluster role for VM '{vmName}'", e.Code, e);
        }
    }

    private NodeHandle OpenNode(ClusterHandle cluster, string nodeName)
    {
        try
        {
            return _api.OpenClusterNode(cluster, nodeName);
        }
        catch (HyperVException e) when (e.Kind == HyperVErrorKind.NotFound)
        {
            throw new HyperVException(HyperVErrorKind.NotFound, $"'{nodeName}' is not a node of the cluster", e.Code, e);
        }
    }

    private static bool SameNode(string a, string b) => string.Equals(a, b, StringComparison.OrdinalIgnoreCase);

    // ------------------------------------------------------------------ clusapi: owner notifications

    /// <summary>
    /// Owner and state changes of VM groups from a clusapi notify port (GROUP_OWNER_NODE_V2 and GROUP_STATE_V2 on
    /// group objects), opened at this call: changes from then on, until <paramref name="ct"/> is cancelled. Groups that
    /// are not of type 111 (VirtualMachine, read from their common properties once per group) are skipped; the new
    /// owner of an owner change is the node whose id the notification carries as parent id (as os-win), its state the
    /// last one seen; a state change keeps the last owner seen. Consecutive identical (owner, state) pairs of a group
    /// are reported once. Notifications are buffered as they arrive (<see cref="ClusterNotificationPump{T}"/>), stamped
    /// with their arrival time, so a slow consumer loses nothing.
    /// </summary>
    public IAsyncEnumerable<OwnerChange> WatchOwnerChangesAsync(CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        var cluster = _api.OpenCluster(_options.ClusterName);
        ClusterNotificationPump<OwnerChange> pump;
        try
        {
            var tracker = new OwnerTracker(_api, cluster, _clock);
            pump = new ClusterNotificationPump<OwnerChange>(_api, cluster, WatchFilters, tracker.Handle, _options.NotifyWaitMilliseconds);
        }
        catch
        {
            cluster.Dispose();
            throw;
        }

        // Never enumerated but cancelled: stop the pump and close the cluster handle anyway (both are idempotent).
        var registration = ct.Register(() => pump.DisposeAsync().AsTask().ContinueWith(_ => cluster.Dispose(), TaskScheduler.Default));
        return Read(pump, cluster, registration, ct);
    }

    private static async IAsyncEnumerable<OwnerChange> Read(
        ClusterNotificationPump<OwnerChange> pump, ClusterHandle cluster, CancellationTokenRegistration registration, CancellationToken ct,
        [EnumeratorCancellation] CancellationToken enumeratorCt = default)
    {
        using var both = CancellationTokenSource.CreateLinkedTokenSource(ct, enumeratorCt);
        try
        {
            while (await pump.Reader.WaitToReadAsync(both.Token).ConfigureAwait(false))
            {
                while (pump.Reader.TryRead(out var change))
                    yield return change;
            }
        }
        finally
        {
            await registration.DisposeAsync().ConfigureAwait(false);
            await pump.DisposeAsync().ConfigureAwait(false);
            cluster.Dispose();
        }
    }

    /// <summary>Turns raw group notifications into OwnerChanges (on the pump thread).</summary>
    private sealed class OwnerTracker(IClusApi api, ClusterHandle cluster, IHyperVClock clock)
    {
        private readonly ConcurrentDictionary<string, uint> _groupTypes = new(StringComparer.OrdinalIgnoreCase);
        private readonly Dictionary<string, (string Owner, ClusterGroupStateCode State)> _last = new(StringComparer.OrdinalIgnoreCase);
        private Dictionary<string, string> _nodeNames = new(StringComparer.OrdinalIgnoreCase);

        public OwnerChange? Handle(ClusterNotification n)
        {
            if (n.ObjectType != ClusApiConstants.ObjectTypeGroup || string.IsNullOrEmpty(n.ObjectName))
                return null;
            var isOwner = n.FilterFlags == ClusApiConstants.GroupOwnerNodeV2;
            var isState = n.FilterFlags == ClusApiConstants.GroupStateV2;
            if (!isOwner && !isState)
                return null;
            if (GroupType(n.ObjectName) != ClusApiConstants.GroupTypeVirtualMachine)
                return null;

            var known = _last.TryGetValue(n.ObjectName, out var last);
            string owner;
            ClusterGroupStateCode state;
            if (isOwner)
            {
                owner = NodeName(n.ParentId) ?? Query(n.ObjectName).OwnerNode;
                state = known ? last.State : Query(n.ObjectName).State;
            }
            else
            {
                state = n.Buffer.Length >= 4 ? (ClusterGroupStateCode)BinaryPrimitives.ReadInt32LittleEndian(n.Buffer) : Query(n.ObjectName).State;
                owner = known ? last.Owner : Query(n.ObjectName).OwnerNode;
            }

            if (known && string.Equals(last.Owner, owner, StringComparison.OrdinalIgnoreCase) && last.State == state)
                return null;
            _last[n.ObjectName] = (owner, state);
            return new OwnerChange(n.ObjectName, owner, MapState(state), clock.UtcNow);
        }

        private uint GroupType(string group)
        {
            if (_groupTypes.TryGetValue(group, out var type))
                return type;
            using var handle = api.OpenClusterGroup(cluster, group);
            var properties = ClusPropList.Parse(api.ClusterGroupControl(handle, ClusApiConstants.CtlGroupGetRoCommonProperties));
            type = ClusPropList.GetDword(properties, ClusApiConstants.GroupTypeProperty) ?? 0;
            _groupTypes[group] = type;
            return type;
        }

        private ClusterGroupStateInfo Query(string group)
        {
            using var handle = api.OpenClusterGroup(cluster, group);
            return api.GetClusterGroupState(handle);
        }

        private string? NodeName(string nodeId)
        {
            if (string.IsNullOrEmpty(nodeId))
                return null;
            if (_nodeNames.TryGetValue(nodeId, out var name))
                return name;
            _nodeNames = api.ClusterEnum(cluster, ClusApiConstants.EnumNode)
                .ToDictionary(e => e.Id, e => e.Name, StringComparer.OrdinalIgnoreCase);
            return _nodeNames.GetValueOrDefault(nodeId);
        }
    }
}
