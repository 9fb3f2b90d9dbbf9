using System.ComponentModel;
using System.Text.Json;
using Coordinator.Client;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Coordinator.Cli.Commands;

public sealed class VolumeSettings : GlobalSettings
{
    [CommandArgument(0, "<VOLUME>")]
    public string Volume { get; init; } = "";
}

public sealed class NodeSettings : GlobalSettings
{
    [CommandArgument(0, "<NODE>")]
    public string Node { get; init; } = "";
}

public sealed class VolumesCommand : ApiCommand<GlobalSettings, VolumesInfo>
{
    protected override Task<ApiResult<VolumesInfo>> Call(CoordinatorClient c, GlobalSettings s) => c.VolumesAsync();

    protected override void Render(VolumesInfo v, GlobalSettings s)
    {
        var t = Output.Table("VOLUME", "CAPACITY", "USED", "RESERVED", "UNOWNED", "FREE", "CLAIMS", "MEASURED");
        foreach (var x in v.Volumes)
            t.AddRow(Markup.Escape(x.Name), Output.Bytes(x.CapacityBytes), Output.Bytes(x.UsedBytes), Output.Bytes(x.ReservedBytes),
                Output.Bytes(x.UnownedBytes), Output.Bytes(x.FreeBytes), x.Reservations.ToString(), Output.Age(x.MeasuredAt));
        Output.Write(t);
    }
}

public sealed class QuotasCommand : ApiCommand<VolumeSettings, QuotasInfo>
{
    protected override Task<ApiResult<QuotasInfo>> Call(CoordinatorClient c, VolumeSettings s) => c.QuotasAsync(s.Volume);

    protected override void Render(QuotasInfo q, VolumeSettings s)
    {
        var t = Output.Table("NODE", "LIVE", "CLAIMED", "FREE", "QUOTA");
        foreach (var x in q.Quotas)
            t.AddRow(Markup.Escape(x.Node), x.Live ? "yes" : "no", Output.Bytes(x.ClaimedBytes), Output.Bytes(x.FreeBytes), Output.Bytes(x.QuotaBytes));
        Output.Write(t);
        AnsiConsole.WriteLine($"policy {q.Policy}");
    }
}

public sealed class ReservationsCommand : ApiCommand<VolumeSettings, ReservationsInfo>
{
    protected override Task<ApiResult<ReservationsInfo>> Call(CoordinatorClient c, VolumeSettings s) => c.ReservationsAsync(s.Volume);

    protected override void Render(ReservationsInfo r, VolumeSettings s)
    {
        var t = Output.Table("CONSUMER", "NODE", "BYTES", "PATH", "IMAGE", "UPDATED");
        foreach (var x in r.Reservations.OrderBy(x => x.ConsumerId, StringComparer.Ordinal))
            t.AddRow(Markup.Escape(x.ConsumerId), Markup.Escape(x.Node), Output.Bytes(x.Bytes), Markup.Escape(x.Path ?? "-"),
                Markup.Escape(x.ImageId ?? "-"), Output.Age(x.UpdatedAt));
        Output.Write(t);
    }
}

public sealed class ImagesCommand : ApiCommand<GlobalSettings, ImagesInfo>
{
    protected override Task<ApiResult<ImagesInfo>> Call(CoordinatorClient c, GlobalSettings s) => c.ImagesAsync();

    protected override void Render(ImagesInfo i, GlobalSettings s)
    {
        var t = Output.Table("IMAGE", "SIZE", "USERS", "LAST USED", "CACHED", "PATH");
        foreach (var x in i.Images)
            t.AddRow(Markup.Escape(x.ImageId), Output.Bytes(x.SizeBytes), x.Users.ToString(), Output.Age(x.LastUsedAt), Output.Age(x.CachedAt), Markup.Escape(x.Path));
        Output.Write(t);
    }
}

public sealed class LeasesCommand : ApiCommand<GlobalSettings, ImagesInfo>
{
    protected override Task<ApiResult<ImagesInfo>> Call(CoordinatorClient c, GlobalSettings s) => c.ImagesAsync();

