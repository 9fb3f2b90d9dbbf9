using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Coordinator.Cluster.Ledger;
using Coordinator.Domain;

namespace Coordinator.Cluster.Journal;

/// <summary>A backup file, read and checked: the ledger's state at one sequence number of one cluster's journal.</summary>
public sealed record LedgerBackup(
    int FormatVersion,
    Guid ClusterId,
    long Epoch,
    long SequenceNr,
    DateTimeOffset TakenAt,
    LedgerSnapshot Snapshot,
    string Checksum)
{
    /// <summary>Reservations, cached images, leases and VMs in the snapshot.</summary>
    public int Entries => CsvLedger.FromSnapshot(Snapshot).EntryCount;
}

/// <summary>Why a backup file is refused. Each kind has its own coordctl exit code.</summary>
public enum BackupFileProblem { Malformed, UnknownFormat, ChecksumMismatch }

public sealed class BackupFileException(BackupFileProblem problem, string message) : Exception(message)
{
    public BackupFileProblem Problem { get; } = problem;
}

/// <summary>
/// The backup file (as etcd's snapshot file): a self-describing JSON document, gzip-compressed,
/// <c>{format, formatVersion, clusterId, epoch, sequenceNr, takenAt, snapshot, checksum}</c>. The checksum is
/// <c>sha256:&lt;hex&gt;</c> over the canonical bytes of the document without its checksum property (parsed and
/// written back compactly by System.Text.Json, so whitespace or a re-compression does not matter, any changed value
/// does). The snapshot is the ledger's <see cref="LedgerSnapshot"/> in the journal's own JSON shape.
/// </summary>
public static class LedgerBackupFile
{
    public const string Format = "hyperv-coordinator-backup";
    public const int FormatVersion = 1;
    public const string ContentType = "application/gzip";

    // The same shape as the journal's serializer (CoordinatorSerializer): a snapshot restores exactly as it was saved.
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>The file's bytes for a backup the ledger answered, with this cluster's id and the checksum.</summary>
    public static byte[] Write(Guid clusterId, LedgerBackupReply reply)
    {
        var doc = new JsonObject
        {
            ["format"] = Format,
            ["formatVersion"] = FormatVersion,
            ["clusterId"] = clusterId.ToString("D"),
            ["epoch"] = reply.Epoch,
            ["sequenceNr"] = reply.SequenceNr,
            ["takenAt"] = reply.TakenAt.ToUniversalTime().ToString("O"),
            ["snapshot"] = JsonSerializer.SerializeToNode(reply.Snapshot, Json),
        };
        doc["checksum"] = ChecksumOf(doc);
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Optimal, leaveOpen: true))
        using (var writer = new Utf8JsonWriter(gzip))
            doc.WriteTo(writer);
        return output.ToArray();
    }

    /// <summary>Reads and checks a backup file (gzip or plain JSON); refuses an unknown format or a failed checksum.</summary>
    public static LedgerBackup Read(byte[] bytes)
    {
        JsonObject doc;
        try
        {
            var json = bytes.Length >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b ? Gunzip(bytes) : bytes;
            doc = JsonNode.Parse(json) as JsonObject
                  ?? throw new BackupFileException(BackupFileProblem.Malformed, "the file is not a JSON object");
        }
        catch (Exception e) when (e is JsonException or InvalidDataException)
        {
            throw new BackupFileException(BackupFileProblem.Malformed, $"the file is not a coordinator backup (not gzip'd JSON: {e.Message})");
        }

        var format = doc["format"] is JsonValue f && f.TryGetValue<string>(out var fs) ? fs : null;
        if (format != Format)
            throw new BackupFileException(BackupFileProblem.UnknownFormat,
                $"the file's format is '{format ?? "(none)"}', not '{Format}': it is not a coordinator backup");
        var version = doc["formatVersion"] is JsonValue v && v.TryGetValue<int>(out var vi) ? vi : 0;
        if (version != FormatVersion)
            throw new BackupFileException(BackupFileProblem.UnknownFormat,
                $"the backup's format version is {version}; this coordctl reads version {FormatVersion} only" +
                (version > FormatVersion ? " (use the coordctl of the coordinator that wrote it)" : ""));

        var stated = doc["checksum"] is JsonValue c && c.TryGetValue<string>(out var cs) ? cs : null;
        if (stated is null)
            throw new BackupFileException(BackupFileProblem.ChecksumMismatch, "the backup has no checksum");
        var actual = ChecksumOf(doc);
        if (!CryptographicOperations.FixedTimeEquals(System.Text.Encoding.ASCII.GetBytes(stated), System.Text.Encoding.ASCII.GetBytes(actual)))
            throw new BackupFileException(BackupFileProblem.ChecksumMismatch,
                $"the backup's checksum does not match its content (stated {stated}, computed {actual}): the file was changed or damaged");

        try
        {
            var clusterId = Guid.Parse(doc["clusterId"]!.GetValue<string>());
            var epoch = doc["epoch"]!.GetValue<long>();
            var seq = doc["sequenceNr"]!.GetValue<long>();
            var takenAt = DateTimeOffset.Parse(doc["takenAt"]!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture);
            var snapshot = doc["snapshot"].Deserialize<LedgerSnapshot>(Json)
                           ?? throw new BackupFileException(BackupFileProblem.Malformed, "the backup has no snapshot");
            if (seq < 1) throw new BackupFileException(BackupFileProblem.Malformed, $"the backup's sequence number {seq} is not positive");
            if (snapshot.Epoch != epoch)
                throw new BackupFileException(BackupFileProblem.Malformed, $"the backup says epoch {epoch} but its snapshot is of epoch {snapshot.Epoch}");
            CsvLedger.FromSnapshot(snapshot); // the state must load, as the ledger will load it
            return new LedgerBackup(version, clusterId, epoch, seq, takenAt, snapshot, stated);
        }
        catch (Exception e) when (e is not BackupFileException)
        {
            throw new BackupFileException(BackupFileProblem.Malformed, $"the backup's content is not valid: {e.Message}");
        }
    }

    /// <summary>sha256 over the compact UTF-8 JSON of the document without its checksum property.</summary>
    private static string ChecksumOf(JsonObject doc)
    {
        var copy = (JsonObject)doc.DeepClone();
        copy.Remove("checksum");
        var bytes = JsonSerializer.SerializeToUtf8Bytes(copy);
        return "sha256:" + Convert.ToHexStringLower(SHA256.HashData(bytes));
    }

    private static byte[] Gunzip(byte[] bytes)
    {
        using var input = new GZipStream(new MemoryStream(bytes), CompressionMode.Decompress);
        using var output = new MemoryStream();
        input.CopyTo(output);
        return output.ToArray();
    }
}
