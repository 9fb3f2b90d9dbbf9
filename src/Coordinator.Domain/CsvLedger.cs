namespace Coordinator.Domain;

public enum ReserveStatus { Created, Unchanged, Updated, InsufficientSpace, UnknownVolume, Invalid }

public sealed record ReserveOutcome(ReserveStatus Status, Reservation? Reservation, long FreeBytes, string? Error = null);

public enum ReleaseStatus { Released, NotFound, UnknownVolume }

public sealed record ReleaseOutcome(ReleaseStatus Status, Reservation? Released);

/// <summary>
/// A decision of the ledger: the reply it implies and the events that must be persisted before that reply is sent.
/// Deciding never mutates; <see cref="CsvLedger.Apply"/> does, event by event.
/// </summary>
public readonly record struct Decision<T>(T Outcome, IReadOnlyList<LedgerEvent> Events);

/// <summary>
/// The authoritative accounting of Cluster Shared Volumes. Deterministic and free of I/O: the singleton actor
/// feeds it commands and measurements, persists the events it returns, then applies them.
/// <para>
/// free = capacity - headroom - Σ max(claimed, measured under its directory) - usage that belongs to no reservation.
/// </para>
/// </summary>
public sealed partial class CsvLedger
{
    private readonly SortedDictionary<string, VolumeState> _volumes = new(StringComparer.Ordinal);

    public long Epoch { get; private set; }
    public string? EpochNode { get; private set; }
    public DateTimeOffset? EpochStartedAt { get; private set; }

    public IEnumerable<string> VolumeNames => _volumes.Keys;

    public bool HasVolume(string volume) => _volumes.ContainsKey(volume);

    /// <summary>Reservations, cached images, leases and VMs: what a snapshot holds (its cost grows with this).</summary>
    public int EntryCount => _volumes.Values.Sum(v => v.Reservations.Count) + _images.Count + _leases.Count + _vms.Count;

    // ---------------------------------------------------------------- decisions

    public Decision<ReserveOutcome> Reserve(ReserveRequest r, DateTimeOffset now)
    {
        if (!_volumes.TryGetValue(r.Volume, out var v))
            return new(new ReserveOutcome(ReserveStatus.UnknownVolume, null, 0, $"unknown volume '{r.Volume}'"), []);

        var error = InputRules.CheckConsumerId(r.ConsumerId)
                    ?? InputRules.CheckId("node", r.Node)
                    ?? InputRules.CheckBytes("bytes", r.Bytes)
                    ?? (r.ImageId is null ? null : InputRules.CheckId("image id", r.ImageId))
                    ?? InputRules.NormalizeVolumePath(v.Path, r.Path, out _);
        if (error is not null)
            return new(new ReserveOutcome(ReserveStatus.Invalid, null, v.Free, error), []);
        InputRules.NormalizeVolumePath(v.Path, r.Path, out var relPath);

        var free = v.Free;
        v.Reservations.TryGetValue(r.ConsumerId, out var existing);
        if (existing is not null
            && existing.Bytes == r.Bytes && existing.Node == r.Node && existing.Path == relPath && existing.ImageId == r.ImageId)
            return new(new ReserveOutcome(ReserveStatus.Unchanged, existing, free), []);

        // The change in what this consumer counts against the volume; only growth needs room.
        var measured = v.ConsumerUsage.GetValueOrDefault(r.ConsumerId);
        var before = existing is null ? 0 : Math.Max(existing.Bytes, measured);
        var after = Math.Max(r.Bytes, measured);
        var growth = after - before;
        if (growth > 0 && growth > free)
            return new(new ReserveOutcome(ReserveStatus.InsufficientSpace, existing, free,
                $"{ByteSize.Format(r.Bytes)} does not fit on {r.Volume}: {ByteSize.Format(Math.Max(free, 0))} free"), []);

        var placed = new ReservationPlaced(r.Volume, r.ConsumerId, r.Node, r.Bytes, relPath, r.ImageId, now);
        var reservation = new Reservation(r.Volume, r.ConsumerId, r.Node, r.Bytes, relPath, r.ImageId,
            existing?.CreatedAt ?? now, now);
        return new(new ReserveOutcome(existing is null ? ReserveStatus.Created : ReserveStatus.Updated, reservation, free - growth),
            [placed]);
    }

