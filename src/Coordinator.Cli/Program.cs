using Coordinator.Cli;
using Coordinator.Cli.Commands;
using Spectre.Console;
using Spectre.Console.Cli;

// coordctl: exit codes 0 success, 1 refused by the service (4xx), 2 usage error, 3 unreachable or no leader.
// Tables are not wrapped at 80 columns when the output goes to a file or a pipe.
if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 240;

var app = new CommandApp();
app.Configure(config =>
{
    config.SetApplicationName("coordctl");
    config.PropagateExceptions();
    config.AddBranch("cluster", cluster =>
    {
        cluster.SetDescription("Cluster membership, leader and singleton (Akka Management style).");
        cluster.AddCommand<ClusterShowCommand>("show").WithDescription("Members, status, reachability; marks leader, oldest and singleton host.");
        cluster.AddCommand<ClusterLeaderCommand>("leader").WithDescription("Where the ledger singleton runs and its epoch.");
        cluster.AddCommand<MemberOperationCommand.Leave>("leave").WithDescription("Ask a member (node name or address) to leave.");
        cluster.AddCommand<MemberOperationCommand.Down>("down").WithDescription("Down a member (node name or address).");
        cluster.AddCommand<DownUnreachableCommand>("down-unreachable").WithDescription("Down every unreachable member.");
        cluster.AddCommand<ClusterTailCommand>("tail").WithDescription("Stream membership and leader changes until Ctrl+C.");
    });
    config.AddCommand<VolumesCommand>("volumes").WithDescription("Each CSV: capacity, used, reserved, free.");
    config.AddCommand<QuotasCommand>("quotas").WithDescription("Per-node quotas of a volume.");
    config.AddCommand<ReservationsCommand>("reservations").WithDescription("Reservations on a volume.");
    config.AddCommand<ImagesCommand>("images").WithDescription("The image cache.");
    config.AddCommand<LeasesCommand>("leases").WithDescription("Image-fetch leases.");
    config.AddCommand<NodesCommand>("nodes").WithDescription("Nodes: state, memory, vCPUs, VMs.");
    config.AddCommand<VmsCommand>("vms").WithDescription("VMs and their owners.");
    config.AddCommand<DrainCommand.Drain>("drain").WithDescription("Drain a node (live-migrate its VMs away).");
    config.AddCommand<DrainCommand.Resume>("resume").WithDescription("Resume placements on a node.");
    config.AddCommand<EventsCommand>("events").WithDescription("The VM arrival/departure feed (--follow to long-poll).");
});

try
{
    return await app.RunAsync(args);
}
catch (Exception e) when (e is CommandParseException or CommandConfigurationException or CommandRuntimeException or UsageException)
{
    AnsiConsole.MarkupLine($"[red]usage:[/] {Markup.Escape(e.Message)}");
    return ExitCodes.Usage;
}
catch (Coordinator.Client.CoordinatorUnavailableException e)
{
    Console.Error.WriteLine($"coordctl: {e.Message}");
    return ExitCodes.Unavailable;
}
