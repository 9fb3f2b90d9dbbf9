namespace Coordinator.Domain;

/// <summary>A claim on a volume by one consumer (an instance), held for the node that runs it.</summary>
public sealed record Reservation(
    string Volume,
    string ConsumerId,
    string Node,
    long Bytes,
    string? Path,
    string? ImageId,
    DateTimeOffset CreatedAt,
    DateTimeOffset UpdatedAt);

/// <summary>What a client asks for with PUT .../reservations/{consumerId}.</summary>
public sealed record ReserveRequest(string Volume, string ConsumerId, string Node, long Bytes, string? Path = null, string? ImageId = null);

/// <summary>
/// The accounting of one volume as the API reports it. <c>FreeBytes</c> is never negative; where facts (a scan, an
/// adopted VM, a smaller configured capacity) put more on the volume than its usable capacity, FreeBytes is 0 and
/// <c>OvercommittedBytes</c> = Σ max(claimed, measured) + unowned - (capacity - headroom). Sums saturate at 2^63-1.
/// </summary>
public sealed record VolumeView(
    string Name,
    string Path,
    long CapacityBytes,
    long HeadroomBytes,
    long UsedBytes,
    long ReservedBytes,
    long UnownedBytes,
    long FreeBytes,
    int Reservations,
    DateTimeOffset? MeasuredAt,
    long OvercommittedBytes = 0);

/// <summary>One node's share of a volume.</summary>
public sealed record NodeQuota(string Node, bool Live, long ClaimedBytes, long FreeBytes, long QuotaBytes);

public enum QuotaPolicy
{
    /// <summary>Every node may claim all of the volume's free space; the ledger makes claims atomic.</summary>
    Shared,

    /// <summary>Free space is split between live nodes by weight; quotas add up to the usable capacity.</summary>
    Partitioned,
}
