namespace Coordinator.Domain;

/// <summary>
/// A node won the right to fetch an image. Its size is claimed on the volume at once (a reservation whose consumer
/// is <c>_image-{imageId}</c> and whose directory is the image's folder), so the cache competes honestly for space.
/// </summary>
public sealed record ImageLeaseGranted(
    string ImageId, string LeaseId, string Node, long FencingToken, string Volume, string Folder, string File,
    long SizeBytes, DateTimeOffset At, DateTimeOffset ExpiresAt) : LedgerEvent;

public sealed record ImageLeaseRenewed(string ImageId, string LeaseId, DateTimeOffset ExpiresAt) : LedgerEvent;

public enum LeaseEndReason { Aborted, Expired, HolderRemoved }

/// <summary>A lease ended without an image: its claim is released and the next waiter may be granted.</summary>
public sealed record ImageLeaseEnded(string ImageId, string LeaseId, LeaseEndReason Reason, DateTimeOffset At) : LedgerEvent;

/// <summary>The holder downloaded and verified the image; the claim becomes the cache entry's (at its real size).</summary>
public sealed record ImageCached(string ImageId, string LeaseId, long SizeBytes, string Checksum, DateTimeOffset At) : LedgerEvent;

/// <summary>A cache hit; recorded at most once a minute per image, so hits do not flood the journal.</summary>
public sealed record ImageUsed(string ImageId, DateTimeOffset At) : LedgerEvent;

/// <summary>The singleton evicted an unused image: the entry and its claim are gone, the singleton deletes the files.</summary>
public sealed record ImageEvicted(string ImageId, DateTimeOffset At) : LedgerEvent;
