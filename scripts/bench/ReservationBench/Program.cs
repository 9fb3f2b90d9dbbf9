// Load generator for PUT /v1/volumes/{volume}/reservations/{consumerId} against a running cluster.
//
//   dotnet run -c Release --project scripts/bench/ReservationBench -- --endpoints http://127.0.0.1:7071,http://127.0.0.1:7072
//       [--concurrency 64] [--duration 20] [--warmup 3] [--volume Volume1] [--bytes 1048576] [--sequential 5]
//
// Phase "concurrent": --concurrency workers, worker w always goes through endpoint w % endpoints; every worker PUTs
// fresh consumer ids in a loop. Requests completing within the measured window (after --warmup) are recorded with
// their status; a 503 is retried after 50 ms (same id) and counted as a retry. Latency percentiles are over the
// acknowledged (200/201) requests. Phase "sequential": one worker for --sequential seconds, rotating over the
// endpoints request by request. Afterwards every reservation the run may have created is DELETEd again.
// The last line is "RESULT {json}" with the key numbers.
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

Options opts;
try
{
    opts = Options.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"ReservationBench: {e.Message}");
    Console.Error.WriteLine(Options.Usage);
    return 2;
}

using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true; // finish the phase early, but still clean up
    stop.Cancel();
};

using var http = new HttpClient(new SocketsHttpHandler
{
    MaxConnectionsPerServer = Math.Max(64, opts.Concurrency * 2),
    PooledConnectionLifetime = TimeSpan.FromMinutes(5),
    PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
    UseProxy = false,
    UseCookies = false,
    AllowAutoRedirect = false,
})
{
    Timeout = TimeSpan.FromSeconds(30),
};

var bench = new Bench(opts, http, stop.Token);
return await bench.RunAsync();

internal sealed record Options(
    IReadOnlyList<string> Endpoints, int Concurrency, double Duration, double Warmup, string Volume, long Bytes, double Sequential)
{
    public const string Usage =
        "usage: ReservationBench --endpoints URL[,URL...] [--concurrency 64] [--duration 20] [--warmup 3] " +
        "[--volume Volume1] [--bytes 1MiB] [--sequential 5]";

    public static Options Parse(string[] args)
    {
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < args.Length; i += 2)
        {
            var key = args[i];
            if (key is "-h" or "--help") throw new ArgumentException("help requested");
            if (!key.StartsWith("--", StringComparison.Ordinal) || key.Length < 3) throw new ArgumentException($"expected --key, got '{key}'");
            if (i + 1 >= args.Length) throw new ArgumentException($"{key} needs a value");
            map[key[2..]] = args[i + 1];
        }

        string Take(string key, string fallback)
        {
            if (!map.Remove(key, out var v)) return fallback;
            return v;
        }

        var endpoints = Take("endpoints", "")
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(e => e.TrimEnd('/'))
            .ToList();
        if (endpoints.Count == 0) throw new ArgumentException("--endpoints is required");
        foreach (var e in endpoints)
            if (!Uri.TryCreate(e, UriKind.Absolute, out var u) || (u.Scheme != "http" && u.Scheme != "https"))
                throw new ArgumentException($"not an http(s) URL: '{e}'");

        var o = new Options(
            endpoints,
            PositiveInt("concurrency", Take("concurrency", "64")),
            Seconds("duration", Take("duration", "20"), allowZero: false),
            Seconds("warmup", Take("warmup", "3"), allowZero: true),
            Take("volume", "Volume1"),
            Size("bytes", Take("bytes", "1MiB")),
            Seconds("sequential", Take("sequential", "5"), allowZero: true));
        if (map.Count > 0) throw new ArgumentException($"unknown option(s): {string.Join(", ", map.Keys.Select(k => "--" + k))}");
        return o;
    }

    private static int PositiveInt(string key, string v) =>
        int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n > 0
            ? n : throw new ArgumentException($"--{key} must be a positive integer, got '{v}'");

    private static double Seconds(string key, string v, bool allowZero) =>
        double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var s) && (s > 0 || (allowZero && s == 0))
            ? s : throw new ArgumentException($"--{key} must be a {(allowZero ? "non-negative" : "positive")} number of seconds, got '{v}'");

    /// <summary>A byte count, optionally with KiB, MiB or GiB.</summary>
    private static long Size(string key, string v)
    {
        var m = Regex.Match(v.Trim(), @"^(\d+)\s*(B|KiB|MiB|GiB)?$", RegexOptions.IgnoreCase);
        if (!m.Success || !long.TryParse(m.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n <= 0)
            throw new ArgumentException($"--{key} must be a positive byte count (optionally KiB/MiB/GiB), got '{v}'");
        var shift = m.Groups[2].Value.ToLowerInvariant() switch { "kib" => 10, "mib" => 20, "gib" => 30, _ => 0 };
        return checked(n << shift);
    }
}

