using Coordinator.IntegrationTests.Harness;

namespace Coordinator.IntegrationTests;

/// <summary>
/// What a node does at start with its remoting settings, as a real process: plain remoting beyond loopback exits 2
/// naming the settings to set, unless coordinator.security.insecure is on (then it starts and warns); an expired own
/// certificate exits 2 naming coordinator.security.certificate.
/// </summary>
public sealed class RemotingStartupTests
{
    private static async Task<(int? Exit, string Log)> RunUntilExit(LocalCluster cluster)
    {
        var n = cluster.Nodes[0];
        cluster.Start(n);
        var exit = await cluster.WaitForExitAsync(n, TimeSpan.FromSeconds(60));
        return (exit, File.ReadAllText(cluster.LogPath(n)));
    }

    [Fact]
    public async Task Plain_remoting_beyond_loopback_refuses_to_start()
    {
        using var cluster = new LocalCluster(1, "akka.remote.dot-netty.tcp.hostname = \"0.0.0.0\"", tls: false);
        var (exit, log) = await RunUntilExit(cluster);
        Assert.True(exit == 2, $"exit {exit}; log:\n{log}");
        Assert.Contains("coordinator: invalid configuration: remoting on '0.0.0.0'", log);
        Assert.Contains("akka.remote.dot-netty.tcp.hostname", log);
        Assert.Contains("coordinator.security.certificate", log);
        Assert.Contains("coordinator.security.insecure = on", log);
    }

    [Fact]
    public async Task With_insecure_on_it_starts_and_warns()
    {
        using var cluster = new LocalCluster(1, """
            akka.remote.dot-netty.tcp { hostname = "0.0.0.0", public-hostname = "127.0.0.1" }
            coordinator.security.insecure = on
            """, tls: false);
        cluster.StartAll();
        await cluster.WaitReadyAsync(cluster.Nodes, TimeSpan.FromSeconds(90));
        var log = File.ReadAllText(cluster.LogPath(cluster.Nodes[0]));
        Assert.Contains("WRN] hv01 : Remoting is plain text on 127.0.0.1 (beyond loopback) because coordinator.security.insecure is on", log);
    }

    [Fact]
    public async Task An_expired_own_certificate_refuses_to_start()
    {
        using var cluster = new LocalCluster(1);
        var n = cluster.Nodes[0];
        using (var expired = cluster.Ca!.Issue(n.Name, notBefore: DateTimeOffset.UtcNow.AddDays(-10), notAfter: DateTimeOffset.UtcNow.AddDays(-1)))
            TestCertificates.WritePem(expired, cluster.CertificateDir, n.Name);
        var (exit, log) = await RunUntilExit(cluster);
        Assert.True(exit == 2, $"exit {exit}; log:\n{log}");
        Assert.Contains("coordinator: invalid configuration: coordinator.security.certificate", log);
        Assert.Contains("is not valid now", log);
    }
}
