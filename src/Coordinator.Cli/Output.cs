using System.Globalization;
using Coordinator.Client;
using Spectre.Console;

namespace Coordinator.Cli;

public static class ExitCodes
{
    public const int Ok = 0, Refused = 1, Usage = 2, Unavailable = 3;
}

/// <summary>Human formatting: binary sizes, local ages, problems on stderr.</summary>
public static class Output
{
    public static string Bytes(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        double v = bytes;
        var i = 0;
        while (Math.Abs(v) >= 1024 && i < units.Length - 1) { v /= 1024; i++; }
        return i == 0 ? $"{bytes} B" : string.Create(CultureInfo.InvariantCulture, $"{v:0.##} {units[i]}");
    }

    public static string Age(DateTimeOffset? at)
    {
        if (at is null) return "-";
        var d = DateTimeOffset.UtcNow - at.Value;
        if (d < TimeSpan.Zero) return "in " + Span(-d);
        return Span(d) + " ago";
    }

    private static string Span(TimeSpan d) =>
        d.TotalSeconds < 60 ? $"{(int)d.TotalSeconds}s" : d.TotalMinutes < 60 ? $"{(int)d.TotalMinutes}m" : d.TotalHours < 48 ? $"{(int)d.TotalHours}h" : $"{(int)d.TotalDays}d";

    public static int Refused(Problem? p, int status)
    {
        Console.Error.WriteLine($"coordctl: refused ({status}): {p?.Title ?? "error"}{(p?.Detail is { } d ? ": " + d : "")}");
        return ExitCodes.Refused;
    }

    public static Table Table(params string[] columns)
    {
        var t = new Table().Border(TableBorder.Simple);
        foreach (var c in columns) t.AddColumn(new TableColumn(c));
        return t;
    }

    public static void Write(Table t) => AnsiConsole.Write(t);
}

/// <summary>A usage error found after parsing (a bad URL, say): exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);
