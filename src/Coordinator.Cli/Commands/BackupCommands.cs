using System.ComponentModel;
using System.Text.Json;
using Akka.Configuration;
using Coordinator.Client;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Journal;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Coordinator.Cli.Commands;

/// <summary>Exit codes of backup and restore beyond the common ones (0 ok, 1 refused by the service, 2 usage, 3 unavailable).</summary>
public static class BackupExitCodes
{
    /// <summary>restore: the journal is not empty (it has an identity, events or snapshots); nothing was written.</summary>
    public const int JournalNotEmpty = 4;

    /// <summary>The backup file was refused: checksum mismatch, unknown format, or not a backup; nothing was written.</summary>
    public const int BadBackupFile = 5;

    /// <summary>restore: the journal did not answer, or writing or reading back the restored state failed.</summary>
    public const int RestoreFailed = 6;
}

public sealed class BackupSettings : GlobalSettings
{
    [CommandArgument(0, "<FILE>")]
    [Description("Where to write the backup (gzip'd JSON). Written to a temporary file beside it, then renamed.")]
    public string File { get; init; } = "";
}

/// <summary>
/// coordctl backup FILE: an online, consistent backup (GET /v1/admin/backup, admin token), taken by the ledger singleton
/// at one sequence number. The file is checked (format, checksum, state) before it replaces FILE atomically.
/// </summary>
public sealed class BackupCommand : AsyncCommand<BackupSettings>
{
    protected override async Task<int> ExecuteAsync(CommandContext context, BackupSettings s, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(s.File)) throw new UsageException("backup: FILE is required");
        var target = Path.GetFullPath(s.File);
        var dir = Path.GetDirectoryName(target)!;
        if (!Directory.Exists(dir)) throw new UsageException($"backup: the folder {dir} does not exist");

        byte[] bytes;
        using (var client = s.CreateClient())
        {
            ApiResult<byte[]> r;
            try { r = await client.DownloadBackupAsync(ct); }
            catch (CoordinatorUnavailableException e) { return Terminal.Unavailable(e); }
            if (!r.IsOk) return Terminal.Refused(r.Problem);
            bytes = r.Value;
        }

        LedgerBackup backup;
        try { backup = LedgerBackupFile.Read(bytes); }
        catch (BackupFileException e)
        {
            Terminal.Error.MarkupLine($"[red]coordctl:[/] the service's backup does not check out, nothing written: {Terminal.Esc(e.Message)}");
            return BackupExitCodes.BadBackupFile;
        }

        // Temporary file in the same folder (same file system), flushed to disk, then renamed over FILE: a crash leaves
        // either the old FILE or the new one, never half a backup.
        var temp = Path.Combine(dir, $".{Path.GetFileName(target)}.{Guid.NewGuid():N}.tmp");
        try
        {
            await using (var f = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.WriteThrough))
            {
                await f.WriteAsync(bytes, ct);
                f.Flush(flushToDisk: true);
            }
            File.Move(temp, target, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }

        var summary = BackupSummary.Of(backup, target, bytes.Length);
        if (s.Json) Terminal.WriteRaw(JsonSerializer.SerializeToUtf8Bytes(summary, CoordinatorClient.JsonOptions), line: true);
        else summary.Print("backup written");
        return ExitCodes.Ok;
    }
}

public sealed class RestoreSettings : CommandSettings
{
    [CommandArgument(0, "<FILE>")]
    [Description("A file written by coordctl backup.")]
    public string File { get; init; } = "";

    [CommandOption("--config <NODE_HOCON>")]
    [Description("A node's site configuration: its coordinator.persistence.provider and .connection-string (and data-dir for the default SQLite file) name the journal.")]
    public string? Config { get; init; }

    [CommandOption("--provider <PROVIDER>")]
    [Description("sqlite or postgresql (instead of --config).")]
    public string? Provider { get; init; }

    [CommandOption("--connection-string <CONNECTION_STRING>")]
    [Description("The journal's ADO.NET connection string (instead of --config).")]
    public string? ConnectionString { get; init; }

    [CommandOption("--json")]
    [Description("Print the result as JSON.")]
    public bool Json { get; init; }

    public override ValidationResult Validate()
    {
        if (Config is null && ConnectionString is null)
            return ValidationResult.Error("restore: give --config NODE.hocon, or --provider and --connection-string");
        if (Config is not null && (Provider is not null || ConnectionString is not null))
            return ValidationResult.Error("restore: give either --config or --provider/--connection-string, not both");
        return ValidationResult.Success();
    }
}

/// <summary>
/// coordctl restore FILE: OFFLINE (as etcdctl snapshot restore; stop every node first), into an EMPTY journal. Refuses
/// a journal that is not empty, a file whose checksum fails, a format it does not know; each changes nothing. The
/// restore goes through Akka.Persistence itself, hence this tool's reference to Coordinator.Cluster (the ledger's
/// persistence id, serializer and plugin configuration): the rows are exactly those a node writes and reads.
/// </summary>
public sealed class RestoreCommand : AsyncCommand<RestoreSettings>
{
    protected override async Task<int> ExecuteAsync(CommandContext context, RestoreSettings s, CancellationToken ct)
    {
        var (provider, connectionString) = JournalOf(s);
        byte[] bytes;
        try { bytes = await File.ReadAllBytesAsync(s.File, ct); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"restore: cannot read {s.File}: {e.Message}");
        }

