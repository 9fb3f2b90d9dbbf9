namespace Coordinator.Service.Api;

/// <summary>RFC 7807 problem+json answers. Each carries a stable type URI so clients can branch without parsing text.</summary>
public static class Problems
{
    private const string TypeBase = "https://hyperv-coordinator.dev/problems/";

    public static IResult BadRequest(string detail) => Make(400, "invalid-request", "The request is invalid", detail);

    public static IResult NotFound(string detail) => Make(404, "not-found", "Not found", detail);

    public static IResult TooLarge(string detail) => Make(413, "body-too-large", "The request body is too large", detail);

    public static IResult UnsupportedMediaType(string detail) => Make(415, "unsupported-media-type", "Unsupported media type", detail);

    public static IResult NoLeader(string detail) =>
        Make(503, "no-leader", "No ledger leader is reachable", detail, retryAfterSeconds: 1);

    /// <summary>The ledger stopped at a journal entry it cannot read; the detail says what to do (upgrade or restore).</summary>
    public static IResult LedgerRefused(string detail) =>
        Make(503, "ledger-refused", "The ledger refuses to serve its journal", detail, retryAfterSeconds: 30);

    public static IResult InsufficientSpace(string detail, long freeBytes, long requestedBytes, long epoch) =>
        Make(409, "insufficient-space", "The claim does not fit on the volume", detail,
            extensions: new Dictionary<string, object?> { ["freeBytes"] = freeBytes, ["requestedBytes"] = requestedBytes, ["epoch"] = epoch });

    /// <summary>
    /// Gives the answers ASP.NET writes itself (a query value that does not bind, no such route, a method the route
    /// does not take, a body over Kestrel's limit, an unhandled exception) the same stable type slugs as ours.
    /// Wire it with builder.Services.AddProblemDetails(o => o.CustomizeProblemDetails = Problems.Customize).
    /// </summary>
    public static void Customize(ProblemDetailsContext context)
    {
        var p = context.ProblemDetails;
        if (p.Type is { } t && t.StartsWith(TypeBase, StringComparison.Ordinal)) return;
        var status = p.Status ?? context.HttpContext.Response.StatusCode;
        (p.Type, p.Title) = status switch
        {
            400 => (TypeBase + "invalid-request", "The request is invalid"),
            404 => (TypeBase + "not-found", "Not found"),
            405 => (TypeBase + "method-not-allowed", "The route does not take this method"),
            413 => (TypeBase + "body-too-large", "The request body is too large"),
            415 => (TypeBase + "unsupported-media-type", "Unsupported media type"),
            >= 500 => (TypeBase + "internal-error", "The coordinator failed to answer"),
            _ => (p.Type, p.Title),
        };
    }

    public static IResult Make(int status, string type, string title, string detail,
        IDictionary<string, object?>? extensions = null, int? retryAfterSeconds = null)
    {
        var result = Results.Problem(detail: detail, statusCode: status, title: title, type: TypeBase + type, extensions: extensions);
        return retryAfterSeconds is null ? result : new WithRetryAfter(result, retryAfterSeconds.Value);
    }

    private sealed class WithRetryAfter(IResult inner, int seconds) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext)
        {
            httpContext.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return inner.ExecuteAsync(httpContext);
        }
    }
}
