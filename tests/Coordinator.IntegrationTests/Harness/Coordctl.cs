using System.Diagnostics;

namespace Coordinator.IntegrationTests.Harness;

/// <summary>Runs the real, built coordctl as a process and captures its output and exit code.</summary>
public static class Coordctl
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static string Dll()
    {
        var service = LocalCluster.ServiceDll(); // .../src/Coordinator.Service/bin/<cfg>/net10.0/Coordinator.Service.dll
        var cfgDir = Path.GetDirectoryName(Path.GetDirectoryName(service))!;
        var dll = Path.Combine(cfgDir.Replace(Path.Combine("Coordinator.Service", "bin"), Path.Combine("Coordinator.Cli", "bin")), "net10.0", "coordctl.dll");
        return File.Exists(dll) ? dll : throw new FileNotFoundException("build the solution first", dll);
    }

    public static async Task<Result> RunAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Dll());
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment.Remove("COORDCTL_ENDPOINT");
        psi.Environment.Remove("COORDCTL_TOKEN");
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await p.WaitForExitAsync(timeout.Token);
        return new Result(p.ExitCode, await stdout, await stderr);
    }
}