    public Decision<ReleaseOutcome> Release(string volume, string consumerId, DateTimeOffset now)
    {
        if (!_volumes.TryGetValue(volume, out var v))
            return new(new ReleaseOutcome(ReleaseStatus.UnknownVolume, null), []);
        // Image claims are released by the image cache only (abort, expiry, eviction), never directly.
        if (consumerId.StartsWith(ImageClaimPrefix, StringComparison.Ordinal) || !v.Reservations.TryGetValue(consumerId, out var existing))
            return new(new ReleaseOutcome(ReleaseStatus.NotFound, null), []);
        return new(new ReleaseOutcome(ReleaseStatus.Released, existing), [new ReservationReleased(volume, consumerId, now)]);
    }

    /// <summary>Events needed so the ledger's volume matches configuration (none when it already does).</summary>
    public IReadOnlyList<LedgerEvent> Configure(string volume, string path, long capacityBytes, long headroomBytes)
    {
        if (_volumes.TryGetValue(volume, out var v) && v.Path == path && v.Capacity == capacityBytes && v.Headroom == headroomBytes)
            return [];
        return [new VolumeConfigured(volume, path, capacityBytes, headroomBytes)];
    }

    /// <summary>Events for a scan result (none when nothing changed, so periodic rescans do not grow the journal).</summary>
    public IReadOnlyList<LedgerEvent> Measure(string volume, long usedBytes, IReadOnlyDictionary<string, long> consumerUsage, DateTimeOffset now)
    {
        if (!_volumes.TryGetValue(volume, out var v)) return [];
        // Only directories of current reservations count (a consumer released while the scan ran is dropped).
        var owned = new SortedDictionary<string, long>(
            consumerUsage.Where(kv => v.Reservations.ContainsKey(kv.Key)).ToDictionary(), StringComparer.Ordinal);
        if (v.MeasuredAt is not null && v.Used == usedBytes && SameUsage(v.ConsumerUsage, owned)) return [];
        return [new VolumeMeasured(volume, usedBytes, owned, now)];
    }

    public LeaderEpochStarted NextEpoch(string node, DateTimeOffset now) => new(Epoch + 1, node, now);

    /// <summary>The barrier a leader persists to prove it is still the only writer (see <see cref="LeaderConfirmed"/>).</summary>
    public LeaderConfirmed ConfirmLeader(DateTimeOffset now) => new(Epoch, now);

    // ---------------------------------------------------------------- state changes

    public void Apply(LedgerEvent e)
    {
        switch (e)
        {
            case LeaderEpochStarted s:
                Epoch = s.Epoch; EpochNode = s.Node; EpochStartedAt = s.At;
                break;
            case LeaderConfirmed:
                break;
            case VolumeConfigured c:
                if (_volumes.TryGetValue(c.Volume, out var existing))
                {
                    existing.Path = c.Path; existing.Capacity = c.CapacityBytes; existing.Headroom = c.HeadroomBytes;
                }
                else _volumes[c.Volume] = new VolumeState(c.Volume, c.Path, c.CapacityBytes, c.HeadroomBytes);
                break;
            case ReservationPlaced p:
            {
                var v = _volumes[p.Volume];
                var created = v.Reservations.TryGetValue(p.ConsumerId, out var old) ? old.CreatedAt : p.At;
                v.Put(new Reservation(p.Volume, p.ConsumerId, p.Node, p.Bytes, p.Path, p.ImageId, created, p.At));
                break;
            }
            case ReservationReleased r:
                _volumes[r.Volume].Remove(r.ConsumerId);
                break;
            case VolumeMeasured m:
                _volumes[m.Volume].SetMeasurement(m.UsedBytes, m.ConsumerUsage, m.At);
                break;
            default:
                if (!ApplyImageEvent(e) && !ApplyVmEvent(e))
                    throw new ArgumentOutOfRangeException(nameof(e), e.GetType().Name, "unknown ledger event");
                break;
        }
    }

    // ---------------------------------------------------------------- queries

    public VolumeView? View(string volume) => _volumes.TryGetValue(volume, out var v) ? v.View() : null;

    public IReadOnlyList<VolumeView> Views() => _volumes.Values.Select(v => v.View()).ToList();

    public IReadOnlyList<Reservation> Reservations(string volume) =>
        _volumes.TryGetValue(volume, out var v) ? v.Reservations.Values.ToList() : [];

    public Reservation? Find(string volume, string consumerId) =>
        _volumes.TryGetValue(volume, out var v) ? v.Reservations.GetValueOrDefault(consumerId) : null;

    /// <summary>Directories the scanner must measure: consumer id → path relative to the volume root.</summary>
    public IReadOnlyDictionary<string, string> MeasuredDirectories(string volume) =>
        _volumes.TryGetValue(volume, out var v)
            ? v.Reservations.Values.Where(r => r.Path is not null).ToDictionary(r => r.ConsumerId, r => r.Path!)
            : new Dictionary<string, string>();

