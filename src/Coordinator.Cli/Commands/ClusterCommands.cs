using System.ComponentModel;
using System.Text.Json;
using Coordinator.Client;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Coordinator.Cli.Commands;

/// <summary>coordctl cluster show: every member, its status and reachability; marks the Akka leader, the oldest and the singleton host.</summary>
public sealed class ClusterShowCommand : ApiCommand<GlobalSettings, MembersResponse>
{
    protected override Task<ApiResult<MembersResponse>> Call(CoordinatorClient c, GlobalSettings s, CancellationToken ct) => c.GetMembersAsync(ct);

    protected override void Render(MembersResponse m, GlobalSettings s)
    {
        var t = Terminal.Table("NODE", "ADDRESS", "STATUS", "REACHABLE", "UP#", "MARKS");
        foreach (var x in m.Members)
        {
            var marks = string.Join(" ", new[]
            {
                x.Singleton ? "[green]singleton[/]" : null, x.Oldest ? "oldest" : null, x.Leader ? "leader" : null,
                x.Node == m.SelfNode ? "[grey](self)[/]" : null,
            }.Where(v => v is not null));
            t.AddRow(Terminal.Esc(x.Node), Terminal.Esc(x.Address), Status(x.Status), Terminal.YesNo(x.Reachable), x.UpNumber.Inv(), marks);
        }
        Terminal.Write(t);
        Terminal.Line($"singleton: {m.SingletonNode ?? "(no leader reachable)"}   oldest: {NodeOf(m, m.Oldest)}   leader: {NodeOf(m, m.Leader)}   "
                      + $"members: {m.Members.Count}, up: {m.Members.Count(x => x.Status == "Up")}, unreachable: {m.Unreachable.Count}");
        if (m.Unreachable.Count > 0)
        {
            var u = Terminal.Table("UNREACHABLE", "ADDRESS", "OBSERVED BY");
            foreach (var x in m.Unreachable)
                u.AddRow(Terminal.Esc(x.Node), Terminal.Esc(x.Address), Terminal.Esc(string.Join(", ", x.ObservedBy.Select(a => NodeOf(m, a)))));
            Terminal.Write(u);
            Terminal.Line("(down a member that will not come back: coordctl cluster down <node>, or cluster down-unreachable)");
        }
    }

    private static string Status(string s) => s switch
    {
        "Up" => "[green]Up[/]",
        "Down" or "Removed" => $"[red]{s}[/]",
        _ => $"[yellow]{Terminal.Esc(s)}[/]",
    };

    /// <summary>The node name of an Akka address, when it is a member.</summary>
    public static string NodeOf(MembersResponse m, string? address) =>
        address is null ? "-" : m.Members.FirstOrDefault(x => x.Address == address)?.Node ?? address;
}

/// <summary>coordctl cluster leader: where the ledger singleton runs, its epoch and since when.</summary>
public sealed class ClusterLeaderCommand : ApiCommand<GlobalSettings, SingletonResponse>
{
    protected override Task<ApiResult<SingletonResponse>> Call(CoordinatorClient c, GlobalSettings s, CancellationToken ct) => c.GetSingletonAsync(ct);

    protected override void Render(SingletonResponse l, GlobalSettings s)
    {
        var t = Terminal.Table("SINGLETON", "ADDRESS", "EPOCH", "SINCE");
        t.AddRow(Terminal.Esc(l.Node), Terminal.Esc(l.Address), l.Epoch.Inv(), Terminal.Age(l.Since));
        Terminal.Write(t);
    }
}

public sealed class MemberSettings : GlobalSettings
{
    [CommandArgument(0, "<NODE-OR-ADDRESS>")]
    [Description("A member's node name (hv01) or Akka address (akka.tcp://coordinator@10.0.0.1:4053).")]
    public string Member { get; init; } = "";
}

/// <summary>coordctl cluster leave|down &lt;node-or-address&gt; (admin token).</summary>
public abstract class MemberOperationCommand : ApiCommand<MemberSettings, MemberOperationResponse>
{
    protected override void Render(MemberOperationResponse r, MemberSettings s) =>
        Terminal.Line($"{r.Message} ({s.Member}); follow with: coordctl cluster tail");

    public sealed class Leave : MemberOperationCommand
    {
        protected override Task<ApiResult<MemberOperationResponse>> Call(CoordinatorClient c, MemberSettings s, CancellationToken ct) => c.LeaveAsync(s.Member, ct);
    }

    public sealed class Down : MemberOperationCommand
    {
        protected override Task<ApiResult<MemberOperationResponse>> Call(CoordinatorClient c, MemberSettings s, CancellationToken ct) => c.DownAsync(s.Member, ct);
    }
}

