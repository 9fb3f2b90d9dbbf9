using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Serialization;
using Polly;
using Polly.Retry;
using Polly.Timeout;

namespace Coordinator.Client;

/// <summary>
/// The node-agent and admin HTTP API of one coordinator node (any node: each forwards to the ledger singleton).
/// <para>
/// Idempotent calls (GETs, PUT and DELETE of reservations, lease acquire/renew/complete/abort, member operations,
/// VM destroy) are retried by a Polly pipeline while no leader answers (503, honouring a capped Retry-After), while
/// the node refuses connections, and when an attempt times out, until <see cref="CoordinatorClientOptions.RetryBudget"/>
/// is spent. Other calls are retried only when the connection could not be established (the request never left).
/// </para>
/// <para>
/// Refusals are <see cref="ApiResult{T}"/> values with a <see cref="Problem"/>; an unreachable node or a leader that
/// stays missing throws <see cref="CoordinatorUnavailableException"/>.
/// </para>
/// </summary>
public sealed class CoordinatorClient : IDisposable
{
    public const string EpochHeader = "X-Coordinator-Epoch";

    /// <summary>The service's conventions: camelCase members, enums as camelCase strings.</summary>
    public static JsonSerializerOptions JsonOptions { get; } = new(JsonSerializerDefaults.Web)
    {
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    private static readonly ResiliencePropertyKey<long> DeadlineKey = new("coordinator.deadline");
    private static readonly TimeSpan MinimumRetryBudgetLeft = TimeSpan.FromMilliseconds(10);
    private static readonly ResiliencePropertyKey<TimeSpan> AttemptTimeoutKey = new("coordinator.attempt-timeout");
    private static readonly ResiliencePropertyKey<string> CallKey = new("coordinator.call");

    private readonly HttpClient _http;
    private readonly bool _ownsHttp;
    private readonly CoordinatorClientOptions _options;
    private readonly ResiliencePipeline<HttpResponseMessage> _idempotent;
    private readonly ResiliencePipeline<HttpResponseMessage> _unsafe;

    /// <summary>A client of the node at <paramref name="endpoint"/> (e.g. http://127.0.0.1:7070).</summary>
    public CoordinatorClient(Uri endpoint, CoordinatorClientOptions? options = null)
        : this(new HttpClient(CreateHandler(options?.CaFile))
        {
            BaseAddress = endpoint,
            Timeout = Timeout.InfiniteTimeSpan,
        }, options, ownsHttpClient: true)
    {
    }

    /// <summary>
    /// The handler the endpoint constructor uses: no proxy, a 5 s connect timeout, no redirects (a token must not follow
    /// one), and with <paramref name="caFile"/> a server certificate that must chain to a CA in that PEM file.
    /// </summary>
    public static SocketsHttpHandler CreateHandler(string? caFile)
    {
        var handler = new SocketsHttpHandler { UseProxy = false, ConnectTimeout = TimeSpan.FromSeconds(5), AllowAutoRedirect = false };
        if (caFile is null) return handler;
        var roots = new System.Security.Cryptography.X509Certificates.X509Certificate2Collection();
        roots.ImportFromPemFile(caFile);
        if (roots.Count == 0) throw new InvalidDataException($"the CA file '{caFile}' holds no certificate");
        handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
        {
            if (certificate is null) return false;
            // Name mismatches and the like stay errors; only the chain is judged against our CAs instead of the machine's.
            if ((errors & ~System.Net.Security.SslPolicyErrors.RemoteCertificateChainErrors) != System.Net.Security.SslPolicyErrors.None) return false;
            using var chain = new System.Security.Cryptography.X509Certificates.X509Chain();
            chain.ChainPolicy.TrustMode = System.Security.Cryptography.X509Certificates.X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.AddRange(roots);
            chain.ChainPolicy.RevocationMode = System.Security.Cryptography.X509Certificates.X509RevocationMode.NoCheck;
            return chain.Build(certificate as System.Security.Cryptography.X509Certificates.X509Certificate2
                               ?? System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()));
        };
        return handler;
    }

