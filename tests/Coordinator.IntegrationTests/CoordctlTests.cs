using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Coordinator.Client;
using Coordinator.IntegrationTests.Harness;
using Xunit.Abstractions;

namespace Coordinator.IntegrationTests;

/// <summary>A three-node cluster shared by the tests that do not change its membership.</summary>
public sealed class CoordctlCluster : IAsyncLifetime
{
    public LocalCluster Cluster { get; } = new(3);

    public async Task InitializeAsync()
    {
        try
        {
            Cluster.StartAll();
            await Cluster.WaitReadyAsync(Cluster.Nodes, TimeSpan.FromSeconds(90));
        }
        catch
        {
            Cluster.Dispose(); // a fixture whose setup failed stops the processes it started
            throw;
        }
    }

    public Task DisposeAsync()
    {
        Cluster.Dispose();
        return Task.CompletedTask;
    }
}

/// <summary>
/// The real coordctl binary against a real three-node cluster: tables, --json (the API's bytes), refusals without the
/// admin token (exit 1, nothing changes), usage errors (2), an endpoint where nothing listens (3). Membership changes
/// are in <see cref="CoordctlMembershipTests"/>, on a cluster of their own.
/// </summary>
public sealed class CoordctlTests(CoordctlCluster fixture, ITestOutputHelper output) : IClassFixture<CoordctlCluster>
{
    private LocalCluster Cluster => fixture.Cluster;

    private NodeInfo Via => Cluster.Nodes[0];

    private async Task<Coordctl.Result> Run(params string[] args)
    {
        var r = await Coordctl.RunAsync([.. args, "--endpoint", CoordctlRun.Endpoint(Cluster, Via)]);
        output.WriteLine($"$ coordctl {string.Join(' ', args)}\n{r}");
        return r;
    }

    [Fact]
    public async Task Cluster_show_lists_three_Up_members_and_marks_the_singleton_host()
    {
        var leader = await Cluster.LeaderAsync(Via);
        var show = await Run("cluster", "show");

        Assert.Equal(0, show.ExitCode);
        var rows = CoordctlRun.MemberRows(show.Stdout);
        Assert.Equal(Cluster.Nodes.Select(n => n.Name).Order(), rows.Keys.Order());
        Assert.All(rows.Values, row => Assert.Contains(" Up ", row));
        Assert.Contains("singleton", rows[leader.Node]);
        Assert.Single(rows.Values, row => row.Contains("singleton"));
        Assert.Equal(leader.Node, CoordctlRun.SingletonOf(show.Stdout));
        Assert.Empty(show.Stderr);
    }

    [Fact]
    public async Task Json_output_is_what_the_API_returns()
    {
        foreach (var (args, path) in new[]
                 {
                     (new[] { "cluster", "show" }, "/cluster/members"), (["volumes"], "/v1/volumes"), (["nodes"], "/v1/nodes"),
                     (["quotas", "Volume1"], "/v1/volumes/Volume1/quotas"), (["vms"], "/v1/vms"), (["images"], "/v1/images"),
                 })
        {
            var cli = await Run([.. args, "--json"]);
            Assert.Equal(0, cli.ExitCode);
            using var api = await Cluster.Http.GetAsync(Cluster.Url(Via, path));
            var apiBody = await api.Content.ReadAsStringAsync();
            Assert.Equal(Stable(apiBody), Stable(cli.Stdout));
        }

        // Nothing changes between two reads of the singleton: the bytes are the same, not only the JSON.
        var leader = await Run("cluster", "leader", "--json");
        var apiBytes = await Cluster.Http.GetByteArrayAsync(Cluster.Url(Via, "/cluster/singleton"));
        Assert.Equal(apiBytes, leader.StdoutBytes);
    }

