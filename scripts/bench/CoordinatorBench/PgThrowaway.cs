using System.Diagnostics;
using Coordinator.IntegrationTests.Harness;

namespace CoordinatorBench;

/// <summary>
/// The PostgreSQL server of target ours-3-pg: scripts/pg-throwaway.sh on 127.0.0.1 with a free port and its own folder,
/// durable like etcd's default (PG_THROWAWAY_DURABLE=1: fsync=on, synchronous_commit=on, full_page_writes=on; the
/// script's default for tests is fsync=off). The settings are read back from the server and stated in the target's
/// description. Stopped (and its folder removed) by the same script, which stops exactly that folder's server.
/// </summary>
public sealed class PgThrowaway : IAsyncDisposable
{
    private readonly string _script;
    private readonly string _dir;

    public string ConnectionString { get; }
    public string Describe { get; }

    private PgThrowaway(string script, string dir, string connectionString, string describe)
    {
        (_script, _dir, ConnectionString, Describe) = (script, dir, connectionString, describe);
    }

    public static async Task<PgThrowaway> StartAsync(string script, string dir, TextWriter log, CancellationToken ct)
    {
        var port = LoopbackPorts.Next();
        var (rc, output, errors) = await RunAsync(script, ["start", dir, port.ToString(System.Globalization.CultureInfo.InvariantCulture)], ct);
        if (rc != 0) throw new InvalidOperationException($"pg-throwaway.sh start failed ({rc}): {output}{errors}");
        var conn = output.Trim().Split('\n')[^1].Trim();
        var settings = await ShowAsync(port, ["fsync", "synchronous_commit", "full_page_writes", "wal_sync_method", "server_version"], ct);
        var describe = $"PostgreSQL {settings.GetValueOrDefault("server_version", "?")} (throwaway, 127.0.0.1:{port}; fsync={settings.GetValueOrDefault("fsync", "?")}, " +
                       $"synchronous_commit={settings.GetValueOrDefault("synchronous_commit", "?")}, full_page_writes={settings.GetValueOrDefault("full_page_writes", "?")}, " +
                       $"wal_sync_method={settings.GetValueOrDefault("wal_sync_method", "?")}; one durable copy)";
        if (settings.GetValueOrDefault("fsync") != "on" || settings.GetValueOrDefault("synchronous_commit") != "on")
            throw new InvalidOperationException($"the throwaway PostgreSQL is not durable: {describe}");
        log.WriteLine($"-- {describe}");
        return new PgThrowaway(script, dir, conn, describe);
    }

    private static async Task<Dictionary<string, string>> ShowAsync(int port, string[] names, CancellationToken ct)
    {
        var psql = Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin", "psql")).FirstOrDefault(File.Exists) ?? "psql";
        var result = new Dictionary<string, string>();
        foreach (var n in names)
        {
            var (rc, output, _) = await RunAsync(psql, ["-h", "127.0.0.1", "-p", port.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "-U", "coordinator", "-d", "postgres", "-At", "-c", $"SHOW {n}"], ct);
            if (rc == 0) result[n] = output.Trim();
        }
        return result;
    }

    private static async Task<(int, string, string)> RunAsync(string file, string[] args, CancellationToken ct)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["PG_THROWAWAY_DURABLE"] = "1";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync(ct);
        var stderr = p.StandardError.ReadToEndAsync(ct);
        await p.WaitForExitAsync(ct);
        return (p.ExitCode, await stdout, await stderr);
    }

    public async ValueTask DisposeAsync()
    {
        var (rc, output, errors) = await RunAsync(_script, ["stop", _dir], CancellationToken.None);
        if (rc != 0) Console.Error.WriteLine($"bench: pg-throwaway.sh stop {_dir} failed ({rc}): {output}{errors}");
    }
}
