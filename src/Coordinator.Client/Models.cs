using System.Text.Json.Serialization;

namespace Coordinator.Client;

// The service's JSON, one record per shape (camelCase on the wire, enums as camelCase strings). Names follow the
// service's own response records so that the two can be read side by side.

// ------------------------------------------------------------------ volumes, quotas, reservations

/// <summary>The accounting of one volume (GET /v1/volumes, POST /v1/volumes/{volume}/rescan).</summary>
public sealed record VolumeView(
    string Name, string Path, long CapacityBytes, long HeadroomBytes, long UsedBytes, long ReservedBytes,
    long UnownedBytes, long FreeBytes, int Reservations, DateTimeOffset? MeasuredAt, long OvercommittedBytes = 0);

public sealed record VolumesResponse(long Epoch, IReadOnlyList<VolumeView> Volumes);

[JsonConverter(typeof(JsonStringEnumConverter<QuotaPolicy>))]
public enum QuotaPolicy
{
    /// <summary>Every live node may claim all of the volume's free space.</summary>
    [JsonStringEnumMemberName("shared")] Shared,

    /// <summary>Free space is split between the live nodes by weight.</summary>
    [JsonStringEnumMemberName("partitioned")] Partitioned,
}

public sealed record NodeQuota(string Node, bool Live, long ClaimedBytes, long FreeBytes, long QuotaBytes);

public sealed record QuotasResponse(long Epoch, string Volume, QuotaPolicy Policy, IReadOnlyList<NodeQuota> Quotas);

public sealed record NodeQuotaResponse(long Epoch, string Volume, QuotaPolicy Policy, string Node, bool Live,
    long ClaimedBytes, long FreeBytes, long QuotaBytes);

/// <summary>A claim on a volume by one consumer, held for the node that runs it.</summary>
public sealed record Reservation(string Volume, string ConsumerId, string Node, long Bytes, string? Path, string? ImageId,
    DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt);

public sealed record ReservationsResponse(long Epoch, string Volume, IReadOnlyList<Reservation> Reservations);

/// <summary>Body of PUT /v1/volumes/{volume}/reservations/{consumerId}.</summary>
public sealed record ReservationRequest(string Node, long Bytes, string? Path = null, string? ImageId = null);

/// <summary>Answer of a PUT: <see cref="Status"/> is created (201), unchanged or updated (200).</summary>
public sealed record ReservationResponse(string Volume, string ConsumerId, string Node, long Bytes, string? Path, string? ImageId,
    DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt, string Status, long FreeBytes, long Epoch)
{
    public bool Created => Status == "created";
}

/// <summary>Where the ledger singleton runs (GET /v1/leader); the epoch changes with every new incarnation.</summary>
public sealed record LeaderResponse(string Node, string Address, long Epoch, DateTimeOffset Since, LedgerRecovery? Recovery = null);

/// <summary>How the leader's ledger recovered at its start: snapshot used, events replayed on top, duration.</summary>
public sealed record LedgerRecovery(long SnapshotSequenceNr, long EventsReplayed, double DurationMs, double SnapshotLoadedMs);

// ------------------------------------------------------------------ images

public sealed record ImageEntryView(string ImageId, string Volume, string Path, long SizeBytes, string Checksum,
    DateTimeOffset CachedAt, DateTimeOffset LastUsedAt, int Users);

/// <summary>A lease: <see cref="LeaseId"/> is shown only to its holder's node (and an admin); null for everyone else.</summary>
public sealed record LeaseView(string ImageId, string? LeaseId, string Holder, long FencingToken, string Volume, string Path,
    string Folder, long SizeBytes, DateTimeOffset GrantedAt, DateTimeOffset ExpiresAt, IReadOnlyList<string> Waiters);

public sealed record ImagesResponse(long Epoch, IReadOnlyList<ImageEntryView> Images, IReadOnlyList<LeaseView> Leases);

/// <summary>GET /v1/images/{id}: <see cref="State"/> is cached, leased (someone fetches) or absent.</summary>
public sealed record ImageStateResponse(string ImageId, string State, ImageEntryView? Cached, LeaseView? Lease, long Epoch);

/// <summary>The image is in the cache (lease 200, complete, ensure).</summary>
public sealed record CachedResponse(string State, string ImageId, string Path, long SizeBytes, string Checksum,
    DateTimeOffset CachedAt, DateTimeOffset LastUsedAt, int Users, long Epoch);