    /// <summary>
    /// Each node's share of a volume. <paramref name="liveNodes"/> maps the nodes that are members of the cluster
    /// now to their weight; nodes that hold reservations but are gone keep their claims and get no share.
    /// </summary>
    public IReadOnlyList<NodeQuota>? Quotas(string volume, QuotaPolicy policy, IReadOnlyDictionary<string, double> liveNodes)
    {
        if (!_volumes.TryGetValue(volume, out var v)) return null;
        // Running totals per node (O(nodes), not O(reservations): node agents ask for quotas all the time).
        var claimed = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach (var (node, total) in v.ByNode) claimed[node] = total.Effective;
        foreach (var n in liveNodes.Keys) claimed.TryAdd(n, 0);

        var free = Math.Max(0, v.Free);
        var shares = policy == QuotaPolicy.Shared
            ? liveNodes.Keys.ToDictionary(n => n, _ => free)
            : QuotaSplit.Split(free, liveNodes);
        return claimed.Select(kv =>
        {
            var live = liveNodes.ContainsKey(kv.Key);
            var share = live ? shares.GetValueOrDefault(kv.Key) : 0;
            return new NodeQuota(kv.Key, live, kv.Value, share, kv.Value + share);
        }).ToList();
    }

    // ---------------------------------------------------------------- snapshots

    public LedgerSnapshot ToSnapshot() => new(
        Epoch, EpochNode, EpochStartedAt,
        _volumes.Values.Select(v => new VolumeSnapshot(
            v.Name, v.Path, v.Capacity, v.Headroom, v.Used, v.MeasuredAt,
            new SortedDictionary<string, long>(v.ConsumerUsage.ToDictionary(), StringComparer.Ordinal),
            v.Reservations.Values.ToList())).ToList())
    {
        LastFencingToken = LastFencingToken,
        Images = _images.Values.ToList(),
        Leases = _leases.Values.ToList(),
        Vms = _vms.Values.ToList(),
        Nodes = _nodes.Values.ToList(),
        Feed = _feed.ToList(),
        FeedSeq = _feedSeq,
    };

    public static CsvLedger FromSnapshot(LedgerSnapshot s)
    {
        var ledger = new CsvLedger { Epoch = s.Epoch, EpochNode = s.EpochNode, EpochStartedAt = s.EpochStartedAt, LastFencingToken = s.LastFencingToken };
        foreach (var vs in s.Volumes)
        {
            var v = new VolumeState(vs.Name, vs.Path, vs.CapacityBytes, vs.HeadroomBytes);
            foreach (var r in vs.Reservations) v.Put(r);
            v.SetMeasurement(vs.UsedBytes, vs.ConsumerUsage, vs.MeasuredAt);
            ledger._volumes[vs.Name] = v;
        }
        foreach (var i in s.Images ?? []) ledger._images[i.ImageId] = i;
        foreach (var l in s.Leases ?? []) ledger._leases[l.ImageId] = l;
        foreach (var vm in s.Vms ?? []) ledger._vms[vm.Name] = vm;
        foreach (var n in s.Nodes ?? []) ledger._nodes[n.Node] = n;
        foreach (var f in s.Feed ?? []) ledger._feed.AddLast(f);
        ledger._feedSeq = s.FeedSeq;
        return ledger;
    }

    private static bool SameUsage(IReadOnlyDictionary<string, long> a, IReadOnlyDictionary<string, long> b) =>
        a.Count == b.Count && a.All(kv => b.TryGetValue(kv.Key, out var x) && x == kv.Value);

    /// <summary>Mutable per-volume state with running totals, so every decision is O(1) in the number of reservations.</summary>
    private sealed class VolumeState(string name, string path, long capacity, long headroom)
    {
        public string Name { get; } = name;
        public string Path { get; set; } = path;
        public long Capacity { get; set; } = capacity;
        public long Headroom { get; set; } = headroom;
        public long Used { get; private set; }
        public DateTimeOffset? MeasuredAt { get; private set; }
        public SortedDictionary<string, Reservation> Reservations { get; } = new(StringComparer.Ordinal);
        public SortedDictionary<string, long> ConsumerUsage { get; private set; } = new(StringComparer.Ordinal);

        private long _claimed;          // Σ bytes claimed
        private long _effective;        // Σ max(claimed, measured)
        private long _measuredOwned;    // Σ measured usage of current reservations

        public long Effective(Reservation r) => Math.Max(r.Bytes, ConsumerUsage.GetValueOrDefault(r.ConsumerId));

        public long Unowned => Math.Max(0, Used - _measuredOwned);

        public long Free => Capacity - Headroom - _effective - Unowned;

