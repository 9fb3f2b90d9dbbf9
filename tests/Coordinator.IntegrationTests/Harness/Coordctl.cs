using System.Diagnostics;
using System.Text;

namespace Coordinator.IntegrationTests.Harness;

/// <summary>
/// Runs the real, built coordctl (src/Coordinator.Cli/bin/&lt;configuration&gt;/net10.0/coordctl.dll) as a process and
/// captures its stdout (as bytes too, for --json comparisons), stderr and exit code. Every process it starts it waits
/// for or kills by PID.
/// </summary>
public static class Coordctl
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr, byte[] StdoutBytes, TimeSpan Elapsed)
    {
        public override string ToString() => $"exit {ExitCode} after {Elapsed.TotalSeconds:0.0}s\n{Stdout}{Stderr}";
    }

    public static string Dll()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Coordinator.sln"))) dir = dir.Parent;
        if (dir is null) throw new InvalidOperationException("Coordinator.sln not found above " + AppContext.BaseDirectory);
#if DEBUG
        const string configuration = "Debug";
#else
        const string configuration = "Release";
#endif
        var dll = Path.Combine(dir.FullName, "src", "Coordinator.Cli", "bin", configuration, "net10.0", "coordctl.dll");
        return File.Exists(dll) ? dll : throw new FileNotFoundException("build the solution first", dll);
    }

    private static ProcessStartInfo StartInfo(IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(Dll());
        foreach (var a in args) psi.ArgumentList.Add(a);
        // The defaults must not leak in from the developer's shell.
        psi.Environment.Remove("COORDCTL_ENDPOINT");
        psi.Environment.Remove("COORDCTL_TOKEN");
        psi.Environment.Remove("COORDCTL_TOKEN_FILE");
        psi.Environment.Remove("COORDCTL_CA_FILE");
        psi.Environment["NO_COLOR"] = "1";
        return psi;
    }

    /// <summary>Runs coordctl to completion (killed and reported after <paramref name="timeout"/>, 60 s by default).</summary>
    public static Task<Result> RunAsync(params string[] args) => RunAsync(args, null);

    public static async Task<Result> RunAsync(IEnumerable<string> args, TimeSpan? timeout)
    {
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(StartInfo(args)) ?? throw new InvalidOperationException("could not start coordctl");
        var (stdout, stderr, _) = Capture(p);
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(60));
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            await p.WaitForExitAsync();
            throw new TimeoutException($"coordctl {string.Join(' ', args)} did not finish within {timeout ?? TimeSpan.FromSeconds(60)}:\n"
                                       + Encoding.UTF8.GetString(await stdout) + await stderr);
        }
        var bytes = await stdout;
        return new Result(p.ExitCode, Encoding.UTF8.GetString(bytes), await stderr, bytes, sw.Elapsed);
    }

    /// <summary>A long-running coordctl (tail, events --follow): stopped with SIGINT, as Ctrl+C would.</summary>
    public sealed class Running : IDisposable
    {
        private readonly Process _process;
        private readonly Task<byte[]> _stdout;
        private readonly Task<string> _stderr;
        private readonly Func<string> _stdoutSoFar;
        private readonly Stopwatch _clock = Stopwatch.StartNew();

        internal Running(Process process)
        {
            _process = process;
            (_stdout, _stderr, _stdoutSoFar) = Capture(process);
        }

        public int Pid => _process.Id;

        /// <summary>What it has written to stdout so far (tests wait on it instead of sleeping).</summary>
        public string StdoutSoFar => _stdoutSoFar();

        /// <summary>Waits until stdout so far satisfies <paramref name="condition"/>; false after <paramref name="timeout"/> or once the process ended without it.</summary>
        public async Task<bool> WaitForOutputAsync(Func<string, bool> condition, TimeSpan timeout)
        {
            var clock = Stopwatch.StartNew();
            while (true)
            {
                if (condition(StdoutSoFar)) return true;
                if (_process.HasExited) return condition(StdoutSoFar);
                if (clock.Elapsed > timeout) return false;
                await Task.Delay(100);
            }
        }

        /// <summary>SIGINT, then the result (SIGKILL if it does not stop within 10 s).</summary>
        public async Task<Result> InterruptAsync()
        {
            if (!_process.HasExited) LocalCluster.Signal(_process.Id, "INT");
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            try { await _process.WaitForExitAsync(cts.Token); }
            catch (OperationCanceledException)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
            var bytes = await _stdout;
            return new Result(_process.ExitCode, Encoding.UTF8.GetString(bytes), await _stderr, bytes, _clock.Elapsed);
        }

        public void Dispose()
        {
            try
            {
                if (!_process.HasExited)
                {
                    _process.Kill(entireProcessTree: true);
                    _process.WaitForExit(5000);
                }
            }
            catch (InvalidOperationException) { }
            _process.Dispose();
        }
    }

    public static Running Start(params string[] args) =>
        new(Process.Start(StartInfo(args)) ?? throw new InvalidOperationException("could not start coordctl"));

    private static (Task<byte[]> Stdout, Task<string> Stderr, Func<string> StdoutSoFar) Capture(Process p)
    {
        p.StandardInput.Close();
        var buffer = new MemoryStream();
        var stdout = Task.Run(async () =>
        {
            var chunk = new byte[8192];
            int n;
            while ((n = await p.StandardOutput.BaseStream.ReadAsync(chunk)) > 0)
                lock (buffer) buffer.Write(chunk, 0, n);
            lock (buffer) return buffer.ToArray();
        });
        return (stdout, p.StandardError.ReadToEndAsync(), () =>
        {
            lock (buffer) return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
        });
    }
}