    [Fact]
    public async Task Admin_operations_without_the_token_or_with_a_wrong_one_exit_1_and_change_nothing()
    {
        var victim = Cluster.Nodes[2].Name;
        var before = await Cluster.Http.GetStringAsync(Cluster.Url(Via, "/cluster/members"));
        foreach (var (args, status) in new[]
                 {
                     (new[] { "cluster", "leave", victim }, 401), (["cluster", "down", victim], 401), (["drain", victim], 401),
                     (["cluster", "leave", victim, "--token", "wrong"], 403), (["cluster", "down", victim, "--token", "wrong"], 403),
                     (["drain", victim, "--token", "wrong"], 403), (["resume", victim, "--token", "wrong"], 403),
                 })
        {
            var r = await Run(args);
            Assert.Equal(1, r.ExitCode);
            Assert.Contains($"{status} ", r.Stderr);
            Assert.Empty(r.Stdout);
        }

        await Task.Delay(1500); // a leave or down that had slipped through would show by now
        var after = await Cluster.Http.GetStringAsync(Cluster.Url(Via, "/cluster/members"));
        Assert.Equal(Stable(before), Stable(after));
        var members = JsonDocument.Parse(after).RootElement.GetProperty("members");
        Assert.Equal(3, members.EnumerateArray().Count(m => m.GetProperty("status").GetString() == "Up" && m.GetProperty("reachable").GetBoolean()));
        var nodes = JsonDocument.Parse(await Cluster.Http.GetStringAsync(Cluster.Url(Via, "/v1/nodes"))).RootElement.GetProperty("nodes");
        Assert.DoesNotContain(nodes.EnumerateArray(), n => n.GetProperty("draining").GetBoolean());
    }

    [Fact]
    public async Task Refusals_are_results_of_the_typed_client_and_exit_1_in_coordctl()
    {
        using var client = new CoordinatorClient(Cluster.Url(Via, "/"));
        var created = await client.PutReservationAsync("Volume1", "coordctl-vm", new ReservationRequest("hv01", 3L << 30));
        Assert.True(created.IsOk, created.ToString());
        Assert.Equal(201, created.Status);
        Assert.Equal("created", created.Value.Status);
        var again = await client.PutReservationAsync("Volume1", "coordctl-vm", new ReservationRequest("hv01", 3L << 30));
        Assert.Equal("unchanged", again.ValueOrThrow().Status);

        var refused = await client.PutReservationAsync("Volume1", "coordctl-big", new ReservationRequest("hv01", 1L << 50));
        Assert.False(refused.IsOk);
        Assert.Equal(409, refused.Status);
        Assert.Equal(ProblemTypes.InsufficientSpace, refused.Problem.Slug);
        Assert.InRange(refused.Problem.FreeBytes ?? -1, 0, 100L << 30);
        Assert.Equal(1L << 50, refused.Problem.RequestedBytes);

        using var wrongToken = new CoordinatorClient(Cluster.Url(Via, "/"), new CoordinatorClientOptions { Token = "wrong" });
        var forbidden = await wrongToken.LeaveAsync(Cluster.Nodes[2].Name);
        Assert.Equal(403, forbidden.Status);
        Assert.Equal(ProblemTypes.Forbidden, forbidden.Problem?.Slug);

        var table = await Run("reservations", "Volume1");
        Assert.Equal(0, table.ExitCode);
        Assert.Matches(@"coordctl-vm\s+hv01\s+3 GiB", table.Stdout);
        var unknown = await Run("quotas", "NoSuchVolume");
        Assert.Equal(1, unknown.ExitCode);
        Assert.Contains("404", unknown.Stderr);
        Assert.Contains("unknown volume 'NoSuchVolume'", unknown.Stderr);

        Assert.Equal(204, (await client.DeleteReservationAsync("Volume1", "coordctl-vm")).Status);
        Assert.Equal(ProblemTypes.NotFound, (await client.DeleteReservationAsync("Volume1", "coordctl-vm")).Problem?.Slug);
    }

    [Fact]
    public async Task Usage_errors_exit_2()
    {
        foreach (var args in new[]
                 {
                     new[] { "no-such-verb" }, ["cluster", "no-such-verb"], ["cluster"], ["volumes", "--no-such-option"], ["quotas"],
                     ["events", "--after", "not-a-number"], ["volumes", "--endpoint", "ftp://example"],
                 })
        {
            var r = await Coordctl.RunAsync(args);
            output.WriteLine($"$ coordctl {string.Join(' ', args)}\n{r}");
            Assert.Equal(2, r.ExitCode);
        }
    }

