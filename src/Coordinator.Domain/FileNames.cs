namespace Coordinator.Domain;

/// <summary>
/// The one rule for ids that become NTFS file or folder names (consumer ids and VM names: <c>instances/{name}</c>;
/// image ids: <c>_base/{imageId}</c>). NTFS compares names case-insensitively and Win32 strips trailing dots and
/// spaces, so "VM1", "vm1" and "vm1." name one folder: the first is the same id as the second (see
/// <see cref="Comparer"/>), the third is refused. Node and volume names are not files and keep
/// <see cref="InputRules.CheckId"/> with ordinal comparison.
/// </summary>
public static class FileNames
{
    public const int MaxLength = 255;

    /// <summary>Ids equal under NTFS equivalence are one id: every dictionary keyed by such an id uses this comparer.</summary>
    public static readonly StringComparer Comparer = StringComparer.OrdinalIgnoreCase;

    private static readonly char[] Refused = [':', '%', '/', '\\', '*', '?', '"', '<', '>', '|'];

    // Win32 device names are reserved with any extension too ("CON.txt" opens the console); the superscript digits
    // ¹²³ count as digits for COM and LPT on Windows 10 and later.
    private static readonly HashSet<string> DeviceNames = new(
        new[] { "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$" }
            .Concat("0123456789¹²³".SelectMany(d => new[] { $"COM{d}", $"LPT{d}" })),
        StringComparer.OrdinalIgnoreCase);

    /// <summary>Null when <paramref name="name"/> may be a file name; otherwise the message a 400 problem carries.</summary>
    public static string? Check(string what, string? name)
    {
        if (string.IsNullOrEmpty(name)) return $"{what} must not be empty";
        if (name.Length > MaxLength) return $"{what} is longer than {MaxLength} characters";
        if (name is "." or "..") return $"{what} must not be '.' or '..'";
        foreach (var c in name)
        {
            if (char.IsControl(c)) return $"{what} must not contain control characters";
            if (Array.IndexOf(Refused, c) >= 0)
                return c is '/' or '\\' ? $"{what} must not contain path separators" : $"{what} must not contain '{c}'";
        }
        if (name[^1] is '.' or ' ') return $"{what} must not end with a dot or a space (Windows drops them: another name for the same folder)";
        if (string.IsNullOrWhiteSpace(name)) return $"{what} must not be blank";
        var stem = name.Split('.')[0].TrimEnd(' ');
        if (DeviceNames.Contains(stem)) return $"{what} '{name}' is a reserved device name on Windows";
        return null;
    }
}

/// <summary>
/// A map keyed by file-name ids: lookups follow <see cref="FileNames.Comparer"/>, enumeration is in ordinal order of
/// the stored spelling (the order snapshots and listings have always had). Setting a key that is equivalent to a
/// stored one replaces that entry (the new spelling is kept): replay of a legacy journal in which two ids differed
/// only by case merges them, last write wins.
/// </summary>
public sealed class FileNameMap<TValue>
{
    private readonly SortedDictionary<string, TValue> _byName = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _spelling = new(FileNames.Comparer);

    public int Count => _byName.Count;
    public IEnumerable<string> Keys => _byName.Keys;
    public IReadOnlyCollection<TValue> Values => _byName.Values;

    public bool ContainsKey(string key) => _spelling.ContainsKey(key);

    /// <summary>The stored spelling of an id equivalent to <paramref name="key"/>.</summary>
    public string? SpellingOf(string key) => _spelling.GetValueOrDefault(key);

    public bool TryGetValue(string key, out TValue value)
    {
        if (_spelling.TryGetValue(key, out var stored)) return _byName.TryGetValue(stored, out value!);
        value = default!;
        return false;
    }

    public TValue? GetValueOrDefault(string key) => TryGetValue(key, out var v) ? v : default;

    public void Set(string key, TValue value)
    {
        if (_spelling.Remove(key, out var stored)) _byName.Remove(stored);
        _spelling[key] = key;
        _byName[key] = value;
    }

    public bool Remove(string key, out TValue value)
    {
        value = default!;
        if (!_spelling.Remove(key, out var stored)) return false;
        return _byName.Remove(stored, out value!);
    }

    public bool Remove(string key) => Remove(key, out _);

    public void Clear()
    {
        _byName.Clear();
        _spelling.Clear();
    }

    public IEnumerable<KeyValuePair<string, TValue>> Pairs => _byName;
}
