using System.Net.Security;
using Akka.Configuration;
using Akka.Event;
using Akka.TestKit.Xunit2;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Security;
using Coordinator.IntegrationTests.Harness;

namespace Coordinator.Cluster.Tests.Security;

/// <summary>
/// The remoting rules: plain remoting only on loopback (or with insecure on), with TLS the node's certificate must load
/// at start, seeds follow the transport's scheme, and the TLS validator trusts what ClusterTrust trusts and logs why not.
/// </summary>
public sealed class RemotingTlsSpecs() : TestKit("akka.loglevel = WARNING"), IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("remoting-spec-").FullName;
    private readonly TestCa _ca = TestCa.Create("cluster CA");

    [Theory]
    [InlineData("127.0.0.1", "127.0.0.1")]
    [InlineData("localhost", "localhost")]
    [InlineData("::1", "::1")]
    [InlineData("127.0.0.2", "127.0.0.2")]
    public void Plain_remoting_on_loopback_is_allowed(string hostname, string publicHostname) =>
        Assert.Null(RemotingTls.RefusePlainRemoting(hostname, publicHostname, remotingTls: false, insecure: false));

    [Theory]
    [InlineData("10.0.0.11", "10.0.0.11", "10.0.0.11")]
    [InlineData("0.0.0.0", "127.0.0.1", "0.0.0.0")]
    [InlineData("127.0.0.1", "hv01.example", "hv01.example")]
    [InlineData("", "", "(all interfaces)")]
    public void Plain_remoting_beyond_loopback_is_refused_naming_the_settings(string hostname, string publicHostname, string named)
    {
        var refused = RemotingTls.RefusePlainRemoting(hostname, publicHostname, remotingTls: false, insecure: false);
        Assert.NotNull(refused);
        Assert.Contains(named, refused);
        Assert.Contains("akka.remote.dot-netty.tcp.hostname", refused);
        Assert.Contains("coordinator.security.certificate", refused);
        Assert.Contains("coordinator.security.insecure = on", refused);
    }

    [Fact]
    public void With_tls_or_insecure_any_address_is_allowed()
    {
        Assert.Null(RemotingTls.RefusePlainRemoting("10.0.0.11", "10.0.0.11", remotingTls: true, insecure: false));
        Assert.Null(RemotingTls.RefusePlainRemoting("10.0.0.11", "10.0.0.11", remotingTls: false, insecure: true));
    }

    private static Config Defaults()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Coordinator.sln")))
                return ConfigurationFactory.ParseString(File.ReadAllText(Path.Combine(dir.FullName, "hocon", "coordinator.hocon")));
        throw new InvalidOperationException("Coordinator.sln not found");
    }

    private static CoordinatorSettings Load(string site) => CoordinatorSettings.FromConfig(ConfigurationFactory.ParseString(site).WithFallback(Defaults()));

    [Fact]
    public void The_settings_refuse_a_node_on_the_cluster_network_without_tls_and_accept_it_with_insecure()
    {
        var e = Assert.Throws<ConfigurationException>(() => Load("akka.remote.dot-netty.tcp.hostname = \"10.0.0.11\""));
        Assert.Contains("beyond loopback without TLS", e.Message);
        var insecure = Load("akka.remote.dot-netty.tcp.hostname = \"10.0.0.11\"\ncoordinator.security.insecure = on");
        Assert.True(insecure.Security.Insecure);
        Assert.False(insecure.Security.RemotingTls);
        Assert.False(Load("").Security.RemotingTls); // the defaults: loopback, plain, one command to run
    }

    [Fact]
    public void With_tls_the_settings_load_the_certificate_and_refuse_an_expired_one()
    {
        using var good = _ca.Issue("hv01");
        using var expired = _ca.Issue("hv02", notBefore: DateTimeOffset.UtcNow.AddDays(-10), notAfter: DateTimeOffset.UtcNow.AddDays(-1));
        var (goodCert, goodKey) = TestCertificates.WritePem(good, _dir, "good");
        var (oldCert, oldKey) = TestCertificates.WritePem(expired, _dir, "old");
        var bundle = TestCertificates.WriteBundle(Path.Combine(_dir, "ca.pem"), _ca);
        string Site(string cert, string key) => $$"""
            akka.remote.dot-netty.tcp.hostname = "10.0.0.11"
            coordinator.security.certificate { file = "{{cert}}", key-file = "{{key}}" }
            coordinator.security.trust.ca-file = "{{bundle}}"
            """;
        Assert.True(Load(Site(goodCert, goodKey)).Security.RemotingTls); // auto: on with a certificate
        var e = Assert.Throws<ConfigurationException>(() => Load(Site(oldCert, oldKey)));
        Assert.Contains("coordinator.security.certificate", e.Message);
        Assert.Contains("is not valid now", e.Message);
    }

    [Fact]
    public void Seeds_are_written_in_the_transports_scheme()
    {
        var root = ConfigurationFactory.ParseString("""
            akka.cluster.seed-nodes = ["akka.tcp://coordinator@10.0.0.11:4053", "akka.ssl.tcp://coordinator@10.0.0.12:4053"]
            """);
        Assert.Equal(["akka.ssl.tcp://coordinator@10.0.0.11:4053", "akka.ssl.tcp://coordinator@10.0.0.12:4053"],
            RemotingTls.Hocon(root, remotingTls: true).GetStringList("akka.cluster.seed-nodes"));
        Assert.Equal(["akka.tcp://coordinator@10.0.0.11:4053", "akka.tcp://coordinator@10.0.0.12:4053"],
            RemotingTls.Hocon(root, remotingTls: false).GetStringList("akka.cluster.seed-nodes"));
        Assert.True(RemotingTls.Hocon(root, true).GetBoolean("akka.remote.dot-netty.tcp.enable-ssl"));
    }

    [Fact]
    public void The_validator_accepts_the_clusters_certificates_and_logs_each_refusal_with_peer_and_reason()
    {
        var trust = ClusterTrust.FromConfig(ConfigurationFactory.ParseString(
            $"trust.ca-file = \"{TestCertificates.WriteBundle(Path.Combine(_dir, "ca.pem"), _ca)}\""), "trust");
        var validate = RemotingTls.Validator(trust);
        var log = Logging.GetLogger(Sys, "remoting-spec");
        using var member = _ca.Issue("hv01");
        using var other = TestCa.Create("other CA");
        using var stranger = other.Issue("intruder");
        EventFilter.Warning(contains: "Remoting TLS").Expect(0, () =>
            Assert.True(validate(member, null, "10.0.0.11:4053", SslPolicyErrors.RemoteCertificateChainErrors, log)));
        EventFilter.Warning(contains: "refused the connection with 10.0.0.66:51234: the certificate CN=intruder").ExpectOne(() =>
            Assert.False(validate(stranger, null, "10.0.0.66:51234", SslPolicyErrors.None, log)));
    }

    protected override void Dispose(bool disposing)
    {
        _ca.Dispose();
        try { Directory.Delete(_dir, true); } catch (IOException) { }
        base.Dispose(disposing);
    }
}
