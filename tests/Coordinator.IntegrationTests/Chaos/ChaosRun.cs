using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Coordinator.IntegrationTests.Harness;

namespace Coordinator.IntegrationTests.Chaos;

public sealed record ChaosOptions(int Nodes, TimeSpan Duration, int Writers = 6, int LeaseClients = 2, TimeSpan? FaultEvery = null,
    long CapacityBytes = 100L << 30, int Seed = 1);

public sealed record ChaosSummary(int Tried, int Acknowledged, int Refused, int Indefinite, int Faults, int LeaderChanges,
    TimeSpan LongestUnavailability, TimeSpan Convergence, IReadOnlyList<string> Violations)
{
    public override string ToString() =>
        $"operations tried {Tried}, acknowledged {Acknowledged}, refused {Refused}, without answer at the end {Indefinite}; " +
        $"faults injected {Faults}, leader changes {LeaderChanges}, longest unavailability {LongestUnavailability.TotalSeconds:0.0}s, " +
        $"converged {Convergence.TotalSeconds:0.0}s after the last fault; invariant violations {Violations.Count}";
}

/// <summary>
/// Drives reservations, resizes, releases and image leases through every node of a real cluster while injecting
/// process faults (SIGKILL of the leader's host and of others, SIGSTOP/SIGCONT, graceful restarts, restarts with the
/// same name), then checks the history. A node that exits (killed, or downed by the Split Brain Resolver) is
/// restarted by the run, as systemd or the Windows service manager would.
/// </summary>
public sealed class ChaosRun(LocalCluster cluster, ChaosOptions options, Action<string> log)
{
    private readonly History _history = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Random _random = new(options.Seed);
    private readonly HashSet<long> _epochs = [];
    private readonly object _gate = new();
    private readonly HashSet<string> _paused = [];

    private TimeSpan Now => _clock.Elapsed;

    public async Task<ChaosSummary> RunAsync()
    {
        using var stop = new CancellationTokenSource(options.Duration);
        var clients = Enumerable.Range(0, options.Writers).Select(w => Task.Run(() => Writer(w, stop.Token)))
            .Concat(Enumerable.Range(0, options.LeaseClients).Select(l => Task.Run(() => LeaseClient(options.Writers + l, stop.Token))))
            .ToList();
        var faults = Task.Run(() => Faults(stop.Token));
        await Task.WhenAll(clients.Append(faults).Select(t => t.ContinueWith(x => { if (x.IsFaulted) log("client failed: " + x.Exception); })));
        var lastFault = Now;

        // Heal: continue paused nodes, restart stopped ones, and wait for one leader that every node agrees on.
        foreach (var n in cluster.Nodes) Resume(n);
        foreach (var n in cluster.Nodes.Where(n => !cluster.IsRunning(n))) cluster.Start(n);
        var convergence = await Converge(TimeSpan.FromSeconds(90));
        var final = await FinalReservations();
        var violations = HistoryChecker.Check(_history, options.CapacityBytes, final);
        if (violations.Count > 0)
        {
            var path = Path.Combine(AppContext.BaseDirectory, $"chaos-history-{options.Nodes}-nodes-{DateTime.UtcNow:yyyyMMddHHmmss}.txt");
            _history.WriteTo(path);
            log($"history written to {path}");
        }
        var ops = _history.Ops.ToList();
        return new ChaosSummary(ops.Count, ops.Count(o => o.Status is >= 200 and < 300), ops.Count(o => o.Status is >= 400 and < 500),
            ops.Count(o => o.Status < 0), _history.Faults.Count, Math.Max(0, _epochs.Count - 1),
            HistoryChecker.LongestGap(_history, TimeSpan.FromSeconds(1), lastFault), convergence - lastFault, violations);
    }

    // ------------------------------------------------------------------ clients

