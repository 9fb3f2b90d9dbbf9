using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Ledger;
using Coordinator.Domain;
using Coordinator.Service.Images;
using System.Text.Json.Serialization;

namespace Coordinator.Service.Api;

// Bodies: see ReservationBody for [JsonRequired], defaults and nullable types.

public sealed record LeaseRequestBody([property: JsonRequired] string? Node, [property: JsonRequired] long? SizeBytes);

public sealed record LeaseTokenBody([property: JsonRequired] long? FencingToken);

public sealed record LeaseCompleteBody([property: JsonRequired] long? FencingToken, [property: JsonRequired] long? SizeBytes,
    [property: JsonRequired] string? Checksum);

public sealed record CachedResponse(string State, string ImageId, string Path, long SizeBytes, string Checksum,
    DateTimeOffset CachedAt, DateTimeOffset LastUsedAt, int Users, long Epoch)
{
    public static CachedResponse From(ImageEntryView e, long epoch) =>
        new("cached", e.ImageId, e.Path, e.SizeBytes, e.Checksum, e.CachedAt, e.LastUsedAt, e.Users, epoch);
}

public sealed record GrantedResponse(string State, string ImageId, string LeaseId, long FencingToken, DateTimeOffset ExpiresAt,
    string Path, string Folder, long SizeBytes, long Epoch)
{
    public static GrantedResponse From(LeaseView l, long epoch) =>
        new("granted", l.ImageId, l.LeaseId, l.FencingToken, l.ExpiresAt, l.Path, l.Folder, l.SizeBytes, epoch);
}

public sealed record PendingResponse(string State, string ImageId, string Holder, long FencingToken, int RetryAfterMs, long Epoch);

public sealed record ImageStateResponse(string ImageId, string State, ImageEntryView? Cached, LeaseView? Lease, long Epoch);

public sealed record ImagesResponse(long Epoch, IReadOnlyList<ImageEntryView> Images, IReadOnlyList<LeaseView> Leases);

public sealed record EvictResponse(long Epoch, IReadOnlyList<ImageEntryView> Evicted);

/// <summary>The image-fetch lock (leases), the cache listing, long polls, and /ensure (the node's own fetcher).</summary>
public static class ImageEndpoints
{
    private const int MaxWaitMs = 60_000;

    /// <summary>Ten years: any older entry is as good as any; also keeps the value a finite, representable TimeSpan.</summary>
    private const double MaxEvictAgeSeconds = 10 * 365.25 * 24 * 3600;