    /// <summary>Over a caller's HttpClient (its BaseAddress is the node's endpoint), e.g. from IHttpClientFactory.</summary>
    public CoordinatorClient(HttpClient http, CoordinatorClientOptions? options = null, bool ownsHttpClient = false)
    {
        _http = http;
        _ownsHttp = ownsHttpClient;
        if (http.BaseAddress is null) throw new ArgumentException("the HttpClient needs a BaseAddress (the node's endpoint)", nameof(http));
        _options = options ?? new CoordinatorClientOptions();
        _idempotent = BuildPipeline(retryUnavailable: true);
        _unsafe = BuildPipeline(retryUnavailable: false);
    }

    public Uri Endpoint => _http.BaseAddress!;

    public CoordinatorClientOptions Options => _options;

    // ================================================================== volumes, quotas, reservations

    public Task<ApiResult<VolumesResponse>> GetVolumesAsync(CancellationToken ct = default) =>
        SendAsync<VolumesResponse>(HttpMethod.Get, "/v1/volumes", ct: ct);

    public Task<ApiResult<QuotasResponse>> GetQuotasAsync(string volume, CancellationToken ct = default) =>
        SendAsync<QuotasResponse>(HttpMethod.Get, $"/v1/volumes/{E(volume)}/quotas", ct: ct);

    public Task<ApiResult<NodeQuotaResponse>> GetQuotaAsync(string volume, string node, CancellationToken ct = default) =>
        SendAsync<NodeQuotaResponse>(HttpMethod.Get, $"/v1/volumes/{E(volume)}/quotas/{E(node)}", ct: ct);

    public Task<ApiResult<ReservationsResponse>> GetReservationsAsync(string volume, CancellationToken ct = default) =>
        SendAsync<ReservationsResponse>(HttpMethod.Get, $"/v1/volumes/{E(volume)}/reservations", ct: ct);

    /// <summary>
    /// Creates or resizes a claim (idempotent: the same request twice answers unchanged). A claim that does not fit is a
    /// 409 problem <see cref="ProblemTypes.InsufficientSpace"/> with <see cref="Problem.FreeBytes"/>.
    /// </summary>
    public Task<ApiResult<ReservationResponse>> PutReservationAsync(string volume, string consumerId, ReservationRequest request,
        CancellationToken ct = default) =>
        SendAsync<ReservationResponse>(HttpMethod.Put, $"/v1/volumes/{E(volume)}/reservations/{E(consumerId)}", request, ct: ct);

    /// <summary>Releases a claim: 204, or 404 not-found when unknown (also when a retried delete already released it).</summary>
    public Task<ApiResult<NoContent>> DeleteReservationAsync(string volume, string consumerId, CancellationToken ct = default) =>
        SendAsync<NoContent>(HttpMethod.Delete, $"/v1/volumes/{E(volume)}/reservations/{E(consumerId)}", ct: ct);

    /// <summary>Measures the volume now (the singleton walks it) and answers its accounting.</summary>
    public Task<ApiResult<VolumeView>> RescanAsync(string volume, CancellationToken ct = default) =>
        SendAsync<VolumeView>(HttpMethod.Post, $"/v1/volumes/{E(volume)}/rescan", idempotent: true, slow: true, ct: ct);

    public Task<ApiResult<LeaderResponse>> GetLeaderAsync(CancellationToken ct = default) =>
        SendAsync<LeaderResponse>(HttpMethod.Get, "/v1/leader", ct: ct);

    // ================================================================== image cache

    public Task<ApiResult<ImagesResponse>> GetImagesAsync(CancellationToken ct = default) =>
        SendAsync<ImagesResponse>(HttpMethod.Get, "/v1/images", ct: ct);

    /// <summary>The image's state; with <paramref name="wait"/> (≤ 60 s) a long poll that answers once it is cached or no lease is left.</summary>
    public Task<ApiResult<ImageStateResponse>> GetImageAsync(string imageId, TimeSpan? wait = null, CancellationToken ct = default) =>
        SendAsync<ImageStateResponse>(HttpMethod.Get, $"/v1/images/{E(imageId)}" + (wait is { } w ? $"?waitMs={Ms(w)}" : ""),
            extraTime: wait, ct: ct);

