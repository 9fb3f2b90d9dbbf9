using System.Diagnostics.CodeAnalysis;
using System.Net;
using System.Text;
using System.Text.Json;

namespace Coordinator.Client;

/// <summary>
/// The answer to one call: either a value (<see cref="IsOk"/>) or the problem the service refused it with (a 409 that
/// does not fit, a 404, a 400, a 401/403...). Refusals are results, never exceptions; only an unreachable service or a
/// missing leader throws (<see cref="CoordinatorUnavailableException"/>).
/// </summary>
public sealed class ApiResult<T>
{
    internal ApiResult(int status, T? value, Problem? problem, byte[] body, long? epoch, TimeSpan? retryAfter)
    {
        Status = status;
        Value = value;
        Problem = problem;
        RawBody = body;
        Epoch = epoch;
        RetryAfter = retryAfter;
    }

    /// <summary>The HTTP status the service answered.</summary>
    public int Status { get; }

    [MemberNotNullWhen(true, nameof(Value))]
    [MemberNotNullWhen(false, nameof(Problem))]
    public bool IsOk => Problem is null;

    public T? Value { get; }

    public Problem? Problem { get; }

    /// <summary>The body exactly as the service sent it (for tools that pass it on unchanged).</summary>
    public ReadOnlyMemory<byte> RawBody { get; }

    public string BodyText => Encoding.UTF8.GetString(RawBody.Span);

    /// <summary>The ledger epoch (X-Coordinator-Epoch) when the answer carries it.</summary>
    public long? Epoch { get; }

    /// <summary>Retry-After of the answer (a 202 pending lease, say).</summary>
    public TimeSpan? RetryAfter { get; }

    /// <summary>The value, or <see cref="CoordinatorProblemException"/> carrying the problem.</summary>
    public T ValueOrThrow() => IsOk ? Value : throw new CoordinatorProblemException(Problem);

    /// <summary>Whether the call was refused with this problem slug (e.g. <see cref="ProblemTypes.InsufficientSpace"/>).</summary>
    public bool IsProblem(string slug) => Problem?.Slug == slug;

    public override string ToString() => IsOk ? $"{Status} {Value}" : $"{Status} {Problem}";
}

/// <summary>
/// An RFC 7807 problem. <see cref="Slug"/> is the stable last segment of <see cref="Type"/> (insufficient-space,
/// stale-lease, not-found...); extension members (freeBytes, requestedBytes, currentFencingToken, epoch) are kept.
/// </summary>
public sealed record Problem(int Status, string Type, string Title, string? Detail, string? Instance,
    IReadOnlyDictionary<string, JsonElement> Extensions)
{
    public string Slug
    {
        get
        {
            var t = Type.TrimEnd('/');
            return t[(t.LastIndexOf('/') + 1)..];
        }
    }

    public long? FreeBytes => GetInt64("freeBytes");

    public long? RequestedBytes => GetInt64("requestedBytes");

    public long? CurrentFencingToken => GetInt64("currentFencingToken");

    public long? Epoch => GetInt64("epoch");

    public long? GetInt64(string name) =>
        Extensions.TryGetValue(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var l) ? l : null;

    public string? GetString(string name) =>
        Extensions.TryGetValue(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    public override string ToString() => $"{Slug}: {Title}{(Detail is null ? "" : " (" + Detail + ")")}";

    private static readonly HashSet<string> Standard = ["type", "title", "status", "detail", "instance"];

    /// <summary>Reads a problem+json body; anything else (an empty 405, a proxy's HTML) becomes an about:blank problem.</summary>
    public static Problem Parse(int status, ReadOnlySpan<byte> body, string? reason = null)
    {
        try
        {
            if (!body.IsEmpty)
            {
                using var doc = JsonDocument.Parse(body.ToArray());
                var root = doc.RootElement;
                if (root.ValueKind == JsonValueKind.Object && (root.TryGetProperty("type", out _) || root.TryGetProperty("title", out _)))
                {
                    string? S(string p) => root.TryGetProperty(p, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
                    var ext = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
                    foreach (var p in root.EnumerateObject())
                        if (!Standard.Contains(p.Name)) ext[p.Name] = p.Value.Clone();
                    return new Problem(status, S("type") ?? "about:blank", S("title") ?? reason ?? Reason(status), S("detail"), S("instance"), ext);
                }
            }
        }
        catch (JsonException) { }
        var text = Encoding.UTF8.GetString(body);
        return new Problem(status, "about:blank", reason ?? Reason(status), text.Length == 0 ? null : text[..Math.Min(text.Length, 500)], null,
            new Dictionary<string, JsonElement>());
    }

    private static string Reason(int status) =>
        Enum.IsDefined(typeof(HttpStatusCode), status) ? ((HttpStatusCode)status).ToString() : $"HTTP {status}";
}

/// <summary>The stable problem slugs the service answers with (the last segment of a problem's type).</summary>
public static class ProblemTypes
{
    public const string InvalidRequest = "invalid-request";
    public const string NotFound = "not-found";
    public const string BodyTooLarge = "body-too-large";
    public const string UnsupportedMediaType = "unsupported-media-type";
    public const string NoLeader = "no-leader";
    public const string InsufficientSpace = "insufficient-space";
    public const string InsufficientMemory = "insufficient-memory";
    public const string StaleLease = "stale-lease";
    public const string Unauthorized = "unauthorized";
    public const string Forbidden = "forbidden";
    public const string AdminDisabled = "admin-disabled";
    /// <summary>The route needs the admin role and the caller has another (agent, peer).</summary>
    public const string AdminOnly = "admin-only";
    /// <summary>An agent named another node than its own (reservation, lease, VM, ...).</summary>
    public const string WrongNode = "wrong-node";
    /// <summary>Only the lease's holder (or an admin) may renew, complete or abort it.</summary>
    public const string NotLeaseHolder = "not-lease-holder";
    /// <summary>A peer cluster's token used on a route peers may not call.</summary>
    public const string PeerNotAllowed = "peer-not-allowed";
    public const string NodeUnavailable = "node-unavailable";
    public const string VmExists = "vm-exists";
    public const string VmMoving = "vm-moving";
    public const string OperationInProgress = "operation-in-progress";
    public const string ImageNotFound = "image-not-found";
    public const string GlanceUnavailable = "glance-unavailable";
    public const string ChecksumMismatch = "checksum-mismatch";
    public const string ScanFailed = "scan-failed";
}

/// <summary>Thrown by <see cref="ApiResult{T}.ValueOrThrow"/> for callers that prefer exceptions.</summary>
public sealed class CoordinatorProblemException(Problem problem) : Exception($"{problem.Status} {problem}")
{
    public Problem Problem { get; } = problem;
}

public enum UnavailableReason
{
    /// <summary>No connection could be made (refused, reset, name not resolved).</summary>
    Unreachable,

    /// <summary>The node answered 503: no ledger leader reachable (a handover, a partition, a journal outage).</summary>
    NoLeader,

    /// <summary>No answer within the attempt timeout.</summary>
    Timeout,
}

/// <summary>
/// The service could not be reached, or kept answering 503 (no leader), until the retry budget ran out. Refusals
/// (4xx) never throw this.
/// </summary>
public sealed class CoordinatorUnavailableException(string message, UnavailableReason reason, Uri endpoint,
    Problem? problem = null, Exception? inner = null) : Exception(message, inner)
{
    public UnavailableReason Reason { get; } = reason;

    public Uri Endpoint { get; } = endpoint;

    /// <summary>The last 503's problem when the node answered one.</summary>
    public Problem? Problem { get; } = problem;
}