    private async Task Writer(int client, CancellationToken stop)
    {
        var random = new Random(options.Seed * 1000 + client);
        var keys = Enumerable.Range(0, 8).Select(k => $"c{client}-{k}").ToArray();
        while (!stop.IsCancellationRequested)
        {
            var key = keys[random.Next(keys.Length)];
            if (random.NextDouble() < 0.3)
                await Do(client, OpKind.Delete, key, 0, 0, stop, via => new HttpRequestMessage(HttpMethod.Delete, cluster.Url(via, $"/v1/volumes/Volume1/reservations/{key}")));
            else
            {
                var bytes = (long)random.Next(1, 9) << 30;
                await Do(client, OpKind.Put, key, bytes, 0, stop, via => new HttpRequestMessage(HttpMethod.Put, cluster.Url(via, $"/v1/volumes/Volume1/reservations/{key}"))
                    { Content = LocalCluster.Json(new { node = via.Name, bytes }) });
            }
        }
    }

    private async Task LeaseClient(int client, CancellationToken stop)
    {
        var random = new Random(options.Seed * 1000 + client);
        while (!stop.IsCancellationRequested)
        {
            var image = $"chaos-img-{random.Next(3)}";
            var via = PickNode(random);
            var (status, body) = await Do(client, OpKind.Grant, image, 64L << 20, 0, stop, v => new HttpRequestMessage(HttpMethod.Post, cluster.Url(v, $"/v1/images/{image}/lease"))
                { Content = LocalCluster.Json(new { node = $"lessee-{client}", sizeBytes = 64L << 20 }) }, fixedNode: via);
            if (status == 200 && random.NextDouble() < 0.5)
            {
                await Post(client, OpKind.Abort, image, 0, "/v1/images/evict?olderThanSeconds=0", null, stop); // make room for new grants
                continue;
            }
            if (status != 201 || body is null) { await Delay(200, stop); continue; }
            var leaseId = body.Value.GetProperty("leaseId").GetString()!;
            var token = body.Value.GetProperty("fencingToken").GetInt64();
            await Delay(random.Next(100, 1500), stop);
            await Post(client, OpKind.Renew, image, token, $"/v1/images/{image}/lease/{leaseId}/renew", new { fencingToken = token }, stop);
            await Delay(random.Next(100, 1500), stop);
            if (random.NextDouble() < 0.5)
                await Post(client, OpKind.Complete, image, token, $"/v1/images/{image}/lease/{leaseId}/complete", new { fencingToken = token, sizeBytes = 64L << 20, checksum = "abcd" }, stop);
            else
                await Post(client, OpKind.Abort, image, token, $"/v1/images/{image}/lease/{leaseId}/abort", new { fencingToken = token }, stop);
        }
    }

    private Task<(int, JsonElement?)> Post(int client, OpKind kind, string key, long token, string path, object? body, CancellationToken stop) =>
        Do(client, kind, key, 0, token, stop, via => new HttpRequestMessage(HttpMethod.Post, cluster.Url(via, path))
            { Content = body is null ? null : LocalCluster.Json(body) });

