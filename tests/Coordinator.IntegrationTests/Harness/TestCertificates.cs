using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Coordinator.IntegrationTests.Harness;

/// <summary>
/// A certificate authority made in the test (ECDSA P-256: quick to make), issuing node certificates as a site's own
/// CA would: clientAuth + serverAuth, SAN 127.0.0.1 / localhost / the node's name (and any extra addresses).
/// </summary>
public sealed class TestCa : IDisposable
{
    private readonly ECDsa _key;

    public string Name { get; }
    public X509Certificate2 Certificate { get; }

    private TestCa(string name, ECDsa key, X509Certificate2 certificate)
    {
        Name = name;
        _key = key;
        Certificate = certificate;
    }

    public static TestCa Create(string name)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}, O=coordinator tests", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 1, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        // Valid from well before any "expired" certificate it issues (a certificate must sit inside its issuer's validity).
        var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-30), DateTimeOffset.UtcNow.AddYears(2));
        return new TestCa(name, key, certificate);
    }

    /// <summary>A node certificate with its private key; valid from <paramref name="notBefore"/> to
    /// <paramref name="notAfter"/> (default: an hour ago to a year ahead).</summary>
    public X509Certificate2 Issue(string nodeName, IEnumerable<string>? extraAddresses = null,
        DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={nodeName}, O=coordinator tests", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyAgreement, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false)); // serverAuth, clientAuth
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        san.AddDnsName(nodeName);
        san.AddIpAddress(IPAddress.Loopback);
        foreach (var a in extraAddresses ?? [])
            if (IPAddress.TryParse(a, out var ip)) san.AddIpAddress(ip); else san.AddDnsName(a);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Certificate, true, false));
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7F;
        using var issued = request.Create(Certificate.SubjectName, X509SignatureGenerator.CreateForECDsa(_key),
            notBefore ?? DateTimeOffset.UtcNow.AddHours(-1), notAfter ?? DateTimeOffset.UtcNow.AddYears(1), serial);
        return issued.CopyWithPrivateKey(key);
    }

    /// <summary>The CA's certificate (no key) as PEM, for a trust bundle.</summary>
    public string Pem => Certificate.ExportCertificatePem() + "\n";

    public void Dispose()
    {
        Certificate.Dispose();
        _key.Dispose();
    }
}

/// <summary>Writes certificates as a node reads them: PEM certificate + PEM key (mode 600), PFX, a CA bundle.</summary>
public static class TestCertificates
{
    /// <summary>Writes <c>{name}.crt</c> and <c>{name}.key</c> (the key readable by the owner only); their paths.</summary>
    public static (string Certificate, string Key) WritePem(X509Certificate2 certificate, string directory, string name)
    {
        Directory.CreateDirectory(directory);
        var certPath = Path.Combine(directory, name + ".crt");
        var keyPath = Path.Combine(directory, name + ".key");
        File.WriteAllText(certPath, certificate.ExportCertificatePem() + "\n");
        using var key = certificate.GetECDsaPrivateKey() ?? throw new InvalidOperationException("the certificate has no ECDSA private key");
        WritePrivate(keyPath, key.ExportPkcs8PrivateKeyPem() + "\n");
        return (certPath, keyPath);
    }

    /// <summary>Writes <c>{name}.pfx</c> (mode 600) protected by <paramref name="password"/>; its path.</summary>
    public static string WritePfx(X509Certificate2 certificate, string directory, string name, string password)
    {
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, name + ".pfx");
        WritePrivate(path, certificate.Export(X509ContentType.Pkcs12, password));
        return path;
    }

    /// <summary>Writes a PEM bundle of the CAs' certificates (a trust.ca-file).</summary>
    public static string WriteBundle(string path, params TestCa[] authorities)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, string.Concat(authorities.Select(a => a.Pem)));
        return path;
    }

    private static void WritePrivate(string path, string text) => WritePrivate(path, System.Text.Encoding.ASCII.GetBytes(text));

    private static void WritePrivate(string path, byte[] bytes)
    {
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var f = new FileStream(path, options)) f.Write(bytes);
        // An existing file keeps its mode on FileMode.Create: set it.
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }
}
