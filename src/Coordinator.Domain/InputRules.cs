namespace Coordinator.Domain;

/// <summary>
/// Validation of everything a client can send. Each check returns null when the input is fine, or the message a
/// 400 problem carries. Bad input is refused before it reaches the ledger, so it can change nothing.
/// </summary>
public static partial class InputRules
{
    public const int MaxIdLength = 255;

    public static string? CheckId(string what, string? id)
    {
        if (string.IsNullOrWhiteSpace(id)) return $"{what} must not be empty";
        if (id.Length > MaxIdLength) return $"{what} is longer than {MaxIdLength} characters";
        if (id.IndexOfAny(['/', '\\']) >= 0) return $"{what} must not contain path separators";
        if (id is "." or "..") return $"{what} must not be '.' or '..'";
        foreach (var c in id)
            if (char.IsControl(c)) return $"{what} must not contain control characters";
        return null;
    }

    /// <summary>Glance image ids are UUIDs; any id of letters, digits, '.', '_' and '-' (not leading) is accepted.
    /// The id names the image's folder, so it follows <see cref="FileNames"/> as well (no device names such as CON).</summary>
    public static string? CheckImageId(string? id) =>
        string.IsNullOrEmpty(id) ? "image id must not be empty"
        : id.Length > 128 ? "image id is longer than 128 characters"
        : !ImageIdPattern().IsMatch(id) ? $"image id '{Printable(id)}' is malformed (letters, digits, '.', '_', '-')"
        : FileNames.Check("image id", id);

    public static string? CheckChecksum(string? checksum) =>
        string.IsNullOrEmpty(checksum) ? "checksum must not be empty"
        : checksum.Length > 256 || !checksum.All(Uri.IsHexDigit) ? "checksum must be a hex digest"
        : null;

    /// <summary>
    /// Consumer ids (and VM names, which are consumer ids of their disk claims) become folder names, so they follow
    /// <see cref="FileNames"/>; they may not use the prefix of the ledger's own image claims, in any case (ids are
    /// compared case-insensitively, so "_IMAGE-x" would be the cache's claim on image x).
    /// </summary>
    public static string? CheckConsumerId(string? id) =>
        FileNames.Check("consumer id", id)
        ?? (id!.StartsWith(CsvLedger.ImageClaimPrefix, StringComparison.OrdinalIgnoreCase) ? $"consumer ids starting with '{CsvLedger.ImageClaimPrefix}' are reserved for the image cache" : null);

    /// <summary>A volume's configured (or file-system reported) capacity and headroom: each within [0, 2^62].</summary>
    public static string? CheckVolumeSizes(string volume, long capacityBytes, long headroomBytes) =>
        capacityBytes is < 0 or > ByteSize.MaxBytes ? $"volume {volume}: capacity {capacityBytes} must be between 0 and 2^62"
        : headroomBytes is < 0 or > ByteSize.MaxBytes ? $"volume {volume}: headroom {headroomBytes} must be between 0 and 2^62"
        : null;

    private static string Printable(string s) => new(s.Take(64).Select(c => char.IsControl(c) ? '?' : c).ToArray());

    [System.Text.RegularExpressions.GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")]
    private static partial System.Text.RegularExpressions.Regex ImageIdPattern();

    public static string? CheckBytes(string what, long bytes) =>
        bytes <= 0 ? $"{what} must be positive"
        : bytes > ByteSize.MaxBytes ? $"{what} must not exceed 2^62"
        : null;

    /// <summary>
    /// Normalises a consumer directory to a path relative to the volume root ('/'-separated). Accepts a relative path
    /// or an absolute one under <paramref name="volumeRoot"/>; refuses anything that escapes the volume.
    /// </summary>
    public static string? NormalizeVolumePath(string volumeRoot, string? path, out string? relative)
    {
        relative = null;
        if (path is null) return null;
        if (path.Length == 0) return "path must not be empty when given";
        if (path.Length > 4096) return "path is too long";
        foreach (var c in path)
            if (char.IsControl(c)) return "path must not contain control characters";

        var p = path.Replace('\\', '/');
        if (IsAbsolute(p))
        {
            var root = volumeRoot.Replace('\\', '/').TrimEnd('/');
            // Windows paths compare case-insensitively; CSV roots are C:\ClusterStorage\VolumeN.
            if (!p.StartsWith(root + "/", StringComparison.OrdinalIgnoreCase))
                return $"path '{path}' is outside the volume ({volumeRoot})";
            p = p[(root.Length + 1)..];
        }

        var segments = new List<string>();
        foreach (var seg in p.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            if (seg == ".") continue;
            if (seg == "..") return $"path '{path}' must not contain '..'";
            if (seg.Contains(':')) return $"path '{path}' is outside the volume ({volumeRoot})";
            segments.Add(seg);
        }
        if (segments.Count == 0) return "path must name a directory inside the volume, not its root";
        relative = string.Join('/', segments);
        return null;
    }

    private static bool IsAbsolute(string p) =>
        p.StartsWith('/') || (p.Length >= 2 && char.IsLetter(p[0]) && p[1] == ':');
}
