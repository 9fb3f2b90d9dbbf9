using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Coordinator.IntegrationTests.Harness;

namespace Coordinator.IntegrationTests.Chaos;

public sealed record ChaosOptions(int Nodes, TimeSpan Duration, int Writers = 6, int LeaseClients = 4, TimeSpan? FaultEvery = null,
    long CapacityBytes = 100L << 30, int Seed = 1, TimeSpan? LeaseTtl = null);

/// <summary>The kinds of injected faults, counted per run.</summary>
public static class FaultKind
{
    public const string LeaderKill = "leader SIGKILL", OtherKill = "other SIGKILL", LeaderPause = "leader SIGSTOP",
        OtherPause = "other SIGSTOP", GracefulRestart = "graceful restart";
}

public sealed record ChaosSummary(int Tried, int Acknowledged, int Refused, int Indefinite, int Faults,
    IReadOnlyDictionary<string, int> FaultsByKind, IReadOnlyList<long> Epochs, int Fenced, int Attempts, TimeSpan Elapsed,
    TimeSpan LongestUnavailability, TimeSpan Convergence, IReadOnlyList<string> Violations, IReadOnlyList<string> Failures)
{
    public override string ToString() =>
        $"operations tried {Tried} ({Attempts} requests), acknowledged {Acknowledged}, refused {Refused}, without answer at the end {Indefinite}; " +
        $"epochs answered {Epochs.Count} ({string.Join(",", Epochs)}); fenced renew/complete {Fenced}; " +
        $"faults injected {Faults} ({string.Join(", ", FaultsByKind.Select(k => $"{k.Key} {k.Value}"))}), " +
        $"longest unavailability {LongestUnavailability.TotalSeconds:0.0}s, " +
        $"converged {Convergence.TotalSeconds:0.0}s after the last fault; run {Elapsed.TotalSeconds:0}s; " +
        $"invariant violations {Violations.Count}; client failures {Failures.Count}";
}

/// <summary>
/// Drives reservations, resizes, releases and image leases through every node of a real cluster while injecting
/// process faults in a fixed rotation (SIGKILL of the leader's host, SIGKILL of another node, SIGSTOP of the leader's
/// host past the failure detector, SIGSTOP of another node, a graceful restart), then checks the history. A node that
/// exits (killed, or downed by the Split Brain Resolver) is restarted with the same name, as systemd or the Windows
/// service manager would. Every answer must name the ledger epoch that gave it (X-Coordinator-Epoch); an answer
/// without it, a server error or any exception in a client fails the run.
/// </summary>
public sealed class ChaosRun(LocalCluster cluster, ChaosOptions options, Action<string> log)
{
    private readonly History _history = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly DateTimeOffset _wallStart = DateTimeOffset.UtcNow;
    private readonly Random _random = new(options.Seed);
    private readonly object _gate = new();
    private readonly HashSet<string> _paused = [];
    private readonly Dictionary<string, int> _faultsByKind = new();

    private TimeSpan Now => _clock.Elapsed;
    private TimeSpan LeaseTtl => options.LeaseTtl ?? TimeSpan.FromSeconds(4);

