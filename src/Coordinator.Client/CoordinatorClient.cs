using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Polly;
using Polly.Retry;

namespace Coordinator.Client;

public sealed record CoordinatorClientOptions
{
    /// <summary>Total time an idempotent call may spend retrying across a leader change.</summary>
    public TimeSpan RetryBudget { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Longest wait between retries, whatever Retry-After says.</summary>
    public TimeSpan MaxRetryDelay { get; init; } = TimeSpan.FromSeconds(5);

    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(60);
}

/// <summary>
/// The node-agent and admin API of one node. Idempotent calls (reads, PUT/DELETE of reservations, lease calls, member
/// operations) are retried on 503 (honouring Retry-After) and on refused connections, within a time budget.
/// </summary>
public sealed class CoordinatorClient : IDisposable
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    private readonly HttpClient _http;
    private readonly ResiliencePipeline<HttpResponseMessage> _retry;

    public Uri Endpoint { get; }

    public CoordinatorClient(Uri endpoint, string? token = null, CoordinatorClientOptions? options = null, HttpMessageHandler? handler = null)
    {
        options ??= new CoordinatorClientOptions();
        Endpoint = endpoint;
        _http = new HttpClient(handler ?? new SocketsHttpHandler { UseProxy = false }) { BaseAddress = endpoint, Timeout = options.RequestTimeout };
        if (!string.IsNullOrEmpty(token)) _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        _retry = new ResiliencePipelineBuilder<HttpResponseMessage>()
            .AddTimeout(options.RetryBudget)
            .AddRetry(new RetryStrategyOptions<HttpResponseMessage>
            {
                MaxRetryAttempts = int.MaxValue,
                BackoffType = DelayBackoffType.Exponential,
                Delay = TimeSpan.FromMilliseconds(200),
                MaxDelay = options.MaxRetryDelay,
                UseJitter = true,
                ShouldHandle = new PredicateBuilder<HttpResponseMessage>()
                    .Handle<HttpRequestException>()
                    .HandleResult(r => r.StatusCode == HttpStatusCode.ServiceUnavailable),
                // A leader change answers 503 with Retry-After: wait as told (capped).
                DelayGenerator = a => ValueTask.FromResult(a.Outcome.Result?.Headers.RetryAfter?.Delta is { } d
                    ? (TimeSpan?)(d < options.MaxRetryDelay ? d : options.MaxRetryDelay) : null),
            })
            .Build();
    }

    // ---------------------------------------------------------------- raw

    public async Task<ApiResponse> SendAsync(HttpMethod method, string path, object? body = null, bool idempotent = true, CancellationToken ct = default)
    {
        HttpRequestMessage Build() => new(method, path)
        {
            Content = body is null ? null : new StringContent(JsonSerializer.Serialize(body, Json), Encoding.UTF8, "application/json"),
        };
        HttpResponseMessage response;
        try
        {
            response = idempotent
                ? await _retry.ExecuteAsync(async token => await _http.SendAsync(Build(), token), ct)
                : await _http.SendAsync(Build(), ct);
        }
        catch (Exception e) when (e is HttpRequestException or Polly.Timeout.TimeoutRejectedException or TaskCanceledException && !ct.IsCancellationRequested)
        {
            throw new CoordinatorUnavailableException($"{Endpoint} is unreachable: {e.Message}", e);
        }
        using (response)
        {
            var text = await response.Content.ReadAsStringAsync(ct);
            var status = (int)response.StatusCode;
            if (status == 503)
                throw new CoordinatorUnavailableException($"{Endpoint} has no leader: {ProblemOf(status, text)?.Detail ?? text}");
            return new ApiResponse(status, text, status >= 400 ? ProblemOf(status, text) : null);
        }
    }

    public async Task<ApiResult<T>> SendAsync<T>(HttpMethod method, string path, object? body = null, bool idempotent = true, CancellationToken ct = default)
    {
        var r = await SendAsync(method, path, body, idempotent, ct);
        if (!r.IsSuccess) return new ApiResult<T>(default, r.Problem ?? new Problem(r.Status, null, null, r.Body, default), r.Status, r.Body);
        var value = r.Body.Length == 0 ? default : JsonSerializer.Deserialize<T>(r.Body, Json);
        return new ApiResult<T>(value, null, r.Status, r.Body);
    }