    [Fact]
    public async Task An_endpoint_where_nothing_listens_exits_3()
    {
        var port = LoopbackPorts.Next();
        // Without retries first: what starting coordctl and failing costs on this machine right now.
        var once = await Coordctl.RunAsync(["cluster", "show", "--endpoint", $"http://127.0.0.1:{port}", "--retry-for", "0"], TimeSpan.FromSeconds(60));
        output.WriteLine(once.ToString());
        Assert.Equal(3, once.ExitCode);
        var r = await Coordctl.RunAsync(["cluster", "show", "--endpoint", $"http://127.0.0.1:{port}", "--retry-for", "1"], TimeSpan.FromSeconds(60));
        output.WriteLine(r.ToString());
        Assert.Equal(3, r.ExitCode);
        Assert.Contains("unreachable", r.Stderr);
        // --retry-for 1 is honoured: about a second more than no retries, where the default (10 s) would add ten.
        Assert.True(r.Elapsed - once.Elapsed < TimeSpan.FromSeconds(7), $"took {r.Elapsed}, {once.Elapsed} without retries");
    }

    /// <summary>Drops the values that change between two reads (measurements, free bytes that follow them).</summary>
    private static string Stable(string json)
    {
        var node = JsonNode.Parse(json)!;
        void Walk(JsonNode? n)
        {
            if (n is JsonObject o)
            {
                foreach (var k in new[] { "measuredAt", "usedBytes", "unownedBytes", "freeBytes", "quotaBytes" }) o.Remove(k);
                foreach (var kv in o.ToList()) Walk(kv.Value);
            }
            else if (n is JsonArray a) foreach (var x in a) Walk(x);
        }
        Walk(node);
        return node.ToJsonString();
    }

}

/// <summary>
/// Membership through coordctl on a three-node cluster of its own: a SIGKILLed node is downed and disappears; the
/// oldest node (the singleton's host) is told to leave and the singleton moves, as cluster show and cluster tail say.
/// </summary>
public sealed class CoordctlMembershipTests(ITestOutputHelper output) : IDisposable
{
    private readonly LocalCluster _cluster = new(3);

    private async Task<Coordctl.Result> Run(NodeInfo via, params string[] args)
    {
        var r = await Coordctl.RunAsync([.. args, "--endpoint", CoordctlRun.Endpoint(_cluster, via)]);
        output.WriteLine($"$ coordctl {string.Join(' ', args)}  (via {via.Name})\n{r}");
        return r;
    }

