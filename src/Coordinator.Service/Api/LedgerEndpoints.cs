using System.Text.Json;
using Akka.Actor;
using Akka.Hosting;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Ledger;
using Coordinator.Domain;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Coordinator.Service.Api;

/// <summary>The node-agent API over the CSV ledger. Every node serves it and forwards to the singleton.</summary>
public static class LedgerEndpoints
{
    public const int MaxBodyBytes = 64 * 1024;
    public const string EpochHeader = "X-Coordinator-Epoch";

    public static void MapLedgerApi(this IEndpointRouteBuilder app)
    {
        var v1 = app.MapGroup("/v1").AddEndpointFilter(TranslateNoLeader).WithTags("volumes").ProducesProblem(503).ProducesProblem(400);

        v1.MapGet("/volumes", async (LedgerGateway ledger, HttpContext http, CancellationToken ct) =>
        {
            var r = await ledger.Ask<VolumesReply>(http, GetVolumes.Instance, ct);
            return WithEpoch(http, r.Epoch, Results.Ok(new VolumesResponse(r.Epoch, r.Volumes)));
        }).Produces<VolumesResponse>().WithName("ListVolumes");

        v1.MapGet("/volumes/{volume}/quotas", async (string volume, LedgerGateway ledger, HttpContext http, CancellationToken ct) =>
        {
            if (InputRules.CheckId("volume", volume) is { } err) return Problems.BadRequest(err);
            var r = await ledger.Ask<QuotasReply>(http, new GetQuotas(volume, null), ct);
            return r.Quotas is null
                ? Problems.NotFound($"unknown volume '{volume}'")
                : WithEpoch(http, r.Epoch, Results.Ok(new QuotasResponse(r.Epoch, volume, r.Policy, r.Quotas)));
        }).Produces<QuotasResponse>().ProducesProblem(404).WithName("GetQuotas");

        v1.MapGet("/volumes/{volume}/quotas/{node}", async (string volume, string node, LedgerGateway ledger, HttpContext http, CancellationToken ct) =>
        {
            if ((InputRules.CheckId("volume", volume) ?? InputRules.CheckId("node", node)) is { } err) return Problems.BadRequest(err);
            var r = await ledger.Ask<QuotasReply>(http, new GetQuotas(volume, node), ct);
            if (r.Quotas is null) return Problems.NotFound($"unknown volume '{volume}'");
            var q = r.Quotas.Single();
            return WithEpoch(http, r.Epoch, Results.Ok(new NodeQuotaResponse(r.Epoch, volume, r.Policy, q.Node, q.Live,
                q.ClaimedBytes, q.FreeBytes, q.QuotaBytes)));
        }).Produces<NodeQuotaResponse>().ProducesProblem(404).WithName("GetNodeQuota");

        v1.MapGet("/volumes/{volume}/reservations", async (string volume, LedgerGateway ledger, HttpContext http, CancellationToken ct) =>
        {
            if (InputRules.CheckId("volume", volume) is { } err) return Problems.BadRequest(err);
            var r = await ledger.Ask<ReservationsReply>(http, new GetReservations(volume), ct);
            return r.VolumeKnown
                ? WithEpoch(http, r.Epoch, Results.Ok(new ReservationsResponse(r.Epoch, volume, r.Reservations)))
                : Problems.NotFound($"unknown volume '{volume}'");
        }).Produces<ReservationsResponse>().ProducesProblem(404).WithName("ListReservations");

        v1.MapPut("/volumes/{volume}/reservations/{consumerId}", PutReservation)
            .Accepts<ReservationBody>("application/json").Produces<ReservationResponse>(201).Produces<ReservationResponse>(200)
            .ProducesProblem(409).ProducesProblem(404).ProducesProblem(413).ProducesProblem(403).WithName("PutReservation");

        v1.MapDelete("/volumes/{volume}/reservations/{consumerId}", async (string volume, string consumerId, LedgerGateway ledger, HttpContext http, CancellationToken ct) =>
        {
            if ((InputRules.CheckId("volume", volume) ?? InputRules.CheckConsumerId(consumerId)) is { } err) return Problems.BadRequest(err);
            // The ledger checks that the reservation is the caller's node's (an admin may release any).
            var r = await ledger.Ask<ReleaseReply>(http, new ReleaseCommand(volume, consumerId, Caller(http)), ct);
            return r.Outcome.Status switch
            {
                ReleaseStatus.Released => WithEpoch(http, r.Epoch, Results.NoContent()),
                ReleaseStatus.UnknownVolume => Problems.NotFound($"unknown volume '{volume}'"),
                ReleaseStatus.WrongNode => Authorization.Deny(http, 403, "wrong-node", "The caller may not act for this node",
                    $"the reservation {consumerId} on {volume} belongs to {r.Outcome.Released!.Node}, not to {Caller(http)}"),
                _ => Problems.NotFound($"no reservation for '{consumerId}' on {volume}"),
            };
        }).Produces(204).ProducesProblem(404).ProducesProblem(403).WithName("ReleaseReservation");

        v1.MapPost("/volumes/{volume}/rescan", async (string volume, LedgerGateway ledger, CoordinatorSettings settings, HttpContext http, CancellationToken ct) =>
        {
            if (InputRules.CheckId("volume", volume) is { } err) return Problems.BadRequest(err);
            // A scan walks the volume: allow it more time than an ordinary request.
            var r = await ledger.Ask<VolumeReply>(http, new RescanVolume(volume), ct, settings.AskTimeout * 6);
            if (r.Volume is null) return Problems.NotFound(r.Error ?? $"unknown volume '{volume}'");
            if (r.Error is not null) return Problems.Make(502, "scan-failed", "The volume could not be measured", r.Error);
            return WithEpoch(http, r.Epoch, Results.Ok(r.Volume));
        }).Produces<Coordinator.Domain.VolumeView>().ProducesProblem(404).WithName("RescanVolume");

        v1.MapGet("/leader", async (LedgerGateway ledger, HttpContext http, CancellationToken ct) =>
        {
            var r = await ledger.Ask<LeaderReply>(http, GetLeader.Instance, ct);
            return WithEpoch(http, r.Epoch, Results.Ok(new LeaderResponse(r.Node, r.Address, r.Epoch, r.Since, r.Recovery)));
        }).Produces<LeaderResponse>().WithName("GetLeader");
    }

