namespace Coordinator.Domain;

public enum VmPhase { Spawning, Running, Migrating, Removing }

public sealed record VmRecord(
    string Name, string Node, int MemoryMb, int Vcpus, string Volume, long DiskBytes, string? ImageId, string Folder,
    VmPhase Phase, DateTimeOffset Since);

public sealed record NodeRecord(string Node, long MemoryMb, int LogicalProcessors, bool Draining, DateTimeOffset ReportedAt);

/// <summary>One entry of the ordered feed node agents long-poll: a VM arrived on or left a node.</summary>
public sealed record FeedEntry(long Seq, string Node, string Vm, string Kind, string Reason, DateTimeOffset At);

/// <summary>A node's accounting: exact memory and vCPUs, as the cluster-wide inventory sees them.</summary>
public sealed record NodeUsage(string Node, long MemoryMb, long FreeMemoryMb, int LogicalProcessors, int FreeVcpus, int Vms, bool Draining);

public sealed record PlaceVmRequest(string Name, string Node, int MemoryMb, int Vcpus, string Volume, long DiskBytes, string? ImageId);

public enum PlaceStatus { Placed, Unchanged, AlreadyExists, InsufficientMemory, InsufficientSpace, NodeUnavailable, UnknownVolume, Invalid }

public sealed record PlaceOutcome(PlaceStatus Status, VmRecord? Vm, string? Error = null);

/// <summary>
/// The cluster-wide VM inventory: which VM is where, memory and vCPUs per node, and the feed of arrivals and
/// departures. A VM's disk is a reservation keyed by its name, so moving the VM moves the claim with it.
/// </summary>
public sealed partial class CsvLedger
{
    /// <summary>How many feed entries are kept; agents that fall further behind re-read GET /v1/vms.</summary>
    public const int FeedCapacity = 10_000;

    /// <summary>vCPUs may be overcommitted this many times over logical processors (Hyper-V's own default ratio is far higher).</summary>
    public const int VcpuOvercommit = 4;

    private readonly SortedDictionary<string, VmRecord> _vms = new(StringComparer.Ordinal);
    private readonly SortedDictionary<string, NodeRecord> _nodes = new(StringComparer.Ordinal);
    private readonly LinkedList<FeedEntry> _feed = new();
    private long _feedSeq;

    public IReadOnlyCollection<VmRecord> Vms => _vms.Values;
    public VmRecord? FindVm(string name) => _vms.GetValueOrDefault(name);
    public NodeRecord? FindNode(string node) => _nodes.GetValueOrDefault(node);
    public long FeedHead => _feedSeq;

    public IReadOnlyList<FeedEntry> FeedAfter(long after, string? node, int max = 1000) =>
        _feed.Where(f => f.Seq > after && (node is null || f.Node == node)).Take(max).ToList();

    public static string VmFolder(string name) => $"instances/{name}";

    public NodeUsage Usage(string node)
    {
        var n = _nodes.GetValueOrDefault(node);
        var vms = _vms.Values.Where(v => v.Node == node).ToList();
        var mem = n?.MemoryMb ?? 0;
        var cpus = (n?.LogicalProcessors ?? 0) * VcpuOvercommit;
        return new NodeUsage(node, mem, mem - vms.Sum(v => (long)v.MemoryMb), n?.LogicalProcessors ?? 0, cpus - vms.Sum(v => v.Vcpus),
            vms.Count, n?.Draining ?? false);
    }

    public IReadOnlyList<NodeUsage> Usages() =>
        _nodes.Keys.Union(_vms.Values.Select(v => v.Node)).Distinct().Order(StringComparer.Ordinal).Select(Usage).ToList();

    // ---------------------------------------------------------------- decisions

    public IReadOnlyList<LedgerEvent> ReportCapacity(string node, long memoryMb, int logicalProcessors, DateTimeOffset now) =>
        _nodes.TryGetValue(node, out var n) && n.MemoryMb == memoryMb && n.LogicalProcessors == logicalProcessors
            ? []
            : [new NodeCapacityReported(node, memoryMb, logicalProcessors, now)];

    public IReadOnlyList<LedgerEvent> SetDraining(string node, bool draining, DateTimeOffset now) =>
        _nodes.TryGetValue(node, out var n) && n.Draining != draining ? [new NodeDrainChanged(node, draining, now)] : [];