        /// <summary>Free space once the consumer's reservation is removed (see <see cref="Remove"/>).</summary>
        public long FreeWithout(string consumerId)
        {
            if (!Reservations.TryGetValue(consumerId, out var r)) return Free;
            var measuredOwned = _measuredOwned - ConsumerUsage.GetValueOrDefault(consumerId);
            return Capacity - Headroom - (_effective - Effective(r)) - Math.Max(0, Used - measuredOwned);
        }

        public void Put(Reservation r)
        {
            // Replacing (resize, new node/path/image) keeps the consumer's measured usage: its directory is still
            // owned. Only Remove (a release) hands those bytes over to "unowned" until the next scan.
            if (Reservations.TryGetValue(r.ConsumerId, out var old))
            {
                _claimed -= old.Bytes;
                _effective -= Effective(old);
                _measuredOwned -= ConsumerUsage.GetValueOrDefault(r.ConsumerId);
            }
            if (old is not null) { CountUser(old, -1); CountNode(old.Node, -1, -Effective(old)); }
            Reservations[r.ConsumerId] = r;
            CountUser(r, +1);
            CountNode(r.Node, +1, Effective(r));
            _claimed += r.Bytes;
            _effective += Effective(r);
            _measuredOwned += ConsumerUsage.GetValueOrDefault(r.ConsumerId);
        }

        public void Remove(string consumerId)
        {
            if (!Reservations.Remove(consumerId, out var old)) return;
            CountUser(old, -1);
            CountNode(old.Node, -1, -Effective(old));
            _claimed -= old.Bytes;
            _effective -= Effective(old);
            _measuredOwned -= ConsumerUsage.GetValueOrDefault(consumerId);
            // The directory's bytes now belong to no reservation until the next scan says otherwise.
            ConsumerUsage.Remove(consumerId);
        }

        /// <summary>Per node: how many reservations it holds and Σ max(claimed, measured) of them.</summary>
        public Dictionary<string, (int Count, long Effective)> ByNode { get; } = new(StringComparer.Ordinal);

        private void CountNode(string node, int count, long effective)
        {
            var (c, e) = ByNode.GetValueOrDefault(node);
            if (c + count == 0) ByNode.Remove(node);
            else ByNode[node] = (c + count, e + effective);
        }

        /// <summary>Reservations (instances, not the cache's own claims) per image they were created from.</summary>
        public Dictionary<string, int> ImageUsers { get; } = new(StringComparer.Ordinal);

        // Kept with every Put/Remove so that "who uses this image" is a lookup, not a scan of every reservation.
        private void CountUser(Reservation r, int delta)
        {
            if (r.ImageId is null || r.ConsumerId.StartsWith(ImageClaimPrefix, StringComparison.Ordinal)) return;
            var n = ImageUsers.GetValueOrDefault(r.ImageId) + delta;
            if (n == 0) ImageUsers.Remove(r.ImageId);
            else ImageUsers[r.ImageId] = n;
        }

        public void SetMeasurement(long used, IReadOnlyDictionary<string, long> usage, DateTimeOffset? at)
        {
            Used = used;
            MeasuredAt = at;
            ConsumerUsage = new SortedDictionary<string, long>(
                usage.Where(kv => Reservations.ContainsKey(kv.Key)).ToDictionary(), StringComparer.Ordinal);
            _effective = 0; _measuredOwned = 0;
            ByNode.Clear();
            foreach (var r in Reservations.Values)
            {
                CountNode(r.Node, +1, Effective(r));
                _effective += Effective(r);
                _measuredOwned += ConsumerUsage.GetValueOrDefault(r.ConsumerId);
            }
        }

        public VolumeView View() =>
            new(Name, Path, Capacity, Headroom, Used, _claimed, Unowned, Free, Reservations.Count, MeasuredAt);
    }
}

public sealed record VolumeSnapshot(
    string Name, string Path, long CapacityBytes, long HeadroomBytes, long UsedBytes, DateTimeOffset? MeasuredAt,
    IReadOnlyDictionary<string, long> ConsumerUsage, IReadOnlyList<Reservation> Reservations);

public sealed record LedgerSnapshot(long Epoch, string? EpochNode, DateTimeOffset? EpochStartedAt, IReadOnlyList<VolumeSnapshot> Volumes)
{
    public long LastFencingToken { get; init; }
    public IReadOnlyList<CachedImage>? Images { get; init; }
    public IReadOnlyList<ImageLease>? Leases { get; init; }
    public IReadOnlyList<VmRecord>? Vms { get; init; }
    public IReadOnlyList<NodeRecord>? Nodes { get; init; }
    public IReadOnlyList<FeedEntry>? Feed { get; init; }
    public long FeedSeq { get; init; }
}