    public async Task<ChaosSummary> RunAsync()
    {
        // As an admin: the clients write through any node, release what another node wrote and hold leases for
        // made-up lessees; an agent acts only as its own node (IdentityTests).
        cluster.Http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", LocalCluster.AdminToken);
        using var stop = new CancellationTokenSource(options.Duration);
        var clients = Enumerable.Range(0, options.Writers).Select(w => Client(w, () => Writer(w, stop.Token)))
            .Concat(Enumerable.Range(0, options.LeaseClients).Select(l => Client(options.Writers + l, () => LeaseClient(options.Writers + l, stop.Token))))
            .ToList();
        var faults = Task.Run(() => Faults(stop.Token));
        await Task.WhenAll(clients);
        await faults;
        var lastFault = Now;

        // Heal: continue paused nodes, restart stopped ones, and wait for one leader that every node agrees on.
        foreach (var n in cluster.Nodes) Resume(n);
        foreach (var n in cluster.Nodes.Where(n => !cluster.IsRunning(n))) cluster.Start(n);
        TimeSpan convergence;
        try { convergence = await Converge(TimeSpan.FromSeconds(90)); }
        catch (TimeoutException e)
        {
            WriteHistory([e.Message]);
            throw;
        }
        var final = await Final();
        var violations = HistoryChecker.Check(_history, options.CapacityBytes, final);
        // Always kept (a few hundred KB): a passing run's history shows what the checker saw.
        WriteHistory(violations.Select(v => "VIOLATION " + v));
        var ops = _history.Ops.ToList();
        Dictionary<string, int> byKind;
        lock (_gate) byKind = new Dictionary<string, int>(_faultsByKind);
        return new ChaosSummary(ops.Count, ops.Count(o => o.Status is >= 200 and < 300), ops.Count(o => o.Status is >= 400 and < 500),
            ops.Count(o => o.Status < 0), _history.Faults.Count(f => !f.Fault.StartsWith("restart") && !f.Fault.StartsWith("SIGCONT")),
            byKind, ops.Where(o => o.Epoch > 0).Select(o => o.Epoch).Distinct().Order().ToList(),
            ops.Count(o => o.Kind is OpKind.Renew or OpKind.Complete && o.Status == 409), _history.Attempts, options.Duration,
            HistoryChecker.LongestGap(_history, TimeSpan.FromSeconds(1), lastFault), convergence - lastFault, violations,
            _history.Failures.ToList());
    }

    private void WriteHistory(IEnumerable<string> header)
    {
        var path = Path.Combine(AppContext.BaseDirectory, $"chaos-history-{options.Nodes}-nodes-{DateTime.UtcNow:yyyyMMddHHmmss}.txt");
        _history.WriteTo(path, header);
        log($"history written to {path}");
    }

    // ------------------------------------------------------------------ clients

    /// <summary>Runs one client; any exception it throws (a JSON body it cannot read, a missing field) fails the run.</summary>
    private Task Client(int client, Func<Task> body) => Task.Run(async () =>
    {
        try { await body(); }
        catch (Exception e)
        {
            _history.Failures.Enqueue($"{Now.TotalSeconds:0.000}s client c{client} failed: {e}");
            log($"client c{client} failed: {e}");
        }
    });

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

    /// <summary>
    /// Takes image leases, renews and completes or aborts them. Every other hold pauses past the lease's TTL before
    /// renewing, as a holder that froze would: another client may then be granted the image, and the late renew and
    /// complete must be fenced (409). Four clients share two images, so a lease that expired is soon granted to a waiting
    /// client and the late holder is fenced rather than finding no lease at all (404).
    /// </summary>
    private async Task LeaseClient(int client, CancellationToken stop)
    {
        var random = new Random(options.Seed * 1000 + client);
        var holds = 0;
        while (!stop.IsCancellationRequested)
        {
            var image = $"chaos-img-{random.Next(2)}";
            var via = PickNode(random);
            var grant = await Do(client, OpKind.Grant, image, 64L << 20, 0, stop, v => new HttpRequestMessage(HttpMethod.Post, cluster.Url(v, $"/v1/images/{image}/lease"))
                { Content = LocalCluster.Json(new { node = $"lessee-{client}", sizeBytes = 64L << 20 }) }, fixedNode: via);
            if (grant.Status == 200 && random.NextDouble() < 0.5)
            {
                // Cached: make room for new grants.
                await Do(client, OpKind.Evict, "*", 0, 0, stop, v => new HttpRequestMessage(HttpMethod.Post, cluster.Url(v, "/v1/images/evict?olderThanSeconds=0")));
                continue;
            }
            if (grant.Status != 201 || grant.Body is not { } body) { await Delay(200, stop); continue; }
            var leaseId = body.GetProperty("leaseId").GetString()!;
            var token = body.GetProperty("fencingToken").GetInt64();
            var hold = holds++ % 2 == 1 ? (int)(LeaseTtl + TimeSpan.FromSeconds(2)).TotalMilliseconds : random.Next(100, 1500);
            await Delay(hold, stop);
            await Post(client, OpKind.Renew, image, token, $"/v1/images/{image}/lease/{leaseId}/renew", new { fencingToken = token }, stop);
            await Delay(random.Next(100, 1500), stop);
            if (random.NextDouble() < 0.5)
                await Post(client, OpKind.Complete, image, token, $"/v1/images/{image}/lease/{leaseId}/complete", new { fencingToken = token, sizeBytes = 64L << 20, checksum = "abcd" }, stop);
            else
                await Post(client, OpKind.Abort, image, token, $"/v1/images/{image}/lease/{leaseId}/abort", new { fencingToken = token }, stop);
        }
    }