    /// <summary>Takes the fetch lease for <paramref name="node"/>: cached (200), granted (201) or pending (202). Idempotent for the same node.</summary>
    public async Task<ApiResult<LeaseAcquisition>> AcquireLeaseAsync(string imageId, string node, long sizeBytes, CancellationToken ct = default)
    {
        var raw = await SendRawAsync(HttpMethod.Post, $"/v1/images/{E(imageId)}/lease", new { node, sizeBytes }, true, false, null, ct);
        if (raw.Problem is not null) return Wrap<LeaseAcquisition>(raw, default);
        var doc = JsonDocument.Parse(raw.Body).RootElement;
        var state = doc.TryGetProperty("state", out var s) ? s.GetString() : null;
        LeaseAcquisition value = (raw.Status, state) switch
        {
            (201, _) or (_, "granted") => new(LeaseState.Granted, null, doc.Deserialize<GrantedResponse>(JsonOptions), null),
            (202, _) or (_, "pending") => new(LeaseState.Pending, null, null, doc.Deserialize<PendingResponse>(JsonOptions)),
            _ => new(LeaseState.Cached, doc.Deserialize<CachedResponse>(JsonOptions), null, null),
        };
        return Wrap(raw, value);
    }

    /// <summary>Extends the lease's TTL; a stale token is a 409 <see cref="ProblemTypes.StaleLease"/> with <see cref="Problem.CurrentFencingToken"/>.</summary>
    public Task<ApiResult<LeaseView>> RenewLeaseAsync(string imageId, string leaseId, long fencingToken, CancellationToken ct = default) =>
        SendAsync<LeaseView>(HttpMethod.Post, $"/v1/images/{E(imageId)}/lease/{E(leaseId)}/renew", new { fencingToken }, idempotent: true, ct: ct);

    public Task<ApiResult<CachedResponse>> CompleteLeaseAsync(string imageId, string leaseId, long fencingToken, long sizeBytes, string checksum,
        CancellationToken ct = default) =>
        SendAsync<CachedResponse>(HttpMethod.Post, $"/v1/images/{E(imageId)}/lease/{E(leaseId)}/complete",
            new { fencingToken, sizeBytes, checksum }, idempotent: true, ct: ct);

    public Task<ApiResult<NoContent>> AbortLeaseAsync(string imageId, string leaseId, long fencingToken, CancellationToken ct = default) =>
        SendAsync<NoContent>(HttpMethod.Post, $"/v1/images/{E(imageId)}/lease/{E(leaseId)}/abort", new { fencingToken }, idempotent: true, ct: ct);

    /// <summary>Makes the addressed node fetch the image into the cache (or wait for whoever fetches it). Slow.</summary>
    public Task<ApiResult<CachedResponse>> EnsureImageAsync(string imageId, CancellationToken ct = default) =>
        SendAsync<CachedResponse>(HttpMethod.Post, $"/v1/images/{E(imageId)}/ensure", idempotent: false, slow: true, ct: ct);

    /// <summary>Evicts unused images now (older than <paramref name="olderThan"/>, or the configured age).</summary>
    public Task<ApiResult<EvictResponse>> EvictImagesAsync(TimeSpan? olderThan = null, CancellationToken ct = default) =>
        SendAsync<EvictResponse>(HttpMethod.Post, "/v1/images/evict" + (olderThan is { } o
            ? "?olderThanSeconds=" + o.TotalSeconds.ToString(CultureInfo.InvariantCulture) : ""), idempotent: false, ct: ct);

    // ================================================================== VMs, nodes, events

    public Task<ApiResult<VmsResponse>> GetVmsAsync(CancellationToken ct = default) =>
        SendAsync<VmsResponse>(HttpMethod.Get, "/v1/vms", ct: ct);

    public Task<ApiResult<VmRecord>> GetVmAsync(string name, CancellationToken ct = default) =>
        SendAsync<VmRecord>(HttpMethod.Get, $"/v1/vms/{E(name)}", ct: ct);

