using System.Security.Cryptography.X509Certificates;
using Akka.Configuration;
using Coordinator.Cluster.Configuration;

namespace Coordinator.Cluster.Security;

/// <summary>
/// Where a node's own certificate (with its private key) comes from: a PKCS#12 file (.pfx/.p12, with a password), a
/// PEM certificate with a PEM key file, or on Windows the certificate store by thumbprint. One shape for remoting and
/// HTTPS: <c>{ file, key-file, password | password-file | password-env, thumbprint, store-name, store-location }</c>.
/// </summary>
public sealed record CertificateSource(string? File, string? KeyFile, string? Password, string? Thumbprint,
    StoreName StoreName, StoreLocation StoreLocation, string Key)
{
    public bool IsConfigured => File is not null || Thumbprint is not null;

    /// <summary>Reads <c>coordinator.{key}</c>; relative paths are taken as they are (the working directory's).</summary>
    public static CertificateSource FromConfig(Config coordinator, string key)
    {
        var c = coordinator.GetConfig(key) ?? ConfigurationFactory.Empty;
        string? Text(string k) => c.GetString(k, "") is { Length: > 0 } v && !string.IsNullOrWhiteSpace(v) ? v.Trim() : null;
        var storeName = Text("store-name") ?? "My";
        var storeLocation = Text("store-location") ?? "LocalMachine";
        if (!Enum.TryParse<StoreName>(storeName, true, out var sn))
            throw new ConfigurationException($"coordinator.{key}.store-name: '{storeName}' is not a certificate store name (My, Root, ...)");
        if (!Enum.TryParse<StoreLocation>(storeLocation, true, out var sl))
            throw new ConfigurationException($"coordinator.{key}.store-location: '{storeLocation}' is not LocalMachine or CurrentUser");
        var source = new CertificateSource(Text("file"), Text("key-file"), SecretReader.Read(c, "password", $"coordinator.{key}."),
            Text("thumbprint")?.Replace(" ", "").ToUpperInvariant(), sn, sl, key);
        if (source.File is not null && source.Thumbprint is not null)
            throw new ConfigurationException($"coordinator.{key}: set file or thumbprint, not both");
        return source;
    }

    /// <summary>Loads the certificate; it must carry a private key and be valid now. Errors name the setting.</summary>
    public X509Certificate2 Load()
    {
        var cert = Thumbprint is not null ? FromStore() : FromFile();
        if (!cert.HasPrivateKey)
            throw new ConfigurationException($"coordinator.{Key}: the certificate {cert.Subject} has no private key");
        var now = DateTime.Now;
        if (now < cert.NotBefore || now > cert.NotAfter)
            throw new ConfigurationException(
                $"coordinator.{Key}: the certificate {cert.Subject} is not valid now (valid {cert.NotBefore:u} to {cert.NotAfter:u})");
        return cert;
    }

    private X509Certificate2 FromFile()
    {
        var path = File ?? throw new ConfigurationException($"coordinator.{Key}: neither file nor thumbprint is set");
        try
        {
            if (KeyFile is not null || IsPem(path))
            {
                var keyPath = KeyFile ?? path;
                SecretReader.EnsurePrivate(keyPath, $"coordinator.{Key}.key-file");
                using var pem = Password is null
                    ? X509Certificate2.CreateFromPemFile(path, keyPath)
                    : X509Certificate2.CreateFromEncryptedPemFile(path, Password, keyPath);
                // SslStream on Windows cannot use an ephemeral PEM key: round-trip through PKCS#12.
                return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
            }
            SecretReader.EnsurePrivate(path, $"coordinator.{Key}.file");
            return X509CertificateLoader.LoadPkcs12FromFile(path, Password);
        }
        catch (System.Security.Cryptography.CryptographicException e)
        {
            throw new ConfigurationException($"coordinator.{Key}: cannot load '{path}': {e.Message}");
        }
        catch (IOException e)
        {
            throw new ConfigurationException($"coordinator.{Key}: cannot read '{path}': {e.Message}");
        }
    }

    private X509Certificate2 FromStore()
    {
        using var store = new X509Store(StoreName, StoreLocation);
        try { store.Open(OpenFlags.ReadOnly | OpenFlags.OpenExistingOnly); }
        catch (System.Security.Cryptography.CryptographicException e)
        {
            throw new ConfigurationException($"coordinator.{Key}: cannot open the store {StoreLocation}\\{StoreName}: {e.Message}");
        }
        var found = store.Certificates.Find(X509FindType.FindByThumbprint, Thumbprint!, validOnly: false);
        return found.Count > 0
            ? found[0]
            : throw new ConfigurationException($"coordinator.{Key}.thumbprint: no certificate {Thumbprint} in {StoreLocation}\\{StoreName}");
    }

    private static bool IsPem(string path) =>
        path.EndsWith(".pem", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".crt", StringComparison.OrdinalIgnoreCase);
}
