using System.Diagnostics;

namespace CoordinatorBench;

/// <summary>
/// A process this bench started: its output goes to a log file, its PID is appended to DIR/pids (so the shell wrapper
/// can stop exactly what was started if the bench itself dies). Stopped by PID, never by name.
/// </summary>
public sealed class ChildProcess : IDisposable
{
    private readonly Process _process;
    private readonly StreamWriter _log;

    public string Name { get; }
    public int Pid => _process.Id;
    public bool HasExited => _process.HasExited;

    private ChildProcess(string name, Process process, StreamWriter log)
    {
        Name = name;
        _process = process;
        _log = log;
    }

    /// <summary>Starts <paramref name="file"/> with <paramref name="args"/>; output to <c>{dir}/{name}.log</c>, PID to <c>{dir}/pids</c>.</summary>
    public static ChildProcess Start(string name, string file, IEnumerable<string> args, string dir,
        IReadOnlyDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = dir,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (env is not null)
            foreach (var (k, v) in env) psi.Environment[k] = v;
        var log = new StreamWriter(Path.Combine(dir, name + ".log"), append: true) { AutoFlush = true };
        var p = new Process { StartInfo = psi, EnableRaisingEvents = true };
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        p.Start();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        File.AppendAllText(Path.Combine(dir, "pids"), $"{p.Id} {name}\n");
        return new ChildProcess(name, p, log);
    }

    /// <summary>SIGKILL: the crash of a host, as far as this process is concerned.</summary>
    public void Kill()
    {
        try { if (!_process.HasExited) _process.Kill(entireProcessTree: false); }
        catch (InvalidOperationException) { }
        _process.WaitForExit(5000);
    }

    /// <summary>SIGTERM, then SIGKILL after <paramref name="grace"/>.</summary>
    public void Stop(TimeSpan grace)
    {
        if (_process.HasExited) return;
        try { Posix.Kill(_process.Id, Posix.SigTerm); } catch (Exception) { }
        if (!_process.WaitForExit(grace)) Kill();
    }

    /// <summary>VmRSS from /proc, in bytes; 0 when the process is gone.</summary>
    public long RssBytes()
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{_process.Id}/status"))
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return 0;
    }

    public string LogTail(int lines = 30)
    {
        try
        {
            using var fs = new FileStream(Path.Combine(_process.StartInfo.WorkingDirectory, Name + ".log"), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            using var r = new StreamReader(fs);
            return string.Join('\n', r.ReadToEnd().Split('\n').TakeLast(lines));
        }
        catch (IOException) { return "(no log)"; }
    }

    public void Dispose()
    {
        Stop(TimeSpan.FromSeconds(10));
        _process.Dispose();
        lock (_log) _log.Dispose();
    }
}

internal static class Posix
{
    public const int SigTerm = 15;

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static extern int Kill(int pid, int sig);
}