    private static async Task<IResult> PutReservation(string volume, string consumerId, HttpRequest request,
        LedgerGateway ledger, HttpContext http, CancellationToken ct)
    {
        if ((InputRules.CheckId("volume", volume) ?? InputRules.CheckConsumerId(consumerId)) is { } idErr) return Problems.BadRequest(idErr);

        var (body, problem) = await ReadJson<ReservationBody>(request, ct);
        if (problem is not null) return problem;
        if (body!.Bytes is not { } bytes) return Problems.BadRequest("bytes must not be null");
        var err = InputRules.CheckId("node", body.Node) ?? InputRules.CheckBytes("bytes", bytes)
                  ?? (body.ImageId is null ? null : InputRules.CheckImageId(body.ImageId));
        if (err is not null) return Problems.BadRequest(err);
        // An agent claims only for its own node; the ledger also refuses a change to another node's reservation.
        if (Authorization.ActFor(http, body.Node!) is { } denied) return denied;

        var r = await ledger.Ask<ReserveReply>(http,
            new ReserveCommand(new ReserveRequest(volume, consumerId, body.Node!, bytes, body.Path, body.ImageId), Caller(http)), ct);
        var o = r.Outcome;
        return o.Status switch
        {
            ReserveStatus.Created => WithEpoch(http, r.Epoch, Results.Created(
                $"/v1/volumes/{Uri.EscapeDataString(volume)}/reservations/{Uri.EscapeDataString(consumerId)}",
                ReservationResponse.From(o.Reservation!, "created", o.FreeBytes, r.Epoch))),
            ReserveStatus.Unchanged or ReserveStatus.Updated => WithEpoch(http, r.Epoch, Results.Ok(
                ReservationResponse.From(o.Reservation!, o.Status == ReserveStatus.Unchanged ? "unchanged" : "updated", o.FreeBytes, r.Epoch))),
            ReserveStatus.InsufficientSpace => Problems.InsufficientSpace(o.Error!, o.FreeBytes, bytes, r.Epoch),
            ReserveStatus.UnknownVolume => Problems.NotFound(o.Error!),
            ReserveStatus.WrongNode => Authorization.Deny(http, 403, "wrong-node", "The caller may not act for this node", o.Error!),
            _ => Problems.BadRequest(o.Error!),
        };
    }

