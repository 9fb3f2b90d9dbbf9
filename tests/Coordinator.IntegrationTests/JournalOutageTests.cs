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
        var (pg, whyNot) = ThrowawayPostgres.TryStart();
        Skip.If(pg is null, whyNot);
        using var _ = pg;
        using var cluster = new LocalCluster(3, $$"""
            coordinator.persistence { provider = postgresql, connection-string = "{{pg!.ConnectionString}}" }
            coordinator.ask-timeout = 3s
            """);
        cluster.Http.Timeout = TimeSpan.FromSeconds(15);
        cluster.StartAll();
        await cluster.WaitReadyAsync(cluster.Nodes, TimeSpan.FromSeconds(120));

        async Task<HttpStatusCode> Put(string id, int node) =>
            (await cluster.Http.PutAsync(cluster.Url(cluster.Nodes[node % 3], $"/v1/volumes/Volume1/reservations/{id}"),
                LocalCluster.Json(new { node = "hv01", bytes = GiB }))).StatusCode;

        for (var i = 0; i < 10; i++) Assert.Equal(HttpStatusCode.Created, await Put($"before-{i}", i));

        pg.Pause();
        var during = new List<(string Id, HttpStatusCode Status)>();
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(15))
        {
            var id = $"during-{during.Count}";
            during.Add((id, await Put(id, during.Count)));
        }
        output.WriteLine($"during the outage: {string.Join(", ", during.GroupBy(d => d.Status).Select(g => $"{(int)g.Key} x{g.Count()}"))}");
        // A request may be acknowledged only if it was persisted: with the database down, none can be.
        Assert.DoesNotContain(during, d => d.Status is HttpStatusCode.Created or HttpStatusCode.OK);
        Assert.Contains(during, d => d.Status == HttpStatusCode.ServiceUnavailable);

        pg.Resume();
        clock.Restart();
        HttpStatusCode after;
        do
        {
            after = await Put("after", 0);
            if (after != HttpStatusCode.Created) await Task.Delay(500);
        } while (after != HttpStatusCode.Created && clock.Elapsed < TimeSpan.FromSeconds(60));
        Assert.Equal(HttpStatusCode.Created, after);
        output.WriteLine($"the ledger accepted writes again {clock.Elapsed.TotalSeconds:0.0}s after the database returned");
        Console.WriteLine($"[journal outage] PostgreSQL down 15s: {during.Count} writes refused (503), none acknowledged; recovered {clock.Elapsed.TotalSeconds:0.0}s after it returned");

        var list = await cluster.Http.GetFromJsonAsync<JsonElement>(cluster.Url(cluster.Nodes[1], "/v1/volumes/Volume1/reservations"));
        var ids = list.GetProperty("reservations").EnumerateArray().Select(r => r.GetProperty("consumerId").GetString()).ToHashSet();
        for (var i = 0; i < 10; i++) Assert.Contains($"before-{i}", ids);
        Assert.Contains("after", ids);
        Assert.DoesNotContain(ids, id => id!.StartsWith("during-"));
    }
}
