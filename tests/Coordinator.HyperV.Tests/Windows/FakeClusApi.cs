using System.Buffers.Binary;
using System.Collections.Concurrent;
using Coordinator.HyperV;
using Coordinator.HyperV.Windows;

namespace Coordinator.HyperV.Tests.Windows;

/// <summary>
/// A fake clusapi: groups whose state/owner/StatusInformation follow a script once a move was asked for (each
/// GetClusterGroupState after MoveClusterGroupEx takes the next step, the last one sticks), nodes with ids, a notify port
/// fed by the test, and a record of every call.
/// </summary>
public sealed class FakeClusApi : IClusApi
{
    public sealed record Step(ClusterGroupStateCode State, string Owner, bool Queued = false);

    public sealed class Group(string name, uint type, Step initial)
    {
        public string Name { get; } = name;
        public uint Type { get; } = type;
        public Step Current { get; set; } = initial;
        public ConcurrentQueue<Step> Script { get; } = new();
        public bool Moving { get; set; }
    }

    public sealed record Move(string Group, string? Node, uint Flags, byte[]? PropertyList);

    private readonly object _gate = new();
    private int _openHandles;

    public ConcurrentDictionary<string, Group> Groups { get; } = new(StringComparer.OrdinalIgnoreCase);
    public List<ClusterEnumEntry> Nodes { get; } = [];
    public ConcurrentQueue<string> Calls { get; } = new();
    public List<Move> Moves { get; } = [];
    public List<IReadOnlyList<NotifyFilter>> PortFilters { get; } = [];
    public BlockingCollection<ClusterNotification> PortQueue { get; } = new();
    public int Cancels;
    public int StateReads;
    public int PortsClosed;
    public uint MoveResult { get; set; } = ClusApiConstants.ErrorIoPending;

    /// <summary>Called on each CancelClusterGroupOperation.</summary>
    public Action? OnCancel { get; set; }

    /// <summary>Called on each MoveClusterGroupEx (after it is recorded).</summary>
    public Action<Move>? OnMove { get; set; }

    public int OpenHandles => Volatile.Read(ref _openHandles);

    public Group AddGroup(string name, ClusterGroupStateCode state, string owner, uint type = ClusApiConstants.GroupTypeVirtualMachine)
    {
        var g = new Group(name, type, new Step(state, owner));
        Groups[name] = g;
        return g;
    }

    public void Script(string group, params Step[] steps)
    {
        foreach (var s in steps)
            Groups[group].Script.Enqueue(s);
    }

    public void AddNode(string id, string name) => Nodes.Add(new ClusterEnumEntry(id, name));

    /// <summary>Queues a notification as the cluster would deliver it.</summary>
    public void Notify(string group, ulong filter, byte[]? buffer = null, string parentId = "") =>
        PortQueue.Add(new ClusterNotification(ClusApiConstants.ObjectTypeGroup, filter, group, Guid.NewGuid().ToString(), parentId, "", buffer ?? []));

