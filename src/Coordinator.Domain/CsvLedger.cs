namespace Coordinator.Domain;

/// <summary>WrongNode: the consumer's reservation belongs to another node than the caller's (nothing changes).</summary>
public enum ReserveStatus { Created, Unchanged, Updated, InsufficientSpace, UnknownVolume, Invalid, WrongNode }

public sealed record ReserveOutcome(ReserveStatus Status, Reservation? Reservation, long FreeBytes, string? Error = null);

public enum ReleaseStatus { Released, NotFound, UnknownVolume, WrongNode }

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
/// A facade over three books, each owning its rules and the events it applies: the <see cref="VolumeBook"/>
/// (volumes, reservations, measurements, quotas), the <see cref="ImageCache"/> (leases, fencing, cached images,
/// eviction) and the <see cref="VmInventory"/> (nodes, VMs, the feed). The cache and the inventory claim disk only
/// through the volume book's API. The ledger itself keeps the leader's epoch.
/// </summary>
public sealed class CsvLedger
{
    public const string ImageClaimPrefix = "_image-";

    /// <summary>How many feed entries are kept; agents that fall further behind re-read GET /v1/vms.</summary>
    public const int FeedCapacity = 10_000;

    /// <summary>vCPUs may be overcommitted this many times over logical processors (Hyper-V's own default ratio is far higher).</summary>
    public const int VcpuOvercommit = 4;

    public CsvLedger()
    {
        VolumeBook = new VolumeBook();
        ImageCache = new ImageCache(VolumeBook);
        VmInventory = new VmInventory(VolumeBook);
    }

    public VolumeBook VolumeBook { get; }
    public ImageCache ImageCache { get; }
    public VmInventory VmInventory { get; }

    public long Epoch { get; private set; }
    public string? EpochNode { get; private set; }
    public DateTimeOffset? EpochStartedAt { get; private set; }

    public IEnumerable<string> VolumeNames => VolumeBook.Names;

    public bool HasVolume(string volume) => VolumeBook.Has(volume);

    /// <summary>Reservations, cached images, leases and VMs: what a snapshot holds (its cost grows with this).</summary>
    public int EntryCount => VolumeBook.ReservationCount + ImageCache.Count + VmInventory.Count;

    public static string ImageClaim(string imageId) => ImageClaimPrefix + imageId;

    /// <summary>Where an image lives on its volume: a folder of its own (measured as the claim's directory).</summary>
    public static string ImageFolder(string cacheFolder, string imageId) => $"{cacheFolder.Trim('/')}/{imageId}";

    public static string VmFolder(string name) => $"instances/{name}";

    // ---------------------------------------------------------------- volumes

    public Decision<ReserveOutcome> Reserve(ReserveRequest r, DateTimeOffset now, string? caller = null) => VolumeBook.Reserve(r, now, caller);

    public Decision<ReleaseOutcome> Release(string volume, string consumerId, DateTimeOffset now, string? caller = null) =>
        VolumeBook.Release(volume, consumerId, now, caller);

    /// <inheritdoc cref="VolumeBook.Configure"/>
    public IReadOnlyList<LedgerEvent> Configure(string volume, string path, long capacityBytes, long headroomBytes) =>
        VolumeBook.Configure(volume, path, capacityBytes, headroomBytes);

    /// <summary>Events for a scan result (none when nothing changed, so periodic rescans do not grow the journal).</summary>
    public IReadOnlyList<LedgerEvent> Measure(string volume, long usedBytes, IReadOnlyDictionary<string, long> consumerUsage, DateTimeOffset now) =>
        VolumeBook.Measure(volume, usedBytes, consumerUsage, now);

    public VolumeView? View(string volume) => VolumeBook.View(volume);

    public IReadOnlyList<VolumeView> Views() => VolumeBook.Views();

    public IReadOnlyList<Reservation> Reservations(string volume) => VolumeBook.Reservations(volume);

    public Reservation? Find(string volume, string consumerId) => VolumeBook.Find(volume, consumerId);

