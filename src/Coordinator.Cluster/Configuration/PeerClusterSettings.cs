using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Akka.Configuration;
using Akka.Configuration.Hocon;

namespace Coordinator.Cluster.Configuration;

/// <summary>
/// Another cluster's coordinator (<c>coordinator.hyperv.peers.HOST</c>), for migrations out of this cluster:
/// its URL, the token it expects (its <c>coordinator.http.peer-token</c>), and the CA its HTTPS certificate is
/// checked against (null: the machine's store).
/// </summary>
public sealed record PeerClusterSettings(Uri Url, string? Token, X509Certificate2Collection? Authorities)
{
    /// <summary>
    /// <c>peers { HV21 { url = "https://...", token-file = "...", ca-file = "..." } }</c>; the old plain form
    /// <c>HV21 = "http://127.0.0.1:7070"</c> is still accepted for loopback (development, tests). Beyond loopback
    /// https is required unless <c>coordinator.security.insecure</c> is on.
    /// </summary>
    public static IReadOnlyDictionary<string, PeerClusterSettings> FromConfig(Config coordinator, bool insecure)
    {
        var peers = new Dictionary<string, PeerClusterSettings>(StringComparer.OrdinalIgnoreCase);
        var section = coordinator.GetValue("hyperv.peers");
        if (section is null || section.IsEmpty) return peers;
        foreach (var (host, value) in section.GetObject().Items)
        {
            var key = $"coordinator.hyperv.peers.{host}";
            if (Domain.InputRules.CheckId(key, host) is { } hostErr) throw new ConfigurationException(hostErr);
            PeerClusterSettings peer;
            if (value.IsString())
            {
                var url = ParseUrl(key, value.GetString());
                if (!SecuritySettings.IsLoopback(url.Host))
                    throw new ConfigurationException(
                        $"{key}: a peer beyond loopback is configured as {{ url = \"https://...\", token-file (or token, token-env), ca-file (optional) }}, not a plain URL");
                peer = new PeerClusterSettings(url, null, null);
            }
            else
            {
                var c = new Config(new HoconRoot(value));
                var url = ParseUrl(key + ".url", c.GetString("url", ""));
                var token = SecretReader.Read(c, "token", key + ".");
                var caFile = c.GetString("ca-file", "");
                X509Certificate2Collection? authorities = null;
                if (!string.IsNullOrWhiteSpace(caFile))
                {
                    if (url.Scheme != "https") throw new ConfigurationException($"{key}.ca-file is set but {key}.url is not https");
                    authorities = [];
                    try { authorities.ImportFromPemFile(caFile); }
                    catch (Exception e) when (e is IOException or CryptographicException or UnauthorizedAccessException)
                    {
                        throw new ConfigurationException($"{key}.ca-file: cannot load '{caFile}': {e.Message}");
                    }
                    if (authorities.Count == 0) throw new ConfigurationException($"{key}.ca-file: '{caFile}' holds no PEM certificate");
                }
                peer = new PeerClusterSettings(url, token, authorities);
            }
            // A token over plain http beyond loopback is readable on the wire, and so is the peer's answer.
            if (peer.Url.Scheme != "https" && !SecuritySettings.IsLoopback(peer.Url.Host) && !insecure)
                throw new ConfigurationException(
                    $"{key}: {peer.Url.Host} is not loopback, so the peer must be reached over https (or set coordinator.security.insecure = on)");
            peers[host] = peer;
        }
        return peers;
    }

    private static Uri ParseUrl(string key, string? text) =>
        Uri.TryCreate(text, UriKind.Absolute, out var u) && u.Scheme is "http" or "https" && string.IsNullOrEmpty(u.UserInfo)
            ? u
            : throw new ConfigurationException($"{key}: not an http(s) URL (and no user:password@ in it)");

    /// <summary>Never prints the token.</summary>
    public override string ToString() => $"{Url} (token {(Token is null ? "none" : "set")}, ca {(Authorities is null ? "system store" : "ca-file")})";
}