    [Fact]
    public async Task Down_removes_a_killed_node_and_leave_of_the_oldest_moves_the_singleton()
    {
        _cluster.StartAll();
        await _cluster.WaitReadyAsync(_cluster.Nodes, TimeSpan.FromSeconds(90));
        var token = new[] { "--token", LocalCluster.AdminToken };

        // /readyz says each node is Up in its own view; wait until one node's view holds all three Up as well.
        var shown = await Until(TimeSpan.FromSeconds(30), async () =>
        {
            var show = await Run(_cluster.Nodes[0], "cluster", "show", "--json");
            if (show.ExitCode != 0) return null;
            var root = JsonDocument.Parse(show.Stdout).RootElement;
            var up = root.GetProperty("members").EnumerateArray().Count(m => m.GetProperty("status").GetString() == "Up");
            return up == 3 && root.GetProperty("singletonNode").ValueKind == JsonValueKind.String ? show : null;
        });
        Assert.True(shown is not null, "cluster show did not list three Up members within 30 s");
        var members = JsonDocument.Parse(shown!.Stdout).RootElement;
        var oldest = _cluster.Node(members.GetProperty("members").EnumerateArray().Single(m => m.GetProperty("oldest").GetBoolean()).GetProperty("node").GetString()!);
        Assert.Equal(oldest.Name, members.GetProperty("singletonNode").GetString());
        var others = _cluster.Nodes.Where(n => n != oldest).ToList();
        var (survivor, victim) = (others[0], others[1]);

        // 1. SIGKILL a node that is not the singleton's host; down it with coordctl before the failure detector does.
        _cluster.Kill(victim);
        var down = await Run(survivor, ["cluster", "down", victim.Name, .. token]);
        Assert.Equal(0, down.ExitCode);
        Assert.Contains("Downing", down.Stdout);
        var removed = await Until(TimeSpan.FromSeconds(20), async () =>
        {
            var show = await Run(survivor, "cluster", "show");
            return show.ExitCode == 0 && !CoordctlRun.MemberRows(show.Stdout).ContainsKey(victim.Name) ? show : null;
        });
        Assert.True(removed is not null, $"{victim.Name} is still listed 20 s after cluster down");
        Assert.Equal([oldest.Name, survivor.Name], CoordctlRun.MemberRows(removed!.Stdout).Keys.Order());

        // 2. The oldest node, host of the singleton, leaves: the singleton moves to the survivor. cluster tail watches.
        using var tail = Coordctl.Start("cluster", "tail", "--endpoint", CoordctlRun.Endpoint(_cluster, survivor));
        // Its first poll lists the members, the singleton and then the leader: from then on it sees every change.
        Assert.True(await tail.WaitForOutputAsync(o => Regex.IsMatch(o, @"(^|\s)leader\s+\S", RegexOptions.Multiline), TimeSpan.FromSeconds(30)),
            $"cluster tail did not list the cluster within 30 s:\n{tail.StdoutSoFar}");
        var leave = await Run(survivor, ["cluster", "leave", oldest.Name, .. token]);
        Assert.Equal(0, leave.ExitCode);
        Assert.Contains("Leaving", leave.Stdout);
        var moved = await Until(TimeSpan.FromSeconds(30), async () =>
        {
            var show = await Run(survivor, "cluster", "show");
            return show.ExitCode == 0 && CoordctlRun.SingletonOf(show.Stdout) == survivor.Name
                   && !CoordctlRun.MemberRows(show.Stdout).ContainsKey(oldest.Name) ? show : null;
        });
        Assert.True(moved is not null, $"the singleton did not move to {survivor.Name} within 30 s");
        Assert.Contains("singleton", CoordctlRun.MemberRows(moved!.Stdout)[survivor.Name]);

        // tail polls once a second: stop it once it has seen the move and the departure (or after 30 s, to fail below).
        var singletonMoved = $@"singleton\s+{oldest.Name} -> {survivor.Name}";
        var oldestLeft = $@"(removed\s+{oldest.Name}|{oldest.Name}\s+(Leaving|Exiting|Removed|Down))";
        await tail.WaitForOutputAsync(o => Regex.IsMatch(o, singletonMoved) && Regex.IsMatch(o, oldestLeft), TimeSpan.FromSeconds(30));
        var tailed = await tail.InterruptAsync();
        output.WriteLine($"$ coordctl cluster tail\n{tailed}");
        Assert.Equal(0, tailed.ExitCode);
        Assert.Matches(singletonMoved, tailed.Stdout);
        // The oldest is seen leaving: removed, or last seen Exiting/Removed when tail polled between two states.
        Assert.Matches(oldestLeft, tailed.Stdout);
    }

    private static async Task<T?> Until<T>(TimeSpan timeout, Func<Task<T?>> probe) where T : class
    {
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < timeout)
        {
            if (await probe() is { } found) return found;
            await Task.Delay(500);
        }
        return null;
    }

    public void Dispose() => _cluster.Dispose();
}

/// <summary>Reading coordctl's human output.</summary>
internal static class CoordctlRun
{
    public static string Endpoint(LocalCluster cluster, NodeInfo n) => cluster.Url(n, "").ToString().TrimEnd('/');

    /// <summary>The rows of cluster show's member table, by node name.</summary>
    public static Dictionary<string, string> MemberRows(string show) =>
        show.Split('\n').TakeWhile(l => !l.StartsWith("singleton:", StringComparison.Ordinal))
            .Select(l => l.TrimEnd()).Where(l => l.Contains("://coordinator@", StringComparison.Ordinal)) // akka.tcp or akka.ssl.tcp
            .ToDictionary(l => l.Split(' ', 2)[0]);

    /// <summary>The summary line's singleton host ("singleton: hv02   oldest: ...").</summary>
    public static string? SingletonOf(string show) =>
        show.Split('\n').FirstOrDefault(l => l.StartsWith("singleton:", StringComparison.Ordinal))?.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];
}

/// <summary>
/// The typed client's retry rules, against a scripted handler (no cluster): what is retried across a leader change,
/// how long, and what surfaces as a result or as <see cref="CoordinatorUnavailableException"/>.
/// </summary>
public sealed class CoordctlClientRetryTests
{
    private sealed class Scripted(params Func<HttpRequestMessage, HttpResponseMessage>[] answers) : HttpMessageHandler
    {
        public List<string> Calls { get; } = [];

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
        {
            Calls.Add($"{request.Method} {request.RequestUri!.PathAndQuery} {request.Headers.Authorization}");
            var answer = answers[Math.Min(Calls.Count - 1, answers.Length - 1)];
            return Task.FromResult(answer(request));
        }
    }