    private static Problem? ProblemOf(int status, string text)
    {
        try
        {
            var doc = JsonDocument.Parse(text).RootElement.Clone();
            string? S(string p) => doc.ValueKind == JsonValueKind.Object && doc.TryGetProperty(p, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
            return new Problem(status, S("type"), S("title"), S("detail"), doc);
        }
        catch (JsonException)
        {
            return new Problem(status, null, null, text, default);
        }
    }

    // ---------------------------------------------------------------- node-agent API

    public Task<ApiResult<VolumesInfo>> VolumesAsync(CancellationToken ct = default) => SendAsync<VolumesInfo>(HttpMethod.Get, "/v1/volumes", ct: ct);

    public Task<ApiResult<QuotasInfo>> QuotasAsync(string volume, CancellationToken ct = default) =>
        SendAsync<QuotasInfo>(HttpMethod.Get, $"/v1/volumes/{E(volume)}/quotas", ct: ct);

    public Task<ApiResult<ReservationsInfo>> ReservationsAsync(string volume, CancellationToken ct = default) =>
        SendAsync<ReservationsInfo>(HttpMethod.Get, $"/v1/volumes/{E(volume)}/reservations", ct: ct);

    /// <summary>Idempotent: the same claim twice answers the same reservation; a refusal (409) comes back as a problem with freeBytes.</summary>
    public Task<ApiResult<ReservationInfo>> ReserveAsync(string volume, string consumerId, string node, long bytes, string? path = null,
        string? imageId = null, CancellationToken ct = default) =>
        SendAsync<ReservationInfo>(HttpMethod.Put, $"/v1/volumes/{E(volume)}/reservations/{E(consumerId)}", new { node, bytes, path, imageId }, ct: ct);

    public Task<ApiResult<object>> ReleaseAsync(string volume, string consumerId, CancellationToken ct = default) =>
        SendAsync<object>(HttpMethod.Delete, $"/v1/volumes/{E(volume)}/reservations/{E(consumerId)}", ct: ct);

    public Task<ApiResult<LeaderInfo>> LeaderAsync(CancellationToken ct = default) => SendAsync<LeaderInfo>(HttpMethod.Get, "/v1/leader", ct: ct);

    public Task<ApiResult<ImagesInfo>> ImagesAsync(CancellationToken ct = default) => SendAsync<ImagesInfo>(HttpMethod.Get, "/v1/images", ct: ct);

    public Task<ApiResult<JsonElement>> AcquireLeaseAsync(string imageId, string node, long sizeBytes, CancellationToken ct = default) =>
        SendAsync<JsonElement>(HttpMethod.Post, $"/v1/images/{E(imageId)}/lease", new { node, sizeBytes }, ct: ct);

    public Task<ApiResult<JsonElement>> EnsureImageAsync(string imageId, CancellationToken ct = default) =>
        SendAsync<JsonElement>(HttpMethod.Post, $"/v1/images/{E(imageId)}/ensure", ct: ct);

    public Task<ApiResult<NodesInfo>> NodesAsync(CancellationToken ct = default) => SendAsync<NodesInfo>(HttpMethod.Get, "/v1/nodes", ct: ct);

    public Task<ApiResult<VmsInfo>> VmsAsync(CancellationToken ct = default) => SendAsync<VmsInfo>(HttpMethod.Get, "/v1/vms", ct: ct);

    public Task<ApiResult<JsonElement>> DrainAsync(string node, CancellationToken ct = default) =>
        SendAsync<JsonElement>(HttpMethod.Post, $"/v1/nodes/{E(node)}/drain", ct: ct);

    public Task<ApiResult<JsonElement>> ResumeAsync(string node, CancellationToken ct = default) =>
        SendAsync<JsonElement>(HttpMethod.Post, $"/v1/nodes/{E(node)}/resume", ct: ct);

    public Task<ApiResult<EventsInfo>> EventsAsync(long after = 0, int waitMs = 0, string? node = null, CancellationToken ct = default) =>
        SendAsync<EventsInfo>(HttpMethod.Get, $"/v1/events?after={after}&waitMs={waitMs}" + (node is null ? "" : $"&node={E(node)}"), ct: ct);

    // ---------------------------------------------------------------- admin API

    public Task<ApiResult<MembersInfo>> MembersAsync(CancellationToken ct = default) => SendAsync<MembersInfo>(HttpMethod.Get, "/cluster/members", ct: ct);

    public Task<ApiResult<LeaderInfo>> SingletonAsync(CancellationToken ct = default) => SendAsync<LeaderInfo>(HttpMethod.Get, "/cluster/singleton", ct: ct);

    /// <summary>operation: leave or down; the member is named by node name or Akka address.</summary>
    public Task<ApiResult<JsonElement>> MemberOperationAsync(string member, string operation, CancellationToken ct = default) =>
        SendAsync<JsonElement>(HttpMethod.Put, $"/cluster/members/{E(member)}?operation={E(operation)}", ct: ct);

    private static string E(string s) => Uri.EscapeDataString(s);

    public void Dispose() => _http.Dispose();
}
