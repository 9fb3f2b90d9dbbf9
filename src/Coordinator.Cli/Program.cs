using Coordinator.Cli;
using Coordinator.Cli.Commands;
using Spectre.Console.Cli;

// coordctl: the operators' command line. Exit codes: 0 success, 1 refused by the service (4xx; the problem's title and
// detail on stderr), 2 usage error, 3 unreachable or no leader (after the retries); backup/restore add 4 (journal not
// empty), 5 (backup file refused: checksum, format) and 6 (restore failed).
using var interrupted = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    // The first Ctrl+C stops a follow/tail loop cleanly; a second one kills the process as usual.
    if (interrupted.IsCancellationRequested) return;
    e.Cancel = true;
    interrupted.Cancel();
};

var started = new StartedInterceptor();
var app = new CommandApp();
app.Configure(config =>
{
    config.SetApplicationName("coordctl");
    config.UseStrictParsing();
    config.SetInterceptor(started);
    config.SetExceptionHandler((e, _) => Terminal.Handle(e));
    config.CancellationExitCode(ExitCodes.Interrupted);

    config.AddBranch("cluster", cluster =>
    {
        cluster.SetDescription("Cluster membership, Akka leader and the ledger singleton.");
        cluster.AddCommand<ClusterShowCommand>("show")
            .WithDescription("Members: status, reachability; marks the singleton host, the oldest and the Akka leader.")
            .WithExample("cluster", "show", "--endpoint", "http://10.0.0.11:7070");
        cluster.AddCommand<ClusterLeaderCommand>("leader").WithDescription("Where the ledger singleton runs, its epoch, since when.");
        cluster.AddCommand<MemberOperationCommand.Leave>("leave")
            .WithDescription("Ask a member (node name or Akka address) to leave gracefully. Admin token.")
            .WithExample("cluster", "leave", "hv01", "--token", "$TOKEN");
        cluster.AddCommand<MemberOperationCommand.Down>("down")
            .WithDescription("Down a member (node name or Akka address) that will not come back. Admin token.");
        cluster.AddCommand<DownUnreachableCommand>("down-unreachable").WithDescription("Down every unreachable member. Admin token.");
        cluster.AddCommand<ClusterTailCommand>("tail").WithDescription("Print membership, reachability, leader and singleton changes until Ctrl+C.");
    });
    config.AddCommand<VolumesCommand>("volumes").WithDescription("Each CSV: capacity, used, reserved, unowned, free.");
    config.AddCommand<QuotasCommand>("quotas").WithDescription("Per-node quotas of a volume.").WithExample("quotas", "Volume1");
    config.AddCommand<ReservationsCommand>("reservations").WithDescription("Every reservation on a volume.").WithExample("reservations", "Volume1");
    config.AddCommand<ImagesCommand>("images").WithDescription("The image cache's entries.");
    config.AddCommand<LeasesCommand>("leases").WithDescription("Image-fetch leases: holder, fencing token, expiry, waiters.");
    config.AddCommand<NodesCommand>("nodes").WithDescription("Nodes: state, memory and vCPUs (total and free), VM count.");
    config.AddCommand<VmsCommand>("vms").WithDescription("VMs: where they run, phase, memory, vCPUs, disk.");
    config.AddCommand<DrainCommand.Drain>("drain").WithDescription("Stop placements on a node and live-migrate its VMs away. Admin token.");
    config.AddCommand<DrainCommand.Resume>("resume").WithDescription("Let a drained node take placements again. Admin token.");
    config.AddCommand<BackupCommand>("backup")
        .WithDescription("Online backup of the ledger into FILE (atomically): cluster id, sequence number, epoch, entries, checksum. Admin token.")
        .WithExample("backup", "/srv/backup/coordinator-2026-12-01.json.gz", "--token", "$TOKEN");
    config.AddCommand<RestoreCommand>("restore")
        .WithDescription("OFFLINE: restore a backup into an EMPTY journal (every node stopped). Exit 4: journal not empty; 5: bad file; 6: failed.")
        .WithExample("restore", "coordinator.json.gz", "--config", "/etc/coordinator/site.hocon");
    config.AddCommand<EventsCommand>("events").WithDescription("VMs that arrived on or left a node; --follow long-polls.")
        .WithExample("events", "--follow", "--node", "hv02");
});

var code = await app.RunAsync(args, interrupted.Token);
// Spectre shows help and answers non-zero when a branch is given without its verb ("coordctl cluster"): a usage error.
return !started.Started && code != ExitCodes.Ok ? ExitCodes.Usage : code;

/// <summary>Records that a command was reached (parsing succeeded), to tell usage errors from refusals.</summary>
internal sealed class StartedInterceptor : ICommandInterceptor
{
    public bool Started { get; private set; }

    public void Intercept(CommandContext context, CommandSettings settings) => Started = true;
}