/// <summary>This caller holds the fetch lease (lease 201).</summary>
public sealed record GrantedResponse(string State, string ImageId, string LeaseId, long FencingToken, DateTimeOffset ExpiresAt,
    string Path, string Folder, long SizeBytes, long Epoch);

/// <summary>Another node fetches (lease 202): ask again after <see cref="RetryAfterMs"/> or long-poll the image.</summary>
public sealed record PendingResponse(string State, string ImageId, string Holder, long FencingToken, int RetryAfterMs, long Epoch);

public enum LeaseState { Cached, Granted, Pending }

/// <summary>Answer of POST /v1/images/{id}/lease: exactly one of the three is set, as <see cref="State"/> says.</summary>
public sealed record LeaseAcquisition(LeaseState State, CachedResponse? Cached, GrantedResponse? Granted, PendingResponse? Pending);

public sealed record EvictResponse(long Epoch, IReadOnlyList<ImageEntryView> Evicted);

// ------------------------------------------------------------------ VMs, nodes, events

[JsonConverter(typeof(JsonStringEnumConverter<VmPhase>))]
public enum VmPhase
{
    [JsonStringEnumMemberName("spawning")] Spawning,
    [JsonStringEnumMemberName("running")] Running,
    [JsonStringEnumMemberName("migrating")] Migrating,
    [JsonStringEnumMemberName("removing")] Removing,
}

public sealed record VmRecord(string Name, string Node, int MemoryMb, int Vcpus, string Volume, long DiskBytes, string? ImageId,
    string Folder, VmPhase Phase, DateTimeOffset Since);

public sealed record VmsResponse(long Epoch, IReadOnlyList<VmRecord> Vms);

/// <summary>Body of POST /v1/vms (spawn on the node addressed) and POST /v1/vms/arrivals.</summary>
public sealed record SpawnVmRequest(string Name, int MemoryMb, int Vcpus, long DiskBytes, string? Volume = null, string? ImageId = null);

public enum MigrationMode { Live, Cold }

/// <summary>A node of the inventory; <see cref="State"/> is up, draining or down.</summary>
public sealed record NodeView(string Node, string State, long MemoryMb, long FreeMemoryMb, int LogicalProcessors, int FreeVcpus,
    int Vms, bool Draining);

public sealed record NodesResponse(long Epoch, IReadOnlyList<NodeView> Nodes);

/// <summary>Answer of POST /v1/nodes/{node}/drain and /resume (202).</summary>
public sealed record DrainResponse(string Node, bool Draining);

/// <summary>A VM arrived on or left a node.</summary>
public sealed record FeedEntry(long Seq, string Node, string Vm, string Kind, string Reason, DateTimeOffset At);

public sealed record EventsResponse(long Epoch, long Head, IReadOnlyList<FeedEntry> Events);

// ------------------------------------------------------------------ cluster administration, health

/// <summary>A member as Akka sees it. <see cref="Status"/> is Akka's (Joining, Up, Leaving, Exiting, Down, ...).</summary>
public sealed record MemberView(string Node, string Address, string Status, IReadOnlyList<string> Roles, int UpNumber,
    bool Reachable, bool Oldest, bool Leader, bool Singleton);

public sealed record UnreachableView(string Node, string Address, IReadOnlyList<string> ObservedBy);

/// <summary>GET /cluster/members. <see cref="Leader"/> is Akka's cluster leader (an address); <see cref="SingletonNode"/>
/// the node that hosts the ledger singleton.</summary>
public sealed record MembersResponse(string SelfNode, string SelfAddress, string? Leader, string? Oldest, string? SingletonNode,
    IReadOnlyList<MemberView> Members, IReadOnlyList<UnreachableView> Unreachable);

public sealed record SingletonResponse(string Node, string Address, long Epoch, DateTimeOffset Since);

public sealed record MemberOperationResponse(string Message, string Address, string Operation);

/// <summary>/healthz and /readyz. A 503 from /readyz is a value too: <see cref="Status"/> is not-ready, <see cref="Reason"/> why.</summary>
public sealed record HealthResponse(string Status, string Node, string? MemberStatus = null, string? Leader = null, string? Reason = null)
{
    [JsonIgnore] public bool Ready => Status is "ready" or "ok";
}

/// <summary>A call that answers no body (204).</summary>
public readonly record struct NoContent;
