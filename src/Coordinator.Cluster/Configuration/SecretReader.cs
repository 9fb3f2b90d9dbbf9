using Akka.Configuration;

namespace Coordinator.Cluster.Configuration;

/// <summary>
/// Reads a secret (a token, the journal's password, a certificate's password) named by a HOCON key <c>K</c> from, in
/// order: the file named by <c>K-file</c>, the environment variable named by <c>K-env</c>, or <c>K</c> itself.
/// The value is never logged; errors name the key and the file, never the content.
/// </summary>
public static class SecretReader
{
    /// <summary>The secret under <paramref name="key"/> (a path below <paramref name="c"/>), or null when none is configured.</summary>
    /// <param name="displayPrefix">How errors name the key (e.g. "coordinator.").</param>
    public static string? Read(Config c, string key, string displayPrefix = "coordinator.")
    {
        var file = c.GetString(key + "-file", "");
        if (!string.IsNullOrWhiteSpace(file)) return Checked(ReadFile(file, displayPrefix + key + "-file"), displayPrefix + key + "-file");
        var env = c.GetString(key + "-env", "");
        if (!string.IsNullOrWhiteSpace(env))
        {
            var fromEnv = Environment.GetEnvironmentVariable(env.Trim());
            return fromEnv is null
                ? throw new ConfigurationException($"{displayPrefix}{key}-env: the environment variable '{env.Trim()}' is not set")
                : Checked(fromEnv.Trim(), displayPrefix + key + "-env");
        }
        return Checked(c.GetString(key, ""), displayPrefix + key);
    }

    /// <summary>A secret file is a line or a few, never more: a bigger file is the wrong one (or a device).</summary>
    public const int MaxFileBytes = 64 * 1024;

    /// <summary>A secret file's content, trimmed. Refused when missing, unreadable, too big, or (on Linux) open to group or others.</summary>
    public static string ReadFile(string path, string what)
    {
        EnsurePrivate(path, what);
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists) throw new ConfigurationException($"{what}: '{path}' is not a file");
            if (info.Length > MaxFileBytes)
                throw new ConfigurationException($"{what}: '{path}' is larger than {MaxFileBytes / 1024} KiB; a secret file holds the secret only");
            return File.ReadAllText(path).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigurationException($"{what}: cannot read '{path}': {e.Message}");
        }
    }

    /// <summary>
    /// Null for an empty secret. A line break or other control character inside is refused here, naming the setting
    /// only: HTTP headers and connection strings would refuse it later, and their errors may quote the value.
    /// </summary>
    private static string? Checked(string? secret, string what)
    {
        if (string.IsNullOrWhiteSpace(secret)) return null;
        if (secret.Any(char.IsControl))
            throw new ConfigurationException(
                $"{what}: the secret contains a line break or another control character (it would be refused in an HTTP header); " +
                "keep it on one line");
        return secret;
    }

    /// <summary>
    /// Refuses a secret file (or private key) that group or others may read or write on Unix, as ssh does with keys:
    /// such a file has already leaked to every account on the host. On Windows the ACL is the installer's business.
    /// </summary>
    public static void EnsurePrivate(string path, string what)
    {
        if (OperatingSystem.IsWindows()) return;
        UnixFileMode mode;
        try { mode = File.GetUnixFileMode(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigurationException($"{what}: cannot read '{path}': {e.Message}");
        }
        const UnixFileMode open = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite;
        if ((mode & open) != 0)
            throw new ConfigurationException(
                $"{what}: '{path}' is readable or writable by group or others (mode {Convert.ToString((int)mode, 8)}); " +
                $"a secret file must be private to the service's account: chmod 600 '{path}'");
    }
}