    private static HttpResponseMessage NoLeader(HttpRequestMessage _) => NoLeaderAfter(1)(_);

    private static Func<HttpRequestMessage, HttpResponseMessage> NoLeaderAfter(int seconds) => _ =>
    {
        var r = Json(503, """{"type":"https://hyperv-coordinator.dev/problems/no-leader","title":"No ledger leader is reachable","status":503,"detail":"the ledger did not answer within 5000 ms"}""",
            "application/problem+json");
        r.Headers.RetryAfter = new System.Net.Http.Headers.RetryConditionHeaderValue(TimeSpan.FromSeconds(seconds));
        return r;
    };

    private static HttpResponseMessage Refused(HttpRequestMessage _) => throw new HttpRequestException(HttpRequestError.ConnectionError, "Connection refused");

    private static HttpResponseMessage Json(int status, string body, string type = "application/json") =>
        new((HttpStatusCode)status) { Content = new StringContent(body, System.Text.Encoding.UTF8, type) };

    private const string Leader = """{"node":"hv02","address":"akka.tcp://coordinator@10.0.0.2:4053","epoch":7,"since":"2026-01-01T00:00:00+00:00"}""";

    private static (CoordinatorClient Client, Scripted Handler) Client(CoordinatorClientOptions options, params Func<HttpRequestMessage, HttpResponseMessage>[] answers)
    {
        var handler = new Scripted(answers);
        return (new CoordinatorClient(new HttpClient(handler) { BaseAddress = new Uri("http://node:7070") }, options, ownsHttpClient: true), handler);
    }

    [Fact]
    public async Task A_read_is_retried_across_a_leader_change_honouring_Retry_After()
    {
        var (client, handler) = Client(new CoordinatorClientOptions(), NoLeader, Refused, _ => Json(200, Leader));
        var sw = Stopwatch.StartNew();
        var r = await client.GetLeaderAsync();
        Assert.True(r.IsOk);
        Assert.Equal(("hv02", 7L), (r.Value.Node, r.Value.Epoch));
        Assert.Equal(3, handler.Calls.Count);
        Assert.True(sw.Elapsed >= TimeSpan.FromSeconds(0.9), $"Retry-After: 1 was not honoured ({sw.Elapsed})");
    }

    [Fact]
    public async Task Retry_After_is_capped_and_the_budget_ends_in_CoordinatorUnavailableException()
    {
        var cap = TimeSpan.FromMilliseconds(100);
        var notices = new System.Collections.Concurrent.ConcurrentQueue<RetryNotice>();
        var options = new CoordinatorClientOptions { RetryBudget = TimeSpan.FromSeconds(1), MaxRetryDelay = cap, OnRetry = notices.Enqueue };
        var (client, handler) = Client(options, NoLeaderAfter(30));
        var sw = Stopwatch.StartNew();
        var e = await Assert.ThrowsAsync<CoordinatorUnavailableException>(() => client.GetVolumesAsync());
        Assert.Equal(UnavailableReason.NoLeader, e.Reason);
        Assert.Equal(ProblemTypes.NoLeader, e.Problem?.Slug);
        // At least the budget; and nowhere near one uncapped Retry-After (30 s), however loaded the machine.
        Assert.InRange(sw.Elapsed, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(20));
        // The rule itself, wait by wait: Retry-After (30 s) capped at 100 ms; only the waits at the end may be cut short
        // by what is left of the budget (a timer that fires a little early can leave a sliver for one more short wait),
        // and together they never pass the budget. (The call count alone once read 57 on a loaded CI machine.)
        var waits = notices.Select(n => n.Delay).ToList();
        var shown = string.Join(", ", waits.Select(d => $"{d.TotalMilliseconds:0.#}"));
        Assert.Equal(handler.Calls.Count - 1, waits.Count);
        var capped = waits.TakeWhile(d => d == cap).Count();
        // How many waits fit depends on how long the first (cold) attempt took out of the budget; at least one did.
        Assert.True(capped >= 1, $"the waits start at the cap: {shown} ms");
        Assert.True(waits.Skip(capped).All(d => d < cap), $"once a wait is cut short by the budget, none is the cap again: {shown} ms");
        Assert.True(waits.Aggregate(TimeSpan.Zero, (a, d) => a + d) <= options.RetryBudget, $"the waits stay within the budget: {shown} ms");
        // No sliver: with less than 10 ms of budget left the client gives up instead of waiting (37 calls once, a loop
        // of sub-millisecond waits at the end of the budget).
        Assert.True(waits.All(d => d > TimeSpan.FromMilliseconds(5)), $"no wait is a sliver: {shown} ms");
        Assert.InRange(handler.Calls.Count, 2, 15);
    }

