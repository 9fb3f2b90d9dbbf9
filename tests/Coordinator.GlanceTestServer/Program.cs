using System.Globalization;

namespace Coordinator.Testing.Glance;

/// <summary>
/// Standalone: <c>dotnet run --project tests/Coordinator.GlanceTestServer -- --port 9292 --image cirros:64MiB
/// --image win2022:1GiB:7:vhdx --token secret</c>. Serves until Ctrl+C or SIGTERM.
/// </summary>
internal static class Program
{
    private const string Usage = """
        Usage: Coordinator.GlanceTestServer [--port N] [--token T] [--image ID:SIZE[:SEED[:DISK_FORMAT]]]...
          --port N     port on 127.0.0.1 (default 9292; 0 = a free port)
          --token T    X-Auth-Token the /v2 routes require (default test-token)
          --image ...  an image; SIZE takes a B, KiB, MiB or GiB suffix (e.g. cirros:64MiB, win2022:1GiB:7:vhdx)
        """;

    private static async Task<int> Main(string[] args)
    {
        var port = 9292;
        var token = GlanceTestServer.DefaultToken;
        var images = new List<(string Id, long Size, int Seed, string DiskFormat)>();
        try
        {
            for (var i = 0; i < args.Length; i++)
            {
                switch (args[i])
                {
                    case "--port":
                        port = int.Parse(Value(args, ref i), NumberStyles.None, CultureInfo.InvariantCulture);
                        break;
                    case "--token":
                        token = Value(args, ref i);
                        break;
                    case "--image":
                        images.Add(ParseImage(Value(args, ref i)));
                        break;
                    case "-h" or "--help":
                        Console.WriteLine(Usage);
                        return 0;
                    default:
                        throw new FormatException($"Unknown argument '{args[i]}'.");
                }
            }
        }
        catch (Exception e) when (e is FormatException or OverflowException)
        {
            Console.Error.WriteLine(e.Message);
            Console.Error.WriteLine(Usage);
            return 2;
        }

        // Hash first (cached), then listen: a script that waits for the port never sees a missing image.
        foreach (var image in images)
            GlanceContent.ComputeHashes(image.Id, image.Size, image.Seed);

        await using var server = await GlanceTestServer.StartCoreAsync(port, token, standalone: true);
        foreach (var image in images)
            server.AddImage(image.Id, image.Size, image.Seed, image.DiskFormat);
        Console.WriteLine($"Glance test server listening on {server.Endpoint} (X-Auth-Token: {token}); Ctrl+C to stop.");
        await server.WaitForShutdownAsync();
        return 0;
    }

    private static string Value(string[] args, ref int i) =>
        ++i < args.Length ? args[i] : throw new FormatException($"{args[i - 1]} needs a value.");

    private static (string Id, long Size, int Seed, string DiskFormat) ParseImage(string spec)
    {
        var parts = spec.Split(':');
        if (parts.Length is < 2 or > 4 || parts[0].Length == 0 || parts[0].Contains('/'))
            throw new FormatException($"Bad --image '{spec}': expected ID:SIZE[:SEED[:DISK_FORMAT]].");
        var seed = parts.Length > 2 ? int.Parse(parts[2], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture) : 0;
        var diskFormat = parts.Length > 3 && parts[3].Length > 0 ? parts[3] : "vhdx";
        return (parts[0], ParseSize(parts[1]), seed, diskFormat);
    }

    /// <summary>"512", "512B", "10KiB", "64MiB", "1GiB" (suffix case-insensitive).</summary>
    internal static long ParseSize(string text)
    {
        var s = text.Trim();
        (string Suffix, long Factor)[] units = [("GiB", 1L << 30), ("MiB", 1L << 20), ("KiB", 1L << 10), ("B", 1)];
        var (suffix, factor) = units.FirstOrDefault(u => s.EndsWith(u.Suffix, StringComparison.OrdinalIgnoreCase), ("", 1));
        if (!long.TryParse(s.AsSpan(0, s.Length - suffix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var number))
            throw new FormatException($"Bad size '{text}': expected a number with an optional B, KiB, MiB or GiB suffix.");
        return checked(number * factor);
    }
}
