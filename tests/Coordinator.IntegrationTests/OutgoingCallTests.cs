using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Coordinator.HyperV;
using Coordinator.HyperV.Simulated;
using Coordinator.IntegrationTests.Harness;
using Coordinator.Testing.Glance;
using Xunit.Abstractions;

namespace Coordinator.IntegrationTests;

/// <summary>
/// What a node sends to others (issue 13, item 4), with a real node process: the glance X-Auth-Token never follows a
/// redirect to another origin (a second listener records every header it gets); peer clusters are called over HTTPS
/// checked against the peer's CA, with the peer's token, and a hostile peer's answer is refused and changes nothing.
/// </summary>
public sealed class OutgoingCallTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const long MiB = 1L << 20;
    private readonly List<IAsyncDisposable> _disposables = [];
    private readonly List<LocalCluster> _clusters = [];

    [Fact]
    public async Task The_glance_token_follows_redirects_to_the_same_origin_only()
    {
        var token = "glance-" + Guid.NewGuid().ToString("N");
        var glance = await GlanceTestServer.StartAsync(0, token);
        _disposables.Add(glance);
        // The second listener is another origin (another port): an object store glance hands downloads to.
        var store = await GlanceTestServer.StartAsync(0, "store-" + Guid.NewGuid().ToString("N"));
        _disposables.Add(store);
        var c = Start(1, "hv", $$"""coordinator.images.glance { endpoint = "{{glance.Endpoint}}", token = "{{token}}", timeout = 20s }""");
        await c.WaitReadyAsync(c.Nodes, TimeSpan.FromSeconds(90));

        // Cross-origin redirects of every kind: the download succeeds from the store, without the token.
        foreach (var status in new[] { 301, 302, 307 })
        {
            var id = $"cross-{status}";
            glance.AddImage(id, 3 * MiB, seed: status);
            store.AddImage(id, 3 * MiB, seed: status);
            glance.SetRedirect(id, new GlanceRedirect(status, new Uri(store.Endpoint, GlanceTestServer.ObjectPath(id)).ToString()));
            await EnsureOk(c, id);
        }
        var atStore = store.Requests;
        output.WriteLine(string.Join("\n", atStore.Select(r => $"store <- {r.Method} {r.Path} [{string.Join(", ", r.Headers.Keys)}]")));
        Assert.Equal(3, atStore.Count(r => r.Path.StartsWith("/objects/", StringComparison.Ordinal)));
        Assert.All(atStore, r => Assert.False(r.Has("X-Auth-Token"), $"the store got the glance token on {r.Path}"));
        Assert.All(atStore, r => Assert.DoesNotContain(token, string.Join("\n", r.Headers.Values)));

        // Same origin (glance's own object route, a relative Location): the token goes along.
        glance.AddImage("same-302", 2 * MiB, seed: 9);
        glance.SetRedirect("same-302", new GlanceRedirect(302, GlanceTestServer.ObjectPath("same-302")));
        await EnsureOk(c, "same-302");
        var followed = glance.Requests.Single(r => r.Path == GlanceTestServer.ObjectPath("same-302"));
        Assert.True(followed.Headers.TryGetValue("X-Auth-Token", out var sent) && sent == token, "the same-origin redirect lost the token");

        // A redirect loop is cut after a bounded number of hops, with a clear answer.
        glance.AddImage("loop", 1 * MiB);
        glance.SetRedirect("loop", new GlanceRedirect(307, "/v2/images/loop/file"));
        using (var r = await c.Http.PostAsync(c.Url(c.Nodes[0], "/v1/images/loop/ensure"), null))
        {
            var body = await r.Content.ReadAsStringAsync();
            output.WriteLine($"loop: {(int)r.StatusCode} {body}");
            Assert.Equal(HttpStatusCode.BadGateway, r.StatusCode);
            Assert.Contains("more than 5 redirects", body);
        }
        // The first request and 5 redirects per attempt.
        var loopRequests = glance.Requests.Count(r => r.Path == "/v2/images/loop/file");
        output.WriteLine($"loop: {loopRequests} requests");
        Assert.True(loopRequests >= 6, $"{loopRequests} requests");
    }

    [Fact]
    public async Task Peers_are_called_over_https_with_their_token_and_hostile_answers_change_nothing()
    {
        using var peerCa = new TestCertificateAuthority("peer-cluster-ca-" + Guid.NewGuid().ToString("N")[..6]);
        using var strangerCa = new TestCertificateAuthority("stranger-ca");
        var peer = await FakePeerCoordinator.StartAsync(peerCa.IssueServer());
        _disposables.Add(peer);
        // hvb02 presents a certificate for the right address, from a CA the node was not told to trust.
        var impostor = await FakePeerCoordinator.StartAsync(strangerCa.IssueServer());
        _disposables.Add(impostor);
        var token = "peer-" + Guid.NewGuid().ToString("N");

        var dir = Directory.CreateTempSubdirectory("coord-peer-").FullName;
        var caFile = Path.Combine(dir, "peer-ca.pem");
        await File.WriteAllTextAsync(caFile, peerCa.Pem);
        var tokenFile = Path.Combine(dir, "peer.token");
        await File.WriteAllTextAsync(tokenFile, token + "\n");
        File.SetUnixFileMode(tokenFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var arrivals = Path.Combine(dir, "arrived-here");
        var c = Start(1, "hva", $$"""
            coordinator.hyperv.peers {
              hvb01 { url = "{{peer.Endpoint}}", token-file = "{{tokenFile}}", ca-file = "{{caFile}}" }
              hvb02 { url = "{{impostor.Endpoint}}", token-file = "{{tokenFile}}", ca-file = "{{caFile}}" }
            }
            """);
        await c.WaitReadyAsync(c.Nodes, TimeSpan.FromSeconds(90));
        var sim = new SimulatedClusterDatabase(c.SimulatedDatabasePath);
        foreach (var name in new[] { "stayer", "traveller" })
            using (var r = await c.Http.PostAsync(c.Url(c.Nodes[0], "/v1/vms"), LocalCluster.Json(new { name, memoryMb = 1024, vcpus = 1, diskBytes = 1 << 30 })))
                Assert.True(r.StatusCode == HttpStatusCode.Created, await r.Content.ReadAsStringAsync());
        var before = await State(c, sim, "stayer");

        string Volumes(object volume) => JsonSerializer.Serialize(new { epoch = 1, volumes = new[] { volume } });
        object Vol(string name, string path, long capacity = 1L << 40) => new { name, path, capacityBytes = capacity, headroomBytes = 0, freeBytes = capacity };
        var hostile = new (string What, string Body, int Status)[]
        {
            ("a relative path", Volumes(Vol("Volume1", "instances/../../etc")), 200),
            ("'..' in the root", Volumes(Vol("Volume1", arrivals + "/../../../etc")), 200),
            ("a UNC share", Volumes(Vol("Volume1", @"\\evil.example\share")), 200),
            ("the file-system root", Volumes(Vol("Volume1", "/")), 200),
            ("a volume name with a separator", Volumes(Vol("../Volume1", arrivals)), 200),
            ("a negative capacity", Volumes(Vol("Volume1", arrivals, -1)), 200),
            ("a capacity past 2^62", Volumes(Vol("Volume1", arrivals, long.MaxValue)), 200),
            ("no volumes", """{"epoch":1,"volumes":[]}""", 200),
            ("not JSON", "<html>welcome</html>", 200),
            ("a refusal with a huge body", JsonSerializer.Serialize(new { title = "no", detail = new string('x', 10_000) + "\u001b[31m" }), 403),
            ("an answer past 1 MiB", JsonSerializer.Serialize(new { volumes = Enumerable.Repeat(Vol("Volume1", arrivals), 20_000) }), 200),
        };
        foreach (var (what, body, status) in hostile)
        {
            peer.VolumesAnswer = body;
            peer.VolumesStatus = status;
            using var r = await c.Http.PostAsync(c.Url(c.Nodes[0], "/v1/vms/stayer/migrate"), LocalCluster.Json(new { target = "hvb01", mode = "live" }));
            var problem = await r.Content.ReadAsStringAsync();
            output.WriteLine($"{what}: {(int)r.StatusCode} {problem}");
            Assert.Equal(HttpStatusCode.BadGateway, r.StatusCode);
            Assert.True(problem.Length < 2000, $"{what}: the peer's answer was echoed ({problem.Length} characters)");
            Assert.DoesNotContain("\u001b", problem);
            Assert.Equal(before, await State(c, sim, "stayer"));
        }
        Assert.False(Directory.Exists(arrivals), "a refused answer still moved files");

        // The impostor (wrong CA) is never sent a request: the TLS handshake fails first.
        using (var r = await c.Http.PostAsync(c.Url(c.Nodes[0], "/v1/vms/stayer/migrate"), LocalCluster.Json(new { target = "hvb02", mode = "live" })))
        {
            var problem = await r.Content.ReadAsStringAsync();
            output.WriteLine($"impostor: {(int)r.StatusCode} {problem}");
            Assert.Equal(HttpStatusCode.BadGateway, r.StatusCode);
            Assert.Contains("peer-unreachable", problem);
        }
        Assert.Empty(impostor.Requests);
        Assert.Equal(before, await State(c, sim, "stayer"));

        // A well-formed answer: the VM's disk goes under the peer's volume, the arrival is announced, both with the token.
        peer.VolumesStatus = 200;
        peer.VolumesAnswer = Volumes(Vol("Volume1", arrivals));
        using (var r = await c.Http.PostAsync(c.Url(c.Nodes[0], "/v1/vms/traveller/migrate"), LocalCluster.Json(new { target = "hvb01", mode = "live" })))
            Assert.True(r.IsSuccessStatusCode, await r.Content.ReadAsStringAsync());
        Assert.True(File.Exists(Path.Combine(arrivals, "instances", "traveller", "traveller.vhdx")), "the disk did not land under the peer's volume");
        Assert.Contains(peer.Requests, q => q.Path == "/v1/vms/arrivals");
        Assert.All(peer.Requests, q => Assert.Equal("Bearer " + token, q.Authorization));
        Assert.Equal(before, await State(c, sim, "stayer"));
        Directory.Delete(dir, true);
    }

    [Fact]
    public async Task A_node_refuses_to_start_with_a_plain_http_peer_beyond_loopback_or_a_secret_file_others_can_read()
    {
        var dir = Directory.CreateTempSubdirectory("coord-refuse-").FullName;
        var secret = "peer-" + Guid.NewGuid().ToString("N");
        var open = Path.Combine(dir, "peer.token");
        await File.WriteAllTextAsync(open, secret);
        File.SetUnixFileMode(open, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead); // 644
        var cases = new (string Hocon, string[] Expected)[]
        {
            ("""coordinator.hyperv.peers { hvb01 { url = "http://10.20.30.40:7070", token = t } }""",
                ["coordinator.hyperv.peers.hvb01", "https", "coordinator.security.insecure"]),
            ("""coordinator.hyperv.peers { hvb01 = "https://hvb01.example:7070" }""", ["coordinator.hyperv.peers.hvb01", "not a plain URL"]),
            ($$"""coordinator.hyperv.peers { hvb01 { url = "https://hvb01.example:7070", token-file = "{{open}}" } }""",
                ["coordinator.hyperv.peers.hvb01.token-file", open, "chmod 600"]),
        };
        foreach (var (hocon, expected) in cases)
        {
            var c = Start(1, "hv", hocon);
            var code = await c.WaitForExitAsync(c.Nodes[0], TimeSpan.FromSeconds(60));
            var log = File.ReadAllText(c.LogPath(c.Nodes[0]));
            output.WriteLine($"exit {code}: {log.Trim()}");
            Assert.Equal(2, code);
            Assert.Contains("coordinator: invalid configuration: ", log);
            foreach (var e in expected) Assert.Contains(e, log);
            Assert.DoesNotContain(secret, log);
        }
        Directory.Delete(dir, true);
    }

    /// <summary>Everything a failed migration could have changed: the hypervisor's view, the ledger's VM and its claim.</summary>
    private static async Task<string> State(LocalCluster c, SimulatedClusterDatabase sim, string name)
    {
        var vm = sim.GetVm(name)!;
        var vms = await c.Http.GetFromJsonAsync<JsonElement>(c.Url(c.Nodes[0], "/v1/vms"));
        var record = vms.GetProperty("vms").EnumerateArray().Single(v => v.GetProperty("name").GetString() == name);
        var claims = await c.Http.GetFromJsonAsync<JsonElement>(c.Url(c.Nodes[0], "/v1/volumes/Volume1/reservations"));
        var claim = claims.GetProperty("reservations").EnumerateArray().Single(r => r.GetProperty("consumerId").GetString() == name);
        return $"{vm.HostNode} {vm.Clustered} {vm.State} {vm.DiskPath} exists={File.Exists(vm.DiskPath)} group={sim.GetGroup(name)?.State} "
               + $"ledger={record.GetProperty("node")} claim={claim.GetProperty("node")}/{claim.GetProperty("bytes")}";
    }

    private async Task EnsureOk(LocalCluster c, string id)
    {
        using var r = await c.Http.PostAsync(c.Url(c.Nodes[0], $"/v1/images/{id}/ensure"), null);
        var body = await r.Content.ReadAsStringAsync();
        output.WriteLine($"ensure {id}: {(int)r.StatusCode} {body}");
        Assert.True(r.StatusCode == HttpStatusCode.OK, $"ensure {id}: {(int)r.StatusCode} {body}");
    }

    private LocalCluster Start(int size, string prefix, string hocon)
    {
        var c = new LocalCluster(size, hocon, prefix);
        c.Http.Timeout = TimeSpan.FromMinutes(2);
        _clusters.Add(c);
        c.StartAll();
        return c;
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var c in _clusters) c.Dispose();
        foreach (var d in _disposables) await d.DisposeAsync();
    }
}
