using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Coordinator.IntegrationTests.Harness;
using Xunit.Abstractions;

namespace Coordinator.IntegrationTests;

/// <summary>
/// A real network partition (network namespaces joined by a bridge; one node's link cut): with keep-majority the
/// minority side stops answering writes (503) and never grants; the majority elects a new ledger; after healing the
/// downed node, restarted as a service manager would, rejoins; every acknowledged write is there. The minority must
/// down itself (the Split Brain Resolver; its process exits) within a generous deadline: the test never stops it.
/// Needs root and iproute2 (network namespaces); without them it is skipped with the reason, or fails under
/// COORDINATOR_TEST_REQUIRE_ALL=1.
/// </summary>
public sealed class PartitionTests(ITestOutputHelper output)
{
    private const long GiB = 1L << 30;

    // Each write claims a quarter GiB: a fast machine acknowledges ~100 majority writes in the 20 s window, and 1 GiB
    // each filled the 100 GiB volume, so the write after healing was refused (409) for want of space, not for a fault.
    private const long WriteBytes = GiB / 4;

    /// <summary>The partition lasts at least this long (the minority is probed and the majority written throughout).</summary>
    private static readonly TimeSpan Window = TimeSpan.FromSeconds(20);

    /// <summary>How long the majority may take to acknowledge <see cref="MajorityWrites"/> writes after the cut.</summary>
    private static readonly TimeSpan MajorityDeadline = TimeSpan.FromSeconds(120);
    private const int MajorityWrites = 10;

    /// <summary>How long the minority may take to down itself (SBR) and exit after the cut.</summary>
    private static readonly TimeSpan DownDeadline = TimeSpan.FromSeconds(120);

