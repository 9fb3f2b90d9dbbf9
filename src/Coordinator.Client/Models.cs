using System.Text.Json;

namespace Coordinator.Client;

public sealed record VolumeInfo(string Name, string Path, long CapacityBytes, long HeadroomBytes, long UsedBytes, long ReservedBytes,
    long UnownedBytes, long FreeBytes, int Reservations, DateTimeOffset? MeasuredAt);

public sealed record VolumesInfo(long Epoch, IReadOnlyList<VolumeInfo> Volumes);

public sealed record ReservationInfo(string Volume, string ConsumerId, string Node, long Bytes, string? Path, string? ImageId,
    DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt, string? Status = null, long? FreeBytes = null, long? Epoch = null);

public sealed record ReservationsInfo(long Epoch, string Volume, IReadOnlyList<ReservationInfo> Reservations);

public sealed record NodeQuotaInfo(string Node, bool Live, long ClaimedBytes, long FreeBytes, long QuotaBytes);

public sealed record QuotasInfo(long Epoch, string Volume, string Policy, IReadOnlyList<NodeQuotaInfo> Quotas);

public sealed record LeaderInfo(string Node, string Address, long Epoch, DateTimeOffset Since);

public sealed record MemberInfo(string Node, string Address, string Status, IReadOnlyList<string> Roles, int UpNumber, bool Reachable,
    bool Oldest, bool Leader, bool Singleton);

public sealed record UnreachableInfo(string Node, string Address, IReadOnlyList<string> ObservedBy);

public sealed record MembersInfo(string SelfNode, string SelfAddress, string? Leader, string? Oldest, string? SingletonNode,
    IReadOnlyList<MemberInfo> Members, IReadOnlyList<UnreachableInfo> Unreachable);

public sealed record ImageEntryInfo(string ImageId, string Volume, string Path, long SizeBytes, string Checksum,
    DateTimeOffset CachedAt, DateTimeOffset LastUsedAt, int Users);

public sealed record LeaseInfo(string ImageId, string LeaseId, string Holder, long FencingToken, string Volume, string Path,
    string Folder, long SizeBytes, DateTimeOffset GrantedAt, DateTimeOffset ExpiresAt, IReadOnlyList<string> Waiters);

public sealed record ImagesInfo(long Epoch, IReadOnlyList<ImageEntryInfo> Images, IReadOnlyList<LeaseInfo> Leases);

public sealed record NodeInfo(string Node, string State, long MemoryMb, long FreeMemoryMb, int LogicalProcessors, int FreeVcpus, int Vms, bool Draining);

public sealed record NodesInfo(long Epoch, IReadOnlyList<NodeInfo> Nodes);

public sealed record VmInfo(string Name, string Node, int MemoryMb, int Vcpus, string Volume, long DiskBytes, string? ImageId,
    string Folder, string Phase, DateTimeOffset Since);

public sealed record VmsInfo(long Epoch, IReadOnlyList<VmInfo> Vms);

public sealed record FeedEntryInfo(long Seq, string Node, string Vm, string Kind, string Reason, DateTimeOffset At);

public sealed record EventsInfo(long Epoch, long Head, IReadOnlyList<FeedEntryInfo> Events);

/// <summary>An RFC 7807 problem the service answered with; <see cref="Slug"/> is the last segment of its type.</summary>
public sealed record Problem(int Status, string? Type, string? Title, string? Detail, JsonElement Body)
{
    public string Slug => Type is null ? "" : Type[(Type.LastIndexOf('/') + 1)..];

    public long? Long(string field) => Body.ValueKind == JsonValueKind.Object && Body.TryGetProperty(field, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt64() : null;
}

/// <summary>The raw answer: status, body text (unchanged, for --json), and the problem when it is one.</summary>
public sealed record ApiResponse(int Status, string Body, Problem? Problem)
{
    public bool IsSuccess => Status is >= 200 and < 300;
}

/// <summary>A typed answer: a value on success, the problem on a refusal (4xx). Never an exception for a refusal.</summary>
public sealed record ApiResult<T>(T? Value, Problem? Problem, int Status, string Body)
{
    public bool IsSuccess => Problem is null && Status is >= 200 and < 300;
}

/// <summary>The service could not be reached, or had no leader, within the retry budget.</summary>
public sealed class CoordinatorUnavailableException(string message, Exception? inner = null) : Exception(message, inner);