    /// <summary>Directories the scanner must measure: consumer id → path relative to the volume root.</summary>
    public IReadOnlyDictionary<string, string> MeasuredDirectories(string volume) => VolumeBook.MeasuredDirectories(volume);

    /// <summary>
    /// Each node's share of a volume. <paramref name="liveNodes"/> maps the nodes that are members of the cluster
    /// now to their weight; nodes that hold reservations but are gone keep their claims and get no share.
    /// </summary>
    public IReadOnlyList<NodeQuota>? Quotas(string volume, QuotaPolicy policy, IReadOnlyDictionary<string, double> liveNodes) =>
        VolumeBook.Quotas(volume, policy, liveNodes);

    // ---------------------------------------------------------------- leader epochs

    public LeaderEpochStarted NextEpoch(string node, DateTimeOffset now) => new(Epoch + 1, node, now);

    /// <summary>The barrier a leader persists to prove it is still the only writer (see <see cref="LeaderConfirmed"/>).</summary>
    public LeaderConfirmed ConfirmLeader(DateTimeOffset now) => new(Epoch, now);

    // ---------------------------------------------------------------- the image cache

    public long LastFencingToken => ImageCache.LastFencingToken;
    public IReadOnlyCollection<CachedImage> Images => ImageCache.Images;
    public IReadOnlyCollection<ImageLease> Leases => ImageCache.Leases;
    public CachedImage? FindImage(string imageId) => ImageCache.FindImage(imageId);
    public ImageLease? FindLease(string imageId) => ImageCache.FindLease(imageId);

    public Decision<LeaseOutcome> AcquireImage(string imageId, string node, long sizeBytes, string volume, string cacheFolder,
        TimeSpan ttl, DateTimeOffset now, string? leaseSecret = null) =>
        ImageCache.AcquireImage(imageId, node, sizeBytes, volume, cacheFolder, ttl, now, leaseSecret);

    public Decision<LeaseActionOutcome> RenewLease(string imageId, string leaseId, long token, TimeSpan ttl, DateTimeOffset now,
        string? caller = null) => ImageCache.RenewLease(imageId, leaseId, token, ttl, now, caller);

    /// <inheritdoc cref="ImageCache.CompleteLease"/>
    public Decision<LeaseActionOutcome> CompleteLease(string imageId, string leaseId, long token, long sizeBytes, string checksum, DateTimeOffset now,
        string? caller = null) => ImageCache.CompleteLease(imageId, leaseId, token, sizeBytes, checksum, now, caller);

    public Decision<LeaseActionOutcome> AbortLease(string imageId, string leaseId, long token, DateTimeOffset now, string? caller = null) =>
        ImageCache.AbortLease(imageId, leaseId, token, now, caller);

    public IReadOnlyList<LedgerEvent> ExpireLeases(DateTimeOffset now) => ImageCache.ExpireLeases(now);

    public IReadOnlyList<LedgerEvent> EndLeasesOf(string node, DateTimeOffset now) => ImageCache.EndLeasesOf(node, now);

    public IReadOnlyList<LedgerEvent> RefreshLeases(TimeSpan ttl, DateTimeOffset now) => ImageCache.RefreshLeases(ttl, now);

    public IReadOnlyList<LedgerEvent> Touch(string imageId, DateTimeOffset now) => ImageCache.Touch(imageId, now);

    public int UsersOf(string imageId) => ImageCache.UsersOf(imageId);

    public IReadOnlyList<CachedImage> EvictionCandidates(TimeSpan maxAge, DateTimeOffset now) => ImageCache.EvictionCandidates(maxAge, now);

    public Decision<CachedImage?> Evict(string imageId, TimeSpan maxAge, DateTimeOffset now) => ImageCache.Evict(imageId, maxAge, now);

    // ---------------------------------------------------------------- the VM inventory

    public IReadOnlyCollection<VmRecord> Vms => VmInventory.Vms;
    public VmRecord? FindVm(string name) => VmInventory.FindVm(name);
    public NodeRecord? FindNode(string node) => VmInventory.FindNode(node);
    public long FeedHead => VmInventory.FeedHead;