    /// <summary>The node the request acts for, checked by the ledger; null for an admin (any node).</summary>
    private static string? Caller(HttpContext http) => http.Caller() is { } c ? c.LeaseCaller : "";

    /// <summary>
    /// Reads a JSON body of at most 64 KiB; any problem becomes a 4xx before anything reaches the ledger. The edge only
    /// maps what the JSON reader refuses (malformed JSON, a wrong type, an unknown or missing required field, a number
    /// that does not fit its field); the values themselves are checked by the domain's InputRules.
    /// </summary>
    public static async Task<(T? Body, IResult? Problem)> ReadJson<T>(HttpRequest request, CancellationToken ct) where T : class
    {
        if (request.ContentLength > MaxBodyBytes) return (null, Problems.TooLarge($"at most {MaxBodyBytes} bytes are accepted"));
        if (request.ContentType is { } ct0 && !ct0.Contains("json", StringComparison.OrdinalIgnoreCase))
            return (null, Problems.UnsupportedMediaType("send application/json"));
        try
        {
            var body = await JsonSerializer.DeserializeAsync<T>(request.Body, JsonDefaults.Options, ct);
            return body is null ? (null, Problems.BadRequest("the body must be a JSON object")) : (body, null);
        }
        catch (JsonException e)
        {
            return (null, Problems.BadRequest($"the body is not valid: {e.Message}"));
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return (null, Problems.TooLarge($"at most {MaxBodyBytes} bytes are accepted"));
        }
        catch (BadHttpRequestException e)
        {
            // A truncated or malformed request body (e.g. bad chunked encoding): the client's fault, never a 500.
            return (null, Problems.Make(e.StatusCode is >= 400 and < 500 ? e.StatusCode : 400, "invalid-request", "The request is invalid", e.Message));
        }
    }

    /// <summary>Reads a form body: one over 64 KiB, or malformed (a bad multipart boundary, too many fields), is a 4xx.</summary>
    public static async Task<(IFormCollection? Form, IResult? Problem)> ReadForm(HttpRequest request, CancellationToken ct)
    {
        if (request.ContentLength > MaxBodyBytes) return (null, Problems.TooLarge($"at most {MaxBodyBytes} bytes are accepted"));
        try
        {
            return (await request.ReadFormAsync(ct), null);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return (null, Problems.TooLarge($"at most {MaxBodyBytes} bytes are accepted"));
        }
        catch (BadHttpRequestException e)
        {
            return (null, Problems.Make(e.StatusCode is >= 400 and < 500 ? e.StatusCode : 400, "invalid-request", "The request is invalid", e.Message));
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            // The multipart reader reports a missing boundary or a truncated part as an IOException.
            return (null, Problems.BadRequest($"the form is not valid: {e.Message}"));
        }
    }

    private static IResult WithEpoch(HttpContext http, long epoch, IResult result)
    {
        http.Response.Headers[EpochHeader] = epoch.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return result;
    }

    public static async ValueTask<object?> TranslateNoLeader(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        try
        {
            return await next(context);
        }
        catch (LedgerRefusedException e)
        {
            return Problems.LedgerRefused(e.Message);
        }
        catch (NoLeaderException e)
        {
            return Problems.NoLeader(e.Message);
        }
    }
}

public static class JsonDefaults
{
    public static readonly JsonSerializerOptions Options = CreateOptions();

    public static JsonSerializerOptions CreateOptions()
    {
        var o = new JsonSerializerOptions(JsonSerializerDefaults.Web);
        Configure(o);
        return o;
    }

    public static void Configure(JsonSerializerOptions o)
    {
        o.Converters.Add(new System.Text.Json.Serialization.JsonStringEnumConverter(JsonNamingPolicy.CamelCase));
        o.NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.Strict;
        o.UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow;
    }
}
