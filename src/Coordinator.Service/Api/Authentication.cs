using System.Net;

namespace Coordinator.Service.Api;

/// <summary>
/// Sets each request's <see cref="CallerIdentity"/> and refuses what needs one and has none. Open to all: /health,
/// /openapi and the reads under /cluster. A bearer token names its credential; with none, a caller on loopback is the
/// local node agent when no agent credential is configured (and, under security.insecure, any caller is). Route rules
/// (which node, admin only) are in <see cref="Authorization"/>. Refusals are logged with the identity's name, never a token.
/// </summary>
public static class Authentication
{
    private const string ItemKey = "coordinator.caller";

    public static CallerIdentity? Caller(this HttpContext http) => http.Items.TryGetValue(ItemKey, out var c) ? c as CallerIdentity : null;

    public static IApplicationBuilder UseCallerIdentity(this IApplicationBuilder app, HttpSecurity security) =>
        app.Use(async (ctx, next) =>
        {
            var (caller, refusal) = Identify(ctx, security);
            if (caller is not null) ctx.Items[ItemKey] = caller;
            if (refusal is null && !IsOpen(ctx.Request))
            {
                if (caller is null)
                    refusal = Authorization.Deny(ctx, 401, "unauthorized", "A bearer token is required", "send Authorization: Bearer <token>");
                else if (caller.Kind == CallerKind.Peer && !CallerIdentity.PeerRoutes(ctx.Request.Method, ctx.Request.Path))
                    refusal = Authorization.Deny(ctx, 403, "peer-not-allowed", "A peer cluster may not call this route",
                        "a peer's token allows only GET /v1/volumes, GET /v1/leader and POST /v1/vms/arrivals");
            }
            if (refusal is not null)
            {
                await refusal.ExecuteAsync(ctx);
                return;
            }
            await next(ctx);
        });

    private static (CallerIdentity? Caller, IResult? Refusal) Identify(HttpContext ctx, HttpSecurity security)
    {
        var header = ctx.Request.Headers.Authorization.ToString();
        if (header.Length > 0)
        {
            if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
                return (null, Authorization.Deny(ctx, 401, "unauthorized", "A bearer token is required", "send Authorization: Bearer <token>"));
            var credential = security.Match(header["Bearer ".Length..].Trim());
            if (credential is null)
                return (null, Authorization.Deny(ctx, 403, "forbidden", "The token is not valid", "the bearer token matches no configured credential"));
            return (new CallerIdentity(credential.Role, credential.Name, credential.Node), null);
        }
        var remote = ctx.Connection.RemoteIpAddress;
        var local = remote is null || IPAddress.IsLoopback(remote.IsIPv4MappedToIPv6 ? remote.MapToIPv4() : remote);
        // The local node agent needs no token on a node that has no agent credential; it acts only as this node.
        if ((local && !security.HasAgentCredential) || security.Insecure && !security.HasAgentCredential)
            return (new CallerIdentity(CallerKind.AnonymousLocal, "anonymous", security.NodeName), null);
        return (null, null);
    }

    /// <summary>Routes anyone may call: health, the OpenAPI document, and reading the membership.</summary>
    private static bool IsOpen(HttpRequest r) =>
        r.Path.StartsWithSegments("/healthz") || r.Path.StartsWithSegments("/readyz") || r.Path.StartsWithSegments("/openapi")
        || (r.Path.StartsWithSegments("/cluster") && (HttpMethods.IsGet(r.Method) || HttpMethods.IsHead(r.Method)));
}

/// <summary>The route rules: an agent acts only for its node; admin routes need the admin role.</summary>
public static class Authorization
{
    /// <summary>A 401/403 problem, logged (Warning) with the caller's name and what it tried; never the token.</summary>
    public static IResult Deny(HttpContext http, int status, string type, string title, string detail)
    {
        var caller = http.Caller();
        http.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("Coordinator.Authorization").LogWarning(
            "Refused {Method} {Path} from {Caller} at {Remote}: {Status} {Type} ({Detail})", http.Request.Method, http.Request.Path.Value,
            caller?.ToString() ?? "an unidentified caller", http.Connection.RemoteIpAddress?.ToString(), status, type, detail);
        return Problems.Make(status, type, title, detail);
    }

    /// <summary>Null when the caller may act for <paramref name="node"/>; otherwise 403 wrong-node.</summary>
    public static IResult? ActFor(HttpContext http, string node)
    {
        var caller = http.Caller();
        if (caller is null) return Deny(http, 401, "unauthorized", "A bearer token is required", "send Authorization: Bearer <token>");
        return caller.MayActFor(node)
            ? null
            : Deny(http, 403, "wrong-node", "The caller may not act for this node",
                $"{caller} acts only for node {caller.Node ?? "(none)"}, not for {node}");
    }

    /// <summary>Null for an admin; otherwise 401 (no credential) or 403 (another role, or no admin credential configured).</summary>
    public static IResult? Admin(HttpContext http, HttpSecurity security)
    {
        var caller = http.Caller();
        if (!security.HasAdminCredential)
            return Deny(http, 403, "admin-disabled", "Administration is disabled",
                "set coordinator.http.admin-token (or an identity with role admin) to enable the admin routes");
        if (caller is null || caller.Kind == CallerKind.AnonymousLocal)
            return Deny(http, 401, "unauthorized", "A bearer token is required", "send Authorization: Bearer <admin token>");
        return caller.IsAdmin
            ? null
            : Deny(http, 403, "admin-only", "This route needs the admin role", $"{caller} is not an administrator");
    }

    /// <summary>
    /// The lease as this caller may see it: its id only for its holder (and an admin); others get null there (the JSON
    /// shows "leaseId": null; the client's LeaseView.LeaseId is nullable) and still see holder and expiry.
    /// </summary>
    public static Coordinator.Cluster.Ledger.LeaseView? Shown(this Coordinator.Cluster.Ledger.LeaseView? lease, HttpContext http) =>
        lease is null || http.Caller() is { } c && c.MayActFor(lease.Holder) ? lease : lease with { LeaseId = null! };
}
