using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Journal;
using Coordinator.Cluster.Ledger;

namespace Coordinator.Service.Api;

/// <summary>
/// <c>GET /v1/admin/backup</c>: an online, consistent backup of the ledger (as etcd's snapshot save). The singleton takes
/// it at one sequence number of the journal and releases it once every event it reflects is durable; this node adds
/// the journal's cluster id and the checksum and answers the backup file (<see cref="LedgerBackupFile"/>). It holds
/// every reservation, lease, cached image and VM, so it needs the admin token.
/// </summary>
public static class BackupEndpoints
{
    /// <summary>A large ledger takes a while to copy and to travel from the singleton's node.</summary>
    public static readonly TimeSpan MinimumTimeout = TimeSpan.FromSeconds(30);

    public static void MapBackupApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/admin/backup", async (HttpRequest request, LedgerGateway ledger, CoordinatorSettings settings,
            JournalIdentity journal, ILoggerFactory logs, CancellationToken ct) =>
        {
            if (AdminEndpoints.Authorize(request, settings.AdminToken, "admin") is { } denied) return denied;
            var timeout = settings.AskTimeout > MinimumTimeout ? settings.AskTimeout : MinimumTimeout;
            var reply = await ledger.Ask<LedgerBackupReply>(BackupLedger.Instance, ct, timeout);
            var bytes = LedgerBackupFile.Write(journal.ClusterId, reply);
            logs.CreateLogger("Coordinator.Admin").LogInformation(
                "Admin: backup taken at sequence number {SequenceNr}, epoch {Epoch} ({Bytes} bytes)", reply.SequenceNr, reply.Epoch, bytes.Length);
            var headers = request.HttpContext.Response.Headers;
            headers["X-Coordinator-Epoch"] = reply.Epoch.ToString(System.Globalization.CultureInfo.InvariantCulture);
            headers["X-Coordinator-Sequence-Nr"] = reply.SequenceNr.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return Results.File(bytes, LedgerBackupFile.ContentType,
                $"coordinator-backup-{journal.ClusterId:N}-{reply.SequenceNr}.json.gz");
        }).AddEndpointFilter(LedgerEndpoints.TranslateNoLeader);
    }
}
