using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Akka.Configuration;

namespace Coordinator.Cluster.Security;

/// <summary>
/// Whom a node trusts: certificates issued by the cluster's own CA (a PEM bundle; two CAs during a CA rotation), or
/// pinned SHA-256 thumbprints of the members' certificates, or both (either suffices). The machine's root store is
/// never consulted: a certificate from some public CA must not let a host into the cluster.
/// </summary>
public sealed class ClusterTrust
{
    private readonly X509Certificate2Collection _authorities;
    private readonly HashSet<string> _pinned;

    public ClusterTrust(X509Certificate2Collection authorities, IEnumerable<string> pinnedSha256)
    {
        _authorities = authorities;
        _pinned = pinnedSha256.Select(Normalize).ToHashSet(StringComparer.Ordinal);
    }

    public bool IsConfigured => _authorities.Count > 0 || _pinned.Count > 0;
    public X509Certificate2Collection Authorities => _authorities;
    public int PinnedCount => _pinned.Count;

    /// <summary>Reads <c>coordinator.{key}.ca-file</c> and <c>coordinator.{key}.pinned-thumbprints</c>.</summary>
    public static ClusterTrust FromConfig(Config coordinator, string key)
    {
        var c = coordinator.GetConfig(key) ?? ConfigurationFactory.Empty;
        var caFile = c.GetString("ca-file", "");
        var authorities = new X509Certificate2Collection();
        if (!string.IsNullOrWhiteSpace(caFile))
        {
            try { authorities.ImportFromPemFile(caFile); }
            catch (Exception e) when (e is IOException or CryptographicException or UnauthorizedAccessException)
            {
                throw new ConfigurationException($"coordinator.{key}.ca-file: cannot load '{caFile}': {e.Message}");
            }
            if (authorities.Count == 0)
                throw new ConfigurationException($"coordinator.{key}.ca-file: '{caFile}' holds no PEM certificate");
        }
        var pinned = c.HasPath("pinned-thumbprints") ? c.GetStringList("pinned-thumbprints") : [];
        foreach (var p in pinned)
            if (Normalize(p) is not { Length: 64 } n || !n.All(char.IsAsciiHexDigit))
                throw new ConfigurationException($"coordinator.{key}.pinned-thumbprints: '{p}' is not a SHA-256 thumbprint (64 hex digits)");
        return new ClusterTrust(authorities, pinned);
    }

    /// <summary>Null when <paramref name="peer"/> is trusted now; otherwise why not (for the log).</summary>
    public string? Check(X509Certificate2? peer)
    {
        if (peer is null) return "the peer presented no certificate";
        var now = DateTime.Now;
        if (now < peer.NotBefore || now > peer.NotAfter)
            return $"the certificate {peer.Subject} is not valid now (valid {peer.NotBefore:u} to {peer.NotAfter:u})";
        if (_pinned.Contains(Sha256(peer))) return null;
        if (_authorities.Count == 0) return $"the certificate {peer.Subject} ({Sha256(peer)}) is not pinned";
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(_authorities);
        // A private CA publishes no CRL; revocation is by rotating the CA or pinning (documented in the README).
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.VerificationTime = now;
        if (chain.Build(peer)) return null;
        var reasons = string.Join("; ", chain.ChainStatus.Select(s => s.StatusInformation.Trim()).Where(s => s.Length > 0).Distinct());
        return $"the certificate {peer.Subject} is not issued by the cluster's CA ({reasons})";
    }

    public static string Sha256(X509Certificate2 cert) => cert.GetCertHashString(HashAlgorithmName.SHA256);

    private static string Normalize(string thumbprint) => thumbprint.Replace(":", "").Replace(" ", "").Trim().ToUpperInvariant();
}