    private Task<(int Status, JsonElement? Body)> Post(int client, OpKind kind, string key, long token, string path, object? body, CancellationToken stop) =>
        Do(client, kind, key, 0, token, stop, via => new HttpRequestMessage(HttpMethod.Post, cluster.Url(via, path))
            { Content = body is null ? null : LocalCluster.Json(body) });

    /// <summary>
    /// Sends until a definite answer (anything but 503, a timeout or a refused connection), through any node. The
    /// epoch is the X-Coordinator-Epoch header only; a definite answer without it, or a server error, is a failure of
    /// the run. Bodies are read only where the client needs them (a grant's lease, a renewal's expiry, an eviction's list).
    /// </summary>
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
            HttpResponseMessage r;
            string text;
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stop);
                timeout.CancelAfter(TimeSpan.FromSeconds(8));
                r = await cluster.Http.SendAsync(request(via), timeout.Token);
                text = await r.Content.ReadAsStringAsync(timeout.Token);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or OperationCanceledException or IOException)
            {
                trail.Append($"{via.Name}:{(e is HttpRequestException ? "refused" : "timeout")}@{Now.TotalSeconds:0.000} ");
                await Delay(150, stop);
                continue;
            }
            using (r)
            {
                var status = (int)r.StatusCode;
                trail.Append($"{via.Name}:{status}@{Now.TotalSeconds:0.000} ");
                if (r.StatusCode == HttpStatusCode.ServiceUnavailable) { await Delay(150, stop); continue; }
                long epoch = 0;
                if (r.Headers.TryGetValues("X-Coordinator-Epoch", out var values))
                    long.TryParse(values.FirstOrDefault(), NumberStyles.None, CultureInfo.InvariantCulture, out epoch);
                if (epoch <= 0)
                    _history.Failures.Enqueue($"{Now.TotalSeconds:0.000}s {kind} {key} via {via.Name}: answer {status} without an X-Coordinator-Epoch header: {Short(text)}");
                else if (status >= 500)
                    _history.Failures.Enqueue($"{Now.TotalSeconds:0.000}s {kind} {key} via {via.Name}: server error {status}: {Short(text)}");
                JsonElement? body = null;
                TimeSpan? validUntil = null;
                IReadOnlyList<string>? evicted = null;
                if (kind is OpKind.Grant or OpKind.Renew or OpKind.Evict && status is 200 or 201)
                {
                    body = JsonDocument.Parse(text).RootElement.Clone();
                    if (kind == OpKind.Grant && status == 201) token = body.Value.GetProperty("fencingToken").GetInt64();
                    if (status == 201 || kind == OpKind.Renew)
                        validUntil = body.Value.GetProperty("expiresAt").GetDateTimeOffset() - _wallStart;
                    if (kind == OpKind.Evict)
                        evicted = body.Value.GetProperty("evicted").EnumerateArray().Select(e => e.GetProperty("imageId").GetString()!).ToList();
                }
                _history.Add(new OpRecord(client, kind, key, bytes, token, start, Now, status, epoch, attempt, trail.ToString().TrimEnd(),
                    validUntil, evicted));
                return (status, body);
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

    /// <summary>
    /// A fixed rotation, so that a CI-sized run (45 s, a fault every 8 s after the previous one ended) meets each kind
    /// the checks need: leader SIGKILL (~3 s), another node's SIGKILL (~11 s), leader SIGSTOP for 12 s (~19-31 s: a
    /// resumed stale leader), another node's SIGSTOP (~39 s), then a graceful restart.
    /// </summary>
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
                    case 1: await KillOther(); break;
                    case 2: await PauseLeaderHost(); break;
                    case 3: await PauseOther(); break;
                    default: await GracefulRestart(); break;
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
            lock (_gate)
            {
                if (_paused.Contains(n.Name) || cluster.IsRunning(n)) continue;
                cluster.Start(n);
            }
            Note($"restart {n.Name} (same name{when})");
        }
    }

    /// <summary>The running node that hosts the ledger; asks for up to 10 s (a failover may be under way), else null.</summary>
    private async Task<NodeInfo?> LeaderHost()
    {
        var deadline = Now + TimeSpan.FromSeconds(10);
        while (true)
        {
            var leader = await CurrentLeader();
            var node = leader is null ? null : cluster.Nodes.FirstOrDefault(n => n.Name == leader && cluster.IsRunning(n));
            if (node is not null || Now > deadline) return node;
            await Task.Delay(500);
        }
    }

    private async Task KillLeaderHost()
    {
        if (await LeaderHost() is not { } node) { await KillOther(); return; }
        lock (_gate) cluster.Kill(node);
        Note($"SIGKILL {node.Name} (leader host)", FaultKind.LeaderKill);
    }

    private async Task KillOther()
    {
        var node = await Other();
        lock (_gate) cluster.Kill(node);
        Note($"SIGKILL {node.Name}", FaultKind.OtherKill);
    }

    /// <summary>
    /// The classic stale leader: the singleton's host is frozen long enough for the others to down it and start a new
    /// ledger, then resumes believing it still leads. It must not decide anything before it learns it was downed.
    /// </summary>
    private async Task PauseLeaderHost()
    {
        if (await LeaderHost() is not { } node) { await PauseOther(); return; }
        await Pause(node, 12_000, " (leader host) for 12 s", FaultKind.LeaderPause);
    }

    private async Task PauseOther()
    {
        var node = await Other();
        var ms = _random.Next(3000, 7000);
        await Pause(node, ms, $" for {ms / 1000.0:0.0} s", FaultKind.OtherPause);
    }

    /// <summary>A running, unpaused node that does not host the ledger (any one when the leader is not known).</summary>
    private async Task<NodeInfo> Other()
    {
        var leader = await CurrentLeader();
        lock (_gate)
        {
            var up = cluster.Nodes.Where(n => cluster.IsRunning(n) && !_paused.Contains(n.Name) && n.Name != leader).ToList();
            return up.Count == 0 ? PickNode(_random) : up[_random.Next(up.Count)];
        }
    }

    /// <summary>SIGSTOP, then SIGCONT after the pause (also when the run ends meanwhile: a node is never left frozen).</summary>
    private async Task Pause(NodeInfo node, int milliseconds, string what, string kind)
    {
        lock (_gate)
        {
            _paused.Add(node.Name);
            LocalCluster.Signal(cluster.Pid(node), "STOP");
        }
        Note($"SIGSTOP {node.Name}{what}", kind);
        await Delay(milliseconds, CancellationToken.None);
        Resume(node);
    }

    private void Resume(NodeInfo node)
    {
        lock (_gate)
        {
            if (!_paused.Remove(node.Name) || !cluster.IsRunning(node)) return;
            LocalCluster.Signal(cluster.Pid(node), "CONT");
        }
        Note($"SIGCONT {node.Name}");
    }

    private async Task GracefulRestart()
    {
        var node = await Other();
        await Task.Run(() => cluster.Stop(node, TimeSpan.FromSeconds(15)));
        Note($"SIGTERM {node.Name} (graceful restart)", FaultKind.GracefulRestart);
        lock (_gate) if (!cluster.IsRunning(node)) cluster.Start(node);
    }

    private void Note(string what, string? kind = null)
    {
        if (kind is not null) lock (_gate) _faultsByKind[kind] = _faultsByKind.GetValueOrDefault(kind) + 1;
        _history.Fault(Now, what);
        log($"{Now.TotalSeconds,6:0.0}s {what}");
    }

    // ------------------------------------------------------------------ convergence and the final state

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

    /// <summary>
    /// Waits until every node answers /v1/leader with the same leader and epoch; returns when that happened. On a
    /// timeout the message names each node's last answer (leader@epoch or the error), its process (running, paused,
    /// exited with its code, restarts during convergence) and the tail of its log.
    /// </summary>
    private async Task<TimeSpan> Converge(TimeSpan limit)
    {
        var deadline = Now + limit;
        var last = new Dictionary<string, string>();
        var restarts = new Dictionary<string, int>();
        while (Now < deadline)
        {
            // A node that exits now (a resumed stale leader learning it was downed) is restarted, as a service manager would.
            foreach (var n in cluster.Nodes.Where(n => !cluster.IsRunning(n)))
            {
                var code = await cluster.WaitForExitAsync(n, TimeSpan.Zero);
                restarts[n.Name] = restarts.GetValueOrDefault(n.Name) + 1;
                cluster.Start(n);
                Note($"restart {n.Name} (same name, while converging; it had exited with {code})");
            }
            var answers = await Task.WhenAll(cluster.Nodes.Select(async n =>
            {
                try
                {
                    using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(3));
                    using var r = await cluster.Http.GetAsync(cluster.Url(n, "/v1/leader"), cts.Token);
                    var text = await r.Content.ReadAsStringAsync(cts.Token);
                    if (!r.IsSuccessStatusCode) return (n, Ok: false, What: $"{(int)r.StatusCode} {Short(text)}");
                    var l = JsonDocument.Parse(text).RootElement;
                    var epoch = l.GetProperty("epoch").GetInt64();
                    return (n, Ok: true, What: $"{l.GetProperty("node").GetString()}@{epoch}");
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException or KeyNotFoundException)
                {
                    return (n, Ok: false, What: $"{e.GetType().Name}: {Short(e.Message)}");
                }
            }));
            foreach (var a in answers) last[a.n.Name] = a.What;
            if (answers.All(a => a.Ok) && answers.Select(a => a.What).Distinct().Count() == 1) return Now;
            await Task.Delay(250);
        }
        var report = new System.Text.StringBuilder($"the cluster did not converge to one leader within {limit}; last answers:");
        foreach (var n in cluster.Nodes)
        {
            var process = cluster.IsRunning(n) ? $"running pid {cluster.Pid(n)}" : $"exited with {await cluster.WaitForExitAsync(n, TimeSpan.Zero)}";
            report.Append($"\n  {n.Name}: {last.GetValueOrDefault(n.Name, "(no answer)")}; process {process}; " +
                          $"restarted {restarts.GetValueOrDefault(n.Name)} time(s) while converging");
        }
        foreach (var n in cluster.Nodes)
            report.Append($"\n--- {n.Name} log (last 25 lines):\n{cluster.Tail(n, 25)}");
        throw new TimeoutException(report.ToString());
    }

    private static string Short(string s) => s.Length <= 160 ? s : s[..160] + "...";

    /// <summary>The ledger's final state, through the first node: Volume1's reservations (image claims included), the image cache and the leases.</summary>
    private async Task<FinalState> Final()
    {
        var list = await cluster.Http.GetFromJsonAsync<JsonElement>(cluster.Url(cluster.Nodes[0], "/v1/volumes/Volume1/reservations"));
        var reservations = list.GetProperty("reservations").EnumerateArray()
            .ToDictionary(r => r.GetProperty("consumerId").GetString()!, r => r.GetProperty("bytes").GetInt64());
        var images = await cluster.Http.GetFromJsonAsync<JsonElement>(cluster.Url(cluster.Nodes[0], "/v1/images"));
        return new FinalState(reservations,
            images.GetProperty("images").EnumerateArray().ToDictionary(i => i.GetProperty("imageId").GetString()!, i => i.GetProperty("sizeBytes").GetInt64()),
            images.GetProperty("leases").EnumerateArray().ToDictionary(l => l.GetProperty("imageId").GetString()!, l => l.GetProperty("fencingToken").GetInt64()));
    }
}
