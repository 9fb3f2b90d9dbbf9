using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;

namespace Coordinator.IntegrationTests.Harness;

/// <summary>
/// N real node processes on 127.0.0.1: distinct HTTP and Akka ports, one shared CSV folder, one shared journal.
/// Every process is started by PID and killed by PID; Dispose stops exactly what this instance started.
/// Remoting runs over mutual TLS unless <c>tls: false</c>: one CA per cluster (<see cref="Ca"/>), a certificate per node
/// (PEM certificate and key under <see cref="CertificateDir"/>), the CA as every node's trust bundle.
/// </summary>
public sealed class LocalCluster : IDisposable
{
    private readonly Dictionary<string, Process> _processes = new();
    private readonly string _extraHocon;
    private readonly bool _defaultSimulatedDatabase;
    private readonly int _seeds;

    public string Root { get; } = Path.Combine(Path.GetTempPath(), "coord-cluster-" + Guid.NewGuid().ToString("N")[..10]);
    public IReadOnlyList<NodeInfo> Nodes { get; }
    /// <summary>The test's client. A node whose API is beyond loopback (a network namespace) serves HTTPS with its
    /// node certificate and wants a credential there: this client trusts the cluster's CA (only it) and sends the admin
    /// token to such nodes when a request carries none. Loopback requests go out exactly as the test made them.</summary>
    public HttpClient Http { get; }

    /// <param name="defaultSimulatedDatabase">Leave coordinator.hyperv.simulated.database unset, as scripts/cluster.sh
    /// does, so that the nodes use the product's default place for it (beside the first volume's folder, which is
    /// <see cref="SimulatedDatabasePath"/>).</param>
    /// <param name="tls">Mutual TLS between the nodes (the default); false: plain remoting (loopback only).</param>
    /// <param name="seeds">How many of the nodes (the first ones) are seed nodes; default all.</param>
    public LocalCluster(int size, string extraHocon = "", string namePrefix = "hv", Func<int, NodePlacement>? placement = null,
        bool defaultSimulatedDatabase = false, bool tls = true, int? seeds = null)
    {
        _seeds = seeds ?? size;
        _extraHocon = extraHocon;
        _defaultSimulatedDatabase = defaultSimulatedDatabase;
        Tls = tls;
        Http = new HttpClient(new BeyondLoopbackCredentials(this)) { Timeout = TimeSpan.FromSeconds(15) };
        Directory.CreateDirectory(Root);
        Nodes = Enumerable.Range(1, size).Select(i => placement is null
            ? new NodeInfo($"{namePrefix}{i:00}", LoopbackPorts.Next(), LoopbackPorts.Next())
            : new NodeInfo($"{namePrefix}{i:00}", 7070, 4053, placement(i))).ToList();
        if (tls)
        {
            Ca = TestCa.Create("coordinator test CA " + Path.GetFileName(Root));
            WriteTrust(Ca);
            foreach (var n in Nodes) IssueCertificate(n, Ca);
        }
        foreach (var n in Nodes) File.WriteAllText(ConfigPath(n), SiteConfig(n));
    }

    /// <summary>Whether remoting runs over mutual TLS (the default).</summary>
    public bool Tls { get; }

    /// <summary>The cluster's CA (null without TLS).</summary>
    public TestCa? Ca { get; }

    public string CertificateDir => Path.Combine(Root, "certs");

    /// <summary>Every node's trust bundle (coordinator.security.trust.ca-file).</summary>
    public string TrustFile => Path.Combine(CertificateDir, "cluster-ca.pem");

    /// <summary>The member address scheme: akka.ssl.tcp with TLS, akka.tcp without.</summary>
    public string AkkaScheme => Tls ? "akka.ssl.tcp" : "akka.tcp";

    /// <summary>Where node <paramref name="n"/>'s certificate and key are (coordinator.security.certificate).</summary>
    public (string Certificate, string Key) CertificateFiles(NodeInfo n) =>
        (Path.Combine(CertificateDir, n.Name + ".crt"), Path.Combine(CertificateDir, n.Name + ".key"));

