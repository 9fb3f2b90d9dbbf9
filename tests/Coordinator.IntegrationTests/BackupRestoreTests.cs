using System.IO.Compression;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Coordinator.IntegrationTests.Harness;
using Xunit.Abstractions;

namespace Coordinator.IntegrationTests;

/// <summary>
/// Backup and restore as an operator runs them (etcdctl snapshot save/restore): a filled three-node cluster,
/// <c>coordctl backup FILE</c> online, every node stopped, the journal wiped, <c>coordctl restore FILE</c>, the nodes
/// started again: every reservation, lease, cached image and VM is back and the epoch is higher. Restore refuses a
/// journal that is not empty and a file that was changed, each with its exit code, changing nothing.
/// </summary>
public sealed class BackupRestoreTests(ITestOutputHelper output)
{
    private const long MiB = 1L << 20;
    private const long GiB = 1L << 30;

    [Fact]
    public async Task Backup_wipe_restore_brings_back_every_reservation_lease_cached_image_and_vm_with_a_higher_epoch()
    {
        using var cluster = new LocalCluster(3, """
            coordinator.hyperv.reconcile-interval = 2s
            coordinator.images.lease-ttl = 60s
            """);
        cluster.Http.Timeout = TimeSpan.FromMinutes(2);
        cluster.StartAll();
        await cluster.WaitReadyAsync(cluster.Nodes, TimeSpan.FromSeconds(120));
        var nodes = cluster.Nodes;

        // ---- fill: reservations through every node, a cached image, an open lease, VMs on the simulated back-end
        for (var i = 0; i < 30; i++)
        {
            using var r = await cluster.Http.PutAsync(cluster.Url(nodes[i % 3], $"/v1/volumes/Volume1/reservations/inst-{i:00}"),
                LocalCluster.Json(new { node = nodes[i % 3].Name, bytes = (i + 1) * 100 * MiB, imageId = i < 5 ? "img-cached" : null }));
            Assert.Equal(HttpStatusCode.Created, r.StatusCode);
        }
        var (granted, grant) = await Post(cluster, nodes[0], "/v1/images/img-cached/lease", new { node = nodes[0].Name, sizeBytes = 64 * MiB });
        Assert.Equal(HttpStatusCode.Created, granted);
        // Completed by its holder (another node's agent may not: 403 not-lease-holder).
        var (completed, _) = await Post(cluster, nodes[0], $"/v1/images/img-cached/lease/{grant.GetProperty("leaseId").GetString()}/complete",
            new { fencingToken = grant.GetProperty("fencingToken").GetInt64(), sizeBytes = 64 * MiB, checksum = "0123456789abcdef" });
        Assert.Equal(HttpStatusCode.OK, completed);
        var (openGranted, openLease) = await Post(cluster, nodes[2], "/v1/images/img-open/lease", new { node = nodes[2].Name, sizeBytes = 32 * MiB });
        Assert.Equal(HttpStatusCode.Created, openGranted);
        foreach (var (vm, node) in new[] { ("vm-a", nodes[0]), ("vm-b", nodes[1]) })
        {
            var (spawned, body) = await Post(cluster, node, "/v1/vms", new { name = vm, memoryMb = 1024, vcpus = 1, diskBytes = GiB });
            Assert.True(spawned == HttpStatusCode.Created, $"spawn {vm}: {(int)spawned} {body}");
        }

        var before = await StateOf(cluster, nodes[1]);
        var epochBefore = (await cluster.LeaderAsync(nodes[0])).Epoch;
        output.WriteLine($"before: epoch {epochBefore}, {before.Reservations.Count} reservations, images [{string.Join(", ", before.Cached)}], " +
                         $"leases [{string.Join(", ", before.Leases)}], VMs [{string.Join(", ", before.Vms)}]");
        Assert.Equal(30 + 2 + 2, before.Reservations.Count); // the VMs' disks, the cached image and the lease's grant are claims too
        Assert.Contains("img-cached", before.Cached);
        Assert.Contains("img-open", before.Leases);
        Assert.Equal(["vm-a", "vm-b"], before.Vms);

        // ---- backup, online, through a node that is not necessarily the leader's
        var file = Path.Combine(cluster.Root, "backup", "coordinator.json.gz");
        Directory.CreateDirectory(Path.GetDirectoryName(file)!);
        var noToken = await Coordctl.RunAsync("backup", file, "--endpoint", CoordctlRun.Endpoint(cluster, nodes[1]));
        Assert.Equal(1, noToken.ExitCode); // the admin token is required
        Assert.False(File.Exists(file));
        var backup = await Coordctl.RunAsync("backup", file, "--endpoint", CoordctlRun.Endpoint(cluster, nodes[1]), "--token", LocalCluster.AdminToken);
        output.WriteLine($"$ coordctl backup\n{backup}");
        Assert.Equal(0, backup.ExitCode);
        Assert.True(File.Exists(file));
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(file)!, "*.tmp")); // written via a temporary file, renamed
        var clusterId = Regex.Match(backup.Stdout, @"cluster id:\s+(?<id>[0-9a-f\-]{36})").Groups["id"].Value;
        Assert.NotEmpty(clusterId);
        Assert.Matches(@"sequence number:\s+\d+", backup.Stdout);
        Assert.Matches(@"checksum:\s+sha256:[0-9a-f]{64}", backup.Stdout);
        Assert.Contains("34 reservations, 1 cached images, 1 leases, 2 VMs", backup.Stdout);

        // ---- stop every node (at once, as an operator stopping the service everywhere)
        await Task.WhenAll(nodes.Select(n => Task.Run(() => cluster.Stop(n, TimeSpan.FromSeconds(30)))));

        // Refused: restore into the journal that is still there (not empty). Nothing changes.
        var journalBytes = SqliteFiles(cluster).ToDictionary(f => f, f => SHA256.HashData(File.ReadAllBytes(f)));
        var intoFull = await Coordctl.RunAsync("restore", file, "--config", cluster.ConfigPath(nodes[0]));
        output.WriteLine($"$ coordctl restore (journal not empty)\n{intoFull}");
        Assert.Equal(4, intoFull.ExitCode);
        Assert.Contains("not empty", intoFull.Stderr);
        Assert.All(journalBytes, kv => Assert.Equal(kv.Value, SHA256.HashData(File.ReadAllBytes(kv.Key))));

        // ---- wipe the journal
        foreach (var f in SqliteFiles(cluster)) File.Delete(f);

        // Refused: a tampered file (one reservation made smaller). Nothing is written, not even an empty journal.
        var tampered = Path.Combine(cluster.Root, "backup", "tampered.json.gz");
        var doc = JsonNode.Parse(Gunzip(File.ReadAllBytes(file)))!.AsObject();
        var reservation = doc["snapshot"]!["volumes"]![0]!["reservations"]![0]!;
        reservation["bytes"] = 1;
        File.WriteAllBytes(tampered, Gzip(Encoding.UTF8.GetBytes(doc.ToJsonString())));
        var bad = await Coordctl.RunAsync("restore", tampered, "--config", cluster.ConfigPath(nodes[0]));
        output.WriteLine($"$ coordctl restore (tampered)\n{bad}");
        Assert.Equal(5, bad.ExitCode);
        Assert.Contains("checksum", bad.Stderr);
        Assert.False(File.Exists(cluster.JournalPath));

        // ---- restore into the empty journal, start every node
        var restore = await Coordctl.RunAsync("restore", file, "--config", cluster.ConfigPath(nodes[0]));
        output.WriteLine($"$ coordctl restore\n{restore}");
        Assert.Equal(0, restore.ExitCode);
        Assert.Contains(clusterId, restore.Stdout);

        cluster.StartAll();
        await cluster.WaitReadyAsync(nodes, TimeSpan.FromSeconds(120));
        foreach (var n in nodes)
        {
            var ids = Regex.Matches(File.ReadAllText(cluster.LogPath(n)), @"belongs to cluster (?<id>[0-9a-f\-]{36})");
            Assert.Equal(clusterId, ids[^1].Groups["id"].Value); // the backup's cluster, not a new one
        }

        var epochAfter = (await cluster.LeaderAsync(nodes[2])).Epoch;
        var after = await StateOf(cluster, nodes[2]);
        output.WriteLine($"after: epoch {epochAfter}, {after.Reservations.Count} reservations, images [{string.Join(", ", after.Cached)}], " +
                         $"leases [{string.Join(", ", after.Leases)}], VMs [{string.Join(", ", after.Vms)}]");
        Assert.True(epochAfter > epochBefore, $"epoch {epochAfter} after the restore, {epochBefore} before");
        Assert.Equal(before.Reservations, after.Reservations);
        Assert.Equal(before.Cached, after.Cached);
        Assert.Equal(before.Leases, after.Leases);
        Assert.Equal(before.Vms, after.Vms);

        // The restored ledger goes on: the open lease can still be completed with its fencing token, and new claims land.
        // (by its holder, nodes[2], whose identity the restored lease still names).
        var (openDone, _) = await Post(cluster, nodes[2], $"/v1/images/img-open/lease/{openLease.GetProperty("leaseId").GetString()}/complete",
            new { fencingToken = openLease.GetProperty("fencingToken").GetInt64(), sizeBytes = 32 * MiB, checksum = "fedcba9876543210" });
        Assert.Equal(HttpStatusCode.OK, openDone);
        using var next = await cluster.Http.PutAsync(cluster.Url(nodes[1], "/v1/volumes/Volume1/reservations/after-restore"),
            LocalCluster.Json(new { node = nodes[1].Name, bytes = GiB }));
        Assert.Equal(HttpStatusCode.Created, next.StatusCode);
    }

    private sealed record State(List<string> Reservations, List<string> Cached, List<string> Leases, List<string> Vms);

    private static async Task<State> StateOf(LocalCluster cluster, NodeInfo via)
    {
        var reservations = new List<string>();
        foreach (var volume in new[] { "Volume1", "Volume2" })
        {
            var list = await cluster.Http.GetFromJsonAsync<JsonElement>(cluster.Url(via, $"/v1/volumes/{volume}/reservations"));
            // A VM's claim names the node that hosts it, which the simulated cluster service may change while nodes are
            // down (it fails VMs over, as WSFC would): that node is compared with the inventory below instead.
            reservations.AddRange(list.GetProperty("reservations").EnumerateArray().Select(r =>
                $"{volume}/{r.GetProperty("consumerId").GetString()} " +
                $"{(r.GetProperty("consumerId").GetString()!.StartsWith("vm-", StringComparison.Ordinal) ? "(vm host)" : r.GetProperty("node").GetString())} " +
                $"{r.GetProperty("bytes").GetInt64()} {(r.TryGetProperty("imageId", out var img) ? img.ToString() : "")}"));
        }
        var images = await cluster.Http.GetFromJsonAsync<JsonElement>(cluster.Url(via, "/v1/images"));
        var cached = images.GetProperty("images").EnumerateArray()
            .Select(i => $"{i.GetProperty("imageId").GetString()}").Order().ToList();
        var leases = images.GetProperty("leases").EnumerateArray()
            .Select(l => $"{l.GetProperty("imageId").GetString()}").Order().ToList();
        var vms = await cluster.Http.GetFromJsonAsync<JsonElement>(cluster.Url(via, "/v1/vms"));
        var vmNames = vms.GetProperty("vms").EnumerateArray().Select(v => v.GetProperty("name").GetString()!).Order().ToList();
        // Each VM's disk claim is held by the node the inventory says hosts it.
        var claims = (await cluster.Http.GetFromJsonAsync<JsonElement>(cluster.Url(via, "/v1/volumes/Volume1/reservations")))
            .GetProperty("reservations").EnumerateArray().ToDictionary(r => r.GetProperty("consumerId").GetString()!, r => r.GetProperty("node").GetString());
        foreach (var v in vms.GetProperty("vms").EnumerateArray())
            Assert.Equal(v.GetProperty("node").GetString(), claims[v.GetProperty("name").GetString()!]);
        return new State(reservations.Order().ToList(), cached, leases, vmNames);
    }

    private static async Task<(HttpStatusCode Status, JsonElement Body)> Post(LocalCluster cluster, NodeInfo via, string path, object body)
    {
        using var r = await cluster.Http.PostAsync(cluster.Url(via, path), LocalCluster.Json(body));
        var text = await r.Content.ReadAsStringAsync();
        return (r.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    /// <summary>The journal's SQLite file and its write-ahead log files, as they exist.</summary>
    private static IEnumerable<string> SqliteFiles(LocalCluster cluster) =>
        new[] { "", "-wal", "-shm", "-journal" }.Select(s => cluster.JournalPath + s).Where(File.Exists).ToList();

    private static byte[] Gunzip(byte[] bytes)
    {
        using var gz = new GZipStream(new MemoryStream(bytes), CompressionMode.Decompress);
        using var ms = new MemoryStream();
        gz.CopyTo(ms);
        return ms.ToArray();
    }

    private static byte[] Gzip(byte[] bytes)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(bytes);
        return ms.ToArray();
    }
}