    [SkippableFact]
    public async Task The_minority_side_of_a_partition_refuses_writes_and_rejoins_after_healing()
    {
        Prerequisite.Require(NetworkLab.WhyUnavailable() is { } why ? $"partition tests need network namespaces: {why}" : null);
        using var lab = new NetworkLab();
        using var cluster = new LocalCluster(3, "coordinator.ask-timeout = 2s", placement: lab.Create);
        cluster.Http.Timeout = TimeSpan.FromSeconds(10);
        cluster.StartAll();
        await cluster.WaitReadyAsync(cluster.Nodes, TimeSpan.FromSeconds(120));

        async Task<HttpStatusCode> Put(NodeInfo via, string id)
        {
            try
            {
                using var r = await cluster.Http.PutAsync(cluster.Url(via, $"/v1/volumes/Volume1/reservations/{id}"),
                    LocalCluster.Json(new { node = via.Name, bytes = WriteBytes }));
                return r.StatusCode;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException) { return 0; }
        }

        var acknowledged = new List<string>();
        for (var i = 0; i < 6; i++)
            if (await Put(cluster.Nodes[i % 3], $"before-{i}") == HttpStatusCode.Created) acknowledged.Add($"before-{i}");
        Assert.Equal(6, acknowledged.Count);

        // Cut off a node that does not host the ledger: it is the minority (1 of 3) and cannot reach the leader.
        var leader = await cluster.LeaderAsync(cluster.Nodes[0]);
        var minority = cluster.Nodes.First(n => n.Name != leader.Node);
        var index = cluster.Nodes.ToList().IndexOf(minority) + 1;
        var majority = cluster.Nodes.Where(n => n != minority).ToList();
        lab.Cut(index);
        var clock = Stopwatch.StartNew();
        output.WriteLine($"cut {minority.Name} off the cluster network (the ledger runs on {leader.Node}, epoch {leader.Epoch})");

        // Until it downs itself, the minority answers every write and every lease request with 503, never with a yes.
        // The window lasts at least Window, and until the majority has acknowledged MajorityWrites writes (which must
        // happen within MajorityDeadline).
        var minorityAnswers = new List<HttpStatusCode>();
        var majorityAcks = 0;
        for (var i = 0; clock.Elapsed < Window || majorityAcks < MajorityWrites; i++)
        {
            Assert.True(clock.Elapsed < MajorityDeadline,
                $"the majority acknowledged only {majorityAcks} writes in {MajorityDeadline.TotalSeconds:0} s after the cut (needs {MajorityWrites})");
            if (cluster.IsRunning(minority))
            {
                minorityAnswers.Add(await Put(minority, $"minority-{i}"));
                try
                {
                    using var lease = await cluster.Http.PostAsync(cluster.Url(minority, $"/v1/images/part-img-{i}/lease"),
                        LocalCluster.Json(new { node = minority.Name, sizeBytes = GiB }));
                    minorityAnswers.Add(lease.StatusCode);
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException) { minorityAnswers.Add(0); }
            }
            if (await Put(majority[i % 2], $"majority-{i}") is HttpStatusCode.Created) { majorityAcks++; acknowledged.Add($"majority-{i}"); }
            await Task.Delay(100);
        }
        output.WriteLine($"minority answers (0 = process gone): {string.Join(", ", minorityAnswers.GroupBy(s => s).Select(g => $"{(int)g.Key} x{g.Count()}"))}; majority acknowledged {majorityAcks}");
        Assert.Contains(HttpStatusCode.ServiceUnavailable, minorityAnswers);
        Assert.DoesNotContain(minorityAnswers, s => (int)s is >= 200 and < 300);
        Assert.True(majorityAcks >= MajorityWrites, $"the majority acknowledged only {majorityAcks} writes");
        var next = await cluster.LeaderAsync(majority[0]);
        Assert.Equal(leader.Node, next.Node); // the majority kept its ledger

        // The minority must down itself (SBR: its ActorSystem terminates and the process exits) while still cut off;
        // nobody stops it for it. Then heal and restart it.
        var remaining = DownDeadline - clock.Elapsed;
        var exit = await cluster.WaitForExitAsync(minority, remaining > TimeSpan.Zero ? remaining : TimeSpan.FromSeconds(1));
        Assert.True(exit is not null,
            $"{minority.Name} did not down itself within {DownDeadline.TotalSeconds:0} s of the cut; its log:\n{cluster.Tail(minority, 60)}");
        // Downed, not crashed: its own log says the cluster marked it Down, and it exited 3 (removed from the cluster:
        // a service manager restarts it), not Akka.Hosting's -1 (255), which races Program.cs's hook.
        var log = File.ReadAllText(cluster.LogPath(minority));
        Assert.True(log.Contains("has been marked as DOWN", StringComparison.Ordinal) && exit == 3,
            $"{minority.Name} exited with {exit} (3 expected, after being marked Down); its log:\n{cluster.Tail(minority, 60)}");
        output.WriteLine($"{minority.Name} downed itself and exited (code {exit}) {clock.Elapsed.TotalSeconds:0.0}s after the cut; healing and restarting it as a service manager would");
        lab.Heal(index);
        cluster.Start(minority);
        await cluster.WaitReadyAsync([minority], TimeSpan.FromSeconds(90));
        Assert.Equal(HttpStatusCode.Created, await Put(minority, "after-heal"));
        acknowledged.Add("after-heal");

        var list = await cluster.Http.GetFromJsonAsync<JsonElement>(cluster.Url(minority, "/v1/volumes/Volume1/reservations"));
        var ids = list.GetProperty("reservations").EnumerateArray().Select(r => r.GetProperty("consumerId").GetString()!).ToHashSet();
        foreach (var id in acknowledged) Assert.Contains(id, ids);
        Assert.DoesNotContain(ids, id => id.StartsWith("minority-"));
        var images = await cluster.Http.GetFromJsonAsync<JsonElement>(cluster.Url(minority, "/v1/images"));
        Assert.DoesNotContain(images.GetProperty("leases").EnumerateArray(), l => l.GetProperty("imageId").GetString()!.StartsWith("part-img-"));
        Console.WriteLine($"[partition] {minority.Name} cut off: {minorityAnswers.Count(a => a == HttpStatusCode.ServiceUnavailable)} writes/leases refused with 503 on the minority, none granted; majority acknowledged {majorityAcks}; rejoined after healing");
    }
}