    public static void MapImageApi(this IEndpointRouteBuilder app)
    {
        var images = app.MapGroup("/v1/images").AddEndpointFilter(LedgerEndpoints.TranslateNoLeader).WithTags("images").ProducesProblem(503).ProducesProblem(400);

        images.MapGet("", async (LedgerGateway ledger, HttpContext http, CancellationToken ct) =>
        {
            var r = await ledger.Ask<ImagesReply>(http, GetImages.Instance, ct);
            return Results.Ok(new ImagesResponse(r.Epoch, r.Images, r.Leases.Select(l => l.Shown(http)!).ToList()));
        }).Produces<ImagesResponse>().WithName("ListImages");

        images.MapGet("/{imageId}", async (string imageId, int? waitMs, LedgerGateway ledger, HttpContext http, CancellationToken ct) =>
        {
            if (InputRules.CheckImageId(imageId) is { } err) return Problems.BadRequest(err);
            if (waitMs is < 0 or > MaxWaitMs) return Problems.BadRequest($"waitMs must be between 0 and {MaxWaitMs}");
            var wait = waitMs ?? 0;
            var r = await ledger.Ask<ImageStateReply>(http, new WatchImage(imageId, wait), ct, TimeSpan.FromMilliseconds(wait) + TimeSpan.FromSeconds(5));
            return Results.Ok(new ImageStateResponse(r.ImageId, r.State, r.Cached, r.Lease.Shown(http), r.Epoch));
        }).Produces<ImageStateResponse>().WithName("GetImage");

        images.MapPost("/{imageId}/lease", async (string imageId, HttpRequest request, HttpContext http, LedgerGateway ledger, CancellationToken ct) =>
        {
            if (InputRules.CheckImageId(imageId) is { } idErr) return Problems.BadRequest(idErr);
            var (body, problem) = await LedgerEndpoints.ReadJson<LeaseRequestBody>(request, ct);
            if (problem is not null) return problem;
            if (body!.SizeBytes is not { } size) return Problems.BadRequest("sizeBytes must not be null");
            if ((InputRules.CheckId("node", body.Node) ?? InputRules.CheckBytes("sizeBytes", size)) is { } err) return Problems.BadRequest(err);
            // A lease is taken for the caller's own node only (its id is a capability of that node's agent).
            if (Authorization.ActFor(http, body.Node!) is { } denied) return denied;

            var r = await ledger.Ask<LeaseReply>(http, new AcquireImageLease(imageId, body.Node!, size), ct);
            switch (r.Status)
            {
                case LeaseStatus.Cached:
                    return Results.Ok(CachedResponse.From(r.Cached!, r.Epoch));
                case LeaseStatus.Granted:
                    return Results.Json(GrantedResponse.From(r.Lease!, r.Epoch), statusCode: 201);
                case LeaseStatus.Pending:
                    http.Response.Headers.RetryAfter = Math.Max(1, (r.RetryAfterMs + 999) / 1000).ToString(System.Globalization.CultureInfo.InvariantCulture);
                    return Results.Json(new PendingResponse("pending", imageId, r.Lease?.Holder ?? "(evicting)", r.Lease?.FencingToken ?? 0,
                        r.RetryAfterMs, r.Epoch), statusCode: 202);
                case LeaseStatus.InsufficientSpace:
                    return Problems.InsufficientSpace(r.Error!, r.FreeBytes, size, r.Epoch);
                case LeaseStatus.UnknownVolume:
                    return Problems.Make(500, "cache-volume-unknown", "The image cache volume is not configured", r.Error!);
                default:
                    return Problems.BadRequest(r.Error!);
            }
        }).Accepts<LeaseRequestBody>("application/json").Produces<CachedResponse>(200).Produces<GrantedResponse>(201).Produces<PendingResponse>(202).ProducesProblem(409).ProducesProblem(403).WithName("AcquireImageLease");

        images.MapPost("/{imageId}/lease/{leaseId}/renew", async (string imageId, string leaseId, HttpRequest request, HttpContext http, LedgerGateway ledger, CancellationToken ct) =>
        {
            var (body, problem) = await ReadToken<LeaseTokenBody>(imageId, leaseId, request, b => b.FencingToken, ct);
            if (problem is not null) return problem;
            var r = await ledger.Ask<LeaseActionReply>(http, new RenewImageLease(imageId, leaseId, body!.FencingToken!.Value, Holder(http)), ct);
            return r.Status == LeaseActionStatus.Done ? Results.Ok(r.Lease) : ActionProblem(http, r, imageId, leaseId);
        }).Accepts<LeaseTokenBody>("application/json").Produces<Coordinator.Cluster.Ledger.LeaseView>().ProducesProblem(409).ProducesProblem(404).ProducesProblem(403).WithName("RenewImageLease");

        images.MapPost("/{imageId}/lease/{leaseId}/complete", async (string imageId, string leaseId, HttpRequest request, HttpContext http, LedgerGateway ledger, CancellationToken ct) =>
        {
            var (body, problem) = await ReadToken<LeaseCompleteBody>(imageId, leaseId, request, b => b.FencingToken, ct);
            if (problem is not null) return problem;
            if (body!.SizeBytes is not { } size) return Problems.BadRequest("sizeBytes must not be null");
            if ((InputRules.CheckBytes("sizeBytes", size) ?? InputRules.CheckChecksum(body.Checksum)) is { } err) return Problems.BadRequest(err);
            var r = await ledger.Ask<LeaseActionReply>(http, new CompleteImageLease(imageId, leaseId, body.FencingToken!.Value, size, body.Checksum!, Holder(http)), ct);
            return r.Status == LeaseActionStatus.Done ? Results.Ok(CachedResponse.From(r.Cached!, r.Epoch)) : ActionProblem(http, r, imageId, leaseId, size);
        }).Accepts<LeaseCompleteBody>("application/json").Produces<CachedResponse>().ProducesProblem(409).ProducesProblem(404).ProducesProblem(403).WithName("CompleteImageLease");

        images.MapPost("/{imageId}/lease/{leaseId}/abort", async (string imageId, string leaseId, HttpRequest request, HttpContext http, LedgerGateway ledger, CancellationToken ct) =>
        {
            var (body, problem) = await ReadToken<LeaseTokenBody>(imageId, leaseId, request, b => b.FencingToken, ct);
            if (problem is not null) return problem;
            var r = await ledger.Ask<LeaseActionReply>(http, new AbortImageLease(imageId, leaseId, body!.FencingToken!.Value, Holder(http)), ct);
            return r.Status == LeaseActionStatus.Done ? Results.NoContent() : ActionProblem(http, r, imageId, leaseId);
        }).Accepts<LeaseTokenBody>("application/json").Produces(204).ProducesProblem(409).ProducesProblem(404).ProducesProblem(403).WithName("AbortImageLease");

        images.MapPost("/{imageId}/ensure", async (string imageId, ImageFetcher fetcher, LedgerGateway ledger, CoordinatorSettings s, HttpContext http, CancellationToken ct) =>
        {
            if (InputRules.CheckImageId(imageId) is { } err) return Problems.BadRequest(err);
            // This node's fetcher takes the lease as this node.
            if (Authorization.ActFor(http, s.NodeName) is { } denied) return denied;
            try
            {
                var entry = await fetcher.EnsureAsync(imageId, ct);
                return Results.Ok(CachedResponse.From(entry, 0) with { Epoch = (await ledger.Ask<LeaderReply>(http, GetLeader.Instance, ct)).Epoch });
            }
            catch (ImageFetchException e)
            {
                return Problems.Make(e.Status, e.Type, e.Title, e.Message);
            }
        }).Produces<CachedResponse>().ProducesProblem(404).ProducesProblem(409).ProducesProblem(502).ProducesProblem(403).WithName("EnsureImage");

        images.MapPost("/evict", async (double? olderThanSeconds, LedgerGateway ledger, HttpSecurity security, HttpContext http, CancellationToken ct) =>
        {
            // Emptying the cache is an operator's decision (it would make every node fetch again).
            if (Authorization.Admin(http, security) is { } denied) return denied;
            // Written so that NaN fails too (every comparison with NaN is false); 1e308 or Infinity would overflow TimeSpan.
            if (olderThanSeconds is { } age && !(age >= 0 && age <= MaxEvictAgeSeconds))
                return Problems.BadRequest($"olderThanSeconds must be between 0 and {MaxEvictAgeSeconds:0} (ten years)");
            var r = await ledger.Ask<EvictReply>(http, new EvictImages(olderThanSeconds is { } s ? TimeSpan.FromSeconds(s) : null), ct);
            return Results.Ok(new EvictResponse(r.Epoch, r.Evicted));
        }).Produces<EvictResponse>().AdminOnly().WithName("EvictImages");
    }

