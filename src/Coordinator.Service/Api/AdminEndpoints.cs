using Akka.Actor;
using Akka.Cluster;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Ledger;

namespace Coordinator.Service.Api;

public sealed record MemberView(string Node, string Address, string Status, IReadOnlyList<string> Roles, int UpNumber,
    bool Reachable, bool Oldest, bool Leader, bool Singleton);

public sealed record UnreachableView(string Node, string Address, IReadOnlyList<string> ObservedBy);

public sealed record MembersResponse(string SelfNode, string SelfAddress, string? Leader, string? Oldest, string? SingletonNode,
    IReadOnlyList<MemberView> Members, IReadOnlyList<UnreachableView> Unreachable);

public sealed record SingletonResponse(string Node, string Address, long Epoch, DateTimeOffset Since);

/// <summary>The form of PUT /cluster/members/{address} (Akka Management's shape): operation = leave or down.</summary>
public sealed record MemberOperationForm(string? Operation);

public sealed record MemberOperationResponse(string Message, string Address, string Operation);

/// <summary>
/// Cluster administration, modelled on Akka Management's Cluster HTTP routes. Mutating routes are off unless an admin
/// credential is configured (coordinator.http.admin-token or identities), and then need the admin role (Authorization).
/// </summary>
public static class AdminEndpoints
{
    public static void MapAdminApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/cluster/members", async (ActorSystem system, LedgerGateway ledger, CancellationToken ct) =>
            Results.Ok(await Members(system, ledger, ct)));

        app.MapGet("/cluster/members/{address}", async (string address, ActorSystem system, LedgerGateway ledger, CancellationToken ct) =>
        {
            var all = await Members(system, ledger, ct);
            var m = all.Members.FirstOrDefault(x => Matches(x, address));
            return m is null ? Problems.NotFound($"no member '{address}'") : Results.Ok(m);
        });

        app.MapPut("/cluster/members/{address}", async (string address, string? operation, HttpRequest request, ActorSystem system,
            HttpSecurity security, ILoggerFactory logs, CancellationToken ct) =>
        {
            if (Authorization.Admin(request.HttpContext, security) is { } denied) return denied;
            // Akka Management takes the operation as a form field; a query parameter works too.
            if (operation is null && request.HasFormContentType)
            {
                var (form, problem) = await LedgerEndpoints.ReadForm(request, ct);
                if (problem is not null) return problem;
                operation = form!["operation"].ToString();
            }
            var op = operation?.Trim().ToLowerInvariant();
            if (op is not ("leave" or "down")) return Problems.BadRequest("operation must be leave or down");
            var cluster = Akka.Cluster.Cluster.Get(system);
            var member = cluster.State.Members.Concat(cluster.State.Unreachable).FirstOrDefault(m => Matches(View(m, cluster, null), address));
            if (member is null) return Problems.NotFound($"no member '{address}'");
            if (op == "leave") cluster.Leave(member.Address); else cluster.Down(member.Address);
            logs.CreateLogger("Coordinator.Admin").LogWarning("Admin: {Operation} of {Address} requested by {Caller}", op, member.Address,
                request.HttpContext.Caller()?.Name);
            return Results.Ok(new MemberOperationResponse(op == "leave" ? "Leaving " + member.Address : "Downing " + member.Address,
                member.Address.ToString(), op));
        }).Accepts<MemberOperationForm>("application/x-www-form-urlencoded", "multipart/form-data")
            .AdminOnly().ProducesProblem(400).ProducesProblem(404);

        app.MapGet("/cluster/singleton", async (LedgerGateway ledger, CancellationToken ct) =>
        {
            var l = await ledger.Ask<LeaderReply>(GetLeader.Instance, ct);
            return Results.Ok(new SingletonResponse(l.Node, l.Address, l.Epoch, l.Since));
        }).AddEndpointFilter(LedgerEndpoints.TranslateNoLeader);
    }

    /// <summary>Marks a route as needing the admin role in the OpenAPI document (it answers 401 and 403 without it).</summary>
    public static RouteHandlerBuilder AdminOnly(this RouteHandlerBuilder route) => route.ProducesProblem(401).ProducesProblem(403);

    private static async Task<MembersResponse> Members(ActorSystem system, LedgerGateway ledger, CancellationToken ct)
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        var state = cluster.State;
        string? singletonAddress = null;
        try { singletonAddress = (await ledger.Ask<LeaderReply>(GetLeader.Instance, ct, TimeSpan.FromSeconds(2))).Address; }
        catch (NoLeaderException) { }
        var members = state.Members.OrderBy(m => m, Member.AgeOrdering).Select(m => View(m, cluster, singletonAddress)).ToList();
        var unreachable = state.Unreachable.Select(m => new UnreachableView(NodeName(m), m.Address.ToString(),
            state.SeenBy.Select(a => a.ToString()).Order().ToList())).ToList();
        return new MembersResponse(NodeName(cluster.SelfMember), cluster.SelfAddress.ToString(),
            state.Leader?.ToString(), members.FirstOrDefault(m => m.Oldest)?.Address,
            members.FirstOrDefault(m => m.Singleton)?.Node, members, unreachable);
    }

    private static MemberView View(Member m, Akka.Cluster.Cluster cluster, string? singletonAddress)
    {
        var state = cluster.State;
        var oldest = state.Members.Where(x => x.Status == MemberStatus.Up).OrderBy(x => x, Member.AgeOrdering).FirstOrDefault();
        // Akka.NET keeps a member's up-number internal; its rank in age order (1 = oldest) carries the same meaning.
        var upNumber = state.Members.OrderBy(x => x, Member.AgeOrdering).TakeWhile(x => x.Address != m.Address).Count() + 1;
        return new MemberView(NodeName(m), m.Address.ToString(), m.Status.ToString(),
            m.Roles.Order(StringComparer.Ordinal).ToList(), upNumber, !state.Unreachable.Contains(m),
            oldest?.Address == m.Address, state.Leader == m.Address, singletonAddress == m.Address.ToString());
    }

    private static string NodeName(Member m) =>
        m.Roles.FirstOrDefault(r => r.StartsWith(CoordinatorSettings.NodeRolePrefix, StringComparison.Ordinal))?[CoordinatorSettings.NodeRolePrefix.Length..]
        ?? m.Address.ToString();

    /// <summary>A member is named by its Akka address (with or without the akka.tcp:// prefix) or its node name.</summary>
    private static bool Matches(MemberView m, string key)
    {
        var k = Uri.UnescapeDataString(key);
        return m.Node.Equals(k, StringComparison.OrdinalIgnoreCase) || m.Address == k || m.Address.EndsWith("://" + k, StringComparison.Ordinal)
               || m.Address.EndsWith("@" + k, StringComparison.Ordinal);
    }
}