        LedgerBackup backup;
        try { backup = LedgerBackupFile.Read(bytes); }
        catch (BackupFileException e)
        {
            Terminal.Error.MarkupLine($"[red]coordctl:[/] {Terminal.Esc(s.File)} refused, nothing restored: {Terminal.Esc(e.Message)}");
            return BackupExitCodes.BadBackupFile;
        }

        RestoreResult result;
        try
        {
            result = await LedgerRestore.RestoreAsync(provider, connectionString, backup, TimeSpan.FromMinutes(5), ct);
        }
        catch (RestoreRefusedException e) when (e.Message.StartsWith("the journal is not empty", StringComparison.Ordinal))
        {
            Terminal.Error.MarkupLine($"[red]coordctl:[/] restore refused, nothing written: {Terminal.Esc(e.Message)}");
            return BackupExitCodes.JournalNotEmpty;
        }
        catch (Exception e) when (e is not OperationCanceledException and not UsageException)
        {
            // The connection string may hold a password: only the provider is named.
            Terminal.Error.MarkupLine($"[red]coordctl:[/] restore into the {provider} journal failed: {Terminal.Esc(e.GetBaseException().Message)}");
            return BackupExitCodes.RestoreFailed;
        }

        var summary = BackupSummary.Of(backup, s.File, bytes.Length);
        if (s.Json) Terminal.WriteRaw(JsonSerializer.SerializeToUtf8Bytes(summary, CoordinatorClient.JsonOptions), line: true);
        else
        {
            summary.Print("restored");
            Terminal.Line($"the journal recovers at sequence number {result.RecoveredLastSequenceNr}; the next leader starts epoch {backup.Epoch + 1}. Start the nodes.");
        }
        return ExitCodes.Ok;
    }

    /// <summary>The journal a node's configuration names, resolved as the service resolves it.</summary>
    private static (JournalProvider Provider, string ConnectionString) JournalOf(RestoreSettings s)
    {
        string providerName;
        Config? config = null;
        if (s.Config is { } file)
        {
            if (!File.Exists(file)) throw new UsageException($"--config: {file} does not exist");
            try { config = ConfigurationFactory.ParseString(File.ReadAllText(file)); }
            catch (Exception e) { throw new UsageException($"--config: {file} is not valid HOCON: {e.Message}"); }
            providerName = config.GetString("coordinator.persistence.provider", "sqlite");
        }
        else providerName = s.Provider ?? "sqlite";
        var provider = providerName.Trim().ToLowerInvariant() switch
        {
            "sqlite" => JournalProvider.Sqlite,
            "postgresql" or "postgres" => JournalProvider.PostgreSql,
            var other => throw new UsageException($"restore: provider '{other}' is not one of sqlite, postgresql"),
        };
        if (config is null) return (provider, s.ConnectionString!);
        // As the service resolves it: <data-dir>/ledger.db by default (data-dir relative to the working directory), the
        // password from coordinator.persistence.password(-file/-env) merged in.
        var coordinator = config.GetConfig("coordinator") ?? ConfigurationFactory.Empty;
        try { return (provider, PersistenceHocon.ConnectionString(coordinator, provider, Path.GetFullPath(config.GetString("coordinator.data-dir", "data")))); }
        catch (ConfigurationException e) { throw new UsageException($"--config: {e.Message}"); }
    }
}

/// <summary>What coordctl prints about a backup file.</summary>
public sealed record BackupSummary(string File, long SizeBytes, Guid ClusterId, long SequenceNr, long Epoch, DateTimeOffset TakenAt,
    int Reservations, int Images, int Leases, int Vms, string Checksum)
{
    public static BackupSummary Of(LedgerBackup b, string file, long size) => new(
        file, size, b.ClusterId, b.SequenceNr, b.Epoch, b.TakenAt,
        b.Snapshot.Volumes.Sum(v => v.Reservations.Count), b.Snapshot.Images?.Count ?? 0, b.Snapshot.Leases?.Count ?? 0,
        b.Snapshot.Vms?.Count ?? 0, b.Checksum);

    public void Print(string what)
    {
        Terminal.Line($"{what}: {File} ({Terminal.Bytes(SizeBytes)})");
        Terminal.Line($"cluster id:      {ClusterId}");
        Terminal.Line($"sequence number: {SequenceNr.Inv()}");
        Terminal.Line($"epoch:           {Epoch.Inv()}");
        Terminal.Line($"taken at:        {TakenAt.UtcDateTime:yyyy-MM-dd HH:mm:ss}Z");
        Terminal.Line($"entries:         {Reservations.Inv()} reservations, {Images.Inv()} cached images, {Leases.Inv()} leases, {Vms.Inv()} VMs");
        Terminal.Line($"checksum:        {Checksum}");
    }
}