    /// <summary>Spawns a VM on the node this client addresses (201; the same spawn again answers 200).</summary>
    public Task<ApiResult<VmRecord>> SpawnVmAsync(SpawnVmRequest request, CancellationToken ct = default) =>
        SendAsync<VmRecord>(HttpMethod.Post, "/v1/vms", request, idempotent: false, slow: true, ct: ct);

    /// <summary>Destroys a VM wherever it runs (204).</summary>
    public Task<ApiResult<NoContent>> DestroyVmAsync(string name, CancellationToken ct = default) =>
        SendAsync<NoContent>(HttpMethod.Delete, $"/v1/vms/{E(name)}", idempotent: true, slow: true, ct: ct);

    public Task<ApiResult<VmRecord>> MigrateVmAsync(string name, string target, MigrationMode mode = MigrationMode.Live, CancellationToken ct = default) =>
        SendAsync<VmRecord>(HttpMethod.Post, $"/v1/vms/{E(name)}/migrate", new { target, mode }, idempotent: false, slow: true, ct: ct);

    /// <summary>Another cluster's coordinator announces a VM that migrated to the host this client addresses.</summary>
    public Task<ApiResult<VmRecord>> AnnounceArrivalAsync(SpawnVmRequest vm, CancellationToken ct = default) =>
        SendAsync<VmRecord>(HttpMethod.Post, "/v1/vms/arrivals", vm, idempotent: false, slow: true, ct: ct);

    public Task<ApiResult<NodesResponse>> GetNodesAsync(CancellationToken ct = default) =>
        SendAsync<NodesResponse>(HttpMethod.Get, "/v1/nodes", ct: ct);

    /// <summary>Stops placements on the node and live-migrates its VMs away (admin token).</summary>
    public Task<ApiResult<DrainResponse>> DrainNodeAsync(string node, CancellationToken ct = default) =>
        SendAsync<DrainResponse>(HttpMethod.Post, $"/v1/nodes/{E(node)}/drain", idempotent: false, ct: ct);

    public Task<ApiResult<DrainResponse>> ResumeNodeAsync(string node, CancellationToken ct = default) =>
        SendAsync<DrainResponse>(HttpMethod.Post, $"/v1/nodes/{E(node)}/resume", idempotent: false, ct: ct);

    /// <summary>The arrival/departure feed after sequence <paramref name="after"/>; a long poll with <paramref name="wait"/> (≤ 60 s).</summary>
    public Task<ApiResult<EventsResponse>> GetEventsAsync(long after = 0, TimeSpan? wait = null, string? node = null, CancellationToken ct = default) =>
        SendAsync<EventsResponse>(HttpMethod.Get,
            $"/v1/events?after={after.ToString(CultureInfo.InvariantCulture)}" + (wait is { } w ? $"&waitMs={Ms(w)}" : "")
            + (node is null ? "" : "&node=" + E(node)), extraTime: wait, ct: ct);

    // ================================================================== cluster administration

    public Task<ApiResult<MembersResponse>> GetMembersAsync(CancellationToken ct = default) =>
        SendAsync<MembersResponse>(HttpMethod.Get, "/cluster/members", ct: ct);

    /// <summary>A member by node name or Akka address.</summary>
    public Task<ApiResult<MemberView>> GetMemberAsync(string nodeOrAddress, CancellationToken ct = default) =>
        SendAsync<MemberView>(HttpMethod.Get, $"/cluster/members/{E(nodeOrAddress)}", ct: ct);

    /// <summary>Asks a member (node name or Akka address) to leave the cluster gracefully (admin token).</summary>
    public Task<ApiResult<MemberOperationResponse>> LeaveAsync(string nodeOrAddress, CancellationToken ct = default) =>
        MemberOperationAsync(nodeOrAddress, "leave", ct);

    /// <summary>Downs a member (node name or Akka address), e.g. one that is unreachable for good (admin token).</summary>
    public Task<ApiResult<MemberOperationResponse>> DownAsync(string nodeOrAddress, CancellationToken ct = default) =>
        MemberOperationAsync(nodeOrAddress, "down", ct);