    public static byte[] StateBuffer(ClusterGroupStateCode state)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(b, (int)state);
        return b;
    }

    // ------------------------------------------------------------------ IClusApi

    public ClusterHandle OpenCluster(string? clusterName = null)
    {
        Calls.Enqueue($"OpenCluster({clusterName})");
        return new FakeCluster(this);
    }

    public GroupHandle OpenClusterGroup(ClusterHandle cluster, string groupName)
    {
        Assert.False(cluster.IsClosed);
        Calls.Enqueue($"OpenClusterGroup({groupName})");
        if (!Groups.TryGetValue(groupName, out var g))
            throw ClusErrors.ToException($"OpenClusterGroup({groupName})", 5013); // ERROR_GROUP_NOT_FOUND
        return new FakeGroup(this, g);
    }

    public NodeHandle OpenClusterNode(ClusterHandle cluster, string nodeName)
    {
        Calls.Enqueue($"OpenClusterNode({nodeName})");
        if (!Nodes.Any(n => string.Equals(n.Name, nodeName, StringComparison.OrdinalIgnoreCase)))
            throw ClusErrors.ToException($"OpenClusterNode({nodeName})", 5042); // ERROR_CLUSTER_NODE_NOT_FOUND
        return new FakeNode(this, nodeName);
    }

    public uint MoveClusterGroupEx(GroupHandle group, NodeHandle? destination, uint flags, byte[]? propertyList)
    {
        var move = new Move(((FakeGroup)group).Group.Name, (destination as FakeNode)?.Name, flags, propertyList);
        lock (_gate)
            Moves.Add(move);
        Calls.Enqueue("MoveClusterGroupEx");
        ((FakeGroup)group).Group.Moving = true;
        OnMove?.Invoke(move);
        return MoveResult;
    }

    public uint CancelClusterGroupOperation(GroupHandle group)
    {
        Interlocked.Increment(ref Cancels);
        Calls.Enqueue("CancelClusterGroupOperation");
        OnCancel?.Invoke();
        return ClusApiConstants.ErrorSuccess;
    }

    public ClusterGroupStateInfo GetClusterGroupState(GroupHandle group)
    {
        var g = ((FakeGroup)group).Group;
        Assert.False(group.IsClosed);
        Interlocked.Increment(ref StateReads);
        lock (_gate)
        {
            if (g.Moving && g.Script.TryDequeue(out var next))
                g.Current = next;
            return new ClusterGroupStateInfo(g.Current.State, g.Current.Owner);
        }
    }

    public byte[] ClusterGroupControl(GroupHandle group, uint controlCode)
    {
        Assert.Equal(ClusApiConstants.CtlGroupGetRoCommonProperties, controlCode);
        var g = ((FakeGroup)group).Group;
        Step current;
        lock (_gate)
            current = g.Current;
        return ClusPropList.Build(
            ("Name", ClusPropList.SyntaxListValueSz, System.Text.Encoding.Unicode.GetBytes(g.Name + "\0")),
            (ClusApiConstants.GroupTypeProperty, ClusPropList.SyntaxListValueDword, ClusPropList.Dword(g.Type)),
            (ClusApiConstants.StatusInformationProperty, ClusPropList.SyntaxListValueULargeInteger,
                ClusPropList.ULargeInteger(current.Queued ? ClusApiConstants.StatusWaitingInQueueForMove | 0x100 : 0x100)));
    }

    public IReadOnlyList<ClusterEnumEntry> ClusterEnum(ClusterHandle cluster, uint objectType)
    {
        Assert.Equal(ClusApiConstants.EnumNode, objectType);
        Calls.Enqueue("ClusterEnum(node)");
        return Nodes.ToList();
    }

    public NotifyPortHandle CreateClusterNotifyPortV2(ClusterHandle cluster, IReadOnlyList<NotifyFilter> filters)
    {
        lock (_gate)
            PortFilters.Add(filters);
        Calls.Enqueue("CreateClusterNotifyPortV2");
        return new FakePort(this);
    }

    public ClusterNotification? GetClusterNotifyV2(NotifyPortHandle port, uint timeoutMilliseconds)
    {
        if (port.IsClosed)
            throw ClusErrors.ToException("GetClusterNotifyV2", ClusApiConstants.ErrorInvalidHandle);
        return PortQueue.TryTake(out var n, (int)timeoutMilliseconds) ? n : null;
    }

    private sealed class FakeCluster : ClusterHandle
    {
        private readonly FakeClusApi _api;

        public FakeCluster(FakeClusApi api)
        {
            _api = api;
            Interlocked.Increment(ref api._openHandles);
        }

        protected override void Close() => Interlocked.Decrement(ref _api._openHandles);
    }

    private sealed class FakeGroup : GroupHandle
    {
        private readonly FakeClusApi _api;

        public FakeGroup(FakeClusApi api, Group group)
        {
            _api = api;
            Group = group;
            Interlocked.Increment(ref api._openHandles);
        }

        public Group Group { get; }

        protected override void Close() => Interlocked.Decrement(ref _api._openHandles);
    }

    private sealed class FakeNode : NodeHandle
    {
        private readonly FakeClusApi _api;

        public FakeNode(FakeClusApi api, string name)
        {
            _api = api;
            Name = name;
            Interlocked.Increment(ref api._openHandles);
        }

        public string Name { get; }

        protected override void Close() => Interlocked.Decrement(ref _api._openHandles);
    }

    private sealed class FakePort : NotifyPortHandle
    {
        private readonly FakeClusApi _api;

        public FakePort(FakeClusApi api)
        {
            _api = api;
            Interlocked.Increment(ref api._openHandles);
        }

        protected override void Close()
        {
            Interlocked.Increment(ref _api.PortsClosed);
            Interlocked.Decrement(ref _api._openHandles);
        }
    }
}