    /// <summary>(Re)writes node <paramref name="n"/>'s certificate, issued by <paramref name="ca"/>; a node reads it when it
    /// (re)starts.</summary>
    public X509Certificate2 IssueCertificate(NodeInfo n, TestCa ca)
    {
        var cert = ca.Issue(n.Name, [n.Placement.AkkaHost, n.Placement.UrlHost]);
        TestCertificates.WritePem(cert, CertificateDir, n.Name);
        return cert;
    }

    /// <summary>(Re)writes the trust bundle every node reads when it (re)starts.</summary>
    public void WriteTrust(params TestCa[] authorities) => TestCertificates.WriteBundle(TrustFile, authorities);

    public string CsvRoot => Path.Combine(Root, "csv");
    public string JournalPath => Path.Combine(Root, "ledger.db");
    public const string AdminToken = "local-cluster-admin-token";

    /// <summary>A request carrying the admin token (for drain, resume and member operations).</summary>
    public static HttpRequestMessage AsAdmin(HttpMethod method, Uri url, HttpContent? content = null)
    {
        var m = new HttpRequestMessage(method, url) { Content = content };
        m.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", AdminToken);
        return m;
    }
    public string SimulatedDatabasePath => Path.Combine(CsvRoot, ".simcluster", "cluster.db");

    public NodeInfo Node(string name) => Nodes.Single(n => n.Name == name);

    public Uri Url(NodeInfo n, string path) => new($"{HttpScheme(n)}://{n.Placement.UrlHost}:{n.HttpPort}{path}");

    /// <summary>https where the node's API is beyond loopback and it has a certificate (coordinator.http.tls = auto).</summary>
    public string HttpScheme(NodeInfo n) =>
        Tls && !Coordinator.Cluster.Configuration.SecuritySettings.IsLoopback(n.Placement.HttpHost) ? "https" : "http";

    /// <summary>See <see cref="Http"/>.</summary>
    private sealed class BeyondLoopbackCredentials : DelegatingHandler
    {
        public BeyondLoopbackCredentials(LocalCluster cluster) : base(new SocketsHttpHandler
        {
            SslOptions =
            {
                // The nodes' HTTPS certificates chain to this cluster's CA, never to the machine's roots.
                RemoteCertificateValidationCallback = (_, cert, _, _) => cluster.Ca is { } ca && cert is not null
                    && new Coordinator.Cluster.Security.ClusterTrust([ca.Certificate], []).Check(
                        System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificate(cert.GetRawCertData())) is null,
            },
        }) { }

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
        {
            if (request.RequestUri is { Scheme: "https" } && request.Headers.Authorization is null
                && !Coordinator.Cluster.Configuration.SecuritySettings.IsLoopback(request.RequestUri.Host))
                request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", AdminToken);
            return base.SendAsync(request, ct);
        }
    }

    public string ConfigPath(NodeInfo n) => Path.Combine(Root, n.Name + ".hocon");

    /// <summary>Adds HOCON to one node's site file (before it starts), e.g. the peers of another cluster.</summary>
    public void AppendConfig(NodeInfo n, string hocon) => File.AppendAllText(ConfigPath(n), "\n" + hocon + "\n");

    public string LogPath(NodeInfo n) => Path.Combine(Root, n.Name + ".log");