    /// <summary>
    /// A spawn's placement, decided atomically: the node's free memory and vCPUs, and the disk on the volume. Refused
    /// before anything is created when either does not fit.
    /// </summary>
    public Decision<PlaceOutcome> PlaceVm(PlaceVmRequest r, DateTimeOffset now)
    {
        var err = InputRules.CheckConsumerId(r.Name) ?? InputRules.CheckId("node", r.Node) ?? InputRules.CheckBytes("diskBytes", r.DiskBytes)
                  ?? (r.MemoryMb <= 0 || r.MemoryMb > 64 * 1024 * 1024 ? "memoryMb must be positive and at most 64 TiB" : null)
                  ?? (r.Vcpus is <= 0 or > 2048 ? "vcpus must be between 1 and 2048" : null)
                  ?? (r.ImageId is null ? null : InputRules.CheckImageId(r.ImageId));
        if (err is not null) return new(new PlaceOutcome(PlaceStatus.Invalid, null, err), []);
        if (_vms.TryGetValue(r.Name, out var existing))
            return existing.Node == r.Node && existing.MemoryMb == r.MemoryMb && existing.Vcpus == r.Vcpus && existing.DiskBytes == r.DiskBytes
                ? new(new PlaceOutcome(PlaceStatus.Unchanged, existing), [])
                : new(new PlaceOutcome(PlaceStatus.AlreadyExists, existing, $"a VM named '{r.Name}' exists on {existing.Node}"), []);
        if (!_nodes.TryGetValue(r.Node, out var node))
            return new(new PlaceOutcome(PlaceStatus.NodeUnavailable, null, $"node {r.Node} has not reported its capacity"), []);
        if (node.Draining)
            return new(new PlaceOutcome(PlaceStatus.NodeUnavailable, null, $"node {r.Node} is draining"), []);
        var usage = Usage(r.Node);
        if (r.MemoryMb > usage.FreeMemoryMb)
            return new(new PlaceOutcome(PlaceStatus.InsufficientMemory, null,
                $"{r.MemoryMb} MiB do not fit on {r.Node}: {usage.FreeMemoryMb} MiB free"), []);
        if (r.Vcpus > usage.FreeVcpus)
            return new(new PlaceOutcome(PlaceStatus.InsufficientMemory, null,
                $"{r.Vcpus} vCPUs do not fit on {r.Node}: {usage.FreeVcpus} free"), []);
        if (!_volumes.TryGetValue(r.Volume, out var v))
            return new(new PlaceOutcome(PlaceStatus.UnknownVolume, null, $"unknown volume '{r.Volume}'"), []);
        if (_volumes.Values.Any(x => x.Reservations.ContainsKey(r.Name)))
            return new(new PlaceOutcome(PlaceStatus.AlreadyExists, null, $"a reservation for '{r.Name}' exists"), []);
        if (r.DiskBytes > v.Free)
            return new(new PlaceOutcome(PlaceStatus.InsufficientSpace, null,
                $"{ByteSize.Format(r.DiskBytes)} do not fit on {r.Volume}: {ByteSize.Format(Math.Max(v.Free, 0))} free"), []);
        var placed = new VmPlaced(r.Name, r.Node, r.MemoryMb, r.Vcpus, r.Volume, r.DiskBytes, r.ImageId, VmFolder(r.Name), "spawn", now);
        return new(new PlaceOutcome(PlaceStatus.Placed, ToRecord(placed, VmPhase.Spawning)), [placed]);
    }

    /// <summary>
    /// A VM that is already on a host of this cluster (it arrived from outside, or was found at reconciliation): it
    /// is recorded and its disk claimed even if that overcommits, because the bytes and the memory are in use already.
    /// </summary>
    public IReadOnlyList<LedgerEvent> AdoptVm(PlaceVmRequest r, string reason, DateTimeOffset now)
    {
        if (_vms.TryGetValue(r.Name, out var existing))
            return existing.Node == r.Node ? [] : [new VmMoved(r.Name, existing.Node, r.Node, reason, now)];
        if (!_volumes.ContainsKey(r.Volume)) return [];
        return [new VmPlaced(r.Name, r.Node, r.MemoryMb, r.Vcpus, r.Volume, r.DiskBytes, r.ImageId, VmFolder(r.Name), reason, now),
                new VmPhaseChanged(r.Name, VmPhase.Running, now)];
    }

