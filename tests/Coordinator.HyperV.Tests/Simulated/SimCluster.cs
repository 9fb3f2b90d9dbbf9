using System.Diagnostics;
using Coordinator.HyperV.Simulated;

namespace Coordinator.HyperV.Tests.Simulated;

/// <summary>A simulated cluster in a temp folder: its shared database, a CSV folder, and node instances that stand in
/// for the node processes (each opens the database on its own, as a process would).</summary>
internal sealed class SimCluster : IAsyncDisposable
{
    public static readonly SimulatedHyperVOptions Fast = new()
    {
        HeartbeatInterval = TimeSpan.FromMilliseconds(100),
        FailoverAfter = TimeSpan.FromMilliseconds(500),
        MoveDelay = TimeSpan.FromMilliseconds(100),
        WatchPollInterval = TimeSpan.FromMilliseconds(50),
    };

    private readonly List<SimulatedHyperV> _nodes = [];

    static SimCluster()
    {
        // One test process stands in for several node processes, each of which would have a thread pool of its own; the
        // simulator's SQLite calls block pool threads while they wait for the database lock.
        ThreadPool.GetMinThreads(out var workers, out var io);
        ThreadPool.SetMinThreads(Math.Max(workers, 32), io);
    }

    public SimCluster()
    {
        Root = Path.Combine(Path.GetTempPath(), "simhv-" + Guid.NewGuid().ToString("N"));
        Csv = Path.Combine(Root, "csv");
        Directory.CreateDirectory(Csv);
        DbPath = SimulatedClusterDatabase.PathForCsv(Csv);
        Db = new SimulatedClusterDatabase(DbPath);
    }

    public string Root { get; }

    public string Csv { get; }

    public string DbPath { get; }

    /// <summary>The test's own connection: the cluster service or an administrator.</summary>
    public SimulatedClusterDatabase Db { get; }

    public async Task<SimulatedHyperV> NodeAsync(
        string name, long memoryMb = 16_384, int logicalProcessors = 8, SimulatedHyperVOptions? options = null, bool start = true)
    {
        var node = new SimulatedHyperV(name, memoryMb, logicalProcessors, DbPath, options ?? Fast);
        _nodes.Add(node);
        if (start)
            await node.StartAsync();
        return node;
    }

    /// <summary>An empty (sparse) disk on the CSV.</summary>
    public string Disk(string name, long sizeBytes = 1L << 30)
    {
        var path = Path.Combine(Csv, name + ".vhdx");
        SimulatedDisks.CreateEmpty(path, sizeBytes);
        return path;
    }

    public async Task<VmDefinition> VmAsync(SimulatedHyperV node, string name, int memoryMb = 1024, int vcpus = 2, bool start = true, bool clustered = false)
    {
        var definition = new VmDefinition(name, memoryMb, vcpus, Disk(name));
        await node.DefineVmAsync(definition, default);
        if (start)
            await node.StartVmAsync(name, default);
        if (clustered)
            await node.AddVmRoleAsync(name, default);
        return definition;
    }

    public static async Task EventuallyAsync(Func<bool> condition, string what, double seconds = 30)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.Elapsed > TimeSpan.FromSeconds(seconds))
                Assert.Fail($"not within {seconds} s: {what}");
            await Task.Delay(25);
        }
    }

    /// <summary>Bytes allocated to the file on disk (st_blocks × 512) where `stat` can say; null elsewhere.</summary>
    public static long? AllocatedBytes(string path)
    {
        if (!OperatingSystem.IsLinux())
            return null;
        var info = new ProcessStartInfo("stat", ["-c", "%b %B", path]) { RedirectStandardOutput = true, UseShellExecute = false };
        using var process = Process.Start(info);
        if (process is null)
            return null;
        var output = process.StandardOutput.ReadToEnd().Trim().Split(' ');
        process.WaitForExit();
        return process.ExitCode == 0 ? long.Parse(output[0]) * long.Parse(output[1]) : null;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in _nodes)
            await node.DisposeAsync();
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