    private static async Task<(T? Body, IResult? Problem)> ReadToken<T>(string imageId, string leaseId, HttpRequest request,
        Func<T, long?> token, CancellationToken ct) where T : class
    {
        if ((InputRules.CheckImageId(imageId) ?? InputRules.CheckId("lease id", leaseId)) is { } err) return (null, Problems.BadRequest(err));
        var (body, problem) = await LedgerEndpoints.ReadJson<T>(request, ct);
        if (problem is not null) return (null, problem);
        if (token(body!) is not { } t || t <= 0) return (null, Problems.BadRequest("fencingToken is required and positive"));
        return (body, null);
    }

    /// <summary>The node a lease action is checked against by the ledger (only the holder may act); null for an admin.</summary>
    private static string? Holder(HttpContext http) => http.Caller() is { } c ? c.LeaseCaller : "";

    private static IResult ActionProblem(HttpContext http, LeaseActionReply r, string imageId, string leaseId, long requestedBytes = 0) => r.Status switch
    {
        // Not the holder: nothing changed, and the answer tells nothing about the id or token that was sent.
        LeaseActionStatus.NotHolder => Authorization.Deny(http, 403, "not-lease-holder", "Only the lease's holder may act on it", r.Error ?? "not the holder"),
        // A completion larger than its grant whose growth does not fit: the lease stays as it was (the holder may abort).
        LeaseActionStatus.InsufficientSpace => Problems.InsufficientSpace(r.Error ?? "the image does not fit", r.FreeBytes, requestedBytes, r.Epoch),
        LeaseActionStatus.Stale => Problems.Make(409, "stale-lease", "The lease is not held with this token", r.Error ?? "stale",
            new Dictionary<string, object?> { ["currentFencingToken"] = r.Lease?.FencingToken, ["epoch"] = r.Epoch }),
        LeaseActionStatus.NotFound => Problems.NotFound(r.Error ?? $"no lease {leaseId} on image {imageId}"),
        _ => Problems.BadRequest(r.Error ?? "invalid"),
    };
}
