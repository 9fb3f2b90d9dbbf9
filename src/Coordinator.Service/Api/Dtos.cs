using Coordinator.Domain;
using Coordinator.Cluster.Ledger;
using System.Text.Json.Serialization;

namespace Coordinator.Service.Api;

/// <summary>
/// Body of PUT /v1/volumes/{volume}/reservations/{consumerId}. [JsonRequired]: a missing field is refused by the JSON
/// reader (400); a parameter with a default is optional in the OpenAPI document, one without is required. The types
/// stay nullable so that an explicit null reaches the same InputRules check as any other bad value.
/// </summary>
public sealed record ReservationBody([property: JsonRequired] string? Node, [property: JsonRequired] long? Bytes,
    string? Path = null, string? ImageId = null);

public sealed record ReservationResponse(
    string Volume, string ConsumerId, string Node, long Bytes, string? Path, string? ImageId,
    DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt, string Status, long FreeBytes, long Epoch)
{
    public static ReservationResponse From(Reservation r, string status, long freeBytes, long epoch) =>
        new(r.Volume, r.ConsumerId, r.Node, r.Bytes, r.Path, r.ImageId, r.CreatedAt, r.UpdatedAt, status, freeBytes, epoch);
}

public sealed record VolumesResponse(long Epoch, IReadOnlyList<VolumeView> Volumes);

public sealed record ReservationsResponse(long Epoch, string Volume, IReadOnlyList<Reservation> Reservations);

public sealed record QuotasResponse(long Epoch, string Volume, QuotaPolicy Policy, IReadOnlyList<NodeQuota> Quotas);

public sealed record NodeQuotaResponse(long Epoch, string Volume, QuotaPolicy Policy, string Node, bool Live,
    long ClaimedBytes, long FreeBytes, long QuotaBytes);

public sealed record LeaderResponse(string Node, string Address, long Epoch, DateTimeOffset Since, LedgerRecovery? Recovery);

public sealed record HealthResponse(string Status, string Node, string? MemberStatus = null, string? Leader = null, string? Reason = null);