    protected override void Render(ImagesInfo i, GlobalSettings s)
    {
        var t = Output.Table("IMAGE", "HOLDER", "TOKEN", "EXPIRES", "SIZE", "WAITERS");
        foreach (var x in i.Leases)
            t.AddRow(Markup.Escape(x.ImageId), Markup.Escape(x.Holder), x.FencingToken.ToString(), Output.Age(x.ExpiresAt), Output.Bytes(x.SizeBytes),
                Markup.Escape(string.Join(",", x.Waiters)));
        Output.Write(t);
    }
}

public sealed class NodesCommand : ApiCommand<GlobalSettings, NodesInfo>
{
    protected override Task<ApiResult<NodesInfo>> Call(CoordinatorClient c, GlobalSettings s) => c.NodesAsync();

    protected override void Render(NodesInfo n, GlobalSettings s)
    {
        var t = Output.Table("NODE", "STATE", "MEMORY", "FREE MEMORY", "LPS", "FREE VCPUS", "VMS");
        foreach (var x in n.Nodes)
            t.AddRow(Markup.Escape(x.Node), x.State, Output.Bytes(x.MemoryMb << 20), Output.Bytes(x.FreeMemoryMb << 20),
                x.LogicalProcessors.ToString(), x.FreeVcpus.ToString(), x.Vms.ToString());
        Output.Write(t);
    }
}

public sealed class VmsCommand : ApiCommand<GlobalSettings, VmsInfo>
{
    protected override Task<ApiResult<VmsInfo>> Call(CoordinatorClient c, GlobalSettings s) => c.VmsAsync();

    protected override void Render(VmsInfo v, GlobalSettings s)
    {
        var t = Output.Table("VM", "NODE", "PHASE", "MEMORY", "VCPUS", "DISK", "IMAGE", "SINCE");
        foreach (var x in v.Vms)
            t.AddRow(Markup.Escape(x.Name), Markup.Escape(x.Node), x.Phase, Output.Bytes((long)x.MemoryMb << 20), x.Vcpus.ToString(),
                Output.Bytes(x.DiskBytes), Markup.Escape(x.ImageId ?? "-"), Output.Age(x.Since));
        Output.Write(t);
    }
}

public abstract class DrainCommand : ApiCommand<NodeSettings, JsonElement>
{
    public sealed class Drain : DrainCommand
    {
        protected override Task<ApiResult<JsonElement>> Call(CoordinatorClient c, NodeSettings s) => c.DrainAsync(s.Node);
    }

    public sealed class Resume : DrainCommand
    {
        protected override Task<ApiResult<JsonElement>> Call(CoordinatorClient c, NodeSettings s) => c.ResumeAsync(s.Node);
    }

    protected override void Render(JsonElement r, NodeSettings s) =>
        AnsiConsole.WriteLine(r.GetProperty("draining").GetBoolean() ? $"{s.Node} is draining (progress: coordctl nodes)" : $"{s.Node} takes placements again");
}

public sealed class EventsSettings : GlobalSettings
{
    [CommandOption("--follow")]
    [Description("Keep long-polling for new events until Ctrl+C.")]
    public bool Follow { get; init; }

    [CommandOption("--after <SEQ>")]
    public long After { get; init; }

    [CommandOption("--node <NODE>")]
    public string? Node { get; init; }
}

public sealed class EventsCommand : AsyncCommand<EventsSettings>
{
    protected override async Task<int> ExecuteAsync(CommandContext context, EventsSettings s, CancellationToken cancellationToken)
    {
        using var c = s.Client();
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
        var after = s.After;
        do
        {
            ApiResult<EventsInfo> r;
            try { r = await c.EventsAsync(after, s.Follow ? 30_000 : 0, s.Node, stop.Token); }
            catch (OperationCanceledException) { break; }
            if (!r.IsSuccess) return Output.Refused(r.Problem, r.Status);
            if (s.Json) Console.WriteLine(r.Body);
            else foreach (var e in r.Value!.Events) Console.WriteLine($"{e.Seq,6} {e.At.ToLocalTime():HH:mm:ss} {e.Node,-10} {e.Kind,-8} {e.Vm} ({e.Reason})");
            after = Math.Max(after, r.Value!.Events.Count > 0 ? r.Value.Events[^1].Seq : r.Value.Head);
        } while (s.Follow && !stop.IsCancellationRequested);
        return ExitCodes.Ok;
    }
}