    public IReadOnlyList<FeedEntry> FeedAfter(long after, string? node, int max = 1000) => VmInventory.FeedAfter(after, node, max);

    public NodeUsage Usage(string node) => VmInventory.Usage(node);

    public IReadOnlyList<NodeUsage> Usages() => VmInventory.Usages();

    public IReadOnlyList<LedgerEvent> ReportCapacity(string node, long memoryMb, int logicalProcessors, DateTimeOffset now) =>
        VmInventory.ReportCapacity(node, memoryMb, logicalProcessors, now);

    public IReadOnlyList<LedgerEvent> SetDraining(string node, bool draining, DateTimeOffset now) => VmInventory.SetDraining(node, draining, now);

    /// <inheritdoc cref="VmInventory.PlaceVm"/>
    public Decision<PlaceOutcome> PlaceVm(PlaceVmRequest r, DateTimeOffset now) => VmInventory.PlaceVm(r, now);

    /// <inheritdoc cref="VmInventory.Adopt"/>
    public IReadOnlyList<LedgerEvent> AdoptVm(PlaceVmRequest r, string reason, DateTimeOffset now) => VmInventory.Adopt(r, reason, now).Events;

    /// <inheritdoc cref="VmInventory.Adopt"/>
    /// <summary>An arrival from another cluster: validated as a spawn and its disk must fit (see <see cref="VmInventory.Arrive"/>).</summary>
    public Decision<PlaceOutcome> Arrive(PlaceVmRequest r, DateTimeOffset now) => VmInventory.Arrive(r, now);

    public Decision<PlaceOutcome> DecideAdoption(PlaceVmRequest r, string reason, DateTimeOffset now) => VmInventory.Adopt(r, reason, now);

    public IReadOnlyList<LedgerEvent> SetVmPhase(string name, VmPhase phase, DateTimeOffset now) => VmInventory.SetVmPhase(name, phase, now);

    /// <summary>The cluster says the VM's group is owned by <paramref name="node"/> now (a settled move or failover).</summary>
    public IReadOnlyList<LedgerEvent> ObserveOwner(string name, string node, string reason, DateTimeOffset now) =>
        VmInventory.ObserveOwner(name, node, reason, now);

    public IReadOnlyList<LedgerEvent> RemoveVm(string name, string reason, DateTimeOffset now) => VmInventory.RemoveVm(name, reason, now);

    /// <summary>Where a drained VM goes: the live, not draining node with the most free memory that can hold it.</summary>
    public string? PickTarget(string vmName, IReadOnlyCollection<string> liveNodes) => VmInventory.PickTarget(vmName, liveNodes);

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
            default:
                if (!VolumeBook.Apply(e) && !ImageCache.Apply(e) && !VmInventory.Apply(e))
                    throw new ArgumentOutOfRangeException(nameof(e), e.GetType().Name, "unknown ledger event");
                break;
        }
    }

    // ---------------------------------------------------------------- snapshots

    public LedgerSnapshot ToSnapshot() => new(Epoch, EpochNode, EpochStartedAt, VolumeBook.ToSnapshot())
    {
        LastFencingToken = ImageCache.LastFencingToken,
        Images = ImageCache.Images.ToList(),
        Leases = ImageCache.Leases.ToList(),
        Vms = VmInventory.Vms.ToList(),
        Nodes = VmInventory.Nodes.ToList(),
        Feed = VmInventory.Feed.ToList(),
        FeedSeq = VmInventory.FeedHead,
    };

    public static CsvLedger FromSnapshot(LedgerSnapshot s)
    {
        var ledger = new CsvLedger { Epoch = s.Epoch, EpochNode = s.EpochNode, EpochStartedAt = s.EpochStartedAt };
        ledger.VolumeBook.Load(s.Volumes);
        ledger.ImageCache.Load(s);
        ledger.VmInventory.Load(s);
        return ledger;
    }
}
