using Coordinator.Domain;

namespace Coordinator.Cluster.Ledger;

public sealed record AcquireImageLease(string ImageId, string Node, long SizeBytes) : ILedgerRequest;

// Caller: the node the request acts for; only the lease's holder may renew, complete or abort it. Null: an
// administrator (any holder).

public sealed record RenewImageLease(string ImageId, string LeaseId, long FencingToken, string? Caller = null) : ILedgerRequest;

public sealed record CompleteImageLease(string ImageId, string LeaseId, long FencingToken, long SizeBytes, string Checksum, string? Caller = null)
    : ILedgerRequest;

public sealed record AbortImageLease(string ImageId, string LeaseId, long FencingToken, string? Caller = null) : ILedgerRequest;

/// <summary>Long poll: answered as soon as the image is cached or has no live lease, or when <see cref="WaitMs"/> ends.</summary>
public sealed record WatchImage(string ImageId, int WaitMs) : ILedgerRequest;

public sealed record GetImages : ILedgerRequest
{
    public static readonly GetImages Instance = new();
}

/// <summary>Evict now what is unused and older than <see cref="OlderThan"/> (null: the configured age).</summary>
public sealed record EvictImages(TimeSpan? OlderThan) : ILedgerRequest;

/// <summary>Paths in replies are absolute: every node sees the CSV under the same path.</summary>
public sealed record ImageEntryView(string ImageId, string Volume, string Path, long SizeBytes, string Checksum,
    DateTimeOffset CachedAt, DateTimeOffset LastUsedAt, int Users);

public sealed record LeaseView(string ImageId, string LeaseId, string Holder, long FencingToken, string Volume, string Path,
    string Folder, long SizeBytes, DateTimeOffset GrantedAt, DateTimeOffset ExpiresAt, IReadOnlyList<string> Waiters);

public sealed record LeaseReply(long Epoch, LeaseStatus Status, ImageEntryView? Cached, LeaseView? Lease, int RetryAfterMs,
    long FreeBytes, string? Error) : ICoordinatorMessage;

public sealed record LeaseActionReply(long Epoch, LeaseActionStatus Status, LeaseView? Lease, ImageEntryView? Cached, string? Error, long FreeBytes = 0)
    : ICoordinatorMessage;

/// <summary>State: cached, leased (a holder is fetching), absent (nobody holds it: the caller may take the lease).</summary>
public sealed record ImageStateReply(long Epoch, string ImageId, string State, ImageEntryView? Cached, LeaseView? Lease)
    : ICoordinatorMessage;

public sealed record ImagesReply(long Epoch, IReadOnlyList<ImageEntryView> Images, IReadOnlyList<LeaseView> Leases) : ICoordinatorMessage;

public sealed record EvictReply(long Epoch, IReadOnlyList<ImageEntryView> Evicted) : ICoordinatorMessage;
