using System.Diagnostics;
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
/// Three node processes on the simulated Hyper-V back-end: spawning from one image, a cluster live migration, a
/// destroy, a drain and a SIGKILL of a node (the simulated cluster service fails its VMs over; the coordinator only
/// observes and reconciles).
/// </summary>
public sealed class VmLifecycleTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const long GiB = 1L << 30;
    private GlanceTestServer _glance = null!;
    private LocalCluster _cluster = null!;
    private SimulatedClusterDatabase _sim = null!;

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
            coordinator.images.glance { endpoint = "{{_glance.Endpoint}}", token = "{{_glance.Token}}" }
            coordinator.hyperv {
              owner-settle = 1s
              reconcile-interval = 5s
              simulated { memory = 16GiB, logical-processors = 8, heartbeat-interval = 500ms, failover-after = 3s }
            }
            """);
        _cluster.Http.Timeout = TimeSpan.FromMinutes(3);
        _cluster.StartAll();
        await _cluster.WaitReadyAsync(_cluster.Nodes, TimeSpan.FromSeconds(90));
        _sim = new SimulatedClusterDatabase(_cluster.SimulatedDatabasePath);
        // Every node has reported its host to the ledger before the first spawn.
        await Eventually(async () => (await Nodes()).Count(n => n.GetProperty("memoryMb").GetInt64() > 0) == 3, "3 nodes report capacity");
    }

    [Fact]
    public async Task Spawn_migrate_destroy_drain_and_failover_keep_one_owner_and_one_claim_per_vm()
    {
        var image = _glance.AddImage("base-2025", 32L << 20, seed: 11);

        // 12 VMs from one image, spread over the three nodes, spawned concurrently.
        var spawned = await Task.WhenAll(Enumerable.Range(0, 12).Select(async i =>
        {
            var node = _cluster.Nodes[i % 3];
            using var r = await _cluster.Http.PostAsync(_cluster.Url(node, "/v1/vms"),
                LocalCluster.Json(new { name = $"inst-{i:00}", memoryMb = 2048, vcpus = 2, diskBytes = 5 * GiB, imageId = image.Id }));
            Assert.True(r.StatusCode == HttpStatusCode.Created, $"spawn inst-{i:00} on {node.Name}: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
            return (Vm: $"inst-{i:00}", Node: node.Name);
        }));
        Assert.Equal(1, _glance.Downloads(image.Id));
        var vms = await Vms();
        Assert.Equal(12, vms.Count);
        foreach (var (vm, node) in spawned)
        {
            Assert.Equal(node, vms[vm].GetProperty("node").GetString());
            var sim = _sim.GetVm(vm)!;
            Assert.Equal((node, VmPowerState.Running, true), (sim.HostNode, sim.State, sim.Clustered));
        }
        Assert.Equal(12, Claims().Count);

        // A same-cluster live migration moves the role; the disk stays where it is and the claim is kept once.
        var disk = _sim.GetVm("inst-00")!.DiskPath!;
        var diskWritten = File.GetLastWriteTimeUtc(disk);
        var reservedBefore = await ReservedBytes();
        // Asked of the node that hosts it (hv01): another node's agent may not move it (403 wrong-node, IdentityTests).
        using (var r = await _cluster.Http.PostAsync(_cluster.Url(_cluster.Nodes[2], "/v1/vms/inst-00/migrate"), LocalCluster.Json(new { target = "hv02", mode = "live" })))
            Assert.Equal(HttpStatusCode.Forbidden, r.StatusCode);
        using (var r = await _cluster.Http.PostAsync(_cluster.Url(_cluster.Nodes[0], "/v1/vms/inst-00/migrate"), LocalCluster.Json(new { target = "hv02", mode = "live" })))
            Assert.True(r.IsSuccessStatusCode, await r.Content.ReadAsStringAsync());
        Assert.Equal("hv02", (await Vms())["inst-00"].GetProperty("node").GetString());
        Assert.Equal(("hv02", disk, VmPowerState.Running), (_sim.GetVm("inst-00")!.HostNode, _sim.GetVm("inst-00")!.DiskPath, _sim.GetVm("inst-00")!.State));
        Assert.Equal(diskWritten, File.GetLastWriteTimeUtc(disk));
        Assert.Equal(reservedBefore, await ReservedBytes());
        Assert.Equal("hv02", Claims()["inst-00"]);

        // Destroy leaves nothing behind: no VM, no role, no files, no claim.
        // inst-11 runs on hv03: its own agent destroys it.
        using (var r = await _cluster.Http.DeleteAsync(_cluster.Url(_cluster.Nodes[2], "/v1/vms/inst-11")))
            Assert.Equal(HttpStatusCode.NoContent, r.StatusCode);
        Assert.Null(_sim.GetVm("inst-11"));
        Assert.Null(_sim.GetGroup("inst-11"));
        Assert.False(Directory.Exists(Path.Combine(_cluster.CsvRoot, "Volume1", "instances", "inst-11")));
        Assert.DoesNotContain("inst-11", Claims().Keys);
        Assert.DoesNotContain("inst-11", (await Vms()).Keys);

        // Drain hv01: every VM leaves it by live migration and keeps running.
        using (var r = await _cluster.Http.PostAsync(_cluster.Url(_cluster.Nodes[1], "/v1/nodes/hv01/drain"), null))
            Assert.Equal(HttpStatusCode.Unauthorized, r.StatusCode); // an operator action: admin token required
        using (var r = await _cluster.Http.SendAsync(LocalCluster.AsAdmin(HttpMethod.Post, _cluster.Url(_cluster.Nodes[1], "/v1/nodes/hv01/drain"))))
            Assert.Equal(HttpStatusCode.Accepted, r.StatusCode);
        await Eventually(async () => (await Vms()).Values.All(v => v.GetProperty("node").GetString() != "hv01"), "hv01 drained", 60);
        Assert.Equal("draining", (await Nodes()).Single(n => n.GetProperty("node").GetString() == "hv01").GetProperty("state").GetString());
        Assert.All(_sim.ListVms(), v => Assert.Equal(VmPowerState.Running, v.State));
        Assert.Empty(_sim.ListVms("hv01"));
        using (var r = await _cluster.Http.SendAsync(LocalCluster.AsAdmin(HttpMethod.Post, _cluster.Url(_cluster.Nodes[1], "/v1/nodes/hv01/resume"))))
            Assert.Equal(HttpStatusCode.Accepted, r.StatusCode);

        // SIGKILL hv03: the simulated cluster service restarts its VMs on the survivors; the ledger follows.
        var feedHead = (await _cluster.Http.GetFromJsonAsync<JsonElement>(_cluster.Url(_cluster.Nodes[0], "/v1/events"))).GetProperty("head").GetInt64();
        var onHv03 = (await Vms()).Where(v => v.Value.GetProperty("node").GetString() == "hv03").Select(v => v.Key).ToList();
        Assert.NotEmpty(onHv03);
        var clock = Stopwatch.StartNew();
        _cluster.Kill(_cluster.Node("hv03"));
        await Eventually(async () => onHv03.All(vm => _sim.GetVm(vm) is { HostNode: not "hv03", State: VmPowerState.Running }), "failover by the cluster service", 60);
        await Eventually(async () =>
        {
            var now = await Vms();
            return onHv03.All(vm => now[vm].GetProperty("node").GetString() == _sim.GetVm(vm)!.HostNode);
        }, "ledger follows the failover", 60);
        output.WriteLine($"SIGKILL of hv03: its {onHv03.Count} VMs owned by survivors in the ledger after {clock.Elapsed.TotalSeconds:0.0}s");
        var claims = Claims();
        foreach (var vm in onHv03) Assert.Equal(_sim.GetVm(vm)!.HostNode, claims[vm]);
        var quotas = await _cluster.Http.GetFromJsonAsync<JsonElement>(_cluster.Url(_cluster.Nodes[0], "/v1/volumes/Volume1/quotas"));
        // The quotas follow: nothing is claimed for hv03 any more (the image cache's claim excepted, if it fetched).
        var hv03Claims = quotas.GetProperty("quotas").EnumerateArray().Where(q => q.GetProperty("node").GetString() == "hv03")
            .Sum(q => q.GetProperty("claimedBytes").GetInt64());
        Assert.True(hv03Claims <= image.SizeBytes, $"hv03 still claims {hv03Claims} bytes");

        // The event feed tells each new owner's agent.
        foreach (var vm in onHv03)
        {
            var owner = _sim.GetVm(vm)!.HostNode;
            var feed = await _cluster.Http.GetFromJsonAsync<JsonElement>(_cluster.Url(_cluster.Node(owner), $"/v1/events?after={feedHead}&node={owner}&waitMs=1000"));
            Assert.Contains(feed.GetProperty("events").EnumerateArray(), e => e.GetProperty("vm").GetString() == vm && e.GetProperty("kind").GetString() == "arrived");
        }
    }

    [Fact]
    public async Task A_spawn_that_fails_half_way_leaves_no_trace()
    {
        var reservedBefore = await ReservedBytes();
        var cases = new (object Body, int Status)[]
        {
            (new { name = "too-much-memory", memoryMb = 64 * 1024, vcpus = 1, diskBytes = GiB }, 409),
            (new { name = "too-much-disk", memoryMb = 512, vcpus = 1, diskBytes = 1L << 40 << 10 }, 409),
            (new { name = "missing-image", memoryMb = 512, vcpus = 1, diskBytes = GiB, imageId = "no-such-image" }, 404),
        };
        foreach (var (body, status) in cases)
        {
            using var r = await _cluster.Http.PostAsync(_cluster.Url(_cluster.Nodes[0], "/v1/vms"), LocalCluster.Json(body));
            var text = await r.Content.ReadAsStringAsync();
            output.WriteLine($"{(int)r.StatusCode} {text}");
            Assert.True(status == (int)r.StatusCode, text);
            Assert.Equal("application/problem+json", r.Content.Headers.ContentType?.MediaType);
        }
        // A corrupt image fails after the placement was made: everything is undone.
        var bad = _glance.AddImage("corrupt-base", 8L << 20, seed: 1);
        _glance.SetFault(bad.Id, new GlanceFault(GlanceFaultMode.Corrupt, 100));
        using (var r = await _cluster.Http.PostAsync(_cluster.Url(_cluster.Nodes[1], "/v1/vms"),
                   LocalCluster.Json(new { name = "corrupt-image", memoryMb = 512, vcpus = 1, diskBytes = GiB, imageId = bad.Id })))
            Assert.Equal(HttpStatusCode.BadGateway, r.StatusCode);

        Assert.Empty(await Vms());
        Assert.Empty(Claims());
        Assert.Equal(reservedBefore, await ReservedBytes());
        Assert.Empty(_sim.ListVms());
        var instances = Path.Combine(_cluster.CsvRoot, "Volume1", "instances");
        Assert.True(!Directory.Exists(instances) || Directory.GetFileSystemEntries(instances).Length == 0);
    }

    private async Task<Dictionary<string, JsonElement>> Vms() =>
        (await _cluster.Http.GetFromJsonAsync<JsonElement>(_cluster.Url(_cluster.Nodes[0], "/v1/vms"))).GetProperty("vms").EnumerateArray()
        .ToDictionary(v => v.GetProperty("name").GetString()!, v => v.Clone());

    private async Task<List<JsonElement>> Nodes() =>
        (await _cluster.Http.GetFromJsonAsync<JsonElement>(_cluster.Url(_cluster.Nodes[0], "/v1/nodes"))).GetProperty("nodes").EnumerateArray().Select(n => n.Clone()).ToList();

    /// <summary>VM disk claims in the ledger (image claims excluded): consumer id → claiming node.</summary>
    private Dictionary<string, string> Claims()
    {
        var list = _cluster.Http.GetFromJsonAsync<JsonElement>(_cluster.Url(_cluster.Nodes[0], "/v1/volumes/Volume1/reservations")).GetAwaiter().GetResult();
        return list.GetProperty("reservations").EnumerateArray()
            .Where(r => !r.GetProperty("consumerId").GetString()!.StartsWith("_image-"))
            .ToDictionary(r => r.GetProperty("consumerId").GetString()!, r => r.GetProperty("node").GetString()!);
    }

    /// <summary>Bytes claimed on Volume1 (free bytes also move with unowned usage, e.g. the simulator's own database).</summary>
    private async Task<long> ReservedBytes() =>
        (await _cluster.Http.GetFromJsonAsync<JsonElement>(_cluster.Url(_cluster.Nodes[0], "/v1/volumes"))).GetProperty("volumes")
        .EnumerateArray().Single(v => v.GetProperty("name").GetString() == "Volume1").GetProperty("reservedBytes").GetInt64();

    private static async Task Eventually(Func<Task<bool>> condition, string what, int seconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            try { if (await condition()) return; }
            catch (HttpRequestException) { }
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"not within {seconds}s: {what}");
            await Task.Delay(250);
        }
    }

    public async Task DisposeAsync()
    {
        if (Environment.GetEnvironmentVariable("COORDINATOR_TEST_LOGS") is not null && _cluster is not null)
            foreach (var n in _cluster.Nodes) output.WriteLine($"--- {n.Name}\n{_cluster.Tail(n, 60)}");
        _cluster?.Dispose();
        if (_glance is not null) await _glance.DisposeAsync();
    }
}
