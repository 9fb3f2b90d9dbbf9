using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Coordinator.IntegrationTests.Harness;
using Xunit.Abstractions;

namespace Coordinator.IntegrationTests;

/// <summary>
/// Three real node processes on loopback. Claims arrive through every node at once and never overcommit; the
/// process hosting the ledger singleton is SIGKILLed while writes are flowing; the ledger comes back on another node
/// with every acknowledged reservation intact, and the test reports how long writes were unavailable.
/// </summary>
public sealed class SingletonFailoverTests(ITestOutputHelper output) : IDisposable
{
    private const long GiB = 1L << 30;
    private readonly LocalCluster _cluster = new(3);

    [Fact]
    public async Task Claims_through_every_node_never_overcommit_and_survive_a_SIGKILL_of_the_leader()
    {
        _cluster.StartAll();
        var sw = Stopwatch.StartNew();
        await _cluster.WaitReadyAsync(_cluster.Nodes, TimeSpan.FromSeconds(90));
        output.WriteLine($"3 nodes ready in {sw.Elapsed.TotalSeconds:0.0}s");

        // 1. Saturate Volume1 (100 GiB) with 300 concurrent 1 GiB claims spread over the three nodes.
        var statuses = await Task.WhenAll(Enumerable.Range(0, 300).Select(async i =>
        {
            var via = _cluster.Nodes[i % 3];
            using var r = await PutWithRetry(via, "Volume1", $"vm-{i:000}", GiB, via.Name);
            return (Id: $"vm-{i:000}", r.StatusCode);
        }));
        // A retried PUT whose first attempt was persisted but timed out answers 200 (unchanged): both are acknowledgements.
        var created = statuses.Where(s => s.StatusCode is HttpStatusCode.Created or HttpStatusCode.OK).Select(s => s.Id).ToHashSet();
        Assert.Equal(100, created.Count);
        Assert.Equal(200, statuses.Count(s => s.StatusCode == HttpStatusCode.Conflict));
        var volume1 = await Volume(_cluster.Nodes[1], "Volume1");
        Assert.Equal(0, volume1.GetProperty("freeBytes").GetInt64());
        Assert.Equal(100 * GiB, volume1.GetProperty("reservedBytes").GetInt64());

        // 2. Writers on every node keep claiming on Volume2; the leader's host is SIGKILLed in the middle.
        var leader = await _cluster.LeaderAsync(_cluster.Nodes[0]);
        var victim = _cluster.Node(leader.Node);
        var survivors = _cluster.Nodes.Where(n => n != victim).ToList();
        output.WriteLine($"ledger runs on {leader.Node} (epoch {leader.Epoch}); killing PID {_cluster.Pid(victim)} with SIGKILL");

        var acknowledged = new ConcurrentDictionary<string, long>();
        var acksFromSurvivors = new ConcurrentQueue<TimeSpan>();
        var unexpected = new ConcurrentBag<string>();
        using var stop = new CancellationTokenSource();
        var clock = Stopwatch.StartNew();
        var writers = _cluster.Nodes.Select((via, w) => Task.Run(async () =>
        {
            for (var i = 0; !stop.IsCancellationRequested; i++)
            {
                var id = $"w{w}-{i:00000}";
                var bytes = (i % 7 + 1) * GiB;
                // A writer retries the same id until it gets an answer: that is what clients do across a handover.
                while (!stop.IsCancellationRequested)
                {
                    try
                    {
                        using var r = await _cluster.Http.PutAsync(
                            _cluster.Url(via, $"/v1/volumes/Volume2/reservations/{id}"),
                            LocalCluster.Json(new { node = via.Name, bytes }), stop.Token);
                        if (r.StatusCode is HttpStatusCode.Created or HttpStatusCode.OK)
                        {
                            acknowledged[id] = bytes;
                            if (via != victim) acksFromSurvivors.Enqueue(clock.Elapsed);
                            break;
                        }
                        if (r.StatusCode != HttpStatusCode.ServiceUnavailable)
                            unexpected.Add($"{id} via {via.Name}: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
                        await Task.Delay(100, stop.Token);
                    }
                    catch (Exception e) when (e is HttpRequestException or TaskCanceledException or OperationCanceledException)
                    {
                        if (via == victim) return; // its process is gone
                        await Task.Delay(100);
                    }
                }
            }
        })).ToList();

        await Task.Delay(3000);
        var killedAt = clock.Elapsed;
        _cluster.Kill(victim);

        // Wait until the survivors report a new leader, then let the writers run a little longer.
        LeaderInfo? next = null;
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                next = await _cluster.LeaderAsync(survivors[0]);
                if (next.Node != victim.Name) break;
            }
            catch (HttpRequestException) { }
            await Task.Delay(200);
        }
        Assert.NotNull(next);
        Assert.NotEqual(victim.Name, next!.Node);
        Assert.True(next.Epoch > leader.Epoch, $"epoch {next.Epoch} should exceed {leader.Epoch}");
        await Task.Delay(3000);
        stop.Cancel();
        await Task.WhenAll(writers.Select(t => t.ContinueWith(_ => { })));
        Assert.Empty(unexpected); // only 2xx or 503 (no leader yet) are acceptable answers to a claim that fits