    public IReadOnlyList<LedgerEvent> SetVmPhase(string name, VmPhase phase, DateTimeOffset now) =>
        _vms.TryGetValue(name, out var vm) && vm.Phase != phase ? [new VmPhaseChanged(name, phase, now)] : [];

    /// <summary>The cluster says the VM's group is owned by <paramref name="node"/> now (a settled move or failover).</summary>
    public IReadOnlyList<LedgerEvent> ObserveOwner(string name, string node, string reason, DateTimeOffset now) =>
        _vms.TryGetValue(name, out var vm) && vm.Node != node ? [new VmMoved(name, vm.Node, node, reason, now)] : [];

    public IReadOnlyList<LedgerEvent> RemoveVm(string name, string reason, DateTimeOffset now) =>
        _vms.ContainsKey(name) ? [new VmRemoved(name, reason, now)] : [];

    /// <summary>Where a drained VM goes: the live, not draining node with the most free memory that can hold it.</summary>
    public string? PickTarget(string vmName, IReadOnlyCollection<string> liveNodes)
    {
        if (!_vms.TryGetValue(vmName, out var vm)) return null;
        return liveNodes.Where(n => n != vm.Node && _nodes.TryGetValue(n, out var rec) && !rec.Draining)
            .Select(Usage)
            .Where(u => u.FreeMemoryMb >= vm.MemoryMb && u.FreeVcpus >= vm.Vcpus)
            .OrderByDescending(u => u.FreeMemoryMb).ThenBy(u => u.Node, StringComparer.Ordinal)
            .FirstOrDefault()?.Node;
    }

    // ---------------------------------------------------------------- state changes

    private bool ApplyVmEvent(LedgerEvent e)
    {
        switch (e)
        {
            case NodeCapacityReported c:
                _nodes[c.Node] = new NodeRecord(c.Node, c.MemoryMb, c.LogicalProcessors, _nodes.GetValueOrDefault(c.Node)?.Draining ?? false, c.At);
                return true;
            case NodeDrainChanged d:
                if (_nodes.TryGetValue(d.Node, out var n)) _nodes[d.Node] = n with { Draining = d.Draining };
                return true;
            case VmPlaced p:
                _vms[p.Name] = ToRecord(p, VmPhase.Spawning);
                _volumes[p.Volume].Put(new Reservation(p.Volume, p.Name, p.Node, p.DiskBytes, p.Folder, p.ImageId, p.At, p.At));
                if (p.Reason != "spawn") AddFeed(p.Node, p.Name, "arrived", p.Reason, p.At);
                return true;
            case VmPhaseChanged ph:
                if (_vms.TryGetValue(ph.Name, out var vm))
                {
                    if (vm.Phase == VmPhase.Spawning && ph.Phase == VmPhase.Running) AddFeed(vm.Node, vm.Name, "arrived", "spawn", ph.At);
                    _vms[ph.Name] = vm with { Phase = ph.Phase, Since = ph.At };
                }
                return true;
            case VmMoved m:
                if (_vms.TryGetValue(m.Name, out var moved))
                {
                    _vms[m.Name] = moved with { Node = m.To, Phase = VmPhase.Running, Since = m.At };
                    var vol = _volumes[moved.Volume];
                    if (vol.Reservations.TryGetValue(m.Name, out var claim)) vol.Put(claim with { Node = m.To, UpdatedAt = m.At });
                    AddFeed(m.From, m.Name, "left", m.Reason, m.At);
                    AddFeed(m.To, m.Name, "arrived", m.Reason, m.At);
                }
                return true;
            case VmRemoved r:
                if (_vms.Remove(r.Name, out var gone))
                {
                    _volumes[gone.Volume].Remove(r.Name);
                    AddFeed(gone.Node, gone.Name, "left", r.Reason, r.At);
                }
                return true;
            default:
                return false;
        }
    }

    private void AddFeed(string node, string vm, string kind, string reason, DateTimeOffset at)
    {
        _feed.AddLast(new FeedEntry(++_feedSeq, node, vm, kind, reason, at));
        while (_feed.Count > FeedCapacity) _feed.RemoveFirst();
    }

    private static VmRecord ToRecord(VmPlaced p, VmPhase phase) =>
        new(p.Name, p.Node, p.MemoryMb, p.Vcpus, p.Volume, p.DiskBytes, p.ImageId, p.Folder, phase, p.At);
}
