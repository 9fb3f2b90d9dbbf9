using System.ComponentModel;
using System.Text.Json;
using Coordinator.Client;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Coordinator.Cli.Commands;

public sealed class ClusterShowCommand : ApiCommand<GlobalSettings, MembersInfo>
{
    protected override Task<ApiResult<MembersInfo>> Call(CoordinatorClient c, GlobalSettings s) => c.MembersAsync();

    protected override void Render(MembersInfo m, GlobalSettings s)
    {
        var t = Output.Table("NODE", "ADDRESS", "STATUS", "REACHABLE", "UP#", "ROLE");
        foreach (var x in m.Members)
        {
            var marks = string.Join(",", new[] { x.Leader ? "leader" : null, x.Oldest ? "oldest" : null, x.Singleton ? "singleton" : null }.Where(v => v is not null));
            t.AddRow(Markup.Escape(x.Node), Markup.Escape(x.Address), x.Status, x.Reachable ? "yes" : "[red]no[/]", x.UpNumber.ToString(), marks);
        }
        Output.Write(t);
        AnsiConsole.WriteLine($"self {m.SelfNode}; singleton (ledger) on {m.SingletonNode ?? "(none)"}; {m.Unreachable.Count} unreachable");
    }
}

public sealed class ClusterLeaderCommand : ApiCommand<GlobalSettings, LeaderInfo>
{
    protected override Task<ApiResult<LeaderInfo>> Call(CoordinatorClient c, GlobalSettings s) => c.SingletonAsync();

    protected override void Render(LeaderInfo l, GlobalSettings s) =>
        AnsiConsole.WriteLine($"ledger singleton on {l.Node} ({l.Address}), epoch {l.Epoch}, since {Output.Age(l.Since)}");
}

public sealed class MemberSettings : GlobalSettings
{
    [CommandArgument(0, "<NODE-OR-ADDRESS>")]
    [Description("A member's node name or Akka address.")]
    public string Member { get; init; } = "";
}

public abstract class MemberOperationCommand : ApiCommand<MemberSettings, JsonElement>
{
    protected abstract string Operation { get; }

    protected override Task<ApiResult<JsonElement>> Call(CoordinatorClient c, MemberSettings s) => c.MemberOperationAsync(s.Member, Operation);

    protected override void Render(JsonElement r, MemberSettings s) => AnsiConsole.WriteLine(r.GetProperty("message").GetString() ?? "");

    public sealed class Leave : MemberOperationCommand { protected override string Operation => "leave"; }

    public sealed class Down : MemberOperationCommand { protected override string Operation => "down"; }
}

public sealed class DownUnreachableCommand : AsyncCommand<GlobalSettings>
{
    protected override async Task<int> ExecuteAsync(CommandContext context, GlobalSettings settings, CancellationToken cancellationToken)
    {
        using var c = settings.Client();
        var members = await c.MembersAsync();
        if (!members.IsSuccess) return Output.Refused(members.Problem, members.Status);
        foreach (var u in members.Value!.Unreachable)
        {
            var r = await c.MemberOperationAsync(u.Address, "down");
            if (!r.IsSuccess) return Output.Refused(r.Problem, r.Status);
            AnsiConsole.WriteLine($"downing {u.Node} ({u.Address})");
        }
        if (members.Value.Unreachable.Count == 0) AnsiConsole.WriteLine("no unreachable members");
        return ExitCodes.Ok;
    }
}

public sealed class ClusterTailCommand : AsyncCommand<GlobalSettings>
{
    protected override async Task<int> ExecuteAsync(CommandContext context, GlobalSettings settings, CancellationToken cancellationToken)
    {
        using var c = settings.Client();
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
        var last = new Dictionary<string, string>();
        string? leader = null, singleton = null;
        while (!stop.IsCancellationRequested)
        {
            var r = await c.MembersAsync(stop.Token);
            if (r.IsSuccess)
            {
                var m = r.Value!;
                var now = m.Members.ToDictionary(x => x.Address, x => $"{x.Node} {x.Status}{(x.Reachable ? "" : " unreachable")}");
                foreach (var (addr, state) in now.Where(kv => !last.TryGetValue(kv.Key, out var old) || old != kv.Value))
                    Print(settings, "member", state, addr);
                foreach (var gone in last.Keys.Except(now.Keys)) Print(settings, "removed", last[gone], gone);
                if (m.Leader != leader) Print(settings, "leader", m.Leader ?? "(none)", "");
                if (m.SingletonNode != singleton) Print(settings, "singleton", m.SingletonNode ?? "(none)", "");
                (last, leader, singleton) = (now, m.Leader, m.SingletonNode);
            }
            try { await Task.Delay(1000, stop.Token); } catch (OperationCanceledException) { }
        }
        return ExitCodes.Ok;
    }

    private static void Print(GlobalSettings s, string kind, string what, string address)
    {
        if (s.Json) Console.WriteLine(JsonSerializer.Serialize(new { at = DateTimeOffset.Now, kind, what, address }));
        else Console.WriteLine($"{DateTimeOffset.Now:HH:mm:ss} {kind,-9} {what} {address}");
    }
}