    /// <summary>Sends until a definite answer (anything but 503, a timeout or a refused connection), through any node.</summary>
    private async Task<(int Status, JsonElement? Body)> Do(int client, OpKind kind, string key, long bytes, long token, CancellationToken stop,
        Func<NodeInfo, HttpRequestMessage> request, NodeInfo? fixedNode = null)
    {
        var start = Now;
        var random = new Random(unchecked(client * 7919 + (int)start.Ticks));
        var trail = new System.Text.StringBuilder();
        for (var attempt = 1; ; attempt++)
        {
            if (stop.IsCancellationRequested)
            {
                _history.Add(new OpRecord(client, kind, key, bytes, token, start, Now, -1, 0, attempt, trail.ToString()));
                return (-1, null);
            }
            var via = attempt == 1 && fixedNode is not null ? fixedNode : PickNode(random);
            Interlocked.Increment(ref _history.Attempts);
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stop);
                timeout.CancelAfter(TimeSpan.FromSeconds(8));
                using var r = await cluster.Http.SendAsync(request(via), timeout.Token);
                var text = await r.Content.ReadAsStringAsync(timeout.Token);
                trail.Append($"{via.Name}:{(int)r.StatusCode}@{Now.TotalSeconds:0.000} ");
                if (r.StatusCode == HttpStatusCode.ServiceUnavailable) { await Delay(150, stop); continue; }
                JsonElement? body = text.Length > 0 && text[0] == '{' ? JsonDocument.Parse(text).RootElement.Clone() : null;
                var epoch = body is { } b && b.TryGetProperty("epoch", out var e) && e.ValueKind == JsonValueKind.Number ? e.GetInt64() : 0;
                if (epoch > 0) lock (_gate) _epochs.Add(epoch);
                if (kind == OpKind.Grant && body is { } g && g.TryGetProperty("fencingToken", out var t) && t.ValueKind == JsonValueKind.Number)
                    token = t.GetInt64();
                _history.Add(new OpRecord(client, kind, key, bytes, token, start, Now, (int)r.StatusCode, epoch, attempt, trail.ToString().TrimEnd()));
                return ((int)r.StatusCode, body);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or OperationCanceledException or IOException)
            {
                trail.Append($"{via.Name}:{(e is HttpRequestException ? "refused" : "timeout")}@{Now.TotalSeconds:0.000} ");
                await Delay(150, stop);
            }
        }
    }

    private NodeInfo PickNode(Random random)
    {
        lock (_gate)
        {
            var up = cluster.Nodes.Where(n => cluster.IsRunning(n) && !_paused.Contains(n.Name)).ToList();
            return up.Count == 0 ? cluster.Nodes[0] : up[random.Next(up.Count)];
        }
    }

    private static async Task Delay(int ms, CancellationToken stop)
    {
        try { await Task.Delay(ms, stop); } catch (OperationCanceledException) { }
    }

    // ------------------------------------------------------------------ faults

    private async Task Faults(CancellationToken stop)
    {
        var every = options.FaultEvery ?? TimeSpan.FromSeconds(8);
        var supervisor = Task.Run(() => Supervise(stop));
        await Delay(3000, stop);
        var i = 0;
        while (!stop.IsCancellationRequested)
        {
            var kind = i++ % 5;
            try
            {
                switch (kind)
                {
                    case 0: await KillLeaderHost(); break;
                    case 1: KillRandom(); break;
                    // Third (~19 s, resumed ~31 s): every CI-sized run meets a resumed stale leader.
                    case 2: await PauseLeaderHost(); break;
                    case 3: await PauseRandom(); break;
                    default: GracefulRestart(); break;
                }
            }
            catch (Exception e) { log($"fault {kind} failed: {e.Message}"); }
            await Delay((int)every.TotalMilliseconds, stop);
        }
        await supervisor;
    }

    /// <summary>Restarts, with the same name, any node whose process exited (after a short pause, like a service manager).</summary>
    private async Task Supervise(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            RestartExited("");
            await Delay(2000, stop);
        }
    }

    /// <summary>Starts again, with the same name, every node whose process exited (a paused one has not).</summary>
    private void RestartExited(string when)
    {
        foreach (var n in cluster.Nodes)
        {
            bool paused;
            lock (_gate) paused = _paused.Contains(n.Name);
            if (paused || cluster.IsRunning(n)) continue;
            cluster.Start(n);
            Note($"restart {n.Name} (same name{when})");
        }
    }

    /// <summary>The running node that hosts the ledger, or null when no node names one.</summary>
    private async Task<NodeInfo?> LeaderHost()
    {
        var leader = await CurrentLeader();
        return leader is null ? null : cluster.Nodes.FirstOrDefault(n => n.Name == leader && cluster.IsRunning(n));
    }

    private async Task KillLeaderHost()
    {
        if (await LeaderHost() is not { } node) { KillRandom(); return; }
        cluster.Kill(node);
        Note($"SIGKILL {node.Name} (leader host)");
    }

    /// <summary>
    /// The classic stale leader: the singleton's host is frozen long enough for the others to down it and start a new
    /// ledger, then resumes believing it still leads. It must not decide anything before it learns it was downed.
    /// </summary>
    private async Task PauseLeaderHost()
    {
        if (await LeaderHost() is not { } node) { KillRandom(); return; }
        await Pause(node, 12_000, " (leader host) for 12 s");
    }

    private void KillRandom()
    {
        var node = PickNode(_random);
        cluster.Kill(node);
        Note($"SIGKILL {node.Name}");
    }

    private Task PauseRandom() => Pause(PickNode(_random), _random.Next(3000, 7000), "");

    /// <summary>SIGSTOP, then SIGCONT after the pause (also when the run ends meanwhile: a node is never left frozen).</summary>
    private async Task Pause(NodeInfo node, int milliseconds, string what)
    {
        lock (_gate) _paused.Add(node.Name);
        LocalCluster.Signal(cluster.Pid(node), "STOP");
        Note($"SIGSTOP {node.Name}{what}");
        await Delay(milliseconds, CancellationToken.None);
        Resume(node);
    }

    private void Resume(NodeInfo node)
    {
        bool paused;
        lock (_gate) paused = _paused.Remove(node.Name);
        if (!paused || !cluster.IsRunning(node)) return;
        LocalCluster.Signal(cluster.Pid(node), "CONT");
        Note($"SIGCONT {node.Name}");
    }

    private void GracefulRestart()
    {
        var node = PickNode(_random);
        cluster.Stop(node, TimeSpan.FromSeconds(15));
        Note($"SIGTERM {node.Name} (graceful restart)");
        cluster.Start(node);
    }

    private void Note(string what)
    {
        _history.Fault(Now, what);
        log($"{Now.TotalSeconds,6:0.0}s {what}");
    }

    // ------------------------------------------------------------------ convergence

    private async Task<string?> CurrentLeader()
    {
        foreach (var n in cluster.Nodes.Where(cluster.IsRunning))
        {
            try
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(3));
                var l = await cluster.Http.GetFromJsonAsync<JsonElement>(cluster.Url(n, "/v1/leader"), cts.Token);
                return l.GetProperty("node").GetString();
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException) { }
        }
        return null;
    }

    /// <summary>Waits until every node answers /v1/leader with the same leader and epoch; returns when that happened.</summary>
    private async Task<TimeSpan> Converge(TimeSpan limit)
    {
        var deadline = Now + limit;
        while (Now < deadline)
        {
            // A node that exits now (a resumed stale leader learning it was downed) is restarted, as a service manager would.
            RestartExited(", while converging");
            var answers = new List<string>();
            foreach (var n in cluster.Nodes)
            {
                try
                {
                    using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(3));
                    var l = await cluster.Http.GetFromJsonAsync<JsonElement>(cluster.Url(n, "/v1/leader"), cts.Token);
                    answers.Add($"{l.GetProperty("node").GetString()}@{l.GetProperty("epoch").GetInt64()}");
                    lock (_gate) _epochs.Add(l.GetProperty("epoch").GetInt64());
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException) { answers.Add("-"); }
            }
            if (answers.All(a => a != "-") && answers.Distinct().Count() == 1) return Now;
            await Task.Delay(250);
        }
        throw new TimeoutException($"the cluster did not converge to one leader within {limit}");
    }

    private async Task<Dictionary<string, long>> FinalReservations()
    {
        var list = await cluster.Http.GetFromJsonAsync<JsonElement>(cluster.Url(cluster.Nodes[0], "/v1/volumes/Volume1/reservations"));
        return list.GetProperty("reservations").EnumerateArray()
            .Where(r => !r.GetProperty("consumerId").GetString()!.StartsWith("_image-"))
            .ToDictionary(r => r.GetProperty("consumerId").GetString()!, r => r.GetProperty("bytes").GetInt64());
    }
}
