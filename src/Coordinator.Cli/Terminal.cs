using System.Globalization;
using Coordinator.Client;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Coordinator.Cli;

public static class ExitCodes
{
    public const int Ok = 0;

    /// <summary>The service refused the request (4xx problem; title and detail on stderr).</summary>
    public const int Refused = 1;

    /// <summary>Unknown verb or option, missing or malformed argument.</summary>
    public const int Usage = 2;

    /// <summary>Connection refused, no answer, or still no leader (503) after the retries.</summary>
    public const int Unavailable = 3;

    public const int Interrupted = 130;
}

/// <summary>A usage error found after parsing (a malformed URL, say): exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>stdout for tables and JSON, stderr for problems; binary sizes and local ages.</summary>
public static class Terminal
{
    /// <summary>Tables go here. When stdout is not a terminal the width is generous, so that pipes get whole rows.</summary>
    public static IAnsiConsole Out { get; } = Create(Console.Out, Console.IsOutputRedirected);

    public static IAnsiConsole Error { get; } = Create(Console.Error, Console.IsErrorRedirected);

    private static IAnsiConsole Create(TextWriter writer, bool redirected)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(writer) });
        if (redirected) console.Profile.Width = 240;
        return console;
    }

    /// <summary>The body exactly as the service sent it (a newline is added only on a terminal).</summary>
    public static void WriteRaw(ReadOnlyMemory<byte> body, bool line = false)
    {
        Console.Out.Flush();
        using var stdout = Console.OpenStandardOutput();
        stdout.Write(body.Span);
        if (line || !Console.IsOutputRedirected) stdout.WriteByte((byte)'\n');
        stdout.Flush();
    }

    public static void Line(string text) => Out.WriteLine(text);

    public static void Markup(string markup) => Out.MarkupLine(markup);

    /// <summary>A refusal: "coordctl: 409 The claim does not fit on the volume: ..." on stderr; exit code 1.</summary>
    public static int Refused(Problem p)
    {
        Error.MarkupLine($"[red]coordctl:[/] {p.Status} {Esc(p.Title)}{(p.Detail is { Length: > 0 } d ? ": " + Esc(d) : "")} [grey]({Esc(p.Slug)})[/]");
        return ExitCodes.Refused;
    }

    public static int Unavailable(CoordinatorUnavailableException e)
    {
        Error.MarkupLine($"[red]coordctl:[/] {Esc(e.Message)}");
        return ExitCodes.Unavailable;
    }

    /// <summary>Every exception that reaches Spectre: its own parse errors are usage errors (2).</summary>
    public static int Handle(Exception e)
    {
        switch (e)
        {
            case CoordinatorUnavailableException u:
                return Unavailable(u);
            case CommandAppException app:
                if (app.Pretty is { } pretty) Error.Write(pretty);
                else Error.MarkupLine($"[red]Error:[/] {Esc(app.Message)}");
                return ExitCodes.Usage;
            case UsageException usage:
                Error.MarkupLine($"[red]Error:[/] {Esc(usage.Message)}");
                return ExitCodes.Usage;
            case OperationCanceledException:
                return ExitCodes.Interrupted;
            default:
                Error.MarkupLine($"[red]coordctl: unexpected error:[/] {Esc(e.GetType().Name)}: {Esc(e.Message)}");
                return ExitCodes.Refused;
        }
    }

    public static string Esc(string? s) => Spectre.Console.Markup.Escape(s ?? "");

    public static Table Table(params string[] columns)
    {
        var t = new Table().Border(TableBorder.None).BorderColor(Color.Grey);
        foreach (var c in columns)
        {
            var col = new TableColumn(new Text(c, new Style(decoration: Decoration.Bold))).NoWrap().PadLeft(0).PadRight(3);
            if (c is "CAPACITY" or "HEADROOM" or "USED" or "RESERVED" or "UNOWNED" or "FREE" or "CLAIMED" or "QUOTA" or "SIZE" or "MEMORY"
                or "FREE MEMORY" or "DISK" or "VCPUS" or "FREE VCPUS" or "LPS" or "VMS" or "CLAIMS" or "USERS" or "TOKEN" or "SEQ" or "UP#" or "EPOCH")
                col.RightAligned();
            t.AddColumn(col);
        }
        if (t.Columns.Count > 0) t.Columns[^1].PadRight(0);
        return t;
    }

    public static void Write(Table t) => Out.Write(t);

    /// <summary>Binary units: 512 B, 1.5 KiB, 100 GiB, 2.25 TiB.</summary>
    public static string Bytes(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        var v = (double)bytes;
        var i = 0;
        while (Math.Abs(v) >= 1024 && i < units.Length - 1)
        {
            v /= 1024;
            i++;
        }
        return i == 0
            ? bytes.ToString(CultureInfo.InvariantCulture) + " B"
            : v.ToString("0.##", CultureInfo.InvariantCulture) + " " + units[i];
    }

    public static string MiB(long mebibytes) => Bytes(mebibytes * 1024 * 1024);

    /// <summary>"12s ago", "3m ago", "5h ago", "2d ago"; "in 25s" for a time ahead (a lease's expiry).</summary>
    public static string Age(DateTimeOffset? at, DateTimeOffset? now = null)
    {
        if (at is null) return "-";
        var d = (now ?? DateTimeOffset.UtcNow) - at.Value;
        return d < TimeSpan.Zero ? "in " + Span(-d) : Span(d) + " ago";
    }

    public static string Span(TimeSpan d) =>
        d.TotalSeconds < 1 ? "0s"
        : d.TotalSeconds < 60 ? $"{(int)d.TotalSeconds}s"
        : d.TotalMinutes < 60 ? $"{(int)d.TotalMinutes}m"
        : d.TotalHours < 48 ? $"{(int)d.TotalHours}h"
        : $"{(int)d.TotalDays}d";

    public static string YesNo(bool b) => b ? "yes" : "[red]no[/]";

    public static string Num(long n) => n.ToString(CultureInfo.InvariantCulture);

    /// <summary>Local wall-clock time of day for streamed lines.</summary>
    public static string Clock(DateTimeOffset at) => at.ToLocalTime().ToString("HH:mm:ss", CultureInfo.InvariantCulture);
}