    private Task<ApiResult<MemberOperationResponse>> MemberOperationAsync(string member, string operation, CancellationToken ct) =>
        SendAsync<MemberOperationResponse>(HttpMethod.Put, $"/cluster/members/{E(member)}?operation={operation}", idempotent: true, ct: ct);

    public Task<ApiResult<SingletonResponse>> GetSingletonAsync(CancellationToken ct = default) =>
        SendAsync<SingletonResponse>(HttpMethod.Get, "/cluster/singleton", ct: ct);

    /// <summary>
    /// An online, consistent backup of the ledger (GET /v1/admin/backup, admin token): the backup file's bytes exactly
    /// as the service sent them (gzip'd JSON; write them to a file as they are). Retried like any GET; per attempt it
    /// may take <see cref="CoordinatorClientOptions.OperationTimeout"/> (a large ledger).
    /// </summary>
    public async Task<ApiResult<byte[]>> DownloadBackupAsync(CancellationToken ct = default)
    {
        var raw = await SendRawAsync(HttpMethod.Get, "/v1/admin/backup", null, idempotent: true, slow: true, _options.OperationTimeout, ct);
        return Wrap(raw, raw.Problem is null ? raw.Body : null);
    }

    // ================================================================== health

    /// <summary>The process serves HTTP. Not retried.</summary>
    public Task<ApiResult<HealthResponse>> HealthzAsync(CancellationToken ct = default) =>
        SendAsync<HealthResponse>(HttpMethod.Get, "/healthz", idempotent: false, ct: ct);

    /// <summary>Readiness, not retried: a 503 is an answer too (<see cref="HealthResponse.Ready"/> false, with the reason).</summary>
    public async Task<ApiResult<HealthResponse>> ReadyzAsync(CancellationToken ct = default)
    {
        var raw = await SendRawAsync(HttpMethod.Get, "/readyz", null, false, false, null, ct, notReadyIsAnswer: true);
        if (raw.Status == 503 && TryDeserialize<HealthResponse>(raw.Body) is { } h) return Wrap(raw with { Problem = null }, h);
        return raw.Problem is null ? Wrap(raw, JsonSerializer.Deserialize<HealthResponse>(raw.Body, JsonOptions)) : Wrap<HealthResponse>(raw, default);
    }

    // ================================================================== the generic call

    /// <summary>
    /// Any route: the body (if any) is sent as JSON; a 2xx body is read as <typeparamref name="T"/> (<see cref="NoContent"/>
    /// or <see cref="JsonElement"/> work too). <paramref name="idempotent"/> decides whether a 503 or a lost connection is
    /// retried. <paramref name="slow"/> allows <see cref="CoordinatorClientOptions.OperationTimeout"/> per attempt.
    /// </summary>
    public async Task<ApiResult<T>> SendAsync<T>(HttpMethod method, string pathAndQuery, object? body = null, bool? idempotent = null,
        bool slow = false, TimeSpan? extraTime = null, CancellationToken ct = default)
    {
        var safe = idempotent ?? (method == HttpMethod.Get || method == HttpMethod.Put || method == HttpMethod.Delete || method == HttpMethod.Head);
        var attempt = (slow ? _options.OperationTimeout : _options.AttemptTimeout) + (extraTime ?? TimeSpan.Zero);
        var raw = await SendRawAsync(method, pathAndQuery, body, safe, slow, attempt, ct);
        if (raw.Problem is not null) return Wrap<T>(raw, default);
        T? value;
        if (typeof(T) == typeof(NoContent)) value = default;
        else if (raw.Body.Length == 0) throw new JsonException($"{method} {pathAndQuery} answered {raw.Status} without a body");
        else value = JsonSerializer.Deserialize<T>(raw.Body, JsonOptions);
        return Wrap(raw, value);
    }

    private sealed record Raw(int Status, byte[] Body, Problem? Problem, long? Epoch, TimeSpan? RetryAfter);

