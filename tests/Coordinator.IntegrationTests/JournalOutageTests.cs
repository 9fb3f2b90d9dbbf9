using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Coordinator.IntegrationTests.Harness;
using Xunit.Abstractions;

namespace Coordinator.IntegrationTests;

/// <summary>
/// The journal taken away under a running cluster (PostgreSQL stopped): the ledger answers 503 and acknowledges
/// nothing it could not persist; when the database returns, the ledger recovers with everything acknowledged before.
/// </summary>
public sealed class JournalOutageTests(ITestOutputHelper output)
{
    private const long GiB = 1L << 30;

    [SkippableFact]
    public async Task A_lost_journal_gives_503_never_an_acknowledgement_and_the_ledger_recovers_when_it_returns()
    {
        using var pg = ThrowawayPostgres.Start();
        using var cluster = new LocalCluster(3, $$"""
            coordinator.persistence { provider = postgresql, connection-string = "{{pg.ConnectionString}}" }
            coordinator.ask-timeout = 3s
            """);
        cluster.Http.Timeout = TimeSpan.FromSeconds(15);
        // As an admin: every node writes in hv01's name (an agent acts only as its own node).
        cluster.Http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", LocalCluster.AdminToken);
        cluster.StartAll();
        await cluster.WaitReadyAsync(cluster.Nodes, TimeSpan.FromSeconds(120));

        // 0: no answer within the client's timeout (not an acknowledgement either).
        async Task<HttpStatusCode> Put(string id, int node)
        {
            try
            {
                using var r = await cluster.Http.PutAsync(cluster.Url(cluster.Nodes[node % 3], $"/v1/volumes/Volume1/reservations/{id}"),
                    LocalCluster.Json(new { node = "hv01", bytes = GiB }));
                return r.StatusCode;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException) { return 0; }
        }

        // Ten acknowledged writes before the outage; a write may be retried (same request: 200 unchanged if it had
        // been persisted) until a generous deadline, so a slow start on a loaded machine is not a failure.
        var deadline = Stopwatch.StartNew();
        for (var i = 0; i < 10; i++)
        {
            HttpStatusCode before;
            while ((before = await Put($"before-{i}", i)) is not (HttpStatusCode.Created or HttpStatusCode.OK))
            {
                Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(120), $"before-{i} not acknowledged within 120 s (last answer {(int)before})");
                await Task.Delay(250);
            }
        }

        // The outage lasts until the ledger has refused at least three writes with 503 and at least 10 s have passed
        // (so that writes meet both the failed journal and the restarted ledger); it fails past 90 s.
        pg.Pause();
        var during = new List<(string Id, HttpStatusCode Status)>();
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(10) || during.Count(d => d.Status == HttpStatusCode.ServiceUnavailable) < 3)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90),
                $"fewer than three 503s within 90 s of the outage: {string.Join(", ", during.GroupBy(d => d.Status).Select(g => $"{(int)g.Key} x{g.Count()}"))}");
            var id = $"during-{during.Count}";
            during.Add((id, await Put(id, during.Count)));
        }
        var outage = clock.Elapsed;
        output.WriteLine($"during the outage ({outage.TotalSeconds:0.0}s): {string.Join(", ", during.GroupBy(d => d.Status).Select(g => $"{(int)g.Key} x{g.Count()}"))}");
        // A request may be acknowledged only if it was persisted: with the database down, none can be.
        Assert.DoesNotContain(during, d => d.Status is HttpStatusCode.Created or HttpStatusCode.OK);
        Assert.Contains(during, d => d.Status == HttpStatusCode.ServiceUnavailable);

        pg.Resume();
        clock.Restart();
        // Retried until acknowledged (a retry of a write that was persisted but not answered is 200 unchanged).
        HttpStatusCode after;
        while ((after = await Put("after", 0)) is not (HttpStatusCode.Created or HttpStatusCode.OK))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(120), $"no write acknowledged within 120 s of the database's return (last answer {(int)after})");
            await Task.Delay(500);
        }
        output.WriteLine($"the ledger accepted writes again {clock.Elapsed.TotalSeconds:0.0}s after the database returned");
        Console.WriteLine($"[journal outage] PostgreSQL down {outage.TotalSeconds:0}s: {during.Count} writes refused (503), none acknowledged; recovered {clock.Elapsed.TotalSeconds:0.0}s after it returned");

        var list = await cluster.Http.GetFromJsonAsync<JsonElement>(cluster.Url(cluster.Nodes[1], "/v1/volumes/Volume1/reservations"));
        var ids = list.GetProperty("reservations").EnumerateArray().Select(r => r.GetProperty("consumerId").GetString()).ToHashSet();
        for (var i = 0; i < 10; i++) Assert.Contains($"before-{i}", ids);
        Assert.Contains("after", ids);
        Assert.DoesNotContain(ids, id => id!.StartsWith("during-"));
    }
}