/// <summary>coordctl cluster down-unreachable: downs every member the cluster sees as unreachable (admin token).</summary>
public sealed class DownUnreachableCommand : AsyncCommand<GlobalSettings>
{
    protected override async Task<int> ExecuteAsync(CommandContext context, GlobalSettings s, CancellationToken ct)
    {
        using var c = s.CreateClient();
        try
        {
            var members = await c.GetMembersAsync(ct);
            if (!members.IsOk) return Terminal.Refused(members.Problem);
            if (members.Value.Unreachable.Count == 0)
            {
                if (!s.Json) Terminal.Line("no unreachable members");
                return ExitCodes.Ok;
            }
            foreach (var u in members.Value.Unreachable)
            {
                var r = await c.DownAsync(u.Address, ct);
                // --json: one answer per line, each exactly as the service sent it.
                if (s.Json) Terminal.WriteRaw(r.RawBody, line: true);
                if (!r.IsOk) return Terminal.Refused(r.Problem);
                if (!s.Json) Terminal.Line($"{r.Value.Message} ({u.Node})");
            }
            return ExitCodes.Ok;
        }
        catch (CoordinatorUnavailableException e)
        {
            return Terminal.Unavailable(e);
        }
    }
}

public sealed class TailSettings : GlobalSettings
{
    [CommandOption("--interval <SECONDS>")]
    [Description("Polling interval. Default 1.")]
    public double Interval { get; init; } = 1;

    public override ValidationResult Validate() =>
        Interval is < 0.1 or > 3600 ? ValidationResult.Error("--interval must be between 0.1 and 3600 seconds") : base.Validate();
}

/// <summary>
/// coordctl cluster tail: polls GET /cluster/members and prints one line per change (a member joins, changes status,
/// becomes unreachable or reachable again, is removed; the Akka leader, the oldest or the singleton host moves) until Ctrl+C.
/// </summary>
public sealed class ClusterTailCommand : AsyncCommand<TailSettings>
{
    private sealed record Snapshot(Dictionary<string, MemberView> Members, string? Leader, string? Oldest, string? Singleton, MembersResponse Raw);

    protected override async Task<int> ExecuteAsync(CommandContext context, TailSettings s, CancellationToken ct)
    {
        // One attempt per poll: the loop itself is the retry, and an outage is worth a line.
        using var c = s.CreateClient(TimeSpan.Zero);
        Snapshot? last = null;
        string? lastError = null;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                var r = await c.GetMembersAsync(ct);
                if (!r.IsOk) return Terminal.Refused(r.Problem);
                var m = r.Value;
                var now = new Snapshot(m.Members.ToDictionary(x => x.Address), m.Leader, m.Oldest, m.SingletonNode, m);
                if (lastError is not null) Emit(s, "reconnected", c.Endpoint.ToString(), null);
                lastError = null;
                if (last is null)
                {
                    foreach (var x in m.Members) Emit(s, "member", $"{x.Node} {x.Status}{(x.Reachable ? "" : " unreachable")}", x);
                    Emit(s, "singleton", m.SingletonNode ?? "(none)", null);
                    Emit(s, "leader", ClusterShowCommand.NodeOf(m, m.Leader), null);
                }
                else Diff(s, last, now);
                last = now;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                break;
            }
            catch (CoordinatorUnavailableException e)
            {
                if (lastError != e.Message) Emit(s, "unavailable", e.Message, null);
                lastError = e.Message;
            }
            try { await Task.Delay(TimeSpan.FromSeconds(s.Interval), ct); }
            catch (OperationCanceledException) { break; }
        }
        return ExitCodes.Ok;
    }

    private static void Diff(TailSettings s, Snapshot a, Snapshot b)
    {
        foreach (var (addr, x) in b.Members)
        {
            if (!a.Members.TryGetValue(addr, out var old)) Emit(s, "joined", $"{x.Node} {x.Status}", x);
            else
            {
                if (old.Status != x.Status) Emit(s, "status", $"{x.Node} {old.Status} -> {x.Status}", x);
                if (old.Reachable != x.Reachable) Emit(s, x.Reachable ? "reachable" : "unreachable", x.Node, x);
            }
        }
        foreach (var (addr, x) in a.Members)
            if (!b.Members.ContainsKey(addr)) Emit(s, "removed", x.Node, x);
        if (a.Singleton != b.Singleton) Emit(s, "singleton", $"{a.Singleton ?? "(none)"} -> {b.Singleton ?? "(none)"}", null);
        if (a.Leader != b.Leader)
            Emit(s, "leader", $"{ClusterShowCommand.NodeOf(a.Raw, a.Leader)} -> {ClusterShowCommand.NodeOf(b.Raw, b.Leader)}", null);
        if (a.Oldest != b.Oldest)
            Emit(s, "oldest", $"{ClusterShowCommand.NodeOf(a.Raw, a.Oldest)} -> {ClusterShowCommand.NodeOf(b.Raw, b.Oldest)}", null);
    }

    private static void Emit(TailSettings s, string kind, string what, MemberView? member)
    {
        var at = DateTimeOffset.Now;
        if (s.Json)
            Console.Out.WriteLine(JsonSerializer.Serialize(new { at, kind, what, member }, CoordinatorClient.JsonOptions));
        else
            Terminal.Markup($"[grey]{Terminal.Clock(at)}[/] {kind,-11} {Terminal.Esc(what)}{(member is null ? "" : $" [grey]{Terminal.Esc(member.Address)}[/]")}");
        Console.Out.Flush();
    }
}
