using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Coordinator.IntegrationTests.Harness;
using Xunit.Abstractions;

namespace Coordinator.IntegrationTests;

/// <summary>
/// Two real nodes. hv01 has its own agent token, a peer token and a hashed admin identity; hv02 has no agent token, so a
/// caller on its loopback without a token is hv02's agent. Every refusal is a 401/403 problem+json, leaves the ledger
/// as it was (listings compared before and after), and is logged with the identity's name, never a token.
/// </summary>
public sealed class IdentityTests(IdentityTests.TwoNodes fx, ITestOutputHelper output) : IClassFixture<IdentityTests.TwoNodes>
{
    private const long GiB = 1L << 30;
    private const string Agent1 = "hv01-agent-token-3c9f";
    private const string Peer = "peer-cluster-token-71aa";
    private const string HashedAdmin = "hashed-admin-token-5e02";
    private const string ProblemBase = "https://hyperv-coordinator.dev/problems/";

    public sealed class TwoNodes : IAsyncLifetime
    {
        public LocalCluster Cluster { get; private set; } = null!;
        public NodeInfo Hv1 => Cluster.Nodes[0];
        public NodeInfo Hv2 => Cluster.Nodes[1];

        public async Task InitializeAsync()
        {
            Cluster = new LocalCluster(2, "coordinator.images.lease-ttl = 10m");
            try
            {
                var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(HashedAdmin)));
                Cluster.AppendConfig(Hv1, $$"""
                    coordinator.http.agent-token = "{{Agent1}}"
                    coordinator.http.peer-token = "{{Peer}}"
                    coordinator.http.identities = [ { name = "ops-hashed", role = admin, token-sha256 = "{{hash}}" } ]
                    """);
                Cluster.StartAll();
                await Cluster.WaitReadyAsync(Cluster.Nodes, TimeSpan.FromSeconds(90));
            }
            catch
            {
                Cluster.Dispose();
                throw;
            }
        }

        public Task DisposeAsync()
        {
            Cluster.Dispose();
            return Task.CompletedTask;
        }
    }

    private LocalCluster C => fx.Cluster;

    private async Task<(HttpStatusCode Status, JsonElement Body)> Send(HttpMethod method, NodeInfo node, string path, string? token = null, object? body = null)
    {
        using var request = new HttpRequestMessage(method, C.Url(node, path)) { Content = body is null ? null : LocalCluster.Json(body) };
        if (token is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var response = await C.Http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        output.WriteLine($"{method} {node.Name}{path} as {(token is null ? "anonymous" : token[..6] + "...")}: {(int)response.StatusCode} {text[..Math.Min(300, text.Length)]}");
        return (response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    private static void Refused((HttpStatusCode Status, JsonElement Body) r, int status, string type)
    {
        Assert.Equal(status, (int)r.Status);
        Assert.Equal(ProblemBase + type, r.Body.GetProperty("type").GetString());
    }

    /// <summary>What an admin sees: reservations on both volumes, images and leases (with ids), nodes, members.</summary>
    private async Task<string> State()
    {
        var parts = new List<string>();
        foreach (var path in new[] { "/v1/volumes/Volume1/reservations", "/v1/volumes/Volume2/reservations", "/v1/images", "/v1/nodes" })
        {
            var (status, body) = await Send(HttpMethod.Get, fx.Hv1, path, LocalCluster.AdminToken);
            Assert.Equal(HttpStatusCode.OK, status);
            var copy = JsonSerializer.SerializeToNode(body)!.AsObject();
            copy.Remove("epoch");
            if (path == "/v1/nodes")
                foreach (var n in copy["nodes"]!.AsArray()) n!.AsObject().Remove("lastSeen");
            parts.Add(copy.ToJsonString());
        }
        var members = await C.Http.GetFromJsonAsync<JsonElement>(C.Url(fx.Hv1, "/cluster/members"));
        parts.Add(string.Join(",", members.GetProperty("members").EnumerateArray().Select(m => m.GetProperty("node") + ":" + m.GetProperty("status"))));
        return string.Join("\n", parts);
    }

    [Fact]
    public async Task An_agent_acts_only_as_its_own_node_and_each_refusal_changes_nothing()
    {
        Assert.Equal(HttpStatusCode.Created, (await Send(HttpMethod.Put, fx.Hv1, "/v1/volumes/Volume1/reservations/id-own1", Agent1, new { node = "hv01", bytes = GiB })).Status);
        Assert.Equal(HttpStatusCode.Created, (await Send(HttpMethod.Put, fx.Hv2, "/v1/volumes/Volume1/reservations/id-own2", body: new { node = "hv02", bytes = GiB })).Status);
        var before = await State();

        // hv01's agent naming hv02 (claim, lease), and hv02's anonymous local agent naming hv01.
        Refused(await Send(HttpMethod.Put, fx.Hv1, "/v1/volumes/Volume1/reservations/id-x1", Agent1, new { node = "hv02", bytes = GiB }), 403, "wrong-node");
        Refused(await Send(HttpMethod.Post, fx.Hv1, "/v1/images/id-img-x/lease", Agent1, new { node = "hv02", sizeBytes = GiB }), 403, "wrong-node");
        Refused(await Send(HttpMethod.Put, fx.Hv2, "/v1/volumes/Volume1/reservations/id-x2", body: new { node = "hv01", bytes = GiB }), 403, "wrong-node");
        // Taking over or releasing another node's reservation under one's own node name: the ledger refuses.
        Refused(await Send(HttpMethod.Put, fx.Hv2, "/v1/volumes/Volume1/reservations/id-own1", body: new { node = "hv02", bytes = 2 * GiB }), 403, "wrong-node");
        Refused(await Send(HttpMethod.Delete, fx.Hv2, "/v1/volumes/Volume1/reservations/id-own1"), 403, "wrong-node");
        Refused(await Send(HttpMethod.Delete, fx.Hv1, "/v1/volumes/Volume1/reservations/id-own2", Agent1), 403, "wrong-node");
        // hv01's token means nothing on hv02; and hv01, having an agent token, takes no anonymous agent.
        Refused(await Send(HttpMethod.Delete, fx.Hv2, "/v1/volumes/Volume1/reservations/id-own2", Agent1), 403, "forbidden");
        Refused(await Send(HttpMethod.Put, fx.Hv1, "/v1/volumes/Volume1/reservations/id-x3", body: new { node = "hv01", bytes = GiB }), 401, "unauthorized");
        Refused(await Send(HttpMethod.Get, fx.Hv1, "/v1/volumes"), 401, "unauthorized");

        Assert.Equal(before, await State());

        // The admin may act for any node.
        Assert.Equal(HttpStatusCode.NoContent, (await Send(HttpMethod.Delete, fx.Hv2, "/v1/volumes/Volume1/reservations/id-own1", LocalCluster.AdminToken)).Status);
        Assert.Equal(HttpStatusCode.NoContent, (await Send(HttpMethod.Delete, fx.Hv1, "/v1/volumes/Volume1/reservations/id-own2", HashedAdmin)).Status);
    }

    [Fact]
    public async Task Only_the_holder_acts_on_a_lease_and_only_the_holder_sees_its_id()
    {
        var (status, granted) = await Send(HttpMethod.Post, fx.Hv1, "/v1/images/id-img1/lease", Agent1, new { node = "hv01", sizeBytes = GiB });
        Assert.Equal(HttpStatusCode.Created, status);
        var leaseId = granted.GetProperty("leaseId").GetString()!;
        var token = granted.GetProperty("fencingToken").GetInt64();
        // Unguessable: image, token, and 128 bits of hex.
        var parts = leaseId.Split('.');
        Assert.Equal(("id-img1", token.ToString(), 32), (parts[0], parts[1], parts[2].Length));
        Assert.True(parts[2].All(Uri.IsHexDigit));

        // Others see the holder and the expiry, not the id.
        var list = (await Send(HttpMethod.Get, fx.Hv2, "/v1/images")).Body.GetProperty("leases").EnumerateArray().Single(l => l.GetProperty("imageId").GetString() == "id-img1");
        Assert.Equal(JsonValueKind.Null, list.GetProperty("leaseId").ValueKind);
        Assert.Equal("hv01", list.GetProperty("holder").GetString());
        Assert.True(list.TryGetProperty("expiresAt", out _));
        var one = (await Send(HttpMethod.Get, fx.Hv2, "/v1/images/id-img1")).Body.GetProperty("lease");
        Assert.Equal(JsonValueKind.Null, one.GetProperty("leaseId").ValueKind);
        Assert.Equal(leaseId, (await Send(HttpMethod.Get, fx.Hv1, "/v1/images/id-img1", Agent1)).Body.GetProperty("lease").GetProperty("leaseId").GetString());
        Assert.Contains(leaseId, (await Send(HttpMethod.Get, fx.Hv2, "/v1/images", LocalCluster.AdminToken)).Body.ToString());

        // hv02 knows the id and token (told out of band): still not the holder.
        var before = await State();
        var path = $"/v1/images/id-img1/lease/{leaseId}";
        Refused(await Send(HttpMethod.Post, fx.Hv2, path + "/renew", body: new { fencingToken = token }), 403, "not-lease-holder");
        Refused(await Send(HttpMethod.Post, fx.Hv2, path + "/complete", body: new { fencingToken = token, sizeBytes = GiB, checksum = "abcd" }), 403, "not-lease-holder");
        Refused(await Send(HttpMethod.Post, fx.Hv2, path + "/abort", body: new { fencingToken = token }), 403, "not-lease-holder");
        Assert.Equal(before, await State());

        // The holder may.
        Assert.Equal(HttpStatusCode.OK, (await Send(HttpMethod.Post, fx.Hv1, path + "/renew", Agent1, new { fencingToken = token })).Status);
        Assert.Equal(HttpStatusCode.NoContent, (await Send(HttpMethod.Post, fx.Hv1, path + "/abort", Agent1, new { fencingToken = token })).Status);
    }

    [Fact]
    public async Task Admin_routes_refuse_agents_peers_and_anonymous_callers_and_change_nothing()
    {
        var before = await State();
        (string Method, string Path)[] adminRoutes =
        [
            ("PUT", "/cluster/members/hv02?operation=down"), ("PUT", "/cluster/members/hv02?operation=leave"),
            ("POST", "/v1/nodes/hv01/drain"), ("POST", "/v1/nodes/hv01/resume"), ("POST", "/v1/images/evict?olderThanSeconds=0"),
            ("GET", "/v1/admin/backup"),
        ];
        foreach (var (method, path) in adminRoutes)
        {
            Refused(await Send(new HttpMethod(method), fx.Hv1, path, Agent1), 403, "admin-only");
            Refused(await Send(new HttpMethod(method), fx.Hv2, path), 401, "unauthorized");
            Refused(await Send(new HttpMethod(method), fx.Hv1, path, Peer), 403, "peer-not-allowed");
            Refused(await Send(new HttpMethod(method), fx.Hv1, path, "not-a-token"), 403, "forbidden");
        }
        Assert.Equal(before, await State());

        // The hashed identity is an admin: a backup is served to it.
        using var backup = new HttpRequestMessage(HttpMethod.Get, C.Url(fx.Hv1, "/v1/admin/backup"));
        backup.Headers.Authorization = new AuthenticationHeaderValue("Bearer", HashedAdmin);
        using var answer = await C.Http.SendAsync(backup);
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
    }

    [Fact]
    public async Task A_peer_token_reaches_only_the_routes_a_peer_cluster_calls()
    {
        Assert.Equal(HttpStatusCode.OK, (await Send(HttpMethod.Get, fx.Hv1, "/v1/volumes", Peer)).Status);
        // An arrival's body is checked after the identity: a bad one is a 400, not a 403.
        Assert.Equal(HttpStatusCode.BadRequest, (await Send(HttpMethod.Post, fx.Hv1, "/v1/vms/arrivals", Peer, new { name = "", memoryMb = 1, vcpus = 1, diskBytes = 1 })).Status);
        var before = await State();
        Refused(await Send(HttpMethod.Get, fx.Hv1, "/v1/images", Peer), 403, "peer-not-allowed");
        Refused(await Send(HttpMethod.Put, fx.Hv1, "/v1/volumes/Volume1/reservations/id-peer", Peer, new { node = "hv01", bytes = GiB }), 403, "peer-not-allowed");
        Refused(await Send(HttpMethod.Post, fx.Hv1, "/v1/vms", Peer, new { name = "id-peer-vm", memoryMb = 512, vcpus = 1, diskBytes = GiB }), 403, "peer-not-allowed");
        Assert.Equal(before, await State());
    }

    [Fact]
    public async Task Coordctl_sends_a_token_read_from_a_file()
    {
        var endpoint = $"http://127.0.0.1:{fx.Hv1.HttpPort}";
        var file = Path.Combine(C.Root, "agent.token");
        await File.WriteAllTextAsync(file, Agent1 + "\n");
        // A token file others may read is refused (usage error, exit 2) before anything is sent; private, it is used.
        File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
        var open = await Coordctl.RunAsync("volumes", "--endpoint", endpoint, "--token-file", file, "--retry-for", "0");
        Assert.True(open.ExitCode == 2, open.ToString());
        Assert.Contains("chmod 600", open.Stderr);
        File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var anonymous = await Coordctl.RunAsync("volumes", "--endpoint", endpoint, "--retry-for", "0");
        Assert.True(anonymous.ExitCode == 1, anonymous.ToString());
        Assert.Contains("bearer token is required", anonymous.Stderr, StringComparison.OrdinalIgnoreCase);
        var withFile = await Coordctl.RunAsync("volumes", "--endpoint", endpoint, "--token-file", file, "--json");
        Assert.True(withFile.ExitCode == 0, withFile.ToString());
        Assert.Contains("Volume1", withFile.Stdout);
        var missing = await Coordctl.RunAsync("volumes", "--endpoint", endpoint, "--token-file", file + ".missing");
        Assert.True(missing.ExitCode == 2, missing.ToString());
    }

    [Fact]
    public async Task The_openapi_document_marks_admin_and_identity_refusals_and_refusals_are_logged_without_tokens()
    {
        var doc = await C.Http.GetFromJsonAsync<JsonElement>(C.Url(fx.Hv2, "/openapi/v1.json"));
        var paths = doc.GetProperty("paths");
        string[] Codes(string path, string method) =>
            paths.GetProperty(path).GetProperty(method).GetProperty("responses").EnumerateObject().Select(p => p.Name).ToArray();
        foreach (var (path, method) in new[] { ("/cluster/members/{address}", "put"), ("/v1/nodes/{node}/drain", "post"), ("/v1/nodes/{node}/resume", "post"),
                     ("/v1/images/evict", "post"), ("/v1/admin/backup", "get") })
            Assert.True(Codes(path, method).Contains("401") && Codes(path, method).Contains("403"), $"{method} {path}: {string.Join(",", Codes(path, method))}");
        foreach (var (path, method) in new[] { ("/v1/volumes/{volume}/reservations/{consumerId}", "put"), ("/v1/volumes/{volume}/reservations/{consumerId}", "delete"),
                     ("/v1/images/{imageId}/lease", "post"), ("/v1/images/{imageId}/lease/{leaseId}/renew", "post"),
                     ("/v1/images/{imageId}/lease/{leaseId}/complete", "post"), ("/v1/images/{imageId}/lease/{leaseId}/abort", "post") })
            Assert.Contains("403", Codes(path, method));

        // A refusal of each kind, then the logs: the caller's name, never a token.
        Refused(await Send(HttpMethod.Post, fx.Hv1, "/v1/nodes/hv01/drain", Agent1), 403, "admin-only");
        Refused(await Send(HttpMethod.Get, fx.Hv1, "/v1/images", Peer), 403, "peer-not-allowed");
        await C.WaitUntilAsync(() => Task.FromResult(File.ReadAllText(C.LogPath(fx.Hv1)).Contains("peer-not-allowed")), "the refusal is logged",
            TimeSpan.FromSeconds(10));
        var log = File.ReadAllText(C.LogPath(fx.Hv1)) + File.ReadAllText(C.LogPath(fx.Hv2));
        Assert.Contains("Refused POST /v1/nodes/hv01/drain from agent 'agent-token' (node hv01)", log);
        Assert.Contains("peer 'peer-token'", log);
        foreach (var secret in new[] { Agent1, Peer, HashedAdmin, LocalCluster.AdminToken })
            Assert.DoesNotContain(secret, log);
    }
}