        // Unavailability: the longest silence between two acknowledgements through the survivors around the kill.
        var acks = acksFromSurvivors.ToArray().Where(t => t >= killedAt - TimeSpan.FromSeconds(1)).Order().ToArray();
        var gap = acks.Zip(acks.Skip(1), (a, b) => b - a).DefaultIfEmpty(TimeSpan.Zero).Max();
        var firstAfter = acks.First(t => t > killedAt + gap / 2);
        output.WriteLine($"new ledger on {next.Node} (epoch {next.Epoch}); writes unavailable for {gap.TotalSeconds:0.00}s " +
                         $"(first acknowledgement {(firstAfter - killedAt).TotalSeconds:0.00}s after the SIGKILL); {acknowledged.Count} claims acknowledged");
        Console.WriteLine($"[failover] SIGKILL of the leader host: writes unavailable {gap.TotalSeconds:0.00}s");

        // 3. Every acknowledged reservation is intact on the new leader, through every surviving node.
        foreach (var via in survivors)
        {
            var list = await _cluster.Http.GetFromJsonAsync<JsonElement>(_cluster.Url(via, "/v1/volumes/Volume2/reservations"));
            var stored = list.GetProperty("reservations").EnumerateArray()
                .ToDictionary(r => r.GetProperty("consumerId").GetString()!, r => r.GetProperty("bytes").GetInt64());
            foreach (var (id, bytes) in acknowledged)
            {
                Assert.True(stored.TryGetValue(id, out var b), $"acknowledged reservation {id} was lost");
                Assert.Equal(bytes, b);
            }
            var v1 = await _cluster.Http.GetFromJsonAsync<JsonElement>(_cluster.Url(via, "/v1/volumes/Volume1/reservations"));
            Assert.Equal(created.Order(), v1.GetProperty("reservations").EnumerateArray().Select(r => r.GetProperty("consumerId").GetString()!).Order());
        }
        Assert.True(gap < TimeSpan.FromSeconds(30), $"failover took {gap}");
    }

    private async Task<HttpResponseMessage> PutWithRetry(NodeInfo via, string volume, string id, long bytes, string node)
    {
        for (var attempt = 0; ; attempt++)
        {
            var r = await _cluster.Http.PutAsync(_cluster.Url(via, $"/v1/volumes/{volume}/reservations/{id}"),
                LocalCluster.Json(new { node, bytes }));
            if (r.StatusCode != HttpStatusCode.ServiceUnavailable || attempt > 50) return r;
            r.Dispose();
            await Task.Delay(200);
        }
    }

    private async Task<JsonElement> Volume(NodeInfo via, string name)
    {
        var all = await _cluster.Http.GetFromJsonAsync<JsonElement>(_cluster.Url(via, "/v1/volumes"));
        return all.GetProperty("volumes").EnumerateArray().Single(v => v.GetProperty("name").GetString() == name);
    }

    public void Dispose()
    {
        if (Environment.GetEnvironmentVariable("COORDINATOR_TEST_LOGS") is not null)
            foreach (var n in _cluster.Nodes) output.WriteLine($"--- {n.Name}\n{_cluster.Tail(n, 80)}");
        _cluster.Dispose();
    }
}
