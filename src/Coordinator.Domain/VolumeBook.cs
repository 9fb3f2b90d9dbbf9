namespace Coordinator.Domain;

/// <summary>
/// What a claim of <c>bytes</c> by a consumer would do to a volume: the growth of what the consumer counts against
/// it (max of claimed and measured), whether that growth fits, and the free space before and after (never negative).
/// </summary>
public readonly record struct ClaimFit(bool Fits, long Growth, long FreeBefore, long FreeAfter);

/// <summary>
/// The volume book: volumes, their reservations, measurements, running totals and quotas. It owns the one rule the
/// coordinator exists for, with no exception: no decision makes Σ max(claimed, measured) + unowned exceed the usable
/// capacity (capacity - headroom) of a volume. Only facts may overcommit a volume - a scan that measures more than was
/// claimed, a VM adopted with its disk already in use, a smaller configured capacity - and then
/// <see cref="VolumeView.OvercommittedBytes"/> says by how much while free space reads 0. Sums are kept in 128 bits
/// (many claims of 2^62 cannot wrap); answers saturate at <see cref="long.MaxValue"/>. Other books claim space only
/// through <see cref="Fit"/> and the claim methods, never through the volumes' fields.
/// </summary>
public sealed class VolumeBook
{
    private readonly SortedDictionary<string, VolumeState> _volumes = new(StringComparer.Ordinal);

    internal VolumeBook() { }

    public IEnumerable<string> Names => _volumes.Keys;

    public bool Has(string volume) => _volumes.ContainsKey(volume);

    public int ReservationCount => _volumes.Values.Sum(v => v.Reservations.Count);

    // ---------------------------------------------------------------- decisions

    /// <summary>
    /// <paramref name="caller"/>: the node the request acts for (null: an administrator). A node may not take over or
    /// change another node's reservation (<see cref="ReserveStatus.WrongNode"/>).
    /// </summary>
    public Decision<ReserveOutcome> Reserve(ReserveRequest r, DateTimeOffset now, string? caller = null)
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

        v.Reservations.TryGetValue(r.ConsumerId, out var existing);
        if (caller is not null && ((existing is not null && existing.Node != caller) || r.Node != caller))
            return new(new ReserveOutcome(ReserveStatus.WrongNode, existing, v.Free,
                $"the reservation {r.ConsumerId} is {(existing is not null && existing.Node != caller ? $"held by {existing.Node}" : $"for {r.Node}")}, not by {caller}"), []);
        // "VM1" after "vm1" is the same folder, so the same reservation: it keeps its first spelling.
        var id = existing?.ConsumerId ?? r.ConsumerId;
        if (existing is not null
            && existing.Bytes == r.Bytes && existing.Node == r.Node && existing.Path == relPath && existing.ImageId == r.ImageId)
            return new(new ReserveOutcome(ReserveStatus.Unchanged, existing, v.Free), []);

        var fit = v.Fit(id, r.Bytes, releasing: null);
        if (!fit.Fits)
            return new(new ReserveOutcome(ReserveStatus.InsufficientSpace, existing, fit.FreeBefore,
                $"{ByteSize.Format(r.Bytes)} does not fit on {r.Volume}: {ByteSize.Format(fit.FreeBefore)} free"), []);