    private static ApiResult<T> Wrap<T>(Raw raw, T? value) => new(raw.Status, value, raw.Problem, raw.Body, raw.Epoch, raw.RetryAfter);

    private static T? TryDeserialize<T>(byte[] body) where T : class
    {
        try { return JsonSerializer.Deserialize<T>(body, JsonOptions); }
        catch (JsonException) { return null; }
    }

    private async Task<Raw> SendRawAsync(HttpMethod method, string path, object? body, bool idempotent, bool slow, TimeSpan? attemptTimeout,
        CancellationToken ct, bool notReadyIsAnswer = false)
    {
        var content = body is null ? null : JsonSerializer.SerializeToUtf8Bytes(body, body.GetType(), JsonOptions);
        var context = ResilienceContextPool.Shared.Get(ct);
        context.Properties.Set(DeadlineKey, Stopwatch.GetTimestamp() + (long)(_options.RetryBudget.TotalSeconds * Stopwatch.Frequency));
        context.Properties.Set(AttemptTimeoutKey, attemptTimeout ?? (slow ? _options.OperationTimeout : _options.AttemptTimeout));
        context.Properties.Set(CallKey, method.Method + " " + path);
        var pipeline = idempotent && !notReadyIsAnswer ? _idempotent : _unsafe;
        HttpResponseMessage response;
        try
        {
            response = await pipeline.ExecuteAsync(async (ctx, state) =>
            {
                using var request = new HttpRequestMessage(state.method, state.path);
                if (state.content is not null)
                {
                    request.Content = new ByteArrayContent(state.content);
                    request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json") { CharSet = "utf-8" };
                }
                request.Headers.Accept.ParseAdd("application/json");
                request.Headers.Accept.ParseAdd("application/problem+json");
                if (!string.IsNullOrEmpty(_options.Token)) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _options.Token);
                // ResponseContentRead: the body is buffered inside the attempt, under its timeout.
                return await _http.SendAsync(request, HttpCompletionOption.ResponseContentRead, ctx.CancellationToken);
            }, context, (method, path, content));
        }
        catch (HttpRequestException e)
        {
            throw new CoordinatorUnavailableException($"{Endpoint} is unreachable: {e.Message}", UnavailableReason.Unreachable, Endpoint, inner: e);
        }
        catch (TimeoutRejectedException e)
        {
            throw new CoordinatorUnavailableException($"{Endpoint} did not answer {method} {path} within {e.Timeout.TotalSeconds:0.#} s",
                UnavailableReason.Timeout, Endpoint, inner: e);
        }
        catch (OperationCanceledException e) when (!ct.IsCancellationRequested)
        {
            // The caller's HttpClient.Timeout (when it brought its own client).
            throw new CoordinatorUnavailableException($"{Endpoint} did not answer {method} {path} in time", UnavailableReason.Timeout, Endpoint, inner: e);
        }
        finally
        {
            ResilienceContextPool.Shared.Return(context);
        }

