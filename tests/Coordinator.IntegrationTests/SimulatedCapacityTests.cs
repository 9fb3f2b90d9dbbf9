using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Coordinator.HyperV.Simulated;
using Coordinator.IntegrationTests.Harness;
using Xunit.Abstractions;

namespace Coordinator.IntegrationTests;

/// <summary>
/// The blueprint's own example on a fresh simulated cluster, configured as scripts/cluster.sh configures it (the
/// simulated cluster database where the product puts it by default): a 500 GiB CSV and two 200 GiB instances leave
/// exactly 100 GiB free. The simulated cluster service's shared state lives beside the CSV folder, so the volume's
/// measurement finds no usage that belongs to no reservation.
/// </summary>
public sealed class SimulatedCapacityTests(ITestOutputHelper output) : IDisposable
{
    private const long GiB = 1L << 30;
    private readonly LocalCluster _cluster = new(2, defaultSimulatedDatabase: true);

    public void Dispose() => _cluster.Dispose();

    [Fact]
    public async Task The_blueprint_example_leaves_exactly_100_GiB_free_on_a_fresh_simulated_cluster()
    {
        var volume = Path.Combine(_cluster.CsvRoot, "Volume1");
        foreach (var n in _cluster.Nodes)
            _cluster.AppendConfig(n, $$"""coordinator.csv.volumes = [ { name = "Volume1", path = "{{volume.Replace("\\", "\\\\")}}", capacity = 500GiB, headroom = 0 } ]""");
        _cluster.StartAll();
        await _cluster.WaitReadyAsync(_cluster.Nodes, TimeSpan.FromSeconds(90));
        // As an admin: one node's API claims for both nodes (an agent acts only as its own node).
        _cluster.Http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", LocalCluster.AdminToken);

        foreach (var (id, node) in new[] { ("instance-a", "hv01"), ("instance-b", "hv02") })
        {
            using var r = await _cluster.Http.PutAsync(_cluster.Url(_cluster.Nodes[0], $"/v1/volumes/Volume1/reservations/{id}"),
                LocalCluster.Json(new { node, bytes = 200 * GiB }));
            Assert.True(r.StatusCode == HttpStatusCode.Created, $"{id}: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
        }

        using var scan = await _cluster.Http.PostAsync(_cluster.Url(_cluster.Nodes[1], "/v1/volumes/Volume1/rescan"), null);
        var body = await scan.Content.ReadAsStringAsync();
        output.WriteLine(body);
        Assert.Equal(HttpStatusCode.OK, scan.StatusCode);
        var view = JsonSerializer.Deserialize<JsonElement>(body);
        Assert.Equal(500 * GiB, view.GetProperty("capacityBytes").GetInt64());
        Assert.Equal(400 * GiB, view.GetProperty("reservedBytes").GetInt64());
        Assert.Equal(0, view.GetProperty("unownedBytes").GetInt64());
        Assert.Equal(107_374_182_400, view.GetProperty("freeBytes").GetInt64());

        // Both node processes share one simulated cluster database, beside the CSV folder and not in it.
        Assert.Equal(SimulatedClusterDatabase.PathForCsv(volume), _cluster.SimulatedDatabasePath);
        Assert.True(File.Exists(_cluster.SimulatedDatabasePath));
        Assert.Equal(["hv01", "hv02"], new SimulatedClusterDatabase(_cluster.SimulatedDatabasePath).ListNodes().Select(n => n.Name));
        Assert.Empty(Directory.EnumerateFileSystemEntries(volume, ".simcluster*", SearchOption.AllDirectories));
    }
}