        var placed = new ReservationPlaced(r.Volume, id, r.Node, r.Bytes, relPath, r.ImageId, now);
        var reservation = new Reservation(r.Volume, id, r.Node, r.Bytes, relPath, r.ImageId, existing?.CreatedAt ?? now, now);
        return new(new ReserveOutcome(existing is null ? ReserveStatus.Created : ReserveStatus.Updated, reservation, fit.FreeAfter),
            [placed]);
    }

    /// <summary><paramref name="caller"/>: as for <see cref="Reserve"/>; a node releases only its own reservations.</summary>
    public Decision<ReleaseOutcome> Release(string volume, string consumerId, DateTimeOffset now, string? caller = null)
    {
        if (!_volumes.TryGetValue(volume, out var v))
            return new(new ReleaseOutcome(ReleaseStatus.UnknownVolume, null), []);
        // Image claims are released by the image cache only (abort, expiry, eviction), never directly.
        if (consumerId.StartsWith(CsvLedger.ImageClaimPrefix, StringComparison.OrdinalIgnoreCase)
            || !v.Reservations.TryGetValue(consumerId, out var existing))
            return new(new ReleaseOutcome(ReleaseStatus.NotFound, null), []);
        if (caller is not null && existing.Node != caller) return new(new ReleaseOutcome(ReleaseStatus.WrongNode, existing), []);
        return new(new ReleaseOutcome(ReleaseStatus.Released, existing), [new ReservationReleased(volume, existing.ConsumerId, now)]);
    }

    /// <summary>
    /// Events needed so the volume matches configuration (none when it already does). A capacity or headroom outside
    /// [0, 2^62] is a configuration error and throws: nothing is recorded. A capacity below what is claimed is
    /// recorded (configuration is a fact); the volume then reports itself overcommitted and refuses every growth.
    /// </summary>
    public IReadOnlyList<LedgerEvent> Configure(string volume, string path, long capacityBytes, long headroomBytes)
    {
        if (InputRules.CheckVolumeSizes(volume, capacityBytes, headroomBytes) is { } err)
            throw new ArgumentOutOfRangeException(nameof(capacityBytes), err);
        if (_volumes.TryGetValue(volume, out var v) && v.Path == path && v.Capacity == capacityBytes && v.Headroom == headroomBytes)
            return [];
        return [new VolumeConfigured(volume, path, capacityBytes, headroomBytes)];
    }

    /// <summary>Events for a scan result (none when nothing changed, so periodic rescans do not grow the journal).</summary>
    public IReadOnlyList<LedgerEvent> Measure(string volume, long usedBytes, IReadOnlyDictionary<string, long> consumerUsage, DateTimeOffset now)
    {
        if (!_volumes.TryGetValue(volume, out var v)) return [];
        // Only directories of current reservations count (a consumer released while the scan ran is dropped).
        var owned = v.Owned(consumerUsage);
        var used = VolumeState.ClampMeasured(usedBytes);
        if (v.MeasuredAt is not null && v.Used == used && SameUsage(v.ConsumerUsage, owned)) return [];
        return [new VolumeMeasured(volume, used, owned, now)];
    }

    /// <summary>
    /// Whether <paramref name="consumerId"/> claiming <paramref name="bytes"/> on <paramref name="volume"/> fits, with
    /// <paramref name="releasing"/> (a claim ended in the same decision) released first. Unknown volume: does not fit.
    /// </summary>
    public ClaimFit Fit(string volume, string consumerId, long bytes, string? releasing = null) =>
        _volumes.TryGetValue(volume, out var v) ? v.Fit(consumerId, bytes, releasing) : new ClaimFit(false, 0, 0, 0);

    /// <summary>Whether Σ claimed on the volume stays reportable (≤ 2^63-1) with <paramref name="bytes"/> more.</summary>
    public bool TotalsFit(string volume, long bytes) =>
        _volumes.TryGetValue(volume, out var v) && v.Claimed + Math.Max(bytes, 0) <= long.MaxValue;

    // ---------------------------------------------------------------- claims of the other books (applied events only)

    internal void Claim(Reservation r) => _volumes[r.Volume].Put(r);

    internal void Unclaim(string volume, string consumerId)
    {
        if (_volumes.TryGetValue(volume, out var v)) v.Remove(consumerId);
    }

    // ---------------------------------------------------------------- state changes

    internal bool Apply(LedgerEvent e)
    {
        switch (e)
        {
            case VolumeConfigured c:
                if (_volumes.TryGetValue(c.Volume, out var existing))
                {
                    existing.Path = c.Path; existing.Capacity = c.CapacityBytes; existing.Headroom = c.HeadroomBytes;
                }
                else _volumes[c.Volume] = new VolumeState(c.Volume, c.Path, c.CapacityBytes, c.HeadroomBytes);
                return true;
            case ReservationPlaced p:
            {
                var v = _volumes[p.Volume];
                var created = v.Reservations.TryGetValue(p.ConsumerId, out var old) ? old.CreatedAt : p.At;
                v.Put(new Reservation(p.Volume, p.ConsumerId, p.Node, p.Bytes, p.Path, p.ImageId, created, p.At));
                return true;
            }
            case ReservationReleased r:
                _volumes[r.Volume].Remove(r.ConsumerId);
                return true;
            case VolumeMeasured m:
                _volumes[m.Volume].SetMeasurement(m.UsedBytes, m.ConsumerUsage, m.At);
                return true;
            default:
                return false;
        }
    }

    // ---------------------------------------------------------------- queries

    public VolumeView? View(string volume) => _volumes.TryGetValue(volume, out var v) ? v.View() : null;

    public IReadOnlyList<VolumeView> Views() => _volumes.Values.Select(v => v.View()).ToList();

    public IReadOnlyList<Reservation> Reservations(string volume) =>
        _volumes.TryGetValue(volume, out var v) ? v.Reservations.Values.ToList() : [];

    public Reservation? Find(string volume, string consumerId) =>
        _volumes.TryGetValue(volume, out var v) ? v.Reservations.GetValueOrDefault(consumerId) : null;

    /// <summary>Whether any volume holds a reservation under this id (equivalent spellings included).</summary>
    public bool HoldsAnywhere(string consumerId) => _volumes.Values.Any(v => v.Reservations.ContainsKey(consumerId));

    /// <summary>Directories the scanner must measure: consumer id → path relative to the volume root.</summary>
    public IReadOnlyDictionary<string, string> MeasuredDirectories(string volume) =>
        _volumes.TryGetValue(volume, out var v)
            ? v.Reservations.Values.Where(r => r.Path is not null).ToDictionary(r => r.ConsumerId, r => r.Path!, FileNames.Comparer)
            : new Dictionary<string, string>();

    /// <summary>Reservations that name the image (instances created from it).</summary>
    public int UsersOf(string imageId) => _volumes.Values.Sum(v => v.ImageUsers.GetValueOrDefault(imageId));

    public IReadOnlyList<NodeQuota>? Quotas(string volume, QuotaPolicy policy, IReadOnlyDictionary<string, double> liveNodes)
    {
        if (!_volumes.TryGetValue(volume, out var v)) return null;
        // Running totals per node (O(nodes), not O(reservations): node agents ask for quotas all the time).
        var claimed = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach (var (node, total) in v.ByNode) claimed[node] = Bytes.Saturate(total.Effective);
        foreach (var n in liveNodes.Keys) claimed.TryAdd(n, 0);

        var free = v.Free;
        var shares = policy == QuotaPolicy.Shared
            ? liveNodes.Keys.ToDictionary(n => n, _ => free)
            : QuotaSplit.Split(free, liveNodes);
        return claimed.Select(kv =>
        {
            var live = liveNodes.ContainsKey(kv.Key);
            var share = live ? shares.GetValueOrDefault(kv.Key) : 0;
            return new NodeQuota(kv.Key, live, kv.Value, share, Bytes.Saturate((Int128)kv.Value + share));
        }).ToList();
    }

    // ---------------------------------------------------------------- snapshots

    internal IReadOnlyList<VolumeSnapshot> ToSnapshot() =>
        _volumes.Values.Select(v => new VolumeSnapshot(
            v.Name, v.Path, v.Capacity, v.Headroom, v.Used, v.MeasuredAt,
            new SortedDictionary<string, long>(v.ConsumerUsage.Pairs.ToDictionary(), StringComparer.Ordinal),
            v.Reservations.Values.ToList())).ToList();

    internal void Load(IEnumerable<VolumeSnapshot> volumes)
    {
        foreach (var vs in volumes)
        {
            var v = new VolumeState(vs.Name, vs.Path, vs.CapacityBytes, vs.HeadroomBytes);
            foreach (var r in vs.Reservations) v.Put(r);
            v.SetMeasurement(vs.UsedBytes, vs.ConsumerUsage, vs.MeasuredAt);
            _volumes[vs.Name] = v;
        }
    }

    private static bool SameUsage(FileNameMap<long> a, IReadOnlyDictionary<string, long> b) =>
        a.Count == b.Count && a.Pairs.All(kv => b.TryGetValue(kv.Key, out var x) && x == kv.Value);

    /// <summary>Mutable per-volume state with running totals, so every decision is O(1) in the number of reservations.</summary>
    private sealed class VolumeState(string name, string path, long capacity, long headroom)
    {
        public string Name { get; } = name;
        public string Path { get; set; } = path;
        public long Capacity { get; set; } = capacity;
        public long Headroom { get; set; } = headroom;
        public long Used { get; private set; }
        public DateTimeOffset? MeasuredAt { get; private set; }
        public FileNameMap<Reservation> Reservations { get; } = new();
        public FileNameMap<long> ConsumerUsage { get; private set; } = new();

        // Running totals in 128 bits: they can never wrap, whatever was adopted or measured.
        private Int128 _claimed;          // Σ bytes claimed
        private Int128 _effective;        // Σ max(claimed, measured)
        private Int128 _measuredOwned;    // Σ measured usage of current reservations

        public Int128 Claimed => _claimed;

        /// <summary>
        /// File-system numbers are untrusted longs: a negative one counts as 0 and anything above 2^62 as 2^62 (no
        /// volume is that large), so no measured value can push a sum anywhere near overflow.
        /// </summary>
        public static long ClampMeasured(long bytes) => Math.Clamp(bytes, 0, ByteSize.MaxBytes);

        private long UsageOf(string consumerId) => ConsumerUsage.GetValueOrDefault(consumerId);

        public long Effective(Reservation r) => Math.Max(r.Bytes, UsageOf(r.ConsumerId));

        private Int128 Usable => Int128.Max(0, (Int128)Capacity - Headroom);

        private Int128 UnownedExact => Int128.Max(0, (Int128)Used - _measuredOwned);

        /// <summary>usable - Σ effective - unowned: negative when facts overcommitted the volume.</summary>
        private Int128 Room => Usable - _effective - UnownedExact;

        public long Free => Bytes.Saturate(Int128.Max(0, Room));

        public long Overcommitted => Bytes.Saturate(Int128.Max(0, -Room));

        public ClaimFit Fit(string consumerId, long bytes, string? releasing)
        {
            var room = Room;
            var gone = releasing is not null && Reservations.TryGetValue(releasing, out var released) ? released : null;
            if (gone is not null)
            {
                // The released claim's measured bytes stay on disk, unowned until the next scan.
                var measuredOwned = _measuredOwned - UsageOf(gone.ConsumerId);
                room = Usable - (_effective - Effective(gone)) - Int128.Max(0, (Int128)Used - measuredOwned);
            }
            var stays = gone is null || !FileNames.Comparer.Equals(gone.ConsumerId, consumerId);
            var existing = stays && Reservations.TryGetValue(consumerId, out var r) ? r : null;
            var measured = stays ? UsageOf(consumerId) : 0;
            var before = existing is null ? 0 : Math.Max(existing.Bytes, measured);
            var growth = (Int128)Math.Max(bytes, measured) - before;
            var fits = growth <= 0 || growth <= room;
            var freeBefore = Bytes.Saturate(Int128.Max(0, room));
            return new ClaimFit(fits, Bytes.Saturate(growth), freeBefore, fits ? Bytes.Saturate(Int128.Max(0, room - growth)) : freeBefore);
        }

        public void Put(Reservation r)
        {
            // Replacing (resize, new node/path/image) keeps the consumer's measured usage: its directory is still
            // owned. Only Remove (a release) hands those bytes over to "unowned" until the next scan.
            if (Reservations.TryGetValue(r.ConsumerId, out var old))
            {
                _claimed -= old.Bytes;
                _effective -= Effective(old);
                _measuredOwned -= UsageOf(old.ConsumerId);
                CountUser(old, -1);
                CountNode(old.Node, -1, -Effective(old));
                if (old.ConsumerId != r.ConsumerId && ConsumerUsage.Remove(old.ConsumerId, out var usage))
                    ConsumerUsage.Set(r.ConsumerId, usage); // a legacy spelling change: the directory is the same
            }
            Reservations.Set(r.ConsumerId, r);
            CountUser(r, +1);
            CountNode(r.Node, +1, Effective(r));
            _claimed += r.Bytes;
            _effective += Effective(r);
            _measuredOwned += UsageOf(r.ConsumerId);
        }

        public void Remove(string consumerId)
        {
            if (!Reservations.Remove(consumerId, out var old)) return;
            CountUser(old, -1);
            CountNode(old.Node, -1, -Effective(old));
            _claimed -= old.Bytes;
            _effective -= Effective(old);
            _measuredOwned -= UsageOf(old.ConsumerId);
            // The directory's bytes now belong to no reservation until the next scan says otherwise.
            ConsumerUsage.Remove(old.ConsumerId);
        }

        /// <summary>Per node: how many reservations it holds and Σ max(claimed, measured) of them.</summary>
        public Dictionary<string, (int Count, Int128 Effective)> ByNode { get; } = new(StringComparer.Ordinal);

        private void CountNode(string node, int count, Int128 effective)
        {
            var (c, e) = ByNode.GetValueOrDefault(node);
            if (c + count == 0) ByNode.Remove(node);
            else ByNode[node] = (c + count, e + effective);
        }

        /// <summary>Reservations (instances, not the cache's own claims) per image they were created from.</summary>
        public Dictionary<string, int> ImageUsers { get; } = new(FileNames.Comparer);

        // Kept with every Put/Remove so that "who uses this image" is a lookup, not a scan of every reservation.
        private void CountUser(Reservation r, int delta)
        {
            if (r.ImageId is null || r.ConsumerId.StartsWith(CsvLedger.ImageClaimPrefix, StringComparison.OrdinalIgnoreCase)) return;
            var n = ImageUsers.GetValueOrDefault(r.ImageId) + delta;
            if (n == 0) ImageUsers.Remove(r.ImageId);
            else ImageUsers[r.ImageId] = n;
        }

        /// <summary>
        /// The measured usage that belongs to current reservations, keyed by their stored spelling and clamped. Two
        /// keys equivalent under NTFS rules name one directory: the last one wins.
        /// </summary>
        public SortedDictionary<string, long> Owned(IReadOnlyDictionary<string, long> usage)
        {
            var owned = new SortedDictionary<string, long>(StringComparer.Ordinal);
            foreach (var (consumer, bytes) in usage)
                if (Reservations.TryGetValue(consumer, out var r)) owned[r.ConsumerId] = ClampMeasured(bytes);
            return owned;
        }

        public void SetMeasurement(long used, IReadOnlyDictionary<string, long> usage, DateTimeOffset? at)
        {
            Used = ClampMeasured(used);
            MeasuredAt = at;
            ConsumerUsage = new FileNameMap<long>();
            foreach (var (consumer, bytes) in Owned(usage)) ConsumerUsage.Set(consumer, bytes);
            _effective = 0; _measuredOwned = 0;
            ByNode.Clear();
            foreach (var r in Reservations.Values)
            {
                CountNode(r.Node, +1, Effective(r));
                _effective += Effective(r);
                _measuredOwned += UsageOf(r.ConsumerId);
            }
        }

        public VolumeView View() =>
            new(Name, Path, Capacity, Headroom, Used, Bytes.Saturate(_claimed), Bytes.Saturate(UnownedExact), Free, Reservations.Count,
                MeasuredAt, Overcommitted);
    }
}

/// <summary>Wide sums reported as 64-bit answers.</summary>
internal static class Bytes
{
    /// <summary>Clamps to the range of a long (sums are kept in 128 bits and can only exceed it through facts).</summary>
    public static long Saturate(Int128 value) => (long)Int128.Clamp(value, long.MinValue, long.MaxValue);
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