        using (response)
        {
            var bytes = await response.Content.ReadAsByteArrayAsync(ct);
            var status = (int)response.StatusCode;
            long? epoch = response.Headers.TryGetValues(EpochHeader, out var ev) && long.TryParse(ev.FirstOrDefault(), NumberStyles.Integer,
                CultureInfo.InvariantCulture, out var e0) ? e0 : null;
            var retryAfter = RetryAfterOf(response);
            if (status < 400) return new Raw(status, bytes, null, epoch, retryAfter);
            var problem = Problem.Parse(status, bytes, response.ReasonPhrase);
            if (status == 503 && !notReadyIsAnswer && IsNoLeader(response, problem))
                throw new CoordinatorUnavailableException(
                    $"{Endpoint} has no ledger leader{(idempotent ? $" (retried for {_options.RetryBudget.TotalSeconds:0.#} s)" : "")}: {problem.Detail ?? problem.Title}",
                    UnavailableReason.NoLeader, Endpoint, problem);
            return new Raw(status, bytes, problem, epoch, retryAfter);
        }
    }

    /// <summary>A 503 that means "no leader" (rather than, say, a VM's node being unavailable, which is a refusal).</summary>
    private static bool IsNoLeader(HttpResponseMessage r, Problem p) =>
        p.Slug == ProblemTypes.NoLeader || p.Type == "about:blank" || r.Headers.RetryAfter is not null;

    private static TimeSpan? RetryAfterOf(HttpResponseMessage r) => r.Headers.RetryAfter switch
    {
        { Delta: { } d } => d,
        { Date: { } at } => at - DateTimeOffset.UtcNow is var span && span > TimeSpan.Zero ? span : TimeSpan.Zero,
        _ => null,
    };

    private ResiliencePipeline<HttpResponseMessage> BuildPipeline(bool retryUnavailable)
    {
        var o = _options;
        return new ResiliencePipelineBuilder<HttpResponseMessage>()
            .AddRetry(new RetryStrategyOptions<HttpResponseMessage>
            {
                MaxRetryAttempts = int.MaxValue, // bounded by the time budget (ShouldHandle), not by a count
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = o.BaseRetryDelay,
                MaxDelay = o.MaxRetryDelay,
                ShouldHandle = args =>
                {
                    if (args.Context.CancellationToken.IsCancellationRequested) return ValueTask.FromResult(false);
                    // A sliver of budget is not worth another attempt: a wait cut short by the budget may end a little
                    // before the deadline (timer granularity), and a loop of sub-millisecond waits followed (37 calls
                    // in a 1 s budget with a 100 ms cap, on a loaded machine).
                    var left = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), args.Context.Properties.GetValue(DeadlineKey, 0L));
                    if (left < MinimumRetryBudgetLeft) return ValueTask.FromResult(false);
                    var retry = args.Outcome switch
                    {
                        { Exception: HttpRequestException e } => retryUnavailable || e.HttpRequestError == HttpRequestError.ConnectionError,
                        { Exception: TimeoutRejectedException } => retryUnavailable,
                        { Result: { StatusCode: HttpStatusCode.ServiceUnavailable } } => retryUnavailable,
                        _ => false,
                    };
                    return ValueTask.FromResult(retry);
                },
                // A node without a leader answers 503 with Retry-After: wait as told (capped), never past the budget.
                DelayGenerator = args =>
                {
                    var remaining = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), args.Context.Properties.GetValue(DeadlineKey, 0L));
                    if (args.Outcome.Result is { } r && RetryAfterOf(r) is { } told)
                        return ValueTask.FromResult<TimeSpan?>(Min(Min(told, o.MaxRetryDelay), remaining));
                    var backoff = TimeSpan.FromTicks(Math.Min(o.MaxRetryDelay.Ticks, o.BaseRetryDelay.Ticks << Math.Min(args.AttemptNumber, 16)));
                    backoff = TimeSpan.FromTicks((long)(backoff.Ticks * (0.5 + Random.Shared.NextDouble() / 2)));
                    return ValueTask.FromResult<TimeSpan?>(Min(backoff, remaining));
                },
                OnRetry = args =>
                {
                    o.OnRetry?.Invoke(new RetryNotice(
                        args.Context.Properties.GetValue(CallKey, "").Split(' ')[0], args.Context.Properties.GetValue(CallKey, "").Split(' ', 2)[^1],
                        args.AttemptNumber + 1, args.RetryDelay, args.Outcome.Result is { } r ? (int)r.StatusCode : null, args.Outcome.Exception));
                    return ValueTask.CompletedTask;
                },
            })
            .AddTimeout(new TimeoutStrategyOptions
            {
                TimeoutGenerator = args => ValueTask.FromResult(args.Context.Properties.GetValue(AttemptTimeoutKey, o.AttemptTimeout)),
            })
            .Build();
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? (a < TimeSpan.Zero ? TimeSpan.Zero : a) : (b < TimeSpan.Zero ? TimeSpan.Zero : b);

    private static string Ms(TimeSpan t) => ((long)t.TotalMilliseconds).ToString(CultureInfo.InvariantCulture);

    private static string E(string s) => Uri.EscapeDataString(s);

    public void Dispose()
    {
        if (_ownsHttp) _http.Dispose();
    }
}
