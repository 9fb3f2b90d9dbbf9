using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Coordinator.IntegrationTests.Harness;

/// <summary>
/// A PostgreSQL server of the test's own (scripts/pg-throwaway.sh): its own port and folder, so the test may take it
/// away (a journal outage) and bring it back. Null from <see cref="TryStart"/> says why it cannot run here.
/// </summary>
public sealed class ThrowawayPostgres : IDisposable
{
    private readonly string _script;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "coord-pg-" + Guid.NewGuid().ToString("N")[..8]);

    public int Port { get; }
    public string ConnectionString { get; private set; } = "";

    private ThrowawayPostgres(string script, int port)
    {
        _script = script;
        Port = port;
    }

    public static (ThrowawayPostgres? Server, string? WhyNot) TryStart()
    {
        if (!Directory.Exists("/usr/lib/postgresql") && !File.Exists("/usr/bin/pg_ctl"))
            return (null, "PostgreSQL binaries are not installed (apt-get install postgresql)");
        var root = Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(LocalCluster.ServiceDll()))));
        // ServiceDll is src/Coordinator.Service/bin/<cfg>/net10.0/x.dll: walk up to the repository.
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Coordinator.sln"))) dir = dir.Parent;
        var script = Path.Combine(dir!.FullName, "scripts", "pg-throwaway.sh");
        var port = LoopbackPorts.Next();
        var pg = new ThrowawayPostgres(script, port);
        var (code, output) = pg.Run("start", pg._dir, port.ToString());
        if (code != 0) return (null, $"pg-throwaway.sh start failed ({code}): {output}");
        pg.ConnectionString = output.Trim().Split('\n').Last();
        _ = root;
        return (pg, null);
    }

    /// <summary>Stops the server abruptly (immediate shutdown), keeping its data: the journal is gone.</summary>
    public void Pause() => Check(Run("pause", _dir));

    public void Resume() => Check(Run("resume", _dir, Port.ToString()));

    private static void Check((int Code, string Output) r)
    {
        if (r.Code != 0) throw new InvalidOperationException("pg-throwaway.sh failed: " + r.Output);
    }

    private (int Code, string Output) Run(params string[] args)
    {
        var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(_script);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEnd();
        var stderr = p.StandardError.ReadToEnd();
        p.WaitForExit(120_000);
        return (p.ExitCode, stdout + stderr);
    }

    public void Dispose() => Run("stop", _dir);
}
