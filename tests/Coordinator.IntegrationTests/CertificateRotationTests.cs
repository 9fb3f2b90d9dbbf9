using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Coordinator.IntegrationTests.Harness;
using Xunit.Abstractions;

namespace Coordinator.IntegrationTests;

/// <summary>
/// Rotating the cluster's certificates onto a new CA without downtime, as the README describes: phase A puts the new CA
/// beside the old one in every node's trust bundle (a rolling restart), phase B gives every node a certificate of the
/// new CA (a rolling restart). Throughout, a writer keeps making idempotent reservations through a node that is up
/// (retrying on 503 or a refused connection) and every write is acknowledged; after each restart the cluster is back
/// to three members.
/// </summary>
public sealed class CertificateRotationTests(ITestOutputHelper output) : IDisposable
{
    private const long GiB = 1L << 30;
    private readonly LocalCluster _cluster = new(3);

    [Fact]
    public async Task A_rolling_restart_onto_a_new_CA_keeps_the_cluster_serving()
    {
        var clock = Stopwatch.StartNew();
        _cluster.StartAll();
        await _cluster.WaitReadyAsync(_cluster.Nodes, TimeSpan.FromSeconds(90));
        output.WriteLine($"{clock.Elapsed.TotalSeconds:0.0}s: 3 nodes ready on CA1");

        var restarting = new ConcurrentDictionary<string, bool>();
        var acknowledged = new ConcurrentQueue<(string Id, TimeSpan At)>();
        var retries = 0;
        using var stop = new CancellationTokenSource();
        var writer = Task.Run(async () =>
        {
            for (var i = 0; !stop.IsCancellationRequested; i++)
            {
                var id = $"rot-{i:00000}";
                // The same id until it is acknowledged: a retry of a write that did land answers 200 (unchanged).
                for (var attempt = 0; ; attempt++)
                {
                    var up = _cluster.Nodes.Where(n => !restarting.ContainsKey(n.Name)).ToList();
                    var via = up[(i + attempt) % up.Count];
                    var status = await Put(via, id);
                    if (status is HttpStatusCode.Created or HttpStatusCode.OK) { acknowledged.Enqueue((id, clock.Elapsed)); break; }
                    Assert.True(status is 0 or HttpStatusCode.ServiceUnavailable, $"{id} via {via.Name}: {(int)status}");
                    Interlocked.Increment(ref retries);
                    await Task.Delay(100);
                }
                await Task.Delay(50);
            }
        });

        var serviceManagerRestarts = 0;
        async Task RollingRestart(string phase, Action<NodeInfo> before)
        {
            foreach (var n in _cluster.Nodes)
            {
                before(n);
                restarting[n.Name] = true;
                var acksBefore = acknowledged.Count;
                var other = _cluster.Nodes.First(o => o != n);
                _cluster.Stop(n, TimeSpan.FromSeconds(30));
                // The procedure: start it again once the others no longer list it (it left), as an operator would.
                await _cluster.WaitUntilAsync(async () => (await MemberNames(other)).All(m => m != n.Name),
                    $"{n.Name} gone from the members after its stop ({phase})", TimeSpan.FromSeconds(30));
                _cluster.Start(n);
                await _cluster.WaitUntilAsync(async () =>
                    {
                        if (!_cluster.IsRunning(n))
                        {
                            // A first seed node whose join went unanswered may form a cluster of its own; the island
                            // detector downs it and it exits 3 (README), and the service manager starts it again.
                            var exit = await _cluster.WaitForExitAsync(n, TimeSpan.FromSeconds(1));
                            Assert.True(exit == 3, $"{n.Name} exited {exit}; log:\n{_cluster.Tail(n)}");
                            serviceManagerRestarts++;
                            output.WriteLine($"{clock.Elapsed.TotalSeconds:0.0}s: {n.Name} exited 3; started again as a service manager would");
                            _cluster.Start(n);
                            return false;
                        }
                        using var ready = await _cluster.Http.GetAsync(_cluster.Url(n, "/readyz"));
                        return ready.IsSuccessStatusCode && (await UpMembers(n)) == 3 && (await UpMembers(other)) == 3;
                    },
                    $"{n.Name} ready and 3 members Up after its restart ({phase})", TimeSpan.FromSeconds(90));
                restarting.TryRemove(n.Name, out _);
                output.WriteLine($"{clock.Elapsed.TotalSeconds:0.0}s: {phase}: {n.Name} restarted, back to 3 members; " +
                                 $"{acknowledged.Count - acksBefore} writes acknowledged meanwhile");
            }
        }

        using var ca2 = TestCa.Create("coordinator test CA2");
        // Phase A: every node trusts CA1 and CA2 (members still present CA1 certificates).
        _cluster.WriteTrust(_cluster.Ca!, ca2);
        await RollingRestart("A (trust CA1+CA2)", _ => { });
        // Phase B: every node gets a CA2 certificate; members of either kind trust each other throughout.
        await RollingRestart("B (certificates from CA2)", n => _cluster.IssueCertificate(n, ca2).Dispose());

        // A few more writes on the rotated cluster, then stop the writer.
        var target = acknowledged.Count + 5;
        await _cluster.WaitUntilAsync(() => Task.FromResult(acknowledged.Count >= target), "writes after the rotation", TimeSpan.FromSeconds(20));
        await stop.CancelAsync();
        await writer;

        var ids = new HashSet<string>();
        var list = await _cluster.Http.GetFromJsonAsync<JsonElement>(_cluster.Url(_cluster.Nodes[0], "/v1/volumes/Volume2/reservations"));
        foreach (var r in list.GetProperty("reservations").EnumerateArray()) ids.Add(r.GetProperty("consumerId").GetString()!);
        var acked = acknowledged.Select(a => a.Id).ToList();
        Assert.All(acked, id => Assert.Contains(id, ids));
        // The longest time without an acknowledgement while nodes restarted one by one.
        var gaps = acknowledged.Select(a => a.At).Order().Zip(acknowledged.Select(a => a.At).Order().Skip(1), (a, b) => b - a);
        var longest = gaps.DefaultIfEmpty().Max();
        output.WriteLine($"{clock.Elapsed.TotalSeconds:0.0}s: {acked.Count} writes acknowledged and present, {retries} retries " +
                         $"(503 or refused while a node restarted), longest gap {longest.TotalSeconds:0.0}s");
        foreach (var n in _cluster.Nodes)
        {
            var log = File.ReadAllText(_cluster.LogPath(n));
            Assert.DoesNotContain("has no serializer binding", log);
            // Every node runs on its CA2 certificate now (its last start logged the certificate it loaded).
            var last = log.Split('\n').Last(l => l.Contains("Remoting: mutual TLS", StringComparison.Ordinal));
            Assert.Contains("issued by CN=coordinator test CA2", last);
        }
        Console.WriteLine($"[rotation] 6 rolling restarts (trust CA1+CA2, then CA2 certificates): {acked.Count} writes acknowledged, " +
                          $"{retries} retries, longest gap {longest.TotalSeconds:0.0}s, {serviceManagerRestarts} restart(s) by the service manager, " +
                          $"{clock.Elapsed.TotalSeconds:0}s in all");
    }

    private async Task<HttpStatusCode> Put(NodeInfo via, string id)
    {
        try
        {
            using var r = await _cluster.Http.PutAsync(_cluster.Url(via, $"/v1/volumes/Volume2/reservations/{id}"),
                LocalCluster.Json(new { node = via.Name, bytes = GiB }));
            return r.StatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException) { return 0; }
    }

    private async Task<List<string>> MemberNames(NodeInfo via)
    {
        var doc = await _cluster.Http.GetFromJsonAsync<JsonElement>(_cluster.Url(via, "/cluster/members"));
        return doc.GetProperty("members").EnumerateArray().Select(m => m.GetProperty("node").GetString()!).ToList();
    }

    private async Task<int> UpMembers(NodeInfo via)
    {
        var doc = await _cluster.Http.GetFromJsonAsync<JsonElement>(_cluster.Url(via, "/cluster/members"));
        return doc.GetProperty("members").EnumerateArray().Count(m => m.GetProperty("status").GetString() == "Up");
    }

    public void Dispose() => _cluster.Dispose();
}
