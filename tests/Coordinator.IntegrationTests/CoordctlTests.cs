using System.Net.Http.Json;
using System.Text.Json;
using Coordinator.IntegrationTests.Harness;
using Xunit.Abstractions;

namespace Coordinator.IntegrationTests;

/// <summary>The real coordctl against a real three-node cluster.</summary>
public sealed class CoordctlTests(ITestOutputHelper output) : IAsyncLifetime
{
    private LocalCluster _cluster = null!;

    public async Task InitializeAsync()
    {
        _cluster = new LocalCluster(3);
        _cluster.StartAll();
        await _cluster.WaitReadyAsync(_cluster.Nodes, TimeSpan.FromSeconds(90));
    }

    private string Endpoint(NodeInfo n) => _cluster.Url(n, "").ToString().TrimEnd('/');

    private async Task<Coordctl.Result> Run(NodeInfo via, params string[] args)
    {
        var r = await Coordctl.RunAsync([.. args, "--endpoint", Endpoint(via)]);
        output.WriteLine($"$ coordctl {string.Join(' ', args)}  -> {r.ExitCode}\n{r.Stdout}{r.Stderr}");
        return r;
    }

    private async Task<JsonElement> Members(NodeInfo via) =>
        JsonDocument.Parse((await Run(via, "cluster", "show", "--json")).Stdout).RootElement.Clone();

    [Fact]
    public async Task Show_json_and_refusals_without_the_admin_token()
    {
        var via = _cluster.Nodes[0];
        var show = await Run(via, "cluster", "show");
        Assert.Equal(0, show.ExitCode);
        foreach (var n in _cluster.Nodes) Assert.Contains(n.Name, show.Stdout);
        Assert.Contains("singleton", show.Stdout);
        var members = await Members(via);
        Assert.Equal(3, members.GetProperty("members").EnumerateArray().Count(m => m.GetProperty("status").GetString() == "Up"));
        var singleton = members.GetProperty("singletonNode").GetString();
        Assert.Equal((await _cluster.LeaderAsync(via)).Node, singleton);
        Assert.Single(members.GetProperty("members").EnumerateArray(), m => m.GetProperty("singleton").GetBoolean());

        // --json prints what the API returns.
        foreach (var (verb, path) in new[] { ("volumes", "/v1/volumes"), ("nodes", "/v1/nodes") })
        {
            var cli = JsonDocument.Parse((await Run(via, verb, "--json")).Stdout).RootElement;
            var api = await _cluster.Http.GetFromJsonAsync<JsonElement>(_cluster.Url(via, path));
            Assert.Equal(Strip(api), Strip(cli));
        }
        var apiMembers = await _cluster.Http.GetFromJsonAsync<JsonElement>(_cluster.Url(via, "/cluster/members"));
        Assert.Equal(Strip(apiMembers), Strip(members));

        // Without the token, and with a wrong one, mutating routes are refused (exit 1) and change nothing.
        var victim = _cluster.Nodes[2].Name;
        foreach (var args in new[] { new[] { "cluster", "leave", victim }, ["cluster", "down", victim], ["drain", victim],
                     ["cluster", "leave", victim, "--token", "wrong"], ["cluster", "down", victim, "--token", "wrong"] })
        {
            var r = await Run(via, args);
            Assert.Equal(1, r.ExitCode);
            Assert.Matches("refused \\((401|403)\\)", r.Stderr);
        }
        await Task.Delay(1000);
        Assert.Equal(3, (await Members(via)).GetProperty("members").EnumerateArray().Count(m => m.GetProperty("status").GetString() == "Up"));

        // The typed client: a refusal is a result carrying the problem, not an exception.
        using (var client = new Coordinator.Client.CoordinatorClient(_cluster.Url(via, "/")))
        {
            var ok = await client.ReserveAsync("Volume1", "cli-vm", "hv01", 1L << 30);
            Assert.True(ok.IsSuccess);
            Assert.Equal("created", ok.Value!.Status);
            var again = await client.ReserveAsync("Volume1", "cli-vm", "hv01", 1L << 30);
            Assert.Equal("unchanged", again.Value!.Status);
            var refused = await client.ReserveAsync("Volume1", "cli-big", "hv01", 1L << 50);
            Assert.False(refused.IsSuccess);
            Assert.Equal(409, refused.Status);
            Assert.Equal("insufficient-space", refused.Problem!.Slug);
            Assert.True(refused.Problem.Long("freeBytes") > 0);
            var reservations = await Run(via, "reservations", "Volume1");
            Assert.Contains("cli-vm", reservations.Stdout);
            Assert.Contains("1 GiB", reservations.Stdout);
        }

        Assert.Equal(2, (await Run(via, "no-such-verb")).ExitCode);
        Assert.Equal(3, (await Coordctl.RunAsync("volumes", "--endpoint", "http://127.0.0.1:1")).ExitCode);
    }

