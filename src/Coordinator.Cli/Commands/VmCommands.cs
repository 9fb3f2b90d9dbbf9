using System.ComponentModel;
using Coordinator.Client;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Coordinator.Cli.Commands;

public sealed class NodeSettings : GlobalSettings
{
    [CommandArgument(0, "<NODE>")]
    [Description("A node's name (coordctl nodes lists them).")]
    public string Node { get; init; } = "";
}

/// <summary>coordctl nodes</summary>
public sealed class NodesCommand : ApiCommand<GlobalSettings, NodesResponse>
{
    protected override Task<ApiResult<NodesResponse>> Call(CoordinatorClient c, GlobalSettings s, CancellationToken ct) => c.GetNodesAsync(ct);

    protected override void Render(NodesResponse n, GlobalSettings s)
    {
        var t = Terminal.Table("NODE", "STATE", "MEMORY", "FREE MEMORY", "LPS", "FREE VCPUS", "VMS");
        foreach (var x in n.Nodes.OrderBy(x => x.Node, StringComparer.Ordinal))
            t.AddRow(Terminal.Esc(x.Node), State(x.State), Terminal.MiB(x.MemoryMb), Terminal.MiB(x.FreeMemoryMb), x.LogicalProcessors.Inv(),
                x.FreeVcpus.Inv(), x.Vms.Inv());
        Terminal.Write(t);
    }

    private static string State(string s) => s switch
    {
        "up" => "[green]up[/]",
        "draining" => "[yellow]draining[/]",
        _ => $"[red]{Terminal.Esc(s)}[/]",
    };
}

/// <summary>coordctl vms</summary>
public sealed class VmsCommand : ApiCommand<GlobalSettings, VmsResponse>
{
    protected override Task<ApiResult<VmsResponse>> Call(CoordinatorClient c, GlobalSettings s, CancellationToken ct) => c.GetVmsAsync(ct);

    protected override void Render(VmsResponse v, GlobalSettings s)
    {
        var t = Terminal.Table("VM", "NODE", "PHASE", "MEMORY", "VCPUS", "DISK", "VOLUME", "IMAGE", "SINCE");
        foreach (var x in v.Vms.OrderBy(x => x.Name, StringComparer.Ordinal))
            t.AddRow(Terminal.Esc(x.Name), Terminal.Esc(x.Node), x.Phase.ToString().ToLowerInvariant(), Terminal.MiB(x.MemoryMb), x.Vcpus.Inv(),
                Terminal.Bytes(x.DiskBytes), Terminal.Esc(x.Volume), Terminal.Esc(x.ImageId ?? "-"), Terminal.Age(x.Since));
        Terminal.Write(t);
        Terminal.Line($"{v.Vms.Count} VMs");
    }
}

/// <summary>coordctl drain|resume &lt;node&gt; (admin token).</summary>
public abstract class DrainCommand : ApiCommand<NodeSettings, DrainResponse>
{
    protected override void Render(DrainResponse r, NodeSettings s) =>
        Terminal.Line(r.Draining
            ? $"{r.Node} is draining: no new placements, its VMs live-migrate away (watch: coordctl nodes / coordctl events --follow)"
            : $"{r.Node} takes placements again");

    public sealed class Drain : DrainCommand
    {
        protected override Task<ApiResult<DrainResponse>> Call(CoordinatorClient c, NodeSettings s, CancellationToken ct) => c.DrainNodeAsync(s.Node, ct);
    }

    public sealed class Resume : DrainCommand
    {
        protected override Task<ApiResult<DrainResponse>> Call(CoordinatorClient c, NodeSettings s, CancellationToken ct) => c.ResumeNodeAsync(s.Node, ct);
    }
}

public sealed class EventsSettings : GlobalSettings
{
    [CommandOption("-f|--follow")]
    [Description("Keep long-polling for new events until Ctrl+C.")]
    public bool Follow { get; init; }

    [CommandOption("--after <SEQ>")]
    [Description("Only events after this sequence number. Default 0 (all).")]
    public long After { get; init; }

    [CommandOption("--node <NODE>")]
    [Description("Only events of this node.")]
    public string? Node { get; init; }

    [CommandOption("--wait <SECONDS>")]
    [Description("Long-poll wait per request with --follow (at most 60). Default 30.")]
    public int Wait { get; init; } = 30;

    public override ValidationResult Validate() =>
        After < 0 ? ValidationResult.Error("--after must not be negative")
        : Wait is < 1 or > 60 ? ValidationResult.Error("--wait must be between 1 and 60 seconds")
        : base.Validate();
}

/// <summary>
/// coordctl events [--follow] [--after N] [--node X]: the feed of VMs that arrived on or left a node. --follow
/// long-polls (waitMs) and prints each event as a line until Ctrl+C; with --json each answer is one line.
/// </summary>
public sealed class EventsCommand : AsyncCommand<EventsSettings>
{
    protected override async Task<int> ExecuteAsync(CommandContext context, EventsSettings s, CancellationToken ct)
    {
        using var c = s.CreateClient();
        var after = s.After;
        try
        {
            if (!s.Follow)
            {
                return Reply.Print(await c.GetEventsAsync(after, null, s.Node, ct), s, r =>
                {
                    var t = Terminal.Table("SEQ", "AT", "NODE", "VM", "KIND", "REASON");
                    foreach (var e in r.Events)
                        t.AddRow(e.Seq.Inv(), Terminal.Age(e.At), Terminal.Esc(e.Node), Terminal.Esc(e.Vm), Terminal.Esc(e.Kind), Terminal.Esc(e.Reason));
                    Terminal.Write(t);
                    Terminal.Line($"head {r.Head}");
                });
            }
            while (!ct.IsCancellationRequested)
            {
                var r = await c.GetEventsAsync(after, TimeSpan.FromSeconds(s.Wait), s.Node, ct);
                if (!r.IsOk)
                {
                    if (s.Json) Terminal.WriteRaw(r.RawBody, line: true);
                    return Terminal.Refused(r.Problem);
                }
                if (s.Json)
                {
                    if (r.Value.Events.Count > 0) Terminal.WriteRaw(r.RawBody, line: true);
                }
                else
                {
                    foreach (var e in r.Value.Events)
                        Terminal.Markup($"{e.Seq,6} [grey]{Terminal.Clock(e.At)}[/] {Terminal.Esc(e.Node),-10} {Terminal.Esc(e.Kind),-9} {Terminal.Esc(e.Vm)} [grey]({Terminal.Esc(e.Reason)})[/]");
                }
                // With --node the head moves on even when nothing of ours arrived; without events, nothing lies before it.
                after = r.Value.Events.Count > 0 ? Math.Max(after, r.Value.Events.Max(e => e.Seq)) : Math.Max(after, r.Value.Head);
            }
            return ExitCodes.Ok;
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            return ExitCodes.Ok;
        }
        catch (CoordinatorUnavailableException e)
        {
            return Terminal.Unavailable(e);
        }
    }
}