    [Fact]
    public async Task Idempotent_writes_are_retried_other_writes_only_when_the_connection_was_never_made()
    {
        var created = """{"volume":"Volume1","consumerId":"vm1","node":"hv01","bytes":1,"path":null,"imageId":null,"createdAt":"2026-01-01T00:00:00+00:00","updatedAt":"2026-01-01T00:00:00+00:00","status":"created","freeBytes":5,"epoch":2}""";
        var options = new CoordinatorClientOptions { Token = "t0k", MaxRetryDelay = TimeSpan.FromMilliseconds(50) };
        var (put, putCalls) = Client(options, NoLeader, _ => Json(201, created));
        Assert.Equal("created", (await put.PutReservationAsync("Volume1", "vm1", new ReservationRequest("hv01", 1))).ValueOrThrow().Status);
        Assert.Equal(2, putCalls.Calls.Count);
        Assert.All(putCalls.Calls, c => Assert.EndsWith("Bearer t0k", c));

        // A drain answered 503 may have been applied: it is not repeated.
        var (drain, drainCalls) = Client(options, NoLeader, _ => Json(202, """{"node":"hv01","draining":true}"""));
        await Assert.ThrowsAsync<CoordinatorUnavailableException>(() => drain.DrainNodeAsync("hv01"));
        Assert.Single(drainCalls.Calls);

        // A refused connection never reached the node: safe to send again.
        var (drain2, drain2Calls) = Client(options, Refused, Refused, _ => Json(202, """{"node":"hv01","draining":true}"""));
        Assert.True((await drain2.DrainNodeAsync("hv01")).ValueOrThrow().Draining);
        Assert.Equal(3, drain2Calls.Calls.Count);
    }

    [Fact]
    public async Task Refusals_are_results_with_their_problem_and_are_not_retried()
    {
        var stale = """{"type":"https://hyperv-coordinator.dev/problems/stale-lease","title":"The lease is not held with this token","status":409,"detail":"stale","currentFencingToken":12,"epoch":3}""";
        var (client, handler) = Client(new CoordinatorClientOptions(), _ => Json(409, stale, "application/problem+json"));
        var r = await client.RenewLeaseAsync("cirros", "lease-1", 11);
        Assert.False(r.IsOk);
        Assert.Equal(409, r.Status);
        Assert.Equal(ProblemTypes.StaleLease, r.Problem.Slug);
        Assert.Equal(12, r.Problem.CurrentFencingToken);
        Assert.Equal(3, r.Problem.Epoch);
        Assert.Single(handler.Calls);
        Assert.Throws<CoordinatorProblemException>(() => r.ValueOrThrow());
    }

    [Fact]
    public async Task A_lease_answer_is_cached_granted_or_pending_by_status()
    {
        var granted = """{"state":"granted","imageId":"cirros","leaseId":"l1","fencingToken":4,"expiresAt":"2026-01-01T00:00:30+00:00","path":"/csv/_base/cirros/cirros.t4","folder":"/csv/_base/cirros","sizeBytes":1024,"epoch":2}""";
        var pending = """{"state":"pending","imageId":"cirros","holder":"hv02","fencingToken":4,"retryAfterMs":1000,"epoch":2}""";
        var (client, _) = Client(new CoordinatorClientOptions(), _ => Json(201, granted), _ => Json(202, pending));
        var first = (await client.AcquireLeaseAsync("cirros", "hv01", 1024)).ValueOrThrow();
        Assert.Equal(LeaseState.Granted, first.State);
        Assert.Equal(4, first.Granted!.FencingToken);
        var second = (await client.AcquireLeaseAsync("cirros", "hv03", 1024)).ValueOrThrow();
        Assert.Equal(LeaseState.Pending, second.State);
        Assert.Equal("hv02", second.Pending!.Holder);
    }
}
