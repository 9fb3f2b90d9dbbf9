using System.Security.Cryptography;
using System.Text;
using Akka.Configuration;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Security;

namespace Coordinator.Service.Api;

/// <summary>One configured credential: its role, the node an agent acts for, and the SHA-256 of its token.</summary>
public sealed record Credential(string Name, CallerKind Role, string? Node, byte[] TokenSha256);

/// <summary>
/// The HTTP API's protection: TLS (<c>coordinator.http.tls</c>, <c>coordinator.http.certificate</c>) and who may call
/// it (<c>agent-token</c>, <c>admin-token</c>, <c>peer-token</c>, <c>identities</c>). Tokens are kept only as SHA-256
/// hashes. Built before the host starts: every refusal is a <see cref="ConfigurationException"/> naming the setting.
/// </summary>
public sealed record HttpSecurity(bool Tls, CertificateSource? Certificate, IReadOnlyList<Credential> Credentials,
    bool Loopback, bool Insecure, string NodeName)
{
    /// <summary>Whether any credential lets a node agent in (then an anonymous caller is no agent, even on loopback).</summary>
    public bool HasAgentCredential => Credentials.Any(c => c.Role == CallerKind.Agent);

    public bool HasAdminCredential => Credentials.Any(c => c.Role == CallerKind.Admin);

    /// <summary>The warnings to log at every start (plain HTTP beyond loopback under security.insecure).</summary>
    public IReadOnlyList<string> Warnings =>
        !Loopback && !Tls
            ? ["coordinator.security.insecure is on: the HTTP API is served in plain text beyond loopback, its tokens readable on the network"]
            : [];

    public static HttpSecurity FromConfig(Config root, CoordinatorSettings settings)
    {
        var c = root.GetConfig("coordinator") ?? ConfigurationFactory.Empty;
        var loopback = SecuritySettings.IsLoopback(settings.HttpHost);
        var insecure = settings.Security.Insecure;

        var own = CertificateSource.FromConfig(c, "http.certificate");
        var certificate = own.IsConfigured ? own : settings.Security.Certificate.IsConfigured ? settings.Security.Certificate : null;
        var tls = SecuritySettings.OnOffAuto(c, "http.tls", !loopback && certificate is not null);
        if (tls && certificate is null)
            throw new ConfigurationException(
                "coordinator.http.tls is on but neither coordinator.http.certificate nor coordinator.security.certificate is set");
        if (!loopback && !tls && !insecure)
            throw new ConfigurationException(
                $"coordinator.http.host is {settings.HttpHost} (beyond loopback) and the API would be plain http: set " +
                "coordinator.http.certificate (or coordinator.security.certificate) so that coordinator.http.tls = auto turns HTTPS on, " +
                "or set coordinator.security.insecure = on for a lab");

        var credentials = new List<Credential>();
        if (settings.AgentToken is { Length: > 0 } agent)
            credentials.Add(new Credential("agent-token", CallerKind.Agent, settings.NodeName, Hash(agent)));
        if (settings.AdminToken is { Length: > 0 } admin)
            credentials.Add(new Credential("admin-token", CallerKind.Admin, null, Hash(admin)));
        if (SecretReader.Read(c, "http.peer-token") is { Length: > 0 } peer)
            credentials.Add(new Credential("peer-token", CallerKind.Peer, null, Hash(peer)));
        credentials.AddRange(Identities(c));

        if (!loopback && !credentials.Any(x => x.Role is CallerKind.Agent or CallerKind.Admin))
            throw new ConfigurationException(
                $"coordinator.http.host is {settings.HttpHost} (beyond loopback) and no credential is configured: set " +
                "coordinator.http.agent-token (this node's agent), coordinator.http.admin-token or coordinator.http.identities");
        var duplicate = credentials.GroupBy(x => Convert.ToHexString(x.TokenSha256)).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            throw new ConfigurationException(
                $"coordinator.http: {string.Join(" and ", duplicate.Select(x => x.Name))} have the same token; each credential needs its own");
        return new HttpSecurity(tls, tls ? certificate : null, credentials, loopback, insecure, settings.NodeName);
    }

    /// <summary><c>coordinator.http.identities = [ { name, role = agent|admin|peer, node, token-sha256 } ]</c>.</summary>
    private static IEnumerable<Credential> Identities(Config c)
    {
        if (!c.HasPath("http.identities")) yield break;
        IList<Akka.Configuration.Hocon.HoconValue> entries;
        try
        {
            // An empty list ([], the default) is no identities.
            entries = c.GetValue("http.identities").GetArray();
        }
        catch (Exception e) when (e is not ConfigurationException)
        {
            throw new ConfigurationException("coordinator.http.identities must be a list of { name, role, node, token-sha256 }");
        }
        var names = new HashSet<string>(StringComparer.Ordinal);
        var i = 0;
        foreach (var entry in entries)
        {
            var where = $"coordinator.http.identities[{i++}]";
            if (!entry.IsObject()) throw new ConfigurationException($"{where} must be an object {{ name, role, node, token-sha256 }}");
            var o = new Config(new Akka.Configuration.Hocon.HoconRoot(entry));
            var name = o.GetString("name", "").Trim();
            if (Coordinator.Domain.InputRules.CheckId("name", name) is { } bad) throw new ConfigurationException($"{where}: {bad}");
            if (!names.Add(name)) throw new ConfigurationException($"{where}: the name '{name}' is used twice");
            var role = o.GetString("role", "").Trim().ToLowerInvariant() switch
            {
                "agent" => CallerKind.Agent,
                "admin" => CallerKind.Admin,
                "peer" => CallerKind.Peer,
                var r => throw new ConfigurationException($"{where} ({name}): role '{r}' is not agent, admin or peer"),
            };
            var node = o.GetString("node", "").Trim();
            if (role == CallerKind.Agent && Coordinator.Domain.InputRules.CheckId("node", node) is { } nodeErr)
                throw new ConfigurationException($"{where} ({name}): an agent needs its node ({nodeErr})");
            var hex = o.GetString("token-sha256", "").Trim();
            byte[] hash;
            try { hash = Convert.FromHexString(hex); }
            catch (FormatException) { hash = []; }
            if (hash.Length != SHA256.HashSizeInBytes)
                throw new ConfigurationException($"{where} ({name}): token-sha256 must be 64 hex digits (sha256sum of the token)");
            yield return new Credential(name, role, role == CallerKind.Agent ? node : null, hash);
        }
    }

    public static byte[] Hash(string token) => SHA256.HashData(Encoding.UTF8.GetBytes(token));

    /// <summary>The credential whose token is <paramref name="presented"/>, compared in constant time against every one.</summary>
    public Credential? Match(string presented)
    {
        var h = Hash(presented);
        Credential? found = null;
        foreach (var c in Credentials)
            if (CryptographicOperations.FixedTimeEquals(h, c.TokenSha256)) found ??= c;
        return found;
    }
}
