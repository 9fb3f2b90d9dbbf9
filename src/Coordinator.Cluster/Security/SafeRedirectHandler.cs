using System.Net;

namespace Coordinator.Cluster.Security;

/// <summary>What to do with one redirect.</summary>
public enum RedirectDecision
{
    /// <summary>Same scheme, host and port: the credentials go along.</summary>
    FollowWithCredentials,

    /// <summary>Another origin: follow, but without any credential header.</summary>
    FollowWithoutCredentials,

    /// <summary>https to http (the request and the answer would travel in clear), or not http(s) at all.</summary>
    Refuse,
}

/// <summary>
/// Follows redirects itself (the inner handler must have <c>AllowAutoRedirect = false</c>): .NET's own following
/// strips only <c>Authorization</c>, so a glance X-Auth-Token would reach whatever host a redirect names. Here the
/// credential headers go only to the origin they were meant for, https is never downgraded, and the count is bounded.
/// </summary>
public sealed class SafeRedirectHandler(HttpMessageHandler inner, int maxRedirects = SafeRedirectHandler.DefaultMaxRedirects)
    : DelegatingHandler(inner)
{
    public const int DefaultMaxRedirects = 5;

    /// <summary>Headers that carry credentials: never sent to another origin.</summary>
    public static readonly IReadOnlySet<string> CredentialHeaders =
        new HashSet<string>(["Authorization", "Proxy-Authorization", "Cookie", "X-Auth-Token"], StringComparer.OrdinalIgnoreCase);

    public static RedirectDecision Decide(Uri from, Uri to)
    {
        if (to.Scheme is not ("http" or "https")) return RedirectDecision.Refuse;
        if (from.Scheme == "https" && to.Scheme == "http") return RedirectDecision.Refuse;
        return SameOrigin(from, to) ? RedirectDecision.FollowWithCredentials : RedirectDecision.FollowWithoutCredentials;
    }

    public static bool SameOrigin(Uri a, Uri b) =>
        string.Equals(a.Scheme, b.Scheme, StringComparison.OrdinalIgnoreCase)
        && string.Equals(a.IdnHost, b.IdnHost, StringComparison.OrdinalIgnoreCase)
        && a.Port == b.Port;

    /// <summary>A URL for a message: no query (a pre-signed object-store URL carries its signature there), no user info.</summary>
    public static string Show(Uri u) => u.IsAbsoluteUri ? $"{u.Scheme}://{u.Authority}{u.AbsolutePath}" : "(relative)";

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
    {
        var current = request;
        var withCredentials = true;
        for (var hops = 0; ; hops++)
        {
            var response = await base.SendAsync(current, ct);
            if (!IsRedirect(response.StatusCode) || response.Headers.Location is not { } location) return response;
            var from = current.RequestUri!;
            var to = location.IsAbsoluteUri ? location : new Uri(from, location);
            response.Dispose();
            if (hops >= maxRedirects)
                throw new HttpRequestException($"more than {maxRedirects} redirects (the last from {Show(from)} to {Show(to)})");
            var decision = Decide(from, to);
            if (decision == RedirectDecision.Refuse)
                throw new HttpRequestException($"refused a redirect from {Show(from)} to {Show(to)} (https is never downgraded to http)");
            // Once dropped, credentials stay dropped: a hop back to the first origin came through a stranger's answer.
            withCredentials &= decision == RedirectDecision.FollowWithCredentials;
            current = Next(current, to, response.StatusCode, withCredentials);
        }
    }

    private static bool IsRedirect(HttpStatusCode s) => (int)s is 301 or 302 or 303 or 307 or 308;

    private static HttpRequestMessage Next(HttpRequestMessage previous, Uri to, HttpStatusCode status, bool withCredentials)
    {
        // 303 (and 301/302 after a POST, as browsers do) become GET without a body; 307/308 repeat the request. The
        // callers send only GETs and small JSON bodies that HttpClient buffers, so a repeated body is still readable.
        var asGet = status == HttpStatusCode.SeeOther
                    || ((int)status is 301 or 302 && previous.Method == HttpMethod.Post);
        var next = new HttpRequestMessage(asGet ? HttpMethod.Get : previous.Method, to)
        {
            Version = previous.Version,
            VersionPolicy = previous.VersionPolicy,
            Content = asGet ? null : previous.Content,
        };
        foreach (var h in previous.Headers)
            if (withCredentials || !CredentialHeaders.Contains(h.Key))
                next.Headers.TryAddWithoutValidation(h.Key, h.Value);
        return next;
    }
}
