using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using Coordinator.IntegrationTests.Harness;
using Coordinator.Testing.Glance;
using Xunit.Abstractions;

namespace Coordinator.IntegrationTests;

/// <summary>
/// The cluster-wide image cache with real node processes and a real (test) glance over HTTP: one download for many
/// callers, a holder SIGKILLed mid-download, and the checksum of what lands on the CSV.
/// </summary>
public sealed class ImageCacheTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const long MiB = 1L << 20;
    private GlanceTestServer _glance = null!;
    private LocalCluster _cluster = null!;

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
        _cluster = new LocalCluster(3, $$"""
            coordinator.images {
              lease-ttl = 20s
              progress-interval = 1s
              glance { endpoint = "{{_glance.Endpoint}}", token = "{{_glance.Token}}", timeout = 20s }
            }
            """);
        _cluster.Http.Timeout = TimeSpan.FromMinutes(3);
        _cluster.StartAll();
        await _cluster.WaitReadyAsync(_cluster.Nodes, TimeSpan.FromSeconds(90));
    }

    [Fact]
    public async Task Thirty_concurrent_ensures_on_three_nodes_download_the_image_once()
    {
        var image = _glance.AddImage("3f1c2a9e-256m", 256 * MiB, seed: 7);
        var results = await Task.WhenAll(Enumerable.Range(0, 30).Select(async i =>
        {
            using var r = await _cluster.Http.PostAsync(_cluster.Url(_cluster.Nodes[i % 3], $"/v1/images/{image.Id}/ensure"), null);
            var body = await r.Content.ReadAsStringAsync();
            Assert.True(r.StatusCode == HttpStatusCode.OK, $"ensure #{i}: {(int)r.StatusCode} {body}");
            return JsonDocument.Parse(body).RootElement.Clone();
        }));

        Assert.Equal(1, _glance.Downloads(image.Id));
        var paths = results.Select(r => r.GetProperty("path").GetString()).Distinct().ToList();
        var checksums = results.Select(r => r.GetProperty("checksum").GetString()).Distinct().ToList();
        Assert.Single(paths);
        Assert.Equal([image.Sha512], checksums);
        Assert.All(results, r => Assert.Equal(image.SizeBytes, r.GetProperty("sizeBytes").GetInt64()));
        Assert.Equal(image.Sha512, await Sha512Of(paths[0]!));
        // Nothing else was left in the image's folder (no partial files).
        Assert.Equal([paths[0]], Directory.GetFiles(Path.GetDirectoryName(paths[0])!).Select(Path.GetFullPath));
        output.WriteLine($"30 ensures on 3 nodes: {_glance.Downloads(image.Id)} download, {paths[0]}");
    }

    [Fact]
    public async Task A_holder_SIGKILLed_mid_download_hands_the_lease_to_a_waiter_and_the_image_is_cached_once()
    {
        var image = _glance.AddImage("9a7e-kill-holder", 96 * MiB, seed: 3);
        // The first download stalls after 16 MiB: the holder is then killed while it holds the lease.
        _glance.SetFault(image.Id, new GlanceFault(GlanceFaultMode.StallAfter, 16 * MiB, Once: true));

        var first = _cluster.Nodes[1];
        var firstCall = _cluster.Http.PostAsync(_cluster.Url(first, $"/v1/images/{image.Id}/ensure"), null);
        await _glance.WaitForDownloadStartAsync(image.Id, 1, TimeSpan.FromSeconds(30));
        var waiters = _cluster.Nodes.Where(n => n != first).SelectMany(n => Enumerable.Range(0, 3).Select(_ =>
            _cluster.Http.PostAsync(_cluster.Url(n, $"/v1/images/{image.Id}/ensure"), null))).ToList();

        var images = await _cluster.Http.GetFromJsonAsync<JsonElement>(_cluster.Url(_cluster.Nodes[0], "/v1/images"));
        var lease = images.GetProperty("leases").EnumerateArray().Single(l => l.GetProperty("imageId").GetString() == image.Id);
        Assert.Equal(first.Name, lease.GetProperty("holder").GetString());
        var firstToken = lease.GetProperty("fencingToken").GetInt64();
        // The waiters are registered (the lease lists both other nodes) before the holder dies.
        var others = _cluster.Nodes.Where(n => n != first).Select(n => n.Name).Order().ToList();
        var registered = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            var leases = (await _cluster.Http.GetFromJsonAsync<JsonElement>(_cluster.Url(_cluster.Nodes[0], "/v1/images"))).GetProperty("leases");
            var waiting = leases.EnumerateArray().Single(l => l.GetProperty("imageId").GetString() == image.Id)
                .GetProperty("waiters").EnumerateArray().Select(w => w.GetString()!).Order().ToList();
            if (waiting.SequenceEqual(others)) break;
            Assert.True(DateTime.UtcNow < registered, $"waiters not registered within 30 s: [{string.Join(", ", waiting)}]");
            await Task.Delay(200);
        }
        output.WriteLine($"holder {first.Name} (token {firstToken}) killed with SIGKILL after {_glance.BytesServed(image.Id) / MiB} MiB");
        _cluster.Kill(first);
        await Assert.ThrowsAnyAsync<Exception>(() => firstCall);

        var answers = await Task.WhenAll(waiters);
        var bodies = new List<JsonElement>();
        foreach (var a in answers)
        {
            var body = await a.Content.ReadAsStringAsync();
            Assert.True(a.StatusCode == HttpStatusCode.OK, $"{(int)a.StatusCode} {body}");
            bodies.Add(JsonDocument.Parse(body).RootElement.Clone());
        }
        Assert.Equal(2, _glance.Downloads(image.Id));
        var path = Assert.Single(bodies.Select(b => b.GetProperty("path").GetString()).Distinct())!;
        Assert.Equal(image.Sha512, await Sha512Of(path));

        var after = await _cluster.Http.GetFromJsonAsync<JsonElement>(_cluster.Url(_cluster.Nodes[0], "/v1/images"));
        var entry = after.GetProperty("images").EnumerateArray().Single(i => i.GetProperty("imageId").GetString() == image.Id);
        Assert.Equal(path, entry.GetProperty("path").GetString());
        Assert.DoesNotContain(after.GetProperty("leases").EnumerateArray(), l => l.GetProperty("imageId").GetString() == image.Id);
        Assert.DoesNotContain($".t{firstToken}", path); // never the killed holder's partial copy
        // The TTL (20 s) is longer than the handover took: the lease ended because its holder left the cluster.
        var logs = string.Join('\n', _cluster.Nodes.Where(n => n != first).Select(n => File.ReadAllText(_cluster.LogPath(n))));
        Assert.Contains($"ended, its holder {first.Name} left the cluster", logs);
        output.WriteLine($"cached once at {path}; {_glance.Downloads(image.Id)} downloads in total");
    }

    private static async Task<string> Sha512Of(string path)
    {
        await using var f = File.OpenRead(path);
        return Convert.ToHexStringLower(await SHA512.HashDataAsync(f));
    }

    public async Task DisposeAsync()
    {
        if (Environment.GetEnvironmentVariable("COORDINATOR_TEST_LOGS") is not null && _cluster is not null)
            foreach (var n in _cluster.Nodes) output.WriteLine($"--- {n.Name}\n{_cluster.Tail(n, 60)}");
        _cluster?.Dispose();
        if (_glance is not null) await _glance.DisposeAsync();
    }
}
