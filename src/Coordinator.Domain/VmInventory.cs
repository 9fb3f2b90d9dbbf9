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
/// departures. A VM's disk is a reservation keyed by its name (claimed through the <see cref="VolumeBook"/>), so
/// moving the VM moves the claim with it. VM names are folder names (<c>instances/{name}</c>): names equal under
/// <see cref="FileNames.Comparer"/> are one VM. Node names are not files and compare ordinally.
/// </summary>
public sealed class VmInventory
{
    /// <summary>Largest node memory a report may name (1 EiB in MiB): sums over nodes stay far from overflow.</summary>
    public const long MaxNodeMemoryMb = 1L << 40;

    /// <summary>Largest number of logical processors a report may name.</summary>
    public const int MaxLogicalProcessors = 1 << 20;

    private readonly VolumeBook _volumes;
    private readonly FileNameMap<VmRecord> _vms = new();
    private readonly SortedDictionary<string, NodeRecord> _nodes = new(StringComparer.Ordinal);
    private readonly LinkedList<FeedEntry> _feed = new();
    private long _feedSeq;

    internal VmInventory(VolumeBook volumes) => _volumes = volumes;

    public IReadOnlyCollection<VmRecord> Vms => _vms.Values;
    public IReadOnlyCollection<NodeRecord> Nodes => _nodes.Values;
    public IReadOnlyCollection<FeedEntry> Feed => _feed;
    public VmRecord? FindVm(string name) => _vms.GetValueOrDefault(name);
    public NodeRecord? FindNode(string node) => _nodes.GetValueOrDefault(node);
    public long FeedHead => _feedSeq;
    public int Count => _vms.Count;

    public IReadOnlyList<FeedEntry> FeedAfter(long after, string? node, int max = 1000) =>
        _feed.Where(f => f.Seq > after && (node is null || f.Node == node)).Take(max).ToList();

    public NodeUsage Usage(string node)
    {
        var n = _nodes.GetValueOrDefault(node);
        var vms = _vms.Values.Where(v => v.Node == node).ToList();
        var mem = n?.MemoryMb ?? 0;
        var cpus = (long)(n?.LogicalProcessors ?? 0) * CsvLedger.VcpuOvercommit;
        var freeVcpus = (int)Math.Clamp(cpus - vms.Sum(v => (long)v.Vcpus), int.MinValue, int.MaxValue);
        return new NodeUsage(node, mem, mem - vms.Sum(v => (long)v.MemoryMb), n?.LogicalProcessors ?? 0, freeVcpus, vms.Count, n?.Draining ?? false);
    }

    public IReadOnlyList<NodeUsage> Usages() =>
        _nodes.Keys.Union(_vms.Values.Select(v => v.Node)).Distinct().Order(StringComparer.Ordinal).Select(Usage).ToList();

    // ---------------------------------------------------------------- decisions

    /// <summary>A node's host capacity; a report that names no node or impossible numbers records nothing.</summary>
    public IReadOnlyList<LedgerEvent> ReportCapacity(string node, long memoryMb, int logicalProcessors, DateTimeOffset now)
    {
        if (InputRules.CheckId("node", node) is not null || memoryMb is < 0 or > MaxNodeMemoryMb
            || logicalProcessors is < 0 or > MaxLogicalProcessors) return [];
        return _nodes.TryGetValue(node, out var n) && n.MemoryMb == memoryMb && n.LogicalProcessors == logicalProcessors
            ? []
            : [new NodeCapacityReported(node, memoryMb, logicalProcessors, now)];
    }

    public IReadOnlyList<LedgerEvent> SetDraining(string node, bool draining, DateTimeOffset now) =>
        _nodes.TryGetValue(node, out var n) && n.Draining != draining ? [new NodeDrainChanged(node, draining, now)] : [];

    /// <summary>What a spawn and an arrival must both name correctly (the VM's name is its folder's).</summary>
    public static string? CheckPlacement(PlaceVmRequest r) =>
        InputRules.CheckConsumerId(r.Name) ?? InputRules.CheckId("node", r.Node)
        ?? InputRules.CheckBytes("diskBytes", r.DiskBytes)
        ?? (r.MemoryMb <= 0 || r.MemoryMb > 64 * 1024 * 1024 ? "memoryMb must be positive and at most 64 TiB" : null)
        ?? (r.Vcpus is <= 0 or > 2048 ? "vcpus must be between 1 and 2048" : null)
        ?? (r.ImageId is null ? null : InputRules.CheckImageId(r.ImageId));

