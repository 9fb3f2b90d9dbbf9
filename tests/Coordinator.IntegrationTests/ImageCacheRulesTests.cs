using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Coordinator.IntegrationTests.Harness;
using Coordinator.Testing.Glance;
using Xunit.Abstractions;

namespace Coordinator.IntegrationTests;

/// <summary>One node, a test glance: fencing of stale holders, eviction, and every refusal leaving nothing behind.</summary>
public sealed class ImageCacheRulesTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const long MiB = 1L << 20;
    private GlanceTestServer _glance = null!;
    private LocalCluster _cluster = null!;
    private NodeInfo Node => _cluster.Nodes[0];

    public async Task InitializeAsync()
    {
        try { await SetUpAsync(); }
        catch
        {
            // xunit does not call DisposeAsync when InitializeAsync throws: stop what setup started so far.
            await DisposeAsync();
            throw;
        }
    }

    private async Task SetUpAsync()
    {
        _glance = await GlanceTestServer.StartAsync();
        _cluster = new LocalCluster(1, $$"""
            coordinator.images {
              lease-ttl = 2s
              glance { endpoint = "{{_glance.Endpoint}}", token = "{{_glance.Token}}", timeout = 5s }
            }
            """);
        _cluster.Http.Timeout = TimeSpan.FromMinutes(2);
        // As an admin: the tests play several holders (hv-a, hv-b) through one node's API and evict; an agent acts only
        // as its own node (IdentityTests show that).
        _cluster.Http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", LocalCluster.AdminToken);
        _cluster.StartAll();
        await _cluster.WaitReadyAsync(_cluster.Nodes, TimeSpan.FromSeconds(60));
    }

    private Uri Url(string path) => _cluster.Url(Node, path);

    private async Task<(HttpStatusCode Status, JsonElement Body)> Post(string path, object? body = null)
    {
        using var r = await _cluster.Http.PostAsync(Url(path), body is null ? null : LocalCluster.Json(body));
        var text = await r.Content.ReadAsStringAsync();
        return (r.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    private async Task<JsonElement> Images() => await _cluster.Http.GetFromJsonAsync<JsonElement>(Url("/v1/images"));

    private async Task<JsonElement> Volume1() =>
        (await _cluster.Http.GetFromJsonAsync<JsonElement>(Url("/v1/volumes"))).GetProperty("volumes").EnumerateArray()
        .Single(v => v.GetProperty("name").GetString() == "Volume1");

    [Fact]
    public async Task A_stale_holder_cannot_renew_complete_or_abort_and_cannot_overwrite_the_entry()
    {
        var (s1, g1) = await Post("/v1/images/img-stale/lease", new { node = "hv-a", sizeBytes = 10 * MiB });
        Assert.Equal(HttpStatusCode.Created, s1);
        var lease1 = g1.GetProperty("leaseId").GetString();
        var token1 = g1.GetProperty("fencingToken").GetInt64();

        var (pending, p) = await Post("/v1/images/img-stale/lease", new { node = "hv-b", sizeBytes = 10 * MiB });
        Assert.Equal(HttpStatusCode.Accepted, pending);
        Assert.Equal("hv-a", p.GetProperty("holder").GetString());

        // hv-a stops renewing (a paused process); its lease expires and hv-b wins with a larger token.
        var waited = await _cluster.Http.GetFromJsonAsync<JsonElement>(Url("/v1/images/img-stale?waitMs=10000"));
        Assert.Equal("absent", waited.GetProperty("state").GetString());
        var (s2, g2) = await Post("/v1/images/img-stale/lease", new { node = "hv-b", sizeBytes = 10 * MiB });
        Assert.Equal(HttpStatusCode.Created, s2);
        var lease2 = g2.GetProperty("leaseId").GetString();
        var token2 = g2.GetProperty("fencingToken").GetInt64();
        Assert.True(token2 > token1);
        Assert.NotEqual(g1.GetProperty("path").GetString(), g2.GetProperty("path").GetString());

        var before = await Images();
        foreach (var action in new[] { "renew", "abort" })
            Assert.Equal(HttpStatusCode.Conflict, (await Post($"/v1/images/img-stale/lease/{lease1}/{action}", new { fencingToken = token1 })).Status);
        var (staleComplete, problem) = await Post($"/v1/images/img-stale/lease/{lease1}/complete",
            new { fencingToken = token1, sizeBytes = 10 * MiB, checksum = "aa" });
        Assert.Equal(HttpStatusCode.Conflict, staleComplete);
        Assert.Equal(token2, problem.GetProperty("currentFencingToken").GetInt64());
        // The right lease id with the old token is just as stale.
        Assert.Equal(HttpStatusCode.Conflict, (await Post($"/v1/images/img-stale/lease/{lease2}/complete",
            new { fencingToken = token1, sizeBytes = 10 * MiB, checksum = "aa" })).Status);
        Assert.Equal(before.ToString(), (await Images()).ToString());

        var (done, entry) = await Post($"/v1/images/img-stale/lease/{lease2}/complete", new { fencingToken = token2, sizeBytes = 10 * MiB, checksum = "bb" });
        Assert.Equal(HttpStatusCode.OK, done);
        Assert.Equal(g2.GetProperty("path").GetString(), entry.GetProperty("path").GetString());
        // After completion the old holder still cannot replace the entry.
        Assert.Equal(HttpStatusCode.Conflict, (await Post($"/v1/images/img-stale/lease/{lease1}/complete",
            new { fencingToken = token1, sizeBytes = 10 * MiB, checksum = "aa" })).Status);
        var cached = (await Images()).GetProperty("images").EnumerateArray().Single(i => i.GetProperty("imageId").GetString() == "img-stale");
        Assert.Equal("bb", cached.GetProperty("checksum").GetString());
        Assert.Equal(g2.GetProperty("path").GetString(), cached.GetProperty("path").GetString());
    }

    [Fact]
    public async Task Eviction_removes_only_unused_old_images_and_returns_their_bytes()
    {
        var used = _glance.AddImage("evict-used", 8 * MiB, seed: 1);
        var unused = _glance.AddImage("evict-unused", 12 * MiB, seed: 2);
        foreach (var id in new[] { used.Id, unused.Id })
            Assert.Equal(HttpStatusCode.OK, (await Post($"/v1/images/{id}/ensure")).Status);
        // An instance created from "evict-used" keeps it; a lease keeps another image.
        using (var r = await _cluster.Http.PutAsync(Url("/v1/volumes/Volume1/reservations/vm-from-used"),
                   LocalCluster.Json(new { node = "hv01", bytes = MiB, imageId = used.Id })))
            Assert.Equal(HttpStatusCode.Created, r.StatusCode);
        var (leased, _) = await Post("/v1/images/evict-leased/lease", new { node = "hv01", sizeBytes = MiB });
        Assert.Equal(HttpStatusCode.Created, leased);

        var reservedBefore = (await Volume1()).GetProperty("reservedBytes").GetInt64();
        var unusedFolder = Path.GetDirectoryName((await Images()).GetProperty("images").EnumerateArray()
            .Single(i => i.GetProperty("imageId").GetString() == unused.Id).GetProperty("path").GetString())!;
        Assert.True(Directory.Exists(unusedFolder));

        // Nothing is old enough under the configured age (7 days).
        var (_, none) = await Post("/v1/images/evict");
        Assert.Empty(none.GetProperty("evicted").EnumerateArray());

        var (status, evicted) = await Post("/v1/images/evict?olderThanSeconds=0");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal([unused.Id], evicted.GetProperty("evicted").EnumerateArray().Select(e => e.GetProperty("imageId").GetString()));
        var reservedAfter = (await Volume1()).GetProperty("reservedBytes").GetInt64();
        Assert.Equal(reservedBefore - unused.SizeBytes, reservedAfter);
        var remaining = (await Images()).GetProperty("images").EnumerateArray().Select(i => i.GetProperty("imageId").GetString()).ToList();
        Assert.Contains(used.Id, remaining);
        Assert.DoesNotContain(unused.Id, remaining);
        for (var i = 0; i < 50 && Directory.Exists(unusedFolder); i++) await Task.Delay(100);
        Assert.False(Directory.Exists(unusedFolder), "the singleton deletes an evicted image's files");

        // Asked for again, it is fetched again (a second download).
        Assert.Equal(HttpStatusCode.OK, (await Post($"/v1/images/{unused.Id}/ensure")).Status);
        Assert.Equal(2, _glance.Downloads(unused.Id));
    }

    [Theory]
    [InlineData("not-found", GlanceFaultMode.NotFound, 404, "image-not-found")]
    [InlineData("server-error", GlanceFaultMode.ServerError, 502, "glance-unavailable")]
    [InlineData("corrupt", GlanceFaultMode.Corrupt, 502, "checksum-mismatch")]
    [InlineData("broken-off", GlanceFaultMode.FailAfter, 502, "glance-unavailable")]
    public async Task Glance_failures_give_clear_errors_cache_nothing_and_release_claims(string id, GlanceFaultMode mode, int status, string type)
    {
        var image = _glance.AddImage("bad-" + id, 4 * MiB, seed: 5);
        _glance.SetFault(image.Id, new GlanceFault(mode, 1 * MiB));
        // Claims, not free bytes: free also moves with unowned usage on the volume (the simulator's database lives there).
        var reservedBefore = (await Volume1()).GetProperty("reservedBytes").GetInt64();

        var (s, problem) = await Post($"/v1/images/{image.Id}/ensure");
        output.WriteLine($"{mode}: {(int)s} {problem}");
        Assert.Equal(status, (int)s);
        Assert.EndsWith("/" + type, problem.GetProperty("type").GetString());

        var images = await Images();
        Assert.DoesNotContain(images.GetProperty("images").EnumerateArray(), i => i.GetProperty("imageId").GetString() == image.Id);
        Assert.DoesNotContain(images.GetProperty("leases").EnumerateArray(), l => l.GetProperty("imageId").GetString() == image.Id);
        Assert.Equal(reservedBefore, (await Volume1()).GetProperty("reservedBytes").GetInt64());
        var folder = Path.Combine(_cluster.CsvRoot, "Volume1", "_base", image.Id);
        Assert.True(!Directory.Exists(folder) || Directory.GetFiles(folder).Length == 0, "no partial file is left");
    }

    [Fact]
    public async Task Unreachable_glance_and_bad_input_are_refused_and_change_nothing()
    {
        var before = (await Images()).ToString();
        var cases = new (string Path, object? Body, int Status)[]
        {
            ("/v1/images/bad..id/ensure", null, 400),
            ("/v1/images/.hidden/lease", new { node = "hv01", sizeBytes = 1 }, 400),
            ("/v1/images/ok-id/lease", new { node = "hv01", sizeBytes = -1 }, 400),
            ("/v1/images/ok-id/lease", new { node = "hv01", sizeBytes = 0 }, 400),
            ("/v1/images/ok-id/lease", new { node = "", sizeBytes = 10 }, 400),
            ("/v1/images/ok-id/lease", new { node = "hv01" }, 400),
            ("/v1/images/ok-id/lease", new { node = "hv01", sizeBytes = 1L << 40 << 10 }, 409),
            ("/v1/images/ok-id/lease/ok-id.99/renew", new { fencingToken = 0 }, 400),
            ("/v1/images/ok-id/lease/ok-id.99/renew", new { fencingToken = 99 }, 404),
            ("/v1/images/missing-in-glance/ensure", null, 404),
        };
        foreach (var (path, body, expected) in cases)
        {
            var (s, _) = await Post(path, body);
            Assert.True(expected == (int)s, $"{path} {JsonSerializer.Serialize(body)}: expected {expected}, got {(int)s}");
        }
        using (var r = await _cluster.Http.GetAsync(Url("/v1/images/ok-id?waitMs=-5")))
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        Assert.Equal(before, (await Images()).ToString());

        // A glance that is not there at all.
        var port = _glance.Endpoint.Port;
        await _glance.DisposeAsync();
        var (down, problem) = await Post("/v1/images/any-image/ensure");
        Assert.Equal(HttpStatusCode.BadGateway, down);
        Assert.Contains("unreachable", problem.GetProperty("detail").GetString());
        _glance = await GlanceTestServer.StartAsync(port);
    }

    public async Task DisposeAsync()
    {
        if (Environment.GetEnvironmentVariable("COORDINATOR_TEST_LOGS") is not null && _cluster is not null)
            output.WriteLine(_cluster.Tail(Node, 60));
        _cluster?.Dispose();
        if (_glance is not null) await _glance.DisposeAsync();
    }
}
