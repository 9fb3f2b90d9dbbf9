using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Coordinator.IntegrationTests.Harness;
using Coordinator.Testing.Glance;
using Xunit.Abstractions;

namespace Coordinator.IntegrationTests;

/// <summary>
/// Issue 13, item 5: a real node with every secret configured (each a distinct random value, from a file, an
/// environment variable or the HOCON), a workload with failures (bad tokens, 4xx, glance errors, a hostile peer, a
/// journal outage), then every log line and every HTTP answer (problem bodies, /cluster routes, the OpenAPI document,
/// health, a backup) is searched for every secret: none may appear. The search is shown to work on a planted value.
/// </summary>
public sealed class SecretLeakTests(ITestOutputHelper output)
{
    private const long MiB = 1L << 20;
    private readonly StringBuilder _answers = new();

    private static string NewSecret(string what) => $"{what}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12))}";

    [SkippableFact]
    public async Task No_secret_reaches_a_log_or_an_http_answer()
    {
        using var pg = ThrowawayPostgres.Start();
        var secrets = new Dictionary<string, string>
        {
            ["admin token"] = NewSecret("admin"),
            ["agent token"] = NewSecret("agent"),
            ["incoming peer token"] = NewSecret("peerin"),
            ["outgoing peer token"] = NewSecret("peerout"),
            ["glance token"] = NewSecret("glance"),
            ["journal password"] = NewSecret("journal"),
            ["certificate password"] = NewSecret("pfx"),
        };
        var dir = Directory.CreateTempSubdirectory("coord-leak-").FullName;
        string Private(string name, byte[] content)
        {
            var path = Path.Combine(dir, name);
            File.WriteAllBytes(path, content);
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            return path;
        }
        string PrivateText(string name, string text) => Private(name, Encoding.UTF8.GetBytes(text + "\n"));

        // The node's own certificate: a PFX under a password, issued by the cluster's CA (a test CA).
        using var clusterCa = new TestCertificateAuthority("leak-test-cluster-ca");
        using var nodeCert = clusterCa.IssueServer(clientAuth: true);
        var pfx = Private("node.pfx", nodeCert.Export(X509ContentType.Pfx, secrets["certificate password"]));
        var clusterCaFile = PrivateText("cluster-ca.pem", clusterCa.Pem);
        // The peer cluster: real HTTPS with its own CA.
        using var peerCa = new TestCertificateAuthority("leak-test-peer-ca");
        await using var peer = await FakePeerCoordinator.StartAsync(peerCa.IssueServer());
        var peerCaFile = PrivateText("peer-ca.pem", peerCa.Pem);
        await using var glance = await GlanceTestServer.StartAsync(0, secrets["glance token"]);
        await using var store = await GlanceTestServer.StartAsync(0, NewSecret("store"));

        var agentEnv = "COORD_LEAK_AGENT_" + Guid.NewGuid().ToString("N")[..8].ToUpperInvariant();
        var journalEnv = "COORD_LEAK_JOURNAL_" + Guid.NewGuid().ToString("N")[..8].ToUpperInvariant();
        Environment.SetEnvironmentVariable(agentEnv, secrets["agent token"]);
        Environment.SetEnvironmentVariable(journalEnv, secrets["journal password"]);
        var logFile = Path.Combine(dir, "node-file.log");
        using var c = new LocalCluster(1, $$"""
            coordinator {
              logging { level = Debug, file = "{{logFile}}" }
              http {
                admin-token-file = "{{PrivateText("admin.token", secrets["admin token"])}}"
                agent-token-env = {{agentEnv}}
                peer-token = "{{secrets["incoming peer token"]}}"
              }
              persistence {
                provider = postgresql
                connection-string = "{{pg.ConnectionString}}"
                password-env = {{journalEnv}}
              }
              images.glance { endpoint = "{{glance.Endpoint}}", token = "{{secrets["glance token"]}}", timeout = 10s }
              hyperv.peers {
                hvb01 { url = "{{peer.Endpoint}}", token-file = "{{PrivateText("peer.token", secrets["outgoing peer token"])}}", ca-file = "{{peerCaFile}}" }
              }
              security {
                # A PFX with a password instead of the harness's PEM certificate and key (key-file cleared).
                certificate { file = "{{pfx}}", key-file = "", password-file = "{{PrivateText("pfx.password", secrets["certificate password"])}}" }
                trust.ca-file = "{{clusterCaFile}}"
              }
            }
            # Asked for, but the node must not print its configuration: it holds the secrets.
            akka.log-config-on-start = on
            """);
        c.Http.Timeout = TimeSpan.FromSeconds(60);
        try
        {
            c.StartAll();
            await c.WaitReadyAsync(c.Nodes, TimeSpan.FromSeconds(120));
            var planted = "planted-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6));
            await Workload(c, glance, store, peer, pg, secrets, planted);

            // Everything the node wrote and answered.
            var node = c.Nodes[0];
            c.Stop(node, TimeSpan.FromSeconds(20)); // flushes the file log
            var logs = File.ReadAllText(c.LogPath(node))
                       + string.Concat(Directory.GetFiles(dir, "node-file*.log").Select(File.ReadAllText));
            var answers = _answers.ToString();
            output.WriteLine($"searched {logs.Length} characters of logs and {answers.Length} of answers");

            // The search works: what the workload planted (an image id) is found in both, and so is a known line.
            Assert.Contains(planted, logs);
            Assert.Contains(planted, answers);
            Assert.Contains("openapi", answers);
            foreach (var (what, secret) in secrets)
            {
                Assert.False(logs.Contains(secret, StringComparison.Ordinal), $"the {what} appears in the node's log");
                Assert.False(answers.Contains(secret, StringComparison.Ordinal), $"the {what} appears in an HTTP answer");
                // Nor the random part alone (a secret cut, quoted or re-prefixed).
                var core = secret[(secret.IndexOf('-') + 1)..];
                Assert.False(logs.Contains(core, StringComparison.OrdinalIgnoreCase) || answers.Contains(core, StringComparison.OrdinalIgnoreCase),
                    $"part of the {what} appears");
            }
        }
        catch
        {
            output.WriteLine(c.Tail(c.Nodes[0], 80));
            throw;
        }
        finally
        {
            Environment.SetEnvironmentVariable(agentEnv, null);
            Environment.SetEnvironmentVariable(journalEnv, null);
            Directory.Delete(dir, true);
        }
    }