/// <summary>One completed HTTP request: which endpoint, its status (0: no response), its latency in Stopwatch ticks.</summary>
internal readonly record struct Sample(int Endpoint, int Status, long Ticks)
{
    public bool Acked => Status is 200 or 201;
}

internal sealed record PhaseResult(string Name, int Workers, double WindowSeconds, List<Sample> Samples, List<(int Endpoint, string Id)> Touched, long Created);

internal sealed record Stats(long Acked, double Rps, double? P50, double? P90, double? P99, double? P999, double? Max, long Conflicts, long Retries, long Errors)
{
    public static Stats Of(IEnumerable<Sample> samples, double windowSeconds)
    {
        var acked = new List<long>();
        long conflicts = 0, retries = 0, errors = 0;
        foreach (var s in samples)
        {
            if (s.Acked) acked.Add(s.Ticks);
            else if (s.Status == 409) conflicts++;
            else if (s.Status == 503) retries++;
            else errors++;
        }
        acked.Sort();
        return new Stats(acked.Count, acked.Count / windowSeconds,
            Pct(acked, 0.50), Pct(acked, 0.90), Pct(acked, 0.99), Pct(acked, 0.999), acked.Count == 0 ? null : Ms(acked[^1]),
            conflicts, retries, errors);
    }

    /// <summary>Nearest-rank percentile of sorted ticks, in milliseconds.</summary>
    private static double? Pct(List<long> sorted, double p) =>
        sorted.Count == 0 ? null : Ms(sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Count) - 1, 0, sorted.Count - 1)]);

    public static double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;
}

