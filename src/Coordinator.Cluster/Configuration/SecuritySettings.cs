using System.Net;
using Akka.Configuration;
using Coordinator.Cluster.Security;

namespace Coordinator.Cluster.Configuration;

/// <summary>The <c>coordinator.security</c> section: this node's certificate, whom it trusts, and where TLS is on.</summary>
public sealed record SecuritySettings(bool Insecure, CertificateSource Certificate, ClusterTrust Trust, bool RemotingTls)
{
    public static SecuritySettings FromConfig(Config coordinator)
    {
        var certificate = CertificateSource.FromConfig(coordinator, "security.certificate");
        var trust = ClusterTrust.FromConfig(coordinator, "security.trust");
        var remotingTls = OnOffAuto(coordinator, "security.remoting.tls", certificate.IsConfigured);
        if (remotingTls && !certificate.IsConfigured)
            throw new ConfigurationException("coordinator.security.remoting.tls is on but coordinator.security.certificate is not set");
        if (remotingTls && !trust.IsConfigured)
            throw new ConfigurationException(
                "coordinator.security.remoting.tls is on but coordinator.security.trust has neither ca-file nor pinned-thumbprints");
        return new SecuritySettings(coordinator.GetBoolean("security.insecure", false), certificate, trust, remotingTls);
    }

    /// <summary>on / off / auto (auto: <paramref name="auto"/>).</summary>
    public static bool OnOffAuto(Config coordinator, string key, bool auto)
    {
        var v = coordinator.GetString(key, "auto").Trim().ToLowerInvariant();
        return v switch
        {
            "auto" or "" => auto,
            "on" or "true" or "yes" => true,
            "off" or "false" or "no" => false,
            _ => throw new ConfigurationException($"coordinator.{key}: '{v}' is not one of on, off, auto"),
        };
    }

    /// <summary>Whether a bind or advertised host name stays on this machine (127.0.0.0/8, ::1, localhost).</summary>
    public static bool IsLoopback(string host)
    {
        var h = host.Trim().Trim('[', ']');
        if (h.Equals("localhost", StringComparison.OrdinalIgnoreCase)) return true;
        return IPAddress.TryParse(h, out var ip) && IPAddress.IsLoopback(ip);
    }
}
