using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Coordinator.IntegrationTests.Harness;

/// <summary>
/// A PostgreSQL server of the test's own (scripts/pg-throwaway.sh): its own port and folder, so the test may take it
/// away (a journal outage) and bring it back.
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

    /// <summary>
    /// Starts a server. No PostgreSQL binaries here is a missing prerequisite (<see cref="Prerequisite.Require"/>: a skip,
    /// or a failure under COORDINATOR_TEST_REQUIRE_ALL=1); binaries that fail to start a server are a test failure,
    /// never a skip, with what the script printed (the tail of the server's log).
    /// </summary>
    public static ThrowawayPostgres Start() => Start(LoopbackPorts.Next());

    /// <summary>On a given port (a test of the failure path takes one that is in use).</summary>
    public static ThrowawayPostgres Start(int port)
    {
        Prerequisite.Require(!Directory.Exists("/usr/lib/postgresql") && !File.Exists("/usr/bin/pg_ctl")
            ? "PostgreSQL binaries are not installed (apt-get install postgresql)"
            : null);
        // Walk up from the test's output folder to the repository.
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Coordinator.sln"))) dir = dir.Parent;
        if (dir is null) throw new InvalidOperationException("Coordinator.sln not found above " + AppContext.BaseDirectory);
        var script = Path.Combine(dir.FullName, "scripts", "pg-throwaway.sh");
        var pg = new ThrowawayPostgres(script, port);
        var (code, output) = pg.Run("start", pg._dir, port.ToString());
        if (code != 0)
        {
            pg.Dispose(); // whatever it left (a half-made folder, a server that did start after all)
            throw new InvalidOperationException($"the throwaway PostgreSQL server did not start (pg-throwaway.sh exit {code}):\n{output}");
        }
        pg.ConnectionString = output.Trim().Split('\n').Last();
        return pg;
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