    private string SiteConfig(NodeInfo n)
    {
        var seeds = string.Join(", ", Nodes.Take(_seeds).Select(s => $"\"{AkkaScheme}://coordinator@{s.Placement.AkkaHost}:{s.AkkaPort}\""));
        var (cert, key) = CertificateFiles(n);
        var security = Tls
            ? $$"""
              coordinator.security {
                certificate { file = "{{Esc(cert)}}", key-file = "{{Esc(key)}}" }
                trust.ca-file = "{{Esc(TrustFile)}}"
                remoting.tls = on
              }
              """
            : "coordinator.security.remoting.tls = off";
        return $$"""
            coordinator {
              node-name = "{{n.Name}}"
              data-dir = "{{Esc(Path.Combine(Root, n.Name))}}"
              http.port = {{n.HttpPort}}
              persistence.connection-string = "Data Source={{Esc(JournalPath)}}"
              # The simulated cluster service's database sits on the shared storage but outside the volumes, so
              # that it does not show up as unowned usage in the volumes' accounting.
              {{(_defaultSimulatedDatabase ? "" : $"hyperv.simulated.database = \"{Esc(SimulatedDatabasePath)}\"")}}
              http.admin-token = "{{AdminToken}}"
              csv.volumes = [
                { name = "Volume1", path = "{{Esc(Path.Combine(CsvRoot, "Volume1"))}}", capacity = 100GiB, headroom = 0 },
                { name = "Volume2", path = "{{Esc(Path.Combine(CsvRoot, "Volume2"))}}", capacity = 100TiB, headroom = 0 }
              ]
            }
            akka.remote.dot-netty.tcp.port = {{n.AkkaPort}}
            akka.cluster.seed-nodes = [{{seeds}}]
            akka.remote.dot-netty.tcp.hostname = "{{n.Placement.AkkaHost}}"
            coordinator.http.host = "{{n.Placement.HttpHost}}"
            {{security}}
            {{_extraHocon}}
            """;
    }

    private static string Esc(string s) => s.Replace("\\", "\\\\").Replace("\"", "\\\"");

