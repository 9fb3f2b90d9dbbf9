using Akka.Configuration;
using Coordinator.Cluster.Security;
using Coordinator.IntegrationTests.Harness;

namespace Coordinator.Cluster.Tests.Security;

/// <summary>Where a node's certificate comes from: PEM certificate and key, or PFX with a password; a key others may read,
/// a missing key, or a certificate that is not valid now is refused with the setting's name.</summary>
public sealed class CertificateSourceSpecs : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("cert-spec-").FullName;
    private readonly TestCa _ca = TestCa.Create("cluster CA");

    private static CertificateSource Source(string hocon) =>
        CertificateSource.FromConfig(ConfigurationFactory.ParseString(hocon), "security.certificate");

    [Fact]
    public void A_PEM_certificate_with_its_key_loads_with_the_private_key()
    {
        using var issued = _ca.Issue("hv01");
        var (cert, key) = TestCertificates.WritePem(issued, _dir, "hv01");
        using var loaded = Source($"security.certificate {{ file = \"{cert}\", key-file = \"{key}\" }}").Load();
        Assert.True(loaded.HasPrivateKey);
        Assert.Equal(issued.Thumbprint, loaded.Thumbprint);
    }

    [Fact]
    public void A_PFX_with_its_password_from_a_file_loads()
    {
        using var issued = _ca.Issue("hv02");
        var pfx = TestCertificates.WritePfx(issued, _dir, "hv02", "pfx-password");
        var passwordFile = Path.Combine(_dir, "pfx.pass");
        File.WriteAllText(passwordFile, "pfx-password");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(passwordFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        using var loaded = Source($"security.certificate {{ file = \"{pfx}\", password-file = \"{passwordFile}\" }}").Load();
        Assert.True(loaded.HasPrivateKey);
        Assert.Equal(issued.Thumbprint, loaded.Thumbprint);
    }

    [Fact]
    public void A_key_file_others_may_read_is_refused()
    {
        if (OperatingSystem.IsWindows()) return; // file modes are a Unix rule
        using var issued = _ca.Issue("hv03");
        var (cert, key) = TestCertificates.WritePem(issued, _dir, "hv03");
        File.SetUnixFileMode(key, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        var e = Assert.ThrowsAny<Exception>(() => Source($"security.certificate {{ file = \"{cert}\", key-file = \"{key}\" }}").Load());
        Assert.Contains("coordinator.security.certificate.key-file", e.Message);
    }

    [Fact]
    public void An_expired_certificate_is_refused_at_load()
    {
        using var issued = _ca.Issue("hv04", notBefore: DateTimeOffset.UtcNow.AddDays(-10), notAfter: DateTimeOffset.UtcNow.AddDays(-1));
        var (cert, key) = TestCertificates.WritePem(issued, _dir, "hv04");
        var e = Assert.Throws<ConfigurationException>(() => Source($"security.certificate {{ file = \"{cert}\", key-file = \"{key}\" }}").Load());
        Assert.Contains("coordinator.security.certificate", e.Message);
        Assert.Contains("is not valid now", e.Message);
    }

    [Fact]
    public void A_certificate_without_its_key_is_refused()
    {
        var certOnly = Path.Combine(_dir, "ca.crt");
        File.WriteAllText(certOnly, _ca.Pem);
        var e = Assert.Throws<ConfigurationException>(() => Source($"security.certificate.file = \"{certOnly}\"").Load());
        Assert.Contains("coordinator.security.certificate", e.Message);
    }

    [Fact]
    public void File_and_thumbprint_together_are_refused() =>
        Assert.Contains("not both", Assert.Throws<ConfigurationException>(() =>
            Source("security.certificate { file = \"a.pfx\", thumbprint = \"AB\" }")).Message);

    public void Dispose()
    {
        _ca.Dispose();
        Directory.Delete(_dir, true);
    }
}
