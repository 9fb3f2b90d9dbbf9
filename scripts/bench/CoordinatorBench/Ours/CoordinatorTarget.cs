using Coordinator.IntegrationTests.Harness;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text.Json;

namespace CoordinatorBench.Ours;

/// <summary>
/// Our coordinator: N node processes of Coordinator.Service on 127.0.0.1 (the layout of scripts/cluster.sh: one shared
/// CSV folder, one shared SQLite journal unless a PostgreSQL connection string is given), driven over its HTTP API.
/// </summary>
public sealed class CoordinatorTarget : ITarget
{
    private static readonly MediaTypeHeaderValue JsonType = new("application/json");
    private static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web);
    public const string Volume = "Volume1";

    private readonly int _nodes;
    private readonly string _dir;
    private readonly string _serviceDll;
    private readonly string? _postgres;
    private readonly string _extraHocon;
    private readonly HttpClient _http;
    private readonly ChildProcess?[] _procs;
    private readonly int[] _httpPorts;
    private readonly int[] _akkaPorts;
    private readonly string[] _names;
    private long _fetchers;
    private readonly string _journal;
    private readonly string? _tlsCerts;

    public CoordinatorTarget(int nodes, string dir, string serviceDll, TimeSpan opTimeout, string? postgres = null, string extraHocon = "", string? name = null,
        string? journal = null, string? tlsCerts = null)
    {
        // Remoting with mutual TLS: DIR/ca.crt and DIR/hvNN.crt + .key (scripts/deploy/make-certs.sh).
        _tlsCerts = tlsCerts;
        _journal = journal ?? (postgres is null
            ? "SQLite, one file shared by the nodes (one durable copy; SQLite defaults: rollback journal, synchronous=FULL, an fsync per commit)"
            : "PostgreSQL");
        Name = name ?? $"ours-{nodes}";
        _nodes = nodes;
        _dir = Directory.CreateDirectory(dir).FullName;
        _serviceDll = serviceDll;
        _postgres = postgres;
        _extraHocon = extraHocon;
        _procs = new ChildProcess?[nodes];
        _httpPorts = Enumerable.Range(0, nodes).Select(_ => LoopbackPorts.Next()).ToArray();
        _akkaPorts = Enumerable.Range(0, nodes).Select(_ => LoopbackPorts.Next()).ToArray();
        _names = Enumerable.Range(1, nodes).Select(i => $"hv{i:00}").ToArray();
        _http = new HttpClient(new SocketsHttpHandler
        {
            MaxConnectionsPerServer = 512,
            PooledConnectionLifetime = TimeSpan.FromMinutes(10),
            UseProxy = false,
            UseCookies = false,
            AllowAutoRedirect = false,
        }) { Timeout = opTimeout };
        // The benchmark's fetchers are made-up holders (one per caller) asking through any node: only an admin may act
        // for another node than the one it asks (an agent's token is bound to its node).
        _http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", AdminToken);
    }

    private const string AdminToken = "bench-admin-token";

    public string Name { get; }

    public string Describe =>
        $"{_nodes} Coordinator.Service processes (Akka.NET 1.5.73, {(_extraHocon.Length == 0 ? "default HOCON" : "fast-failover profile")}{(_tlsCerts is null ? ", remoting in plain TCP" : ", remoting with mutual TLS")}, journal {_journal}, " +
        $"HTTP ports {string.Join(",", _httpPorts)}), data {_dir}";

    public int Endpoints => _nodes;

    public string DataDir => _dir;

    public string Url(int endpoint, string path) => $"http://127.0.0.1:{_httpPorts[endpoint]}{path}";

    public string NodeName(int endpoint) => _names[endpoint];

    public IReadOnlyList<ChildProcess?> Processes => _procs;

    public async Task StartAsync(CancellationToken ct)
    {
        Directory.CreateDirectory(Path.Combine(_dir, "csv", Volume));
        var seeds = string.Join(", ", _akkaPorts.Select(p => $"\"akka.tcp://coordinator@127.0.0.1:{p}\""));
        for (var i = 0; i < _nodes; i++)
        {
            var journal = _postgres is null
                ? $"persistence.connection-string = \"Data Source={_dir}/ledger.db\""
                : $"persistence {{ provider = postgresql, connection-string = \"{_postgres}\" }}";
            File.WriteAllText(Path.Combine(_dir, _names[i] + ".hocon"), $$"""
                coordinator {
                  node-name = "{{_names[i]}}"
                  data-dir = "{{_dir}}/{{_names[i]}}"
                  http.port = {{_httpPorts[i]}}
                  http.admin-token = "{{AdminToken}}"
                  {{journal}}
                  csv.volumes = [ { name = "{{Volume}}", path = "{{_dir}}/csv/{{Volume}}", capacity = 100TiB, headroom = 0 } ]
                }
                {{(_tlsCerts is null ? "" : $"coordinator.security.certificate {{ file = \"{_tlsCerts}/{_names[i]}.crt\", key-file = \"{_tlsCerts}/{_names[i]}.key\" }}\ncoordinator.security.trust.ca-file = \"{_tlsCerts}/ca.crt\"\ncoordinator.security.remoting.tls = on")}}
                akka.remote.dot-netty.tcp.port = {{_akkaPorts[i]}}
                akka.cluster.seed-nodes = [{{seeds}}]
                {{_extraHocon}}
                """);
            _procs[i] = Launch(i);
        }
        await WaitHealthyAsync(TimeSpan.FromSeconds(120), ct);
    }

    private ChildProcess Launch(int i) =>
        ChildProcess.Start(_names[i], "dotnet", [_serviceDll, "--config", Path.Combine(_dir, _names[i] + ".hocon")], _dir);

    /// <summary>Every node answers /readyz, and all agree on one leader.</summary>
    public async Task WaitHealthyAsync(TimeSpan timeout, CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            var ready = await Task.WhenAll(Enumerable.Range(0, _nodes).Select(async i => (await SendAsync(HttpMethod.Get, Url(i, "/readyz"), null)).Status));
            if (ready.All(s => s == 200))
            {
                var leaders = await Task.WhenAll(Enumerable.Range(0, _nodes).Select(i => LeaderNodeAsync(i)));
                if (leaders.All(l => l is not null) && leaders.Distinct().Count() == 1) return;
            }
            foreach (var p in _procs)
                if (p is { HasExited: true })
                    throw new InvalidOperationException($"{p.Name} exited during start; log:\n{p.LogTail()}");
            if (sw.Elapsed > timeout)
                throw new TimeoutException($"cluster not healthy after {timeout}: readyz {string.Join(",", ready)}\n{_procs[0]?.LogTail()}");
            await Task.Delay(250, ct);
        }
    }

    public Task PrepareAsync(long capacityBytes, CancellationToken ct) => Task.CompletedTask; // configured in HOCON

    public Task<Outcome> ReserveAsync(int endpoint, string consumerId, long bytes) => PutReservation(endpoint, consumerId, bytes);

    public Task<Outcome> ResizeAsync(int endpoint, string consumerId, long bytes) => PutReservation(endpoint, consumerId, bytes);

    private async Task<Outcome> PutReservation(int endpoint, string id, long bytes)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(new { node = _names[endpoint], bytes }, Web);
        var (status, _) = await SendAsync(HttpMethod.Put, Url(endpoint, $"/v1/volumes/{Volume}/reservations/{id}"), body);
        return status switch
        {
            200 or 201 => Outcome.Ok,
            409 => Outcome.Refused("insufficient space"),
            0 or 503 => Outcome.Unavailable(status.ToString()),
            _ => Outcome.Error($"PUT reservation: HTTP {status}"),
        };
    }

    public async Task<Outcome> ReleaseAsync(int endpoint, string consumerId)
    {
        var (status, _) = await SendAsync(HttpMethod.Delete, Url(endpoint, $"/v1/volumes/{Volume}/reservations/{consumerId}"), null);
        return status switch
        {
            204 => Outcome.Ok,
            404 => Outcome.Refused("absent"),
            0 or 503 => Outcome.Unavailable(status.ToString()),
            _ => Outcome.Error($"DELETE reservation: HTTP {status}"),
        };
    }

    public async Task<Outcome> ReadQuotaAsync(int endpoint, string node)
    {
        var (status, _) = await SendAsync(HttpMethod.Get, Url(endpoint, $"/v1/volumes/{Volume}/quotas/{node}"), null);
        return status switch
        {
            200 => Outcome.Ok,
            0 or 503 => Outcome.Unavailable(status.ToString()),
            _ => Outcome.Error($"GET quota: HTTP {status}"),
        };
    }

    public async Task<Outcome> LeaseGrantAndCompleteAsync(int endpoint, string imageId, long sizeBytes)
    {
        var (status, json) = await AcquireAsync(endpoint, imageId, sizeBytes);
        return status switch
        {
            201 => await CompleteAsync(endpoint, imageId, sizeBytes, json!),
            200 => Outcome.Ok, // already cached (a retry after a lost answer)
            202 => Outcome.Refused("pending"),
            409 => Outcome.Refused("insufficient space"),
            0 or 503 => Outcome.Unavailable(status.ToString()),
            _ => Outcome.Error($"POST lease: HTTP {status}"),
        };
    }

    public async Task<Outcome> AcquireOrWaitAsync(int endpoint, string imageId, long sizeBytes, TimeSpan wait)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(wait.TotalSeconds * Stopwatch.Frequency);
        // Each caller is a fetcher of its own (as the agents of distinct hosts are): the ledger gives a holder that
        // asks again its own grant back, so callers sharing one holder name would all be "granted".
        var holder = $"{_names[endpoint]}-f{Interlocked.Increment(ref _fetchers)}";
        while (true)
        {
            var (status, json) = await AcquireAsync(endpoint, imageId, sizeBytes, holder);
            switch (status)
            {
                case 201:
                    return await CompleteAsync(endpoint, imageId, sizeBytes, json!);
                case 200:
                    return Outcome.Ok;
                case 202:
                    // Long poll: the answer comes as soon as the image is cached or the lease is free again.
                    while (true)
                    {
                        var left = (int)((deadline - Stopwatch.GetTimestamp()) * 1000 / Stopwatch.Frequency);
                        if (left <= 0) return Outcome.Unavailable("wait timed out");
                        var (s, state) = await SendAsync(HttpMethod.Get, Url(endpoint, $"/v1/images/{imageId}?waitMs={Math.Min(left, 10_000)}"), null);
                        if (s != 200) return s is 0 or 503 ? Outcome.Unavailable(s.ToString()) : Outcome.Error($"GET image: HTTP {s}");
                        var st = state!.RootElement.GetProperty("state").GetString();
                        if (st == "cached") return Outcome.Ok;
                        if (st is "free" or "absent" or "none") break; // the holder gave up: try to take the lease ourselves
                    }
                    break;
                case 0 or 503:
                    return Outcome.Unavailable(status.ToString());
                default:
                    return Outcome.Error($"POST lease: HTTP {status}");
            }
        }
    }

    private Task<(int, JsonDocument?)> AcquireAsync(int endpoint, string imageId, long sizeBytes, string? holder = null) =>
        SendAsync(HttpMethod.Post, Url(endpoint, $"/v1/images/{imageId}/lease"),
            JsonSerializer.SerializeToUtf8Bytes(new { node = holder ?? _names[endpoint], sizeBytes }, Web));

    private async Task<Outcome> CompleteAsync(int endpoint, string imageId, long sizeBytes, JsonDocument granted)
    {
        var leaseId = granted.RootElement.GetProperty("leaseId").GetString();
        var token = granted.RootElement.GetProperty("fencingToken").GetInt64();
        var (status, _) = await SendAsync(HttpMethod.Post, Url(endpoint, $"/v1/images/{imageId}/lease/{leaseId}/complete"),
            JsonSerializer.SerializeToUtf8Bytes(new { fencingToken = token, sizeBytes, checksum = "00ff" }, Web));
        return status switch
        {
            200 => new Outcome(OutcomeKind.Ok, Granted: true),
            0 or 503 => Outcome.Unavailable(status.ToString()),
            _ => Outcome.Error($"POST complete: HTTP {status}"),
        };
    }

    public async Task<int> LeaderEndpointAsync(CancellationToken ct)
    {
        for (var attempt = 0; attempt < 100; attempt++)
        {
            for (var i = 0; i < _nodes; i++)
            {
                if (_procs[i] is null or { HasExited: true }) continue;
                if (await LeaderNodeAsync(i) is { } node && Array.IndexOf(_names, node) is var k and >= 0) return k;
            }
            await Task.Delay(200, ct);
        }
        throw new InvalidOperationException("no node names a leader");
    }

    /// <summary>The leader's /v1/leader answer (node, epoch, recovery), through <paramref name="endpoint"/>.</summary>
    public async Task<JsonDocument?> LeaderInfoAsync(int endpoint)
    {
        var (status, json) = await SendAsync(HttpMethod.Get, Url(endpoint, "/v1/leader"), null);
        return status == 200 ? json : null;
    }

    private async Task<string?> LeaderNodeAsync(int endpoint) =>
        (await LeaderInfoAsync(endpoint))?.RootElement.GetProperty("node").GetString();

    public void Kill(int endpoint) => _procs[endpoint]?.Kill();

    public async Task RestartAsync(int endpoint, CancellationToken ct)
    {
        _procs[endpoint]?.Dispose();
        // The downed incarnation must be removed before the same address can join again; Akka handles that.
        _procs[endpoint] = Launch(endpoint);
        await WaitHealthyAsync(TimeSpan.FromSeconds(120), ct);
    }

    /// <summary>Stops every node (SIGTERM, graceful leave), then starts them all again on the same journal.</summary>
    public async Task RestartAllAsync(CancellationToken ct)
    {
        foreach (var p in _procs) p?.Stop(TimeSpan.FromSeconds(20));
        for (var i = 0; i < _nodes; i++)
        {
            _procs[i]?.Dispose();
            _procs[i] = Launch(i);
        }
        await WaitHealthyAsync(TimeSpan.FromSeconds(180), ct);
    }

    public async Task<Outcome> ProbeWriteAsync(int endpoint, string key, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var body = JsonSerializer.SerializeToUtf8Bytes(new { node = _names[endpoint], bytes = 1 }, Web);
        var (status, _) = await SendAsync(HttpMethod.Put, Url(endpoint, $"/v1/volumes/{Volume}/reservations/probe-{key}"), body, cts.Token);
        return status is 200 or 201 ? Outcome.Ok : Outcome.Unavailable(status.ToString());
    }

    public IReadOnlyList<long> RssBytes() => _procs.Select(p => p?.RssBytes() ?? 0).ToList();

    /// <summary>One request: (status, parsed JSON body or null); status 0 when no response came (refused, timeout).</summary>
    public async Task<(int Status, JsonDocument? Json)> SendAsync(HttpMethod method, string url, byte[]? body, CancellationToken ct = default)
    {
        try
        {
            using var req = new HttpRequestMessage(method, url);
            if (body is not null)
            {
                req.Content = new ByteArrayContent(body);
                req.Content.Headers.ContentType = JsonType;
            }
            using var resp = await _http.SendAsync(req, ct);
            var status = (int)resp.StatusCode;
            JsonDocument? json = null;
            if (resp.Content.Headers.ContentType?.MediaType is "application/json")
                json = JsonDocument.Parse(await resp.Content.ReadAsByteArrayAsync(ct));
            return (status, json);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or OperationCanceledException or JsonException)
        {
            return (0, null);
        }
    }

    public async ValueTask DisposeAsync()
    {
        // Every node at once (SIGTERM, then SIGKILL after the grace): a graceful leave each, not one after the other.
        await Task.WhenAll(_procs.Select(p => Task.Run(() => p?.Stop(TimeSpan.FromSeconds(15)))));
        foreach (var p in _procs) p?.Dispose();
        _http.Dispose();
    }

}