    /// <summary>
    /// A spawn's placement, decided atomically: the node's free memory and vCPUs, and the disk on the volume. Refused
    /// before anything is created when either does not fit.
    /// </summary>
    public Decision<PlaceOutcome> PlaceVm(PlaceVmRequest r, DateTimeOffset now)
    {
        if (CheckPlacement(r) is { } err) return new(new PlaceOutcome(PlaceStatus.Invalid, null, err), []);
        if (_vms.TryGetValue(r.Name, out var existing))
            // Only the same spelling is a retry of the same spawn: "VM1" beside "vm1" would be spawned into vm1's folder.
            return existing.Name == r.Name && existing.Node == r.Node && existing.MemoryMb == r.MemoryMb && existing.Vcpus == r.Vcpus
                   && existing.DiskBytes == r.DiskBytes
                ? new(new PlaceOutcome(PlaceStatus.Unchanged, existing), [])
                : new(new PlaceOutcome(PlaceStatus.AlreadyExists, existing, $"a VM named '{existing.Name}' exists on {existing.Node}"), []);
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
        if (!_volumes.Has(r.Volume))
            return new(new PlaceOutcome(PlaceStatus.UnknownVolume, null, $"unknown volume '{r.Volume}'"), []);
        if (_volumes.HoldsAnywhere(r.Name))
            return new(new PlaceOutcome(PlaceStatus.AlreadyExists, null, $"a reservation for '{r.Name}' exists"), []);
        var fit = _volumes.Fit(r.Volume, r.Name, r.DiskBytes);
        if (!fit.Fits)
            return new(new PlaceOutcome(PlaceStatus.InsufficientSpace, null,
                $"{ByteSize.Format(r.DiskBytes)} do not fit on {r.Volume}: {ByteSize.Format(fit.FreeBefore)} free"), []);
        var placed = new VmPlaced(r.Name, r.Node, r.MemoryMb, r.Vcpus, r.Volume, r.DiskBytes, r.ImageId, CsvLedger.VmFolder(r.Name), "spawn", now);
        return new(new PlaceOutcome(PlaceStatus.Placed, ToRecord(placed, VmPhase.Spawning)), [placed]);
    }

    /// <summary>
    /// A VM that is already on a host of this cluster (it arrived from outside, or was found at reconciliation).
    /// The rule: its request is validated exactly as a spawn's (<see cref="CheckPlacement"/>: name, node, sizes,
    /// image), and its name must not belong to a reservation that is not its own; then it is recorded and its disk
    /// claimed even if that overcommits the volume, because the bytes and the memory are in use already - the
    /// volume then reads free 0 and reports the excess as <see cref="VolumeView.OvercommittedBytes"/>. The one
    /// size refused besides invalid ones is a disk that would take the volume's Σ claimed past 2^63-1.
    /// A VM known under the name already (any spelling) that is found on another node has moved.
    /// </summary>
    public Decision<PlaceOutcome> Adopt(PlaceVmRequest r, string reason, DateTimeOffset now)
    {
        if (CheckPlacement(r) is { } err) return new(new PlaceOutcome(PlaceStatus.Invalid, null, err), []);
        if (_vms.TryGetValue(r.Name, out var existing))
            return existing.Node == r.Node
                ? new(new PlaceOutcome(PlaceStatus.Unchanged, existing), [])
                : new(new PlaceOutcome(PlaceStatus.Placed, existing with { Node = r.Node, Phase = VmPhase.Running, Since = now }),
                    [new VmMoved(existing.Name, existing.Node, r.Node, reason, now)]);
        if (!_volumes.Has(r.Volume))
            return new(new PlaceOutcome(PlaceStatus.UnknownVolume, null, $"unknown volume '{r.Volume}'"), []);
        if (_volumes.HoldsAnywhere(r.Name))
            return new(new PlaceOutcome(PlaceStatus.AlreadyExists, null, $"a reservation for '{r.Name}' exists"), []);
        if (!_volumes.TotalsFit(r.Volume, r.DiskBytes))
            return new(new PlaceOutcome(PlaceStatus.Invalid, null, $"diskBytes {r.DiskBytes} would overflow the claims of {r.Volume}"), []);
        var placed = new VmPlaced(r.Name, r.Node, r.MemoryMb, r.Vcpus, r.Volume, r.DiskBytes, r.ImageId, CsvLedger.VmFolder(r.Name), reason, now);
        return new(new PlaceOutcome(PlaceStatus.Placed, ToRecord(placed, VmPhase.Running) with { Since = now }),
            [placed, new VmPhaseChanged(r.Name, VmPhase.Running, now)]);
    }