internal sealed class Bench(Options opts, HttpClient http, CancellationToken stop)
{
    private static readonly MediaTypeHeaderValue Json = new("application/json");
    private static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web);

    private readonly string _runId = Guid.NewGuid().ToString("N")[..8];
    private readonly int _n = opts.Endpoints.Count;
    private string[] _nodes = [];
    private byte[][] _bodies = [];

    public async Task<int> RunAsync()
    {
        Console.WriteLine($"ReservationBench run {_runId}: {_n} endpoint(s), volume {opts.Volume}, {opts.Bytes} bytes per claim, " +
                          $"{Environment.ProcessorCount} CPUs visible");

        if (!await WaitForLeaderAsync(TimeSpan.FromSeconds(60)))
        {
            Console.Error.WriteLine("no endpoint answered GET /v1/leader within 60 s");
            return 1;
        }
        _nodes = await Task.WhenAll(opts.Endpoints.Select((_, i) => NodeNameAsync(i)));
        // The body names the node the request goes through, as the agent on that host would.
        _bodies = _nodes.Select(node => JsonSerializer.SerializeToUtf8Bytes(new { node, bytes = opts.Bytes }, Web)).ToArray();
        var leaderBefore = await LeaderAsync();
        Console.WriteLine($"nodes: {string.Join(", ", opts.Endpoints.Select((e, i) => $"{e} = {_nodes[i]}"))}");
        Console.WriteLine($"leader: {Describe(leaderBefore)}");
        Console.WriteLine();

        var concurrent = await RunPhaseAsync("concurrent", opts.Concurrency, opts.Warmup, opts.Duration, (w, _) => w % _n);
        var leaderAfter = await LeaderAsync();
        var leaderIndex = leaderAfter.Index ?? leaderBefore.Index;
        if (leaderAfter.Node != leaderBefore.Node)
            Console.WriteLine($"WARNING: the leader moved during the run: before {Describe(leaderBefore)}, after {Describe(leaderAfter)}");

        var total = Stats.Of(concurrent.Samples, concurrent.WindowSeconds);
        var perEndpoint = Enumerable.Range(0, _n)
            .Select(i => Stats.Of(concurrent.Samples.Where(s => s.Endpoint == i), concurrent.WindowSeconds)).ToArray();
        Console.WriteLine($"== concurrent: {concurrent.Workers} workers, {concurrent.WindowSeconds:0.#} s measured after {opts.Warmup:0.#} s warmup " +
                          "(latencies of acknowledged requests, ms; 503 = retries)");
        PrintTable(perEndpoint, total, leaderIndex);

        double? hopRatio = null;
        if (leaderIndex is { } li && _n > 1)
        {
            var viaLeader = Stats.Of(concurrent.Samples.Where(s => s.Endpoint == li), 1).P50;
            var viaOthers = Stats.Of(concurrent.Samples.Where(s => s.Endpoint != li), 1).P50;
            if (viaLeader is > 0 && viaOthers is { } o)
            {
                hopRatio = o / viaLeader.Value;
                Console.WriteLine($"p50 through non-leader endpoints / p50 through the leader's endpoint: {o:0.00} / {viaLeader:0.00} ms = {hopRatio:0.00}x");
            }
        }
        else if (leaderIndex is null)
        {
            Console.WriteLine("leader endpoint unknown: no hop ratio");
        }
        Console.WriteLine();

        PhaseResult? sequential = null;
        Stats? seq = null;
        double? seqHop = null;
        double? gain = null;
        if (opts.Sequential > 0 && !stop.IsCancellationRequested)
        {
            sequential = await RunPhaseAsync("sequential", 1, 0, opts.Sequential, (_, n) => (int)(n % _n));
            seq = Stats.Of(sequential.Samples, sequential.WindowSeconds);
            Console.WriteLine($"== sequential: 1 worker, {sequential.WindowSeconds:0.#} s, endpoints in rotation");
            Console.WriteLine($"acked {seq.Acked}, {seq.Rps:0.0} req/s, p50 {F(seq.P50)} ms, p99 {F(seq.P99)} ms, " +
                              $"409 {seq.Conflicts}, 503 {seq.Retries}, errors {seq.Errors}");
            if (leaderIndex is { } li2 && _n > 1)
            {
                var viaLeader = Stats.Of(sequential.Samples.Where(s => s.Endpoint == li2), 1).P50;
                var viaOthers = Stats.Of(sequential.Samples.Where(s => s.Endpoint != li2), 1).P50;
                if (viaLeader is > 0 && viaOthers is { } o)
                {
                    seqHop = o / viaLeader.Value;
                    Console.WriteLine($"sequential p50 via leader {viaLeader:0.00} ms, via others {o:0.00} ms ({seqHop:0.00}x)");
                }
            }
            if (seq.Rps > 0)
            {
                gain = total.Rps / seq.Rps;
                Console.WriteLine($"concurrent / sequential throughput: {total.Rps:0.0} / {seq.Rps:0.0} req/s = {gain:0.0}x " +
                                  $"(at concurrency {opts.Concurrency})");
            }
            Console.WriteLine();
        }

        var touched = concurrent.Touched.Concat(sequential?.Touched ?? []).ToList();
        var created = concurrent.Created + (sequential?.Created ?? 0);
        var (deleted, absent, failed, cleanupSeconds) = await CleanupAsync(touched);
        Console.WriteLine($"cleanup: deleted {deleted} reservations ({created} were created by this run; {absent} ids already absent, " +
                          $"{failed} deletes failed) in {cleanupSeconds:0.0} s");

        var result = new
        {
            runId = _runId,
            endpoints = _n,
            concurrency = opts.Concurrency,
            durationS = opts.Duration,
            warmupS = opts.Warmup,
            bytes = opts.Bytes,
            leaderNode = leaderAfter.Node ?? leaderBefore.Node,
            leaderEndpoint = leaderIndex is { } x ? opts.Endpoints[x] : null,
            leaderMoved = leaderAfter.Node != leaderBefore.Node,
            concurrent = Summary(total),
            perEndpoint = perEndpoint.Select((s, i) => new { endpoint = opts.Endpoints[i], node = _nodes[i], leader = i == leaderIndex, stats = Summary(s) }),
            hopP50Ratio = R(hopRatio),
            sequential = seq is null ? null : new { acked = seq.Acked, rps = R(seq.Rps), p50Ms = R(seq.P50), p99Ms = R(seq.P99), hopP50Ratio = R(seqHop) },
            concurrentToSequential = R(gain),
            created,
            deleted,
            deleteFailed = failed,
        };
        Console.WriteLine("RESULT " + JsonSerializer.Serialize(result));
        return total.Acked > 0 && failed == 0 ? 0 : 1;
    }

    private static object Summary(Stats s) => new
    {
        acked = s.Acked,
        rps = R(s.Rps),
        p50Ms = R(s.P50),
        p90Ms = R(s.P90),
        p99Ms = R(s.P99),
        p999Ms = R(s.P999),
        maxMs = R(s.Max),
        conflicts = s.Conflicts,
        retries503 = s.Retries,
        errors = s.Errors,
    };

    private static double? R(double? v) => v is { } d ? Math.Round(d, 3) : null;

    private static string F(double? ms) => ms is { } d ? d.ToString("0.00", CultureInfo.InvariantCulture) : "-";

    private void PrintTable(Stats[] perEndpoint, Stats total, int? leaderIndex)
    {
        var w = Math.Max(8, opts.Endpoints.Max(e => e.Length));
        var header = $"{"endpoint".PadRight(w)}  {"node",-6} {"role",-6} {"acked",8} {"req/s",9} {"p50",8} {"p90",8} {"p99",8} {"p99.9",8} {"max",8} {"409",6} {"503",6} {"err",6}";
        Console.WriteLine(header);
        Console.WriteLine(new string('-', header.Length));
        for (var i = 0; i < _n; i++)
            Console.WriteLine(Row(opts.Endpoints[i].PadRight(w), _nodes[i], i == leaderIndex ? "leader" : "", perEndpoint[i]));
        Console.WriteLine(new string('-', header.Length));
        Console.WriteLine(Row("total".PadRight(w), "", "", total));
    }

    private static string Row(string name, string node, string role, Stats s) =>
        $"{name}  {node,-6} {role,-6} {s.Acked,8} {s.Rps,9:0.0} {F(s.P50),8} {F(s.P90),8} {F(s.P99),8} {F(s.P999),8} {F(s.Max),8} " +
        $"{s.Conflicts,6} {s.Retries,6} {s.Errors,6}";

    private async Task<PhaseResult> RunPhaseAsync(string name, int workers, double warmupSeconds, double durationSeconds, Func<int, long, int> endpointFor)
    {
        Console.WriteLine($"-- {name}: {workers} worker(s), {warmupSeconds:0.#} s warmup + {durationSeconds:0.#} s ...");
        var tag = name[0];
        var start = Stopwatch.GetTimestamp();
        var measureFrom = start + (long)(warmupSeconds * Stopwatch.Frequency);
        var end = measureFrom + (long)(durationSeconds * Stopwatch.Frequency);
        long created = 0;

        async Task<(List<Sample>, List<(int, string)>)> Worker(int w)
        {
            await Task.Yield();
            var samples = new List<Sample>(4096);
            var touched = new List<(int, string)>(4096);
            for (long n = 0; !stop.IsCancellationRequested && Stopwatch.GetTimestamp() < end; n++)
            {
                var ep = endpointFor(w, n);
                var id = $"bench-{_runId}-{tag}{w}-{n}";
                var url = $"{opts.Endpoints[ep]}/v1/volumes/{Uri.EscapeDataString(opts.Volume)}/reservations/{id}";
                while (true)
                {
                    var t0 = Stopwatch.GetTimestamp();
                    var status = await SendAsync(HttpMethod.Put, url, _bodies[ep]);
                    var t1 = Stopwatch.GetTimestamp();
                    if (t1 >= measureFrom && t1 < end) samples.Add(new Sample(ep, status, t1 - t0));
                    if (status == 201) Interlocked.Increment(ref created);
                    if (status != 409) touched.Add((ep, id)); // a 503 or a lost response may still have landed
                    if (status is 503 or 0 && !stop.IsCancellationRequested && Stopwatch.GetTimestamp() < end)
                    {
                        await Task.Delay(50, CancellationToken.None);
                        if (status == 503) continue; // same id again
                    }
                    break;
                }
            }
            return (samples, touched);
        }

        var results = await Task.WhenAll(Enumerable.Range(0, workers).Select(Worker));
        var window = Math.Min(durationSeconds, Math.Max(0.001, (Stopwatch.GetTimestamp() - measureFrom) / (double)Stopwatch.Frequency));
        return new PhaseResult(name, workers, window,
            results.SelectMany(r => r.Item1).ToList(),
            results.SelectMany(r => r.Item2).Distinct().ToList(),
            created);
    }

    /// <summary>Sends one request; the HTTP status, or 0 when no response came back (connection error, timeout).</summary>
    private async Task<int> SendAsync(HttpMethod method, string url, byte[]? body)
    {
        try
        {
            using var req = new HttpRequestMessage(method, url);
            if (body is not null)
            {
                req.Content = new ByteArrayContent(body);
                req.Content.Headers.ContentType = Json;
            }
            // The default completion option reads the whole (small) body, so the connection goes back to the pool.
            using var resp = await http.SendAsync(req, CancellationToken.None);
            return (int)resp.StatusCode;
        }
        catch (HttpRequestException)
        {
            return 0;
        }
        catch (TaskCanceledException)
        {
            return 0;
        }
    }

    private async Task<(long Deleted, long Absent, long Failed, double Seconds)> CleanupAsync(List<(int Endpoint, string Id)> touched)
    {
        long deleted = 0, absent = 0, failed = 0;
        var sw = Stopwatch.StartNew();
        await Parallel.ForEachAsync(touched, new ParallelOptions { MaxDegreeOfParallelism = opts.Concurrency }, async (t, _) =>
        {
            var url = $"{opts.Endpoints[t.Endpoint]}/v1/volumes/{Uri.EscapeDataString(opts.Volume)}/reservations/{t.Id}";
            for (var attempt = 0; ; attempt++)
            {
                var status = await SendAsync(HttpMethod.Delete, url, null);
                if (status == 204) { Interlocked.Increment(ref deleted); return; }
                if (status == 404) { Interlocked.Increment(ref absent); return; }
                if (attempt >= 20 || status is not (503 or 0)) { Interlocked.Increment(ref failed); return; }
                await Task.Delay(50, CancellationToken.None);
            }
        });
        return (deleted, absent, failed, sw.Elapsed.TotalSeconds);
    }

    private async Task<bool> WaitForLeaderAsync(TimeSpan timeout)
    {
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < timeout && !stop.IsCancellationRequested)
        {
            var ok = await Task.WhenAll(opts.Endpoints.Select(e => SendAsync(HttpMethod.Get, $"{e}/v1/leader", null)));
            if (ok.All(s => s == 200)) return true;
            await Task.Delay(500, CancellationToken.None);
        }
        return false;
    }

    private async Task<string> NodeNameAsync(int i)
    {
        try
        {
            using var doc = JsonDocument.Parse(await http.GetByteArrayAsync($"{opts.Endpoints[i]}/healthz"));
            if (doc.RootElement.TryGetProperty("node", out var n) && n.GetString() is { Length: > 0 } name) return name;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException)
        {
        }
        return $"hv{i + 1:00}"; // the naming of scripts/cluster.sh
    }

    private sealed record Leader(string? Node, int? Index, long? Epoch, string? Error);

    private static string Describe(Leader l) =>
        l.Node is null ? $"unknown ({l.Error})" : $"{l.Node} (epoch {l.Epoch}) via endpoint {(l.Index is { } i ? (i + 1).ToString(CultureInfo.InvariantCulture) : "none of the given ones")}";

    /// <summary>Asks every endpoint for the leader; all should agree. Matches the leader's node name to an endpoint.</summary>
    private async Task<Leader> LeaderAsync()
    {
        var answers = await Task.WhenAll(opts.Endpoints.Select(async e =>
        {
            try
            {
                using var doc = JsonDocument.Parse(await http.GetByteArrayAsync($"{e}/v1/leader"));
                return (Node: doc.RootElement.GetProperty("node").GetString(), Epoch: doc.RootElement.GetProperty("epoch").GetInt64(), Error: (string?)null);
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or JsonException or KeyNotFoundException or InvalidOperationException)
            {
                return (Node: (string?)null, Epoch: 0L, Error: (string?)ex.Message);
            }
        }));
        var known = answers.Where(a => a.Node is not null).ToList();
        if (known.Count == 0) return new Leader(null, null, null, answers.FirstOrDefault().Error);
        var distinct = known.Select(a => a.Node).Distinct().ToList();
        if (distinct.Count > 1)
            Console.WriteLine($"WARNING: endpoints disagree about the leader: {string.Join(", ", answers.Select((a, i) => $"{opts.Endpoints[i]} says {a.Node ?? a.Error}"))}");
        var best = known.MaxBy(a => a.Epoch);
        var node = best.Node!;
        int? index = Array.FindIndex(_nodes, n => string.Equals(n, node, StringComparison.OrdinalIgnoreCase));
        if (index < 0)
        {
            var m = Regex.Match(node, @"^hv0*(\d+)$", RegexOptions.IgnoreCase);
            index = m.Success && int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) is var k && k >= 1 && k <= _n ? k - 1 : null;
        }
        return new Leader(node, index, best.Epoch, null);
    }
}