    private async Task Workload(LocalCluster c, GlanceTestServer glance, GlanceTestServer store, FakePeerCoordinator peer,
        ThrowawayPostgres pg, IReadOnlyDictionary<string, string> secrets, string planted)
    {
        var n = c.Nodes[0];
        string agent = secrets["agent token"], admin = secrets["admin token"];

        // Routes open to anyone, and the ones every secret could be described in.
        foreach (var path in new[] { "/healthz", "/readyz", "/cluster/members", "/cluster/singleton", "/openapi/v1.json" })
            await Call(c, HttpMethod.Get, path, null);
        // Bad and missing tokens, a token of the wrong role, a malformed body, unknown things.
        await Call(c, HttpMethod.Get, "/v1/volumes", null);
        await Call(c, HttpMethod.Get, "/v1/volumes", "wrong-" + agent);
        await Call(c, HttpMethod.Get, "/v1/volumes", agent + "x");
        await Call(c, HttpMethod.Get, "/v1/volumes", secrets["glance token"]);
        await Call(c, HttpMethod.Get, "/v1/volumes", agent);
        await Call(c, HttpMethod.Post, $"/v1/nodes/{n.Name}/drain", agent);
        await Call(c, HttpMethod.Post, $"/v1/nodes/{n.Name}/drain", "wrong-" + admin);
        await Call(c, HttpMethod.Post, "/v1/vms", agent, "{not json");
        await Call(c, HttpMethod.Get, "/v1/vms/nope", agent);
        await Call(c, HttpMethod.Put, "/v1/volumes/Volume1/reservations/r1", agent, JsonSerializer.Serialize(new { node = n.Name, bytes = MiB }));
        await Call(c, HttpMethod.Put, "/v1/volumes/Nope/reservations/r2", agent, JsonSerializer.Serialize(new { node = n.Name, bytes = MiB }));

        // Glance: a download, a missing image, a server error, a cut download, a cross-origin redirect.
        glance.AddImage(planted, 2 * MiB);
        await Call(c, HttpMethod.Post, $"/v1/images/{planted}/ensure", agent);
        await Call(c, HttpMethod.Post, "/v1/images/not-in-glance/ensure", agent);
        glance.AddImage("broken", 2 * MiB);
        glance.SetFault("broken", new GlanceFault(GlanceFaultMode.ServerError));
        await Call(c, HttpMethod.Post, "/v1/images/broken/ensure", agent);
        glance.AddImage("cut", 4 * MiB);
        glance.SetFault("cut", new GlanceFault(GlanceFaultMode.FailAfter, MiB));
        await Call(c, HttpMethod.Post, "/v1/images/cut/ensure", agent);
        glance.AddImage("moved", 2 * MiB);
        store.AddImage("moved", 2 * MiB);
        glance.SetRedirect("moved", new GlanceRedirect(302, new Uri(store.Endpoint, GlanceTestServer.ObjectPath("moved")).ToString()));
        await Call(c, HttpMethod.Post, "/v1/images/moved/ensure", agent);
        Assert.DoesNotContain(store.Requests, r => r.Has("X-Auth-Token"));

        // A VM; a migration to the peer that answers with a hostile volume list, then one that succeeds.
        await Call(c, HttpMethod.Post, "/v1/vms", agent, JsonSerializer.Serialize(new { name = "vm1", memoryMb = 512, vcpus = 1, diskBytes = 1L << 30 }));
        peer.VolumesAnswer = """{"volumes":[{"name":"Volume1","path":"../../etc"}]}""";
        await Call(c, HttpMethod.Post, "/v1/vms/vm1/migrate", agent, """{"target":"hvb01"}""");
        peer.VolumesStatus = 401;
        peer.VolumesAnswer = """{"title":"Unauthorized","detail":"bad token"}""";
        await Call(c, HttpMethod.Post, "/v1/vms/vm1/migrate", agent, """{"target":"hvb01"}""");
        peer.VolumesStatus = 200;
        peer.VolumesAnswer = JsonSerializer.Serialize(new { volumes = new[] { new { name = "Volume1", path = Path.Combine(c.Root, "peer-csv") } } });
        await Call(c, HttpMethod.Post, "/v1/vms/vm1/migrate", agent, """{"target":"hvb01"}""");
        Assert.All(peer.Requests, r => Assert.Equal("Bearer " + secrets["outgoing peer token"], r.Authorization));

        // Admin: a backup (its bytes are searched too), a drain and a resume.
        await Call(c, HttpMethod.Get, "/v1/admin/backup", admin);
        await Call(c, HttpMethod.Post, $"/v1/nodes/{n.Name}/drain", admin);
        await Call(c, HttpMethod.Post, $"/v1/nodes/{n.Name}/resume", admin);

        // The journal goes away: writes fail (logged by the journal plugin), then it comes back.
        pg.Pause();
        for (var i = 0; i < 3; i++)
            await Call(c, HttpMethod.Put, $"/v1/volumes/Volume1/reservations/outage-{i}", agent, JsonSerializer.Serialize(new { node = n.Name, bytes = MiB }));
        pg.Resume();
        await c.WaitUntilAsync(async () =>
            await Call(c, HttpMethod.Put, "/v1/volumes/Volume1/reservations/after", agent, JsonSerializer.Serialize(new { node = n.Name, bytes = MiB }))
                is HttpStatusCode.OK or HttpStatusCode.Created, "the journal is back", TimeSpan.FromSeconds(90));
        foreach (var path in new[] { "/readyz", "/cluster/members", "/cluster/singleton" })
            await Call(c, HttpMethod.Get, path, null);
    }