    [Fact]
    public async Task Leave_moves_the_singleton_and_down_removes_a_killed_node()
    {
        var token = new[] { "--token", LocalCluster.AdminToken };
        var via = _cluster.Nodes[1];
        var before = (await Members(via)).GetProperty("singletonNode").GetString()!;
        var oldest = (await Members(via)).GetProperty("members").EnumerateArray().Single(m => m.GetProperty("oldest").GetBoolean()).GetProperty("node").GetString()!;
        Assert.Equal(before, oldest);

        Assert.Equal(0, (await Run(via, ["cluster", "leave", oldest, .. token])).ExitCode);
        var survivor = _cluster.Nodes.First(n => n.Name != oldest);
        string? after = null;
        for (var i = 0; i < 60; i++)
        {
            try
            {
                var m = await Members(survivor);
                after = m.GetProperty("singletonNode").ValueKind == JsonValueKind.String ? m.GetProperty("singletonNode").GetString() : null;
                if (after is not null && after != oldest && m.GetProperty("members").EnumerateArray().All(x => x.GetProperty("node").GetString() != oldest)) break;
            }
            catch (JsonException) { }
            await Task.Delay(500);
        }
        Assert.NotNull(after);
        Assert.NotEqual(oldest, after);
        Assert.Contains($"singleton (ledger) on {after}", (await Run(survivor, "cluster", "show")).Stdout);

        // SIGKILL another node, then down it with coordctl: it disappears from the membership.
        var victim = _cluster.Nodes.First(n => n.Name != oldest && n.Name != survivor.Name);
        _cluster.Kill(victim);
        await Task.Delay(500);
        Assert.Equal(0, (await Run(survivor, ["cluster", "down", victim.Name, .. token])).ExitCode);
        var gone = false;
        for (var i = 0; i < 40 && !gone; i++)
        {
            gone = (await Members(survivor)).GetProperty("members").EnumerateArray().All(m => m.GetProperty("node").GetString() != victim.Name);
            if (!gone) await Task.Delay(500);
        }
        Assert.True(gone, $"{victim.Name} is still a member after down");
    }

    /// <summary>Drops values that change between two calls (ages, measurement times).</summary>
    private static string Strip(JsonElement e)
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(e.GetRawText())!;
        void Walk(System.Text.Json.Nodes.JsonNode? n)
        {
            if (n is System.Text.Json.Nodes.JsonObject o)
            {
                foreach (var k in new[] { "measuredAt", "usedBytes", "unownedBytes", "freeBytes" }) o.Remove(k);
                foreach (var kv in o.ToList()) Walk(kv.Value);
            }
            else if (n is System.Text.Json.Nodes.JsonArray a) foreach (var x in a) Walk(x);
        }
        Walk(node);
        return node.ToJsonString();
    }

    public Task DisposeAsync()
    {
        _cluster.Dispose();
        return Task.CompletedTask;
    }
}
