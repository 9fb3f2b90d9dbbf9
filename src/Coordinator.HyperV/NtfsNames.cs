namespace Coordinator.HyperV;

/// <summary>
/// How NTFS (through Win32) names files and folders: a name is compared case-insensitively, and trailing dots and
/// spaces of a path component are stripped before it is looked up or created, so <c>VM1</c>, <c>vm1.</c> and
/// <c>vm1</c> are one folder. Windows does this by itself; the simulator, which runs on case-sensitive Linux file
/// systems, resolves its paths through <see cref="ResolveOnDisk"/> so that it behaves the same.
/// </summary>
public static class NtfsNames
{
    private static readonly char[] Separators = ['\\', '/'];

    /// <summary>The name a path component is stored under: its trailing dots and spaces stripped (Win32 strips them).</summary>
    public static string Strip(string component) => component.TrimEnd('.', ' ');

    /// <summary>Whether two path components name the same NTFS entry.</summary>
    public static bool SameName(string a, string b) => string.Equals(Strip(a), Strip(b), StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether two paths name the same NTFS file or folder (component by component; '\' and '/' both separate).</summary>
    public static bool SamePath(string a, string b)
    {
        var x = a.Split(Separators, StringSplitOptions.RemoveEmptyEntries);
        var y = b.Split(Separators, StringSplitOptions.RemoveEmptyEntries);
        if (x.Length != y.Length || a.StartsWith('/') != b.StartsWith('/'))
            return false;
        for (var i = 0; i < x.Length; i++)
        {
            if (!SameName(x[i], y[i]))
                return false;
        }

        return true;
    }

    /// <summary>
    /// The path on this machine's file system that NTFS would open for <paramref name="path"/>: the full path, with
    /// every component that names an existing entry up to case and trailing dots and spaces replaced by that entry's
    /// own name (an exact match first), and the components after the first missing one stripped of trailing dots and
    /// spaces. A component that strips to nothing ("...") is refused (ArgumentException), as Windows refuses it.
    /// </summary>
    public static string ResolveOnDisk(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var full = Path.GetFullPath(path);
        var root = Path.GetPathRoot(full) ?? "";
        var current = root;
        var existing = true;
        foreach (var part in full[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries))
        {
            var name = Strip(part);
            if (name.Length == 0)
                throw new ArgumentException($"'{part}' in '{path}' is not a valid NTFS name", nameof(path));
            if (existing)
            {
                var found = FindEntry(current, name);
                if (found is null)
                    existing = false;
                else
                    name = found;
            }

            current = Path.Combine(current, name);
        }

        return current;
    }

    /// <summary>The name of the entry of <paramref name="folder"/> that NTFS would open for <paramref name="name"/>, or null.</summary>
    private static string? FindEntry(string folder, string name)
    {
        var exact = Path.Combine(folder, name);
        if (File.Exists(exact) || Directory.Exists(exact))
            return name;
        try
        {
            return new DirectoryInfo(folder).EnumerateFileSystemInfos()
                .Select(e => e.Name)
                .Where(n => SameName(n, name))
                .Order(StringComparer.Ordinal)
                .FirstOrDefault();
        }
        catch (Exception e) when (e is DirectoryNotFoundException or UnauthorizedAccessException or IOException)
        {
            return null;
        }
    }
}