    /// <summary>One request; its status line, headers and body are kept for the search.</summary>
    private async Task<HttpStatusCode?> Call(LocalCluster c, HttpMethod method, string path, string? token, string? json = null)
    {
        using var request = new HttpRequestMessage(method, c.Url(c.Nodes[0], path));
        if (token is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        if (json is not null) request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        try
        {
            using var response = await c.Http.SendAsync(request);
            var bytes = await response.Content.ReadAsByteArrayAsync();
            if (bytes is [0x1f, 0x8b, ..])
            {
                // A backup is gzipped: search what it holds, not its compressed bytes.
                using var unzipped = new MemoryStream();
                await using (var gz = new System.IO.Compression.GZipStream(new MemoryStream(bytes), System.IO.Compression.CompressionMode.Decompress))
                    await gz.CopyToAsync(unzipped);
                bytes = unzipped.ToArray();
            }
            var body = Encoding.Latin1.GetString(bytes);
            _answers.Append($"{method} {path} -> {(int)response.StatusCode}\n{response.Headers}{response.Content.Headers}\n{body}\n\n");
            output.WriteLine($"{method} {path} -> {(int)response.StatusCode} {(body.Length > 300 ? body[..300] + "…" : body)}");
            return response.StatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            output.WriteLine($"{method} {path} -> no answer ({e.GetType().Name})");
            return null;
        }
    }
}
