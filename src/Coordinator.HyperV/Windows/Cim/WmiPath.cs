using System.Globalization;
using System.Text;

namespace Coordinator.HyperV.Windows;

/// <summary>
/// WMI object paths, the form references travel in through <see cref="ICimGateway"/>:
/// <c>\\HOST\root\virtualization\v2:Msvm_ComputerSystem.CreationClassName="Msvm_ComputerSystem",Name="GUID"</c>.
/// Keys are sorted by name (as WMI does), string values quoted with <c>\</c> and <c>"</c> escaped, integers bare;
/// a keyless singleton is <c>Class=@</c>. MI has no __PATH, so <see cref="MiCimGateway"/> builds paths from the key
/// properties and parses them back into key-only instances.
/// </summary>
public static class WmiPath
{
    public sealed record Parsed(string? Server, string? Namespace, string ClassName, IReadOnlyDictionary<string, object> Keys);

    public static string Format(string? server, string? ns, string className, IEnumerable<KeyValuePair<string, object?>> keys)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(className);
        var sb = new StringBuilder();
        if (!string.IsNullOrEmpty(ns))
        {
            if (!string.IsNullOrEmpty(server))
                sb.Append(@"\\").Append(server).Append('\\');
            sb.Append(ns.Replace('/', '\\')).Append(':');
        }

        sb.Append(className);
        var sorted = keys.OrderBy(k => k.Key, StringComparer.OrdinalIgnoreCase).ToList();
        if (sorted.Count == 0)
            return sb.Append("=@").ToString();
        var first = true;
        foreach (var (name, value) in sorted)
        {
            sb.Append(first ? '.' : ',').Append(name).Append('=');
            first = false;
            switch (value)
            {
                case null:
                    throw new ArgumentException($"key {className}.{name} is null");
                case string s:
                    sb.Append('"').Append(s.Replace(@"\", @"\\").Replace("\"", "\\\"")).Append('"');
                    break;
                case bool b:
                    sb.Append(b ? "TRUE" : "FALSE");
                    break;
                case IFormattable f:
                    sb.Append(f.ToString(null, CultureInfo.InvariantCulture));
                    break;
                default:
                    sb.Append('"').Append(value.ToString()!.Replace(@"\", @"\\").Replace("\"", "\\\"")).Append('"');
                    break;
            }
        }

        return sb.ToString();
    }

    /// <summary>Parses a path made by <see cref="Format"/> (or by WMI). Quoted values come back as strings, bare integers
    /// as <see cref="long"/> (or <see cref="ulong"/> when larger), TRUE/FALSE as booleans.</summary>
    public static Parsed Parse(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        string? server = null, ns = null;
        var rest = path;
        // The namespace part ends at the first ':' that is not inside the key list (keys come after the class name).
        var colon = IndexOutsideQuotes(rest, ':');
        if (colon >= 0)
        {
            var prefix = rest[..colon];
            rest = rest[(colon + 1)..];
            if (prefix.StartsWith(@"\\", StringComparison.Ordinal) || prefix.StartsWith("//", StringComparison.Ordinal))
            {
                var body = prefix[2..];
                var sep = body.IndexOfAny(['\\', '/']);
                server = sep < 0 ? body : body[..sep];
                ns = sep < 0 ? null : body[(sep + 1)..].Replace('\\', '/');
            }
            else
            {
                ns = prefix.Replace('\\', '/');
            }
        }

        var keys = new Dictionary<string, object>(StringComparer.OrdinalIgnoreCase);
        var dot = IndexOutsideQuotes(rest, '.');
        if (dot < 0)
        {
            var className = rest.EndsWith("=@", StringComparison.Ordinal) ? rest[..^2] : rest;
            return new Parsed(server, ns, className, keys);
        }

        var cls = rest[..dot];
        var i = dot + 1;
        while (i < rest.Length)
        {
            var eq = rest.IndexOf('=', i);
            if (eq < 0)
                throw new FormatException($"bad WMI path '{path}': key without value");
            var name = rest[i..eq].Trim();
            i = eq + 1;
            object value;
            if (i < rest.Length && rest[i] == '"')
            {
                var sb = new StringBuilder();
                i++;
                while (true)
                {
                    if (i >= rest.Length)
                        throw new FormatException($"bad WMI path '{path}': unterminated string");
                    var c = rest[i++];
                    if (c == '\\' && i < rest.Length)
                    {
                        sb.Append(rest[i++]);
                        continue;
                    }

                    if (c == '"')
                        break;
                    sb.Append(c);
                }

                value = sb.ToString();
            }
            else
            {
                var end = rest.IndexOf(',', i);
                var raw = (end < 0 ? rest[i..] : rest[i..end]).Trim();
                i = end < 0 ? rest.Length : end;
                value = raw.ToUpperInvariant() switch
                {
                    "TRUE" => true,
                    "FALSE" => false,
                    _ when long.TryParse(raw, NumberStyles.Integer, CultureInfo.InvariantCulture, out var l) => l,
                    _ when ulong.TryParse(raw, NumberStyles.Integer, CultureInfo.InvariantCulture, out var u) => u,
                    _ => raw,
                };
            }

            keys[name] = value;
            if (i < rest.Length)
            {
                if (rest[i] != ',')
                    throw new FormatException($"bad WMI path '{path}': expected ',' at {i}");
                i++;
            }
        }

        return new Parsed(server, ns, cls, keys);
    }

    /// <summary>The class name of a path (what follows the namespace, up to the keys).</summary>
    public static string ClassOf(string path) => Parse(path).ClassName;

    private static int IndexOutsideQuotes(string s, char wanted)
    {
        var quoted = false;
        for (var i = 0; i < s.Length; i++)
        {
            var c = s[i];
            if (quoted && c == '\\')
            {
                i++;
                continue;
            }

            if (c == '"')
                quoted = !quoted;
            else if (!quoted && c == wanted)
                return i;
        }

        return -1;
    }
}

/// <summary>WQL literals.</summary>
public static class Wql
{
    /// <summary>A quoted WQL string literal: backslashes and single quotes escaped with a backslash.</summary>
    public static string Quote(string value) => "'" + value.Replace(@"\", @"\\").Replace("'", @"\'") + "'";

    /// <summary>Escapes the LIKE wildcards of a value meant literally inside a LIKE pattern ([ ] % _ are special in WQL).</summary>
    public static string LikeLiteral(string value) =>
        value.Replace("[", "[[]").Replace("%", "[%]").Replace("_", "[_]");
}
