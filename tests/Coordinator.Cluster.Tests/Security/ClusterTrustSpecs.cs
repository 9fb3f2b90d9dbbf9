using Akka.Configuration;
using Coordinator.Cluster.Security;
using Coordinator.IntegrationTests.Harness;

namespace Coordinator.Cluster.Tests.Security;

/// <summary>Whom a member trusts: certificates of the cluster's CA (one or two during a rotation) or pinned ones, valid
/// now; nothing else, whatever the machine's root store says.</summary>
public sealed class ClusterTrustSpecs : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("trust-spec-").FullName;
    private readonly TestCa _ca = TestCa.Create("cluster CA");
    private readonly TestCa _other = TestCa.Create("other CA");

    private ClusterTrust Trust(string hocon) =>
        ClusterTrust.FromConfig(ConfigurationFactory.ParseString(hocon), "trust");

    private string Bundle(params TestCa[] cas) => TestCertificates.WriteBundle(Path.Combine(_dir, Guid.NewGuid() + ".pem"), cas);

    [Fact]
    public void A_certificate_of_the_clusters_CA_is_trusted_and_one_of_another_CA_is_not()
    {
        var trust = Trust($"trust.ca-file = \"{Bundle(_ca)}\"");
        using var member = _ca.Issue("hv01");
        using var stranger = _other.Issue("hv01");
        Assert.Null(trust.Check(member));
        Assert.Contains("is not issued by the cluster's CA", trust.Check(stranger));
        Assert.Contains("CN=hv01", trust.Check(stranger));
    }

    [Fact]
    public void An_expired_or_not_yet_valid_certificate_is_refused_even_from_the_clusters_CA()
    {
        var trust = Trust($"trust.ca-file = \"{Bundle(_ca)}\"");
        using var expired = _ca.Issue("hv01", notBefore: DateTimeOffset.UtcNow.AddDays(-10), notAfter: DateTimeOffset.UtcNow.AddDays(-1));
        using var future = _ca.Issue("hv01", notBefore: DateTimeOffset.UtcNow.AddDays(1), notAfter: DateTimeOffset.UtcNow.AddDays(10));
        Assert.Contains("is not valid now", trust.Check(expired));
        Assert.Contains("is not valid now", trust.Check(future));
    }

    [Fact]
    public void No_certificate_is_refused() =>
        Assert.Equal("the peer presented no certificate", Trust($"trust.ca-file = \"{Bundle(_ca)}\"").Check(null));

    [Fact]
    public void A_bundle_of_two_CAs_trusts_both_during_a_rotation()
    {
        var trust = Trust($"trust.ca-file = \"{Bundle(_ca, _other)}\"");
        using var a = _ca.Issue("hv01");
        using var b = _other.Issue("hv02");
        Assert.Null(trust.Check(a));
        Assert.Null(trust.Check(b));
    }

    [Fact]
    public void A_pinned_thumbprint_trusts_that_certificate_only()
    {
        using var pinned = _other.Issue("hv01");
        using var sibling = _other.Issue("hv02");
        var trust = Trust($"trust.pinned-thumbprints = [\"{ClusterTrust.Sha256(pinned)}\"]");
        Assert.Null(trust.Check(pinned));
        Assert.Contains("is not pinned", trust.Check(sibling));
    }

    [Fact]
    public void A_self_signed_certificate_claiming_the_CAs_name_is_refused()
    {
        // Same subject as the cluster's CA, another key: the chain must be built on the CA's key, not its name.
        using var impostor = TestCa.Create("cluster CA");
        using var forged = impostor.Issue("hv01");
        Assert.Contains("is not issued by the cluster's CA", Trust($"trust.ca-file = \"{Bundle(_ca)}\"").Check(forged));
    }

    [Fact]
    public void A_bad_thumbprint_or_an_empty_ca_file_is_a_configuration_error_naming_the_setting()
    {
        Assert.Contains("trust.pinned-thumbprints", Assert.Throws<ConfigurationException>(() => Trust("trust.pinned-thumbprints = [\"abc\"]")).Message);
        var empty = Path.Combine(_dir, "empty.pem");
        File.WriteAllText(empty, "");
        Assert.Contains("trust.ca-file", Assert.Throws<ConfigurationException>(() => Trust($"trust.ca-file = \"{empty}\"")).Message);
    }

    public void Dispose()
    {
        _ca.Dispose();
        _other.Dispose();
        Directory.Delete(_dir, true);
    }
}
