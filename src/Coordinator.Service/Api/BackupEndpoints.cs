using Akka.Actor;
using Akka.Cluster;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Journal;
using Coordinator.Cluster.Ledger;

namespace Coordinator.Service.Api;

/// <summary>
/// <c>GET /v1/admin/backup</c>: an online, consistent backup of the ledger (as etcd's snapshot save). The singleton takes
/// it at one sequence number of the journal and releases it once every event it reflects is durable; this node adds
/// the journal's cluster id and the checksum and answers the backup file (<see cref="LedgerBackupFile"/>). It holds
/// every reservation, lease, cached image and VM, so it needs the admin role.
/// </summary>
public static class BackupEndpoints
{
    /// <summary>A large ledger takes a while to copy and to travel from the singleton's node.</summary>
    public static readonly TimeSpan MinimumTimeout = TimeSpan.FromSeconds(30);

    public static void MapBackupApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/admin/backup", async (HttpRequest request, LedgerGateway ledger, CoordinatorSettings settings,
            JournalIdentity journal, ActorSystem system, HttpSecurity security, ILoggerFactory logs, CancellationToken ct) =>
        {
            if (Authorization.Admin(request.HttpContext, security) is { } denied) return denied;
            var timeout = settings.AskTimeout > MinimumTimeout ? settings.AskTimeout : MinimumTimeout;
            LedgerBackupReply reply;
            try
            {
                reply = await ledger.Ask<LedgerBackupReply>(BackupLedger.Instance, ct, timeout);
            }
            catch (NoLeaderException e) when (SingletonHostIfElsewhere(system) is { } host)
            {
                // The copy travels from the singleton's node in one Akka message: one larger than the remoting frame
                // limit is dropped there and looks like no answer. Asked on the singleton's own node it never crosses.
                return Problems.NoLeader($"{e.Message}. The backup is taken on {host}: if the ledger is large (its copy is " +
                                         "bigger than akka.remote.dot-netty.tcp.maximum-frame-size), ask that node's API instead");
            }
            var bytes = LedgerBackupFile.Write(journal.ClusterId, reply);
            logs.CreateLogger("Coordinator.Admin").LogInformation(
                "Admin: backup taken at sequence number {SequenceNr}, epoch {Epoch} ({Bytes} bytes)", reply.SequenceNr, reply.Epoch, bytes.Length);
            var headers = request.HttpContext.Response.Headers;
            headers["X-Coordinator-Epoch"] = reply.Epoch.ToString(System.Globalization.CultureInfo.InvariantCulture);
            headers["X-Coordinator-Sequence-Nr"] = reply.SequenceNr.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return Results.File(bytes, LedgerBackupFile.ContentType,
                $"coordinator-backup-{journal.ClusterId:N}-{reply.SequenceNr}.json.gz");
        }).AddEndpointFilter(LedgerEndpoints.TranslateNoLeader).AdminOnly().ProducesProblem(503);
    }

    /// <summary>The Akka address of the oldest Up member (where the ledger singleton runs) when it is not this node.</summary>
    private static string? SingletonHostIfElsewhere(ActorSystem system)
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        var up = cluster.State.Members.Where(m => m.Status == MemberStatus.Up).ToList();
        if (up.Count == 0) return null;
        var oldest = up.Aggregate((a, b) => a.IsOlderThan(b) ? a : b);
        return oldest.Address.Equals(cluster.SelfAddress) ? null : oldest.Address.ToString();
    }
}
