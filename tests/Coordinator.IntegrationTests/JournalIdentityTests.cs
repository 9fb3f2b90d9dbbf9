using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using Coordinator.IntegrationTests.Harness;
using Microsoft.Data.Sqlite;
using Xunit.Abstractions;

namespace Coordinator.IntegrationTests;

/// <summary>
/// Journal identity with real node processes: a node whose journal is not the cluster's (its own per-node SQLite file,
/// the product's default) is refused at join and exits non-zero with an error that names the setting to fix; nodes on
/// one shared journal form a cluster and share one cluster id; a journal of a newer format stops a node at start.
/// </summary>
public sealed class JournalIdentityTests(ITestOutputHelper output)
{
    private static readonly Regex ClusterIdLine = new(@"belongs to cluster (?<id>[0-9a-f\-]{36})", RegexOptions.Compiled);

    [Fact]
    public async Task A_node_with_its_own_SQLite_journal_is_refused_at_join_and_exits_naming_the_setting()
    {
        using var cluster = new LocalCluster(2);
        var (first, second) = (cluster.Nodes[0], cluster.Nodes[1]);
        // The product's default before journal identity: each node its own <data-dir>/ledger.db.
        cluster.AppendConfig(second, $"coordinator.persistence.connection-string = \"Data Source={Path.Combine(cluster.Root, "hv02-own-ledger.db")}\"");
        cluster.Start(first);
        await cluster.WaitReadyAsync([first], TimeSpan.FromSeconds(90));

        cluster.Start(second);
        var exit = await cluster.WaitForExitAsync(second, TimeSpan.FromSeconds(90));
        var log = File.ReadAllText(cluster.LogPath(second));
        output.WriteLine($"{second.Name} exit code {exit?.ToString() ?? "(still running)"}; log tail:\n{cluster.Tail(second, 25)}");
        Assert.Equal(4, exit); // a configuration error, not a downing (3): restarting it cannot help
        Assert.Contains("coordinator.persistence.connection-string", log);
        Assert.Contains("The node exits: it was refused by the cluster", log);

        // The cluster is the first node alone, still serving; the refused node is not a member any more.
        await cluster.WaitReadyAsync([first], TimeSpan.FromSeconds(30));
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        JsonElement members;
        do
        {
            members = await cluster.Http.GetFromJsonAsync<JsonElement>(cluster.Url(first, "/cluster/members"));
            if (members.GetProperty("members").GetArrayLength() == 1) break;
            await Task.Delay(250);
        } while (DateTime.UtcNow < deadline);
        Assert.Equal([first.Name], members.GetProperty("members").EnumerateArray().Select(m => m.GetProperty("node").GetString()));
        Assert.Equal(HttpStatusCode.Created, (await cluster.Http.PutAsync(cluster.Url(first, "/v1/volumes/Volume1/reservations/after-refusal"),
            LocalCluster.Json(new { node = first.Name, bytes = 1L << 20 }))).StatusCode);
    }

    [Fact]
    public async Task Nodes_on_one_shared_journal_form_a_cluster_and_share_one_cluster_id()
    {
        using var cluster = new LocalCluster(2);
        cluster.StartAll(); // at once: both race for the identity row of the empty journal
        await cluster.WaitReadyAsync(cluster.Nodes, TimeSpan.FromSeconds(90));

        var ids = cluster.Nodes.Select(n => ClusterIdLine.Match(File.ReadAllText(cluster.LogPath(n))))
            .Select(m => Assert.IsType<Match>(m).Success ? m.Groups["id"].Value : "(none)").ToList();
        output.WriteLine($"cluster ids in the logs: {string.Join(", ", ids)}");
        Assert.Single(ids.Distinct());
        Assert.NotEqual("(none)", ids[0]);

        var members = await cluster.Http.GetFromJsonAsync<JsonElement>(cluster.Url(cluster.Nodes[1], "/cluster/members"));
        var list = members.GetProperty("members").EnumerateArray().ToList();
        Assert.Equal(2, list.Count(m => m.GetProperty("status").GetString() == "Up"));
        Assert.All(list, m => Assert.Contains($"journal:{ids[0]}", m.GetProperty("roles").EnumerateArray().Select(r => r.GetString())));

        using var db = new SqliteConnection($"Data Source={cluster.JournalPath};Pooling=False");
        db.Open();
        using var cmd = db.CreateCommand();
        cmd.CommandText = "SELECT cluster_id || ' ' || format_version FROM coordinator_identity";
        Assert.Equal($"{ids[0]} 1", cmd.ExecuteScalar());
    }

    [Fact]
    public async Task A_journal_of_a_newer_format_stops_the_node_at_start_with_a_clear_error()
    {
        using var cluster = new LocalCluster(1);
        var node = cluster.Nodes[0];
        using (var db = new SqliteConnection($"Data Source={cluster.JournalPath};Pooling=False"))
        {
            db.Open();
            using var cmd = db.CreateCommand();
            cmd.CommandText = "CREATE TABLE coordinator_identity (id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1), cluster_id TEXT NOT NULL, " +
                              "format_version INTEGER NOT NULL, created_at TEXT NOT NULL); " +
                              $"INSERT INTO coordinator_identity VALUES (1, '{Guid.NewGuid()}', 2, '2027-01-01T00:00:00Z')";
            cmd.ExecuteNonQuery();
        }
        cluster.Start(node);
        var exit = await cluster.WaitForExitAsync(node, TimeSpan.FromSeconds(60));
        output.WriteLine(cluster.Tail(node, 10));
        Assert.NotNull(exit);
        Assert.NotEqual(0, exit);
        var log = File.ReadAllText(cluster.LogPath(node));
        Assert.Contains("format version 2, newer than the 1 this coordinator supports", log);
    }
}
