using System.Globalization;

namespace Coordinator.Domain;

/// <summary>Byte quantities: 64-bit integers everywhere, parsed from HOCON-style sizes ("500GiB", "1.5TiB", "4096").</summary>
public static class ByteSize
{
    /// <summary>Largest size any request may name: 2^62 keeps every sum of a few claims far from overflow.</summary>
    public const long MaxBytes = 1L << 62;

    public const long KiB = 1L << 10, MiB = 1L << 20, GiB = 1L << 30, TiB = 1L << 40;

    private static readonly (string Suffix, long Factor)[] Units =
    [
        ("KiB", KiB), ("MiB", MiB), ("GiB", GiB), ("TiB", TiB), ("PiB", 1L << 50),
        ("KB", 1000), ("MB", 1000_000), ("GB", 1000_000_000), ("TB", 1000_000_000_000),
        ("K", KiB), ("M", MiB), ("G", GiB), ("T", TiB), ("B", 1),
    ];

    public static long Parse(string text)
    {
        if (!TryParse(text, out var bytes))
            throw new FormatException($"'{text}' is not a size (examples: 500GiB, 1.5TiB, 4096)");
        return bytes;
    }

    public static bool TryParse(string? text, out long bytes)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text)) return false;
        var s = text.Trim();
        long factor = 1;
        foreach (var (suffix, f) in Units)
        {
            if (s.EndsWith(suffix, StringComparison.OrdinalIgnoreCase))
            {
                factor = f;
                s = s[..^suffix.Length].Trim();
                break;
            }
        }
        if (!decimal.TryParse(s, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var n) || n < 0)
            return false;
        if (n > (decimal)MaxBytes / factor) return false; // also keeps n * factor within decimal's range
        var value = n * factor;
        if (value > MaxBytes || value != decimal.Truncate(value)) return false;
        bytes = (long)value;
        return true;
    }

    /// <summary>Human form for logs and tables: binary units, one decimal.</summary>
    public static string Format(long bytes)
    {
        var abs = Math.Abs((double)bytes);
        string[] names = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        var i = 0;
        while (abs >= 1024 && i < names.Length - 1) { abs /= 1024; i++; }
        var sign = bytes < 0 ? "-" : "";
        return i == 0 ? $"{bytes} B" : string.Create(CultureInfo.InvariantCulture, $"{sign}{abs:0.#} {names[i]}");
    }
}
