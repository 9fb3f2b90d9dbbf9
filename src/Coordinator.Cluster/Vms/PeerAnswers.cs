using System.Text.Json;
using Coordinator.Domain;

namespace Coordinator.Cluster.Vms;

/// <summary>A peer cluster's answer that this node does not trust: nothing was done with it.</summary>
public sealed class PeerAnswerException(string message) : Exception(message);

/// <summary>
/// Checks what another cluster's coordinator answers before anything acts on it: a peer is another administrative
/// domain (and its address may be spoofed), so its volume list could try to steer this node's host into writing a
/// migrated VM's files anywhere (a relative path, '..', another drive, a UNC share), or carry sizes and names no
/// coordinator would send. Plain functions over the JSON, so that they can be tested without a network.
/// </summary>
public static class PeerAnswers
{
    public const int MaxVolumes = 256;
    public const int MaxPathLength = 1024;

    /// <summary>
    /// The folder a VM migrated to the peer goes to: <c>ROOT/instances/NAME</c> under the first volume of the peer's
    /// <c>GET /v1/volumes</c> answer (where the peer's arrival code looks for it), every volume in the answer checked.
    /// </summary>
    public static string DestinationFolder(JsonElement volumesAnswer, string vmName)
    {
        if (InputRules.CheckConsumerId(vmName) is { } nameErr) throw new PeerAnswerException(nameErr);
        if (volumesAnswer.ValueKind != JsonValueKind.Object
            || !volumesAnswer.TryGetProperty("volumes", out var volumes) || volumes.ValueKind != JsonValueKind.Array)
            throw new PeerAnswerException("the answer has no 'volumes' array");
        var count = volumes.GetArrayLength();
        if (count is 0 or > MaxVolumes) throw new PeerAnswerException($"the answer lists {count} volumes (expected 1 to {MaxVolumes})");
        var names = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        string? firstRoot = null;
        var i = 0;
        foreach (var v in volumes.EnumerateArray())
        {
            var (name, root) = Volume(v, i++);
            if (!names.Add(name)) throw new PeerAnswerException($"the answer lists volume '{name}' twice");
            firstRoot ??= root;
        }
        var sep = firstRoot!.Contains('\\') ? '\\' : '/';
        var destination = firstRoot.TrimEnd('/', '\\') + sep + CsvLedger.VmFolder(vmName).Replace('/', sep);
        // The same rule as a client's consumer path: the folder must lie under the volume, nowhere else.
        if (InputRules.NormalizeVolumePath(firstRoot, destination, out var relative) is { } err || relative != CsvLedger.VmFolder(vmName))
            throw new PeerAnswerException($"the folder for '{vmName}' would not lie under the peer's volume");
        return destination;
    }

    private static (string Name, string Root) Volume(JsonElement v, int index)
    {
        if (v.ValueKind != JsonValueKind.Object) throw new PeerAnswerException($"volume #{index} is not an object");
        var name = String(v, "name", index);
        if (InputRules.CheckId("volume name", name) is { } idErr) throw new PeerAnswerException($"volume #{index}: {idErr}");
        var path = String(v, "path", index);
        if (CheckRoot(path) is { } pathErr) throw new PeerAnswerException($"volume '{Printable(name)}': {pathErr}");
        // Configured sizes (and what is free of them) stay within [0, 2^62]; a coordinator's sums saturate at 2^63-1.
        foreach (var (field, max) in new[] { ("capacityBytes", ByteSize.MaxBytes), ("headroomBytes", ByteSize.MaxBytes), ("freeBytes", ByteSize.MaxBytes),
                     ("usedBytes", long.MaxValue), ("reservedBytes", long.MaxValue) })
            if (v.TryGetProperty(field, out var f) && (f.ValueKind != JsonValueKind.Number || !f.TryGetInt64(out var n) || n < 0 || n > max))
                throw new PeerAnswerException($"volume '{Printable(name)}': {field} is not a size between 0 and {(max == ByteSize.MaxBytes ? "2^62" : "2^63-1")}");
        return (name, path);
    }

    /// <summary>A volume root as a coordinator reports it: absolute (C:\ClusterStorage\Volume1, /srv/csv/Volume1), plain.</summary>
    public static string? CheckRoot(string path)
    {
        if (path.Length > MaxPathLength) return $"the path is longer than {MaxPathLength} characters";
        if (path.Any(char.IsControl)) return "the path contains control characters";
        if (path.IndexOfAny(['*', '?', '"', '<', '>', '|']) >= 0) return "the path contains wildcard or reserved characters";
        var p = path.Replace('\\', '/');
        var drive = p.Length >= 3 && char.IsAsciiLetter(p[0]) && p[1] == ':' && p[2] == '/';
        if (p.StartsWith("//", StringComparison.Ordinal)) return "the path is a network (UNC) path, not a cluster volume";
        if (!drive && !p.StartsWith('/')) return "the path is not absolute";
        var segments = (drive ? p[3..] : p[1..]).Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (segments.Length == 0) return "the path is a drive or file-system root, not a volume";
        foreach (var s in segments)
        {
            if (s is "." or "..") return "the path contains '.' or '..'";
            if (s.Contains(':')) return "the path contains ':' after the drive";
        }
        return null;
    }

    /// <summary>The peer's answer to an arrival: 200/201 with the VM it now holds, under the same name.</summary>
    public static void CheckArrival(int status, JsonElement? body, string vmName)
    {
        if (status is not (200 or 201)) throw new PeerAnswerException($"the peer answered {status}, not 200 or 201");
        if (body is not { ValueKind: JsonValueKind.Object } b || !b.TryGetProperty("name", out var n) || n.ValueKind != JsonValueKind.String)
            throw new PeerAnswerException("the peer's answer names no VM");
        if (!FileNames.Comparer.Equals(n.GetString(), vmName))
            throw new PeerAnswerException($"the peer's answer is about another VM ('{Printable(n.GetString()!)}', not '{vmName}')");
    }

    /// <summary>What a refusing peer said, fit for an error message: its problem's title and detail, short and printable.</summary>
    public static string Excerpt(string body)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            var r = doc.RootElement;
            string? Text(string p) => r.ValueKind == JsonValueKind.Object && r.TryGetProperty(p, out var e) && e.ValueKind == JsonValueKind.String ? e.GetString() : null;
            var text = string.Join(": ", new[] { Text("title"), Text("detail") }.Where(t => !string.IsNullOrWhiteSpace(t)));
            return text.Length == 0 ? "(no problem title or detail)" : Printable(text, 300);
        }
        catch (JsonException)
        {
            return $"(a body of {body.Length} characters that is not JSON)";
        }
    }

    private static string String(JsonElement v, string field, int index) =>
        v.TryGetProperty(field, out var f) && f.ValueKind == JsonValueKind.String && f.GetString() is { Length: > 0 } s
            ? s : throw new PeerAnswerException($"volume #{index} has no '{field}' string");

    private static string Printable(string s, int max = 64) =>
        new(s.Take(max).Select(c => char.IsControl(c) ? '?' : c).ToArray());
}
