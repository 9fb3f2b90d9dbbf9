using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Coordinator.Client;
using Coordinator.IntegrationTests.Harness;
using Xunit.Abstractions;

namespace Coordinator.IntegrationTests;

/// <summary>
/// HTTPS for the API with a certificate made by the test (its own CA), and the start-up refusals: beyond loopback in
/// plain text, or with no credential, the node exits 2 naming the setting; under security.insecure it warns instead.
/// </summary>
public sealed class HttpsTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("coord-https-").FullName;
    private readonly List<LocalCluster> _clusters = [];

    public void Dispose()
    {
        foreach (var c in _clusters) c.Dispose();
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    private LocalCluster Cluster(string extra = "")
    {
        // Remoting stays plain on loopback: these tests give the HTTP API its own certificates (or none).
        var c = new LocalCluster(1, extra, "hs", tls: false);
        _clusters.Add(c);
        return c;
    }

    /// <summary>A CA and a server certificate for 127.0.0.1 and localhost it issued (PEM files, the key private).</summary>
    private (string Ca, string Cert, string Key) MakeCertificates(string name)
    {
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest($"CN=test CA {name}", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        using var ca = caRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=127.0.0.1", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        san.AddDnsName("localhost");
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        using var cert = request.Create(ca, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddDays(7), RandomNumberGenerator.GetBytes(8));

        var paths = (Path.Combine(_dir, name + "-ca.pem"), Path.Combine(_dir, name + ".crt"), Path.Combine(_dir, name + ".key"));
        File.WriteAllText(paths.Item1, ca.ExportCertificatePem());
        File.WriteAllText(paths.Item2, cert.ExportCertificatePem());
        File.WriteAllText(paths.Item3, key.ExportPkcs8PrivateKeyPem());
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(paths.Item3, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return paths;
    }

    [Fact]
    public async Task A_node_with_tls_on_serves_https_to_clients_that_trust_its_ca_and_nothing_in_plain_http()
    {
        var (ca, cert, key) = MakeCertificates("node");
        var (otherCa, _, _) = MakeCertificates("other");
        var cluster = Cluster();
        var node = cluster.Nodes[0];
        cluster.AppendConfig(node, $$"""
            coordinator.http.tls = on
            coordinator.http.certificate { file = "{{cert}}", key-file = "{{key}}" }
            """);
        cluster.Start(node);
        var https = new Uri($"https://127.0.0.1:{node.HttpPort}");

        // The client retries refused connections and 503s while the node starts.
        using var trusting = new CoordinatorClient(https, new CoordinatorClientOptions { CaFile = ca, RetryBudget = TimeSpan.FromSeconds(90) });
        var leader = await trusting.GetLeaderAsync();
        Assert.True(leader.IsOk, leader.ToString());
        var volumes = await trusting.GetVolumesAsync();
        Assert.True(volumes.IsOk, volumes.ToString());

        // A client that trusts another CA, or the machine's roots, refuses the certificate.
        using var wrongCa = new HttpClient(CoordinatorClient.CreateHandler(otherCa));
        await Assert.ThrowsAsync<HttpRequestException>(() => wrongCa.GetAsync(new Uri(https, "/v1/volumes")));
        using var machineRoots = new HttpClient();
        await Assert.ThrowsAsync<HttpRequestException>(() => machineRoots.GetAsync(new Uri(https, "/v1/volumes")));

        // Plain http to the same port gets no answer from the API.
        using var plain = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        try
        {
            using var r = await plain.GetAsync($"http://127.0.0.1:{node.HttpPort}/v1/volumes");
            Assert.Fail($"plain http was answered {(int)r.StatusCode}");
        }
        catch (HttpRequestException e)
        {
            output.WriteLine($"plain http: {e.Message}");
        }

        // coordctl with --ca-file (and with COORDCTL_CA_FILE's equivalent flag absent, it refuses the certificate).
        var ok = await Coordctl.RunAsync("volumes", "--endpoint", https.ToString(), "--ca-file", ca, "--json", "--retry-for", "5");
        Assert.True(ok.ExitCode == 0, ok.ToString());
        Assert.Contains("Volume1", ok.Stdout);
        var refused = await Coordctl.RunAsync("volumes", "--endpoint", https.ToString(), "--ca-file", otherCa, "--retry-for", "0");
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("HTTPS", File.ReadAllText(cluster.LogPath(node)));
    }

    [Fact]
    public async Task Beyond_loopback_without_tls_or_without_credentials_the_node_refuses_to_start()
    {
        var plain = Cluster();
        var n1 = plain.Nodes[0];
        plain.AppendConfig(n1, "coordinator.http.host = \"0.0.0.0\"");
        plain.Start(n1);
        Assert.Equal(2, await plain.WaitForExitAsync(n1, TimeSpan.FromSeconds(60)));
        var log = File.ReadAllText(plain.LogPath(n1));
        output.WriteLine(log);
        Assert.Contains("coordinator: invalid configuration: coordinator.http.host is 0.0.0.0 (beyond loopback)", log);
        Assert.Contains("coordinator.security.insecure", log);

        // With TLS but no credential at all (the harness's admin token removed).
        var (_, cert, key) = MakeCertificates("bare");
        var bare = Cluster();
        var n2 = bare.Nodes[0];
        bare.AppendConfig(n2, $$"""
            coordinator.http.host = "0.0.0.0"
            coordinator.http.admin-token = ""
            coordinator.http.certificate { file = "{{cert}}", key-file = "{{key}}" }
            """);
        bare.Start(n2);
        Assert.Equal(2, await bare.WaitForExitAsync(n2, TimeSpan.FromSeconds(60)));
        var bareLog = File.ReadAllText(bare.LogPath(n2));
        Assert.True(bareLog.Contains("no credential is configured: set coordinator.http.agent-token"), bareLog);

        // tls = on with no certificate anywhere.
        var noCert = Cluster("coordinator.http.tls = on");
        noCert.Start(noCert.Nodes[0]);
        Assert.Equal(2, await noCert.WaitForExitAsync(noCert.Nodes[0], TimeSpan.FromSeconds(60)));
        Assert.Contains("coordinator.http.tls is on but neither coordinator.http.certificate nor coordinator.security.certificate is set",
            File.ReadAllText(noCert.LogPath(noCert.Nodes[0])));
    }

    [Theory]
    [InlineData("[ { name = \"ops\", role = admin, token-sha256 = \"abc\" } ]", "coordinator.http.identities[0] (ops): token-sha256 must be 64 hex digits")]
    [InlineData("[ { name = \"a1\", role = agent, token-sha256 = \"%HASH%\" } ]", "coordinator.http.identities[0] (a1): an agent needs its node")]
    [InlineData("[ { name = \"x\", role = root, token-sha256 = \"%HASH%\" } ]", "role 'root' is not agent, admin or peer")]
    [InlineData("[ { name = \"dup\", role = admin, token-sha256 = \"%ADMINHASH%\" } ]", "admin-token and dup have the same token")]
    public async Task A_bad_identity_is_refused_at_start_naming_the_setting(string identities, string expected)
    {
        string Hex(string t) => Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(t)));
        var cluster = Cluster();
        var n = cluster.Nodes[0];
        cluster.AppendConfig(n, "coordinator.http.identities = " +
                                identities.Replace("%HASH%", Hex("some-token")).Replace("%ADMINHASH%", Hex(LocalCluster.AdminToken)));
        cluster.Start(n);
        Assert.Equal(2, await cluster.WaitForExitAsync(n, TimeSpan.FromSeconds(60)));
        var log = File.ReadAllText(cluster.LogPath(n));
        Assert.True(log.Contains("coordinator: invalid configuration: ") && log.Contains(expected), log);
        // The refusal names the credential, never its token.
        Assert.DoesNotContain(LocalCluster.AdminToken, log);
    }

    [Fact]
    public async Task Under_security_insecure_plain_http_beyond_loopback_starts_with_a_warning()
    {
        var cluster = Cluster();
        var n = cluster.Nodes[0];
        cluster.AppendConfig(n, """
            coordinator.http.host = "0.0.0.0"
            coordinator.security.insecure = on
            """);
        cluster.Start(n);
        await cluster.WaitReadyAsync(cluster.Nodes, TimeSpan.FromSeconds(90));
        var log = File.ReadAllText(cluster.LogPath(n));
        Assert.Contains(" WRN]", log.Split('\n').Single(l => l.Contains("the HTTP API is served in plain text beyond loopback")));
    }
}
