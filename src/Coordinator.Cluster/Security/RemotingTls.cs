using System.Security.Cryptography.X509Certificates;
using Akka.Configuration;
using Akka.Event;
using Akka.Remote.Transport.DotNetty;
using Coordinator.Cluster.Configuration;

namespace Coordinator.Cluster.Security;

/// <summary>
/// Akka.Remote over mutual TLS: every connection, in both directions, presents this node's certificate and accepts
/// the peer's only when <see cref="ClusterTrust.Check"/> does (the cluster's CA or a pinned thumbprint; never the
/// machine's roots). With TLS on, members' addresses use the scheme <see cref="TlsProtocol"/> (akka.ssl.tcp).
/// </summary>
public static class RemotingTls
{
    public const string PlainProtocol = "akka.tcp";
    public const string TlsProtocol = "akka.ssl.tcp";

    private const string HostnameKey = "akka.remote.dot-netty.tcp.hostname";
    private const string PublicHostnameKey = "akka.remote.dot-netty.tcp.public-hostname";

    /// <summary>
    /// The rule for plain remoting: refused (the reason, naming the settings) when the node binds or advertises its
    /// remoting beyond loopback without TLS, unless <c>coordinator.security.insecure</c> is on. Null: allowed.
    /// </summary>
    public static string? RefusePlainRemoting(string hostname, string publicHostname, bool remotingTls, bool insecure)
    {
        if (remotingTls || insecure) return null;
        var exposed = new[] { hostname, publicHostname }.Where(h => !SecuritySettings.IsLoopback(h)).Distinct().ToList();
        if (exposed.Count == 0) return null;
        return $"remoting on '{string.Join("', '", exposed.Select(h => h.Length == 0 ? "(all interfaces)" : h))}' " +
               $"({HostnameKey} / public-hostname) is beyond loopback without TLS: set coordinator.security.certificate " +
               "and coordinator.security.trust.ca-file (or trust.pinned-thumbprints) so that coordinator.security.remoting.tls " +
               "is on, or set coordinator.security.insecure = on (a lab only)";
    }

    /// <summary>The remoting host names from the node's HOCON (public-hostname falls back to hostname, as in Akka).</summary>
    public static (string Hostname, string PublicHostname) Hosts(Config root)
    {
        var hostname = root.GetString(HostnameKey, "")?.Trim() ?? "";
        var publicHostname = root.GetString(PublicHostnameKey, "")?.Trim() ?? "";
        return (hostname, publicHostname.Length > 0 ? publicHostname : hostname);
    }

    /// <summary>
    /// Checked when the settings are read (so a refusal exits 2 with the reason): the plain-remoting rule, and with TLS
    /// on, that this node's certificate loads (a file it can read, a private key, valid now).
    /// </summary>
    public static void CheckAtStart(Config root, SecuritySettings security)
    {
        var (hostname, publicHostname) = Hosts(root);
        if (RefusePlainRemoting(hostname, publicHostname, security.RemotingTls, security.Insecure) is { } refused)
            throw new ConfigurationException(refused);
        if (security.RemotingTls) security.Certificate.Load().Dispose();
    }

    /// <summary>Whether this node would run plain remoting beyond loopback only because <c>insecure</c> is on.</summary>
    public static bool IsInsecureExposure(Config root, SecuritySettings security)
    {
        var (hostname, publicHostname) = Hosts(root);
        return !security.RemotingTls && RefusePlainRemoting(hostname, publicHostname, false, false) is not null;
    }

    /// <summary>
    /// Akka.Remote 1.5.73 stops the whole node (CoordinatedShutdown with its internal TlsHandshakeFailureReason) when an
    /// outbound TLS handshake fails: a peer that does not trust this node, or a connection closed mid-handshake (a peer
    /// going down). Such a stop is a restartable failure (exit 3), not a clean exit.
    /// </summary>
    public static bool StoppedByTlsHandshake(Akka.Actor.CoordinatedShutdown.Reason? reason) =>
        reason?.GetType().Name == "TlsHandshakeFailureReason";

    /// <summary>
    /// Akka's validation callback: the peer is accepted only when the cluster trusts its certificate. Each refusal is
    /// logged at Warning with the peer and the reason (the certificate's subject and validity, never a key).
    /// </summary>
    public static CertificateValidationCallback Validator(ClusterTrust trust) =>
        (certificate, _, remotePeer, _, log) =>
        {
            var reason = trust.Check(certificate);
            if (reason is null) return true;
            log.Warning("Remoting TLS: refused the connection with {0}: {1}", remotePeer, reason);
            return false;
        };

    /// <summary>The setup for Akka.Remote: this node's certificate, the client certificate required, no host name
    /// check (members are identified by the cluster's CA, and an address may be an IP), the cluster's validator.</summary>
    public static DotNettySslSetup Setup(X509Certificate2 certificate, ClusterTrust trust) =>
        new(certificate, suppressValidation: false, requireMutualAuthentication: true, validateCertificateHostname: false,
            Validator(trust));

    /// <summary>
    /// HOCON prepended to the node's: TLS on or off in the transport, and the seed nodes written with the scheme the
    /// transport uses (akka.ssl.tcp with TLS), so a site file's seed list works whichever way TLS is set.
    /// </summary>
    public static Config Hocon(Config root, bool remotingTls)
    {
        var seeds = root.HasPath("akka.cluster.seed-nodes") ? root.GetStringList("akka.cluster.seed-nodes") : [];
        var mapped = seeds.Select(s => WithScheme(s, remotingTls)).Select(s => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"");
        return ConfigurationFactory.ParseString($"""
            akka.remote.dot-netty.tcp.enable-ssl = {(remotingTls ? "on" : "off")}
            akka.cluster.seed-nodes = [{string.Join(", ", mapped)}]
            """);
    }

    /// <summary>A member address with the scheme of the transport (akka.tcp plain, akka.ssl.tcp with TLS).</summary>
    public static string WithScheme(string address, bool remotingTls)
    {
        var a = address.Trim();
        var rest = a.StartsWith(TlsProtocol + "://", StringComparison.Ordinal) ? a[(TlsProtocol.Length + 3)..]
            : a.StartsWith(PlainProtocol + "://", StringComparison.Ordinal) ? a[(PlainProtocol.Length + 3)..]
            : null;
        return rest is null ? a : (remotingTls ? TlsProtocol : PlainProtocol) + "://" + rest;
    }
}