    public static string ServiceDll()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Coordinator.sln"))) dir = dir.Parent;
        if (dir is null) throw new InvalidOperationException("Coordinator.sln not found above " + AppContext.BaseDirectory);
#if DEBUG
        const string configuration = "Debug";
#else
        const string configuration = "Release";
#endif
        var dll = Path.Combine(dir.FullName, "src", "Coordinator.Service", "bin", configuration, "net10.0", "Coordinator.Service.dll");
        return File.Exists(dll) ? dll : throw new FileNotFoundException("build the solution first", dll);
    }

    public void Start(NodeInfo n)
    {
        if (_processes.TryGetValue(n.Name, out var old) && !old.HasExited)
            throw new InvalidOperationException($"{n.Name} is already running");
        // exec: the shell becomes dotnet, so the PID we hold is the node's own.
        var psi = new ProcessStartInfo("/bin/sh")
        {
            // In a network namespace, `ip netns exec` enters it and execs dotnet: the PID is still the node's own.
            ArgumentList = { "-c", (n.Placement.Netns is { } ns ? $"exec ip netns exec {ns} " : "exec ")
                                   + $"dotnet \"{ServiceDll()}\" --config \"{ConfigPath(n)}\" >>\"{LogPath(n)}\" 2>&1" },
            UseShellExecute = false,
        };
        psi.Environment["DOTNET_gcServer"] = "0";
        _processes[n.Name] = Process.Start(psi) ?? throw new InvalidOperationException("could not start " + n.Name);
    }

    public void StartAll()
    {
        foreach (var n in Nodes) Start(n);
    }

    public bool IsRunning(NodeInfo n) => _processes.TryGetValue(n.Name, out var p) && !p.HasExited;

    public int Pid(NodeInfo n) => _processes[n.Name].Id;

    /// <summary>Waits for a node's process to exit by itself; its exit code, or null if it still runs after <paramref name="timeout"/>.</summary>
    public async Task<int?> WaitForExitAsync(NodeInfo n, TimeSpan timeout)
    {
        var p = _processes[n.Name];
        using var cts = new CancellationTokenSource(timeout);
        try { await p.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException) { return null; }
        return p.ExitCode;
    }

    /// <summary>SIGKILL: no shutdown hooks, no leaving the cluster, sockets dropped by the kernel.</summary>
    public void Kill(NodeInfo n)
    {
        var p = _processes[n.Name];
        if (!p.HasExited) p.Kill(entireProcessTree: false);
        p.WaitForExit(10_000);
    }

    /// <summary>SIGTERM: the generic host runs coordinated shutdown, the node leaves the cluster gracefully.</summary>
    public void Stop(NodeInfo n, TimeSpan timeout)
    {
        var p = _processes[n.Name];
        if (p.HasExited) return;
        Signal(p.Id, "TERM");
        if (!p.WaitForExit((int)timeout.TotalMilliseconds)) Kill(n);
    }

    public static void Signal(int pid, string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { "-" + signal, pid.ToString() } })!;
        kill.WaitForExit();
    }

    /// <summary>Nodes started again by <see cref="WaitReadyAsync"/> after they exited 3, with the time of each restart.</summary>
    public List<string> ServiceManagerRestarts { get; } = [];

    /// <summary>
    /// Waits until every node answers /readyz. A node that exits 3 meanwhile (removed from the cluster: with mutual TLS,
    /// Akka.Remote also stops a member whose outbound handshake failed, e.g. cut by a peer that was still starting;
    /// README "Security") is started again, as systemd's Restart=on-failure and the Windows service's recovery do; at
    /// most twice per node and call. Any other exit is left as it is, for the test to see.
    /// </summary>
    public async Task WaitReadyAsync(IEnumerable<NodeInfo> nodes, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        foreach (var n in nodes)
        {
            var restarts = 0;
            while (true)
            {
                if (_processes.TryGetValue(n.Name, out var p) && p.HasExited && p.ExitCode == 3 && restarts < 2)
                {
                    restarts++;
                    ServiceManagerRestarts.Add($"{DateTime.UtcNow:HH:mm:ss.fff} {n.Name}");
                    File.AppendAllText(LogPath(n), $"\n[harness] {n.Name} exited 3; started again as a service manager would\n");
                    await Task.Delay(2000);
                    Start(n);
                }
                try
                {
                    using var r = await Http.GetAsync(Url(n, "/readyz"));
                    if (r.StatusCode == HttpStatusCode.OK) break;
                }
                catch (HttpRequestException) { }
                catch (TaskCanceledException) { }
                if (DateTime.UtcNow > deadline)
                    throw new TimeoutException($"{n.Name} not ready after {timeout}; log:\n{Tail(n)}");
                await Task.Delay(200);
            }
        }
    }

    /// <summary>Polls <paramref name="condition"/> until it holds; a TimeoutException naming <paramref name="what"/> past
    /// <paramref name="timeout"/>. HTTP errors and timeouts while polling count as "not yet".</summary>
    public async Task WaitUntilAsync(Func<Task<bool>> condition, string what, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            try { if (await condition()) return; }
            catch (HttpRequestException) { }
            catch (TaskCanceledException) { }
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"not within {timeout.TotalSeconds:0} s: {what}");
            await Task.Delay(250);
        }
    }

    public async Task<LeaderInfo> LeaderAsync(NodeInfo via)
    {
        var l = await Http.GetFromJsonAsync<LeaderInfo>(Url(via, "/v1/leader"));
        return l!;
    }

    public string Tail(NodeInfo n, int lines = 40)
    {
        try { return string.Join('\n', File.ReadLines(LogPath(n)).TakeLast(lines)); }
        catch (IOException) { return "(no log)"; }
    }

    public static StringContent Json(object body) =>
        new(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");


    private int _disposed;

    /// <summary>Kills every process this instance started. Safe to call more than once (a fixture whose setup failed
    /// disposes itself, and xunit may dispose it again).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        foreach (var p in _processes.Values)
        {
            try { if (!p.HasExited) { p.Kill(); p.WaitForExit(5000); } }
            catch (InvalidOperationException) { }
            p.Dispose();
        }
        Http.Dispose();
        Ca?.Dispose();
        if (Environment.GetEnvironmentVariable("COORDINATOR_KEEP_TEST_DIRS") is null)
            try { Directory.Delete(Root, true); } catch (IOException) { }
    }
}

public sealed record NodeInfo(string Name, int HttpPort, int AkkaPort, NodePlacement? Where = null)
{
    public NodePlacement Placement => Where ?? NodePlacement.Loopback;
}

/// <summary>Where a node runs: loopback (default), or a network namespace with its own addresses.</summary>
public sealed record NodePlacement(string AkkaHost, string HttpHost, string UrlHost, string? Netns)
{
    public static readonly NodePlacement Loopback = new("127.0.0.1", "127.0.0.1", "127.0.0.1", null);
}

public sealed record LeaderInfo(string Node, string Address, long Epoch, DateTimeOffset Since);