    /// <summary>
    /// Another cluster's coordinator announces a VM migrated to this node: a request, so unlike an adoption found at
    /// reconciliation its disk must fit the volume like any claim (the node creates no file before this answer).
    /// </summary>
    public Decision<PlaceOutcome> Arrive(PlaceVmRequest r, DateTimeOffset now)
    {
        if (CheckPlacement(r) is { } err) return new(new PlaceOutcome(PlaceStatus.Invalid, null, err), []);
        if (!_vms.ContainsKey(r.Name) && _volumes.Has(r.Volume) && !_volumes.HoldsAnywhere(r.Name))
        {
            var fit = _volumes.Fit(r.Volume, r.Name, r.DiskBytes);
            if (!fit.Fits)
                return new(new PlaceOutcome(PlaceStatus.InsufficientSpace, null,
                    $"{ByteSize.Format(r.DiskBytes)} do not fit on {r.Volume}: {ByteSize.Format(fit.FreeBefore)} free"), []);
        }
        return Adopt(r, "arrival", now);
    }

    public IReadOnlyList<LedgerEvent> SetVmPhase(string name, VmPhase phase, DateTimeOffset now) =>
        _vms.TryGetValue(name, out var vm) && vm.Phase != phase ? [new VmPhaseChanged(vm.Name, phase, now)] : [];

    /// <summary>The cluster says the VM's group is owned by <paramref name="node"/> now (a settled move or failover).</summary>
    public IReadOnlyList<LedgerEvent> ObserveOwner(string name, string node, string reason, DateTimeOffset now) =>
        InputRules.CheckId("node", node) is null && _vms.TryGetValue(name, out var vm) && vm.Node != node
            ? [new VmMoved(vm.Name, vm.Node, node, reason, now)]
            : [];

    public IReadOnlyList<LedgerEvent> RemoveVm(string name, string reason, DateTimeOffset now) =>
        _vms.TryGetValue(name, out var vm) ? [new VmRemoved(vm.Name, reason, now)] : [];

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

    internal bool Apply(LedgerEvent e)
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
                // A legacy journal may place "VM1" beside "vm1": one folder, so one VM; the last placement wins.
                if (_vms.TryGetValue(p.Name, out var replaced) && replaced.Volume != p.Volume) _volumes.Unclaim(replaced.Volume, replaced.Name);
                _vms.Set(p.Name, ToRecord(p, VmPhase.Spawning));
                _volumes.Claim(new Reservation(p.Volume, p.Name, p.Node, p.DiskBytes, p.Folder, p.ImageId, p.At, p.At));
                if (p.Reason != "spawn") AddFeed(p.Node, p.Name, "arrived", p.Reason, p.At);
                return true;
            case VmPhaseChanged ph:
                if (_vms.TryGetValue(ph.Name, out var vm))
                {
                    if (vm.Phase == VmPhase.Spawning && ph.Phase == VmPhase.Running) AddFeed(vm.Node, vm.Name, "arrived", "spawn", ph.At);
                    _vms.Set(vm.Name, vm with { Phase = ph.Phase, Since = ph.At });
                }
                return true;
            case VmMoved m:
                if (_vms.TryGetValue(m.Name, out var moved))
                {
                    _vms.Set(moved.Name, moved with { Node = m.To, Phase = VmPhase.Running, Since = m.At });
                    if (_volumes.Find(moved.Volume, moved.Name) is { } claim) _volumes.Claim(claim with { Node = m.To, UpdatedAt = m.At });
                    AddFeed(m.From, moved.Name, "left", m.Reason, m.At);
                    AddFeed(m.To, moved.Name, "arrived", m.Reason, m.At);
                }
                return true;
            case VmRemoved r:
                if (_vms.Remove(r.Name, out var gone))
                {
                    _volumes.Unclaim(gone.Volume, gone.Name);
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
        while (_feed.Count > CsvLedger.FeedCapacity) _feed.RemoveFirst();
    }

    private static VmRecord ToRecord(VmPlaced p, VmPhase phase) =>
        new(p.Name, p.Node, p.MemoryMb, p.Vcpus, p.Volume, p.DiskBytes, p.ImageId, p.Folder, phase, p.At);

    // ---------------------------------------------------------------- snapshots

    internal void Load(LedgerSnapshot s)
    {
        foreach (var vm in s.Vms ?? []) _vms.Set(vm.Name, vm);
        foreach (var n in s.Nodes ?? []) _nodes[n.Node] = n;
        foreach (var f in s.Feed ?? []) _feed.AddLast(f);
        _feedSeq = s.FeedSeq;
    }
}
