// The side-by-side benchmark of issue 7: our 3-node cluster against etcd (1 and 3 members) with the same load
// generator, failover timings, and a recovery/size run. Entry point: scripts/bench.sh (builds, owns the temp folder
// and the PIDs). Prints tables and ratios; the last line is "RESULT {json}", also written to --output.
using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using CoordinatorBench;
using CoordinatorBench.Ours;
using Spectre.Console;
using Spectre.Console.Cli;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

var app = new CommandApp<BenchCommand>();
app.Configure(c =>
{
    c.SetApplicationName("scripts/bench.sh");
    c.UseStrictParsing();
    c.PropagateExceptions();
});
try
{
    return await app.RunAsync(args);
}
catch (CommandParseException e)
{
    Console.Error.WriteLine($"bench: {e.Message}");
    return 2;
}
catch (CommandRuntimeException e)
{
    Console.Error.WriteLine($"bench: {e.Message}");
    return 2;
}
catch (Exception e) when (e is not OperationCanceledException)
{
    // The targets were disposed on the way out (their processes stopped); say what failed and where.
    Console.Error.WriteLine($"bench: FAILED: {e}");
    return 1;
}

public sealed class BenchOptions : CommandSettings
{
    [CommandOption("--service-dll <PATH>"), Description("Coordinator.Service.dll to start (Release build).")]
    public string ServiceDll { get; init; } = "";

    [CommandOption("--dir <DIR>"), Description("An empty folder for every process's data and logs; the caller removes it.")]
    public string Dir { get; init; } = "";

    [CommandOption("--targets <LIST>"), Description("Comma-separated: ours, ours-fast (with --fast-profile), etcd-1, etcd-3. Default all four.")]
    public string Targets { get; init; } = "ours,ours-fast,etcd-1,etcd-3";

    [CommandOption("--fast-profile <FILE>"), Description("HOCON layered over our defaults for the target ours-fast (hocon/fast-failover.hocon).")]
    public string? FastProfile { get; init; }

    [CommandOption("--workloads <LIST>"), Description("Comma-separated: reserve, resize, release, quota, lease, contention. Default all.")]
    public string WorkloadList { get; init; } = string.Join(",", Workloads.All);

    [CommandOption("--concurrency <N>"), Description("Concurrent clients, spread over every node/member. Default 64.")]
    public int Concurrency { get; init; } = 64;

    [CommandOption("--duration <SECONDS>"), Description("Measured seconds per workload. Default 10.")]
    public double Duration { get; init; } = 10;

    [CommandOption("--warmup <SECONDS>"), Description("Unmeasured seconds before each workload. Default 2.")]
    public double Warmup { get; init; } = 2;

    [CommandOption("--failover-trials <N>"), Description("SIGKILLs of the leader per 3-member target; the median is reported. Default 5, 0 skips.")]
    public int FailoverTrials { get; init; } = 5;

    [CommandOption("--recovery-reservations <N>"), Description("Reservations in the recovery/size run. Default 100000, 0 skips the run.")]
    public long RecoveryReservations { get; init; } = 100_000;

    [CommandOption("--recovery-images <N>"), Description("Cached images in the recovery/size run. Default 10000.")]
    public long RecoveryImages { get; init; } = 10_000;

    [CommandOption("--postgres <CONNECTION-STRING>"), Description("Journal of our nodes on this PostgreSQL instead of the embedded SQLite.")]
    public string? Postgres { get; init; }

    [CommandOption("--output <FILE>"), Description("Also write the result JSON here.")]
    public string? Output { get; init; }

    [CommandOption("--smoke"), Description("A ~10-second check that every part still runs (CI): short phases, ours and etcd-1, small recovery, no failover.")]
    public bool Smoke { get; init; }

    public IReadOnlyList<string> TargetNames => Split(Targets);

    public IReadOnlyList<string> WorkloadNames => Split(WorkloadList);

    private static List<string> Split(string s) => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();

    public override ValidationResult Validate()
    {
        if (!File.Exists(ServiceDll)) return ValidationResult.Error($"--service-dll: no such file '{ServiceDll}'");
        if (string.IsNullOrEmpty(Dir) || !Directory.Exists(Dir)) return ValidationResult.Error($"--dir: no such folder '{Dir}'");
        if (TargetNames.Except(["ours", "ours-fast", "etcd-1", "etcd-3"]).FirstOrDefault() is { } t) return ValidationResult.Error($"--targets: unknown target '{t}'");
        if (WorkloadNames.Except(Workloads.All).FirstOrDefault() is { } w) return ValidationResult.Error($"--workloads: unknown workload '{w}'");
        if (TargetNames.Contains("ours-fast") && !File.Exists(FastProfile)) return ValidationResult.Error("ours-fast needs --fast-profile FILE");
        if (Concurrency < 1) return ValidationResult.Error("--concurrency must be at least 1");
        if (Duration <= 0 || Warmup < 0) return ValidationResult.Error("--duration must be positive and --warmup not negative");
        if (FailoverTrials < 0 || RecoveryReservations < 0 || RecoveryImages < 0) return ValidationResult.Error("counts must not be negative");
        return ValidationResult.Success();
    }

    /// <summary>The smoke profile: every code path, a few seconds each.</summary>
    public BenchOptions Effective() => !Smoke ? this : new BenchOptions
    {
        ServiceDll = ServiceDll, Dir = Dir, FastProfile = FastProfile, Output = Output, Postgres = Postgres, Smoke = true,
        Targets = "ours,etcd-1", WorkloadList = WorkloadList, Concurrency = Math.Min(Concurrency, 16),
        Duration = 1, Warmup = 0.3, FailoverTrials = 0, RecoveryReservations = 300, RecoveryImages = 30,
    };
}

public sealed class BenchCommand : AsyncCommand<BenchOptions>
{
    protected override async Task<int> ExecuteAsync(CommandContext context, BenchOptions given, CancellationToken cancellation)
    {
        var opts = given.Effective();
        // Child processes run in their own folders: every path handed to them must be absolute.
        opts = new BenchOptions
        {
            ServiceDll = Path.GetFullPath(opts.ServiceDll), Dir = Path.GetFullPath(opts.Dir),
            FastProfile = opts.FastProfile is null ? null : Path.GetFullPath(opts.FastProfile), Output = opts.Output,
            Postgres = opts.Postgres, Smoke = opts.Smoke, Targets = opts.Targets, WorkloadList = opts.WorkloadList,
            Concurrency = opts.Concurrency, Duration = opts.Duration, Warmup = opts.Warmup, FailoverTrials = opts.FailoverTrials,
            RecoveryReservations = opts.RecoveryReservations, RecoveryImages = opts.RecoveryImages,
        };
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) });
        if (Console.IsOutputRedirected) console.Profile.Width = 200;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
        var log = Console.Out;
        var runId = "b" + Guid.NewGuid().ToString("N")[..6];
        var machine = Machine.Describe();
        log.WriteLine($"== {machine}");
        log.WriteLine($"== run {runId}: targets {string.Join(",", opts.TargetNames)}; {opts.Concurrency} clients; " +
                      $"{opts.Warmup:0.#} s warmup + {opts.Duration:0.#} s per workload; failover trials {opts.FailoverTrials}; " +
                      $"recovery {opts.RecoveryReservations} reservations + {opts.RecoveryImages} images{(opts.Smoke ? " (smoke)" : "")}");

        var stats = new List<Stats>();
        var failovers = new List<FailoverResult>();
        var rss = new Dictionary<string, IReadOnlyList<long>>();
        var described = new Dictionary<string, string>();
        foreach (var name in opts.TargetNames)
        {
            var dir = Directory.CreateDirectory(Path.Combine(opts.Dir, name)).FullName;
            await using ITarget target = name switch
            {
                "ours" => new CoordinatorTarget(3, dir, opts.ServiceDll, TimeSpan.FromSeconds(15), opts.Postgres),
                "ours-fast" => new CoordinatorTarget(3, dir, opts.ServiceDll, TimeSpan.FromSeconds(15), opts.Postgres,
                    File.ReadAllText(opts.FastProfile!), "ours-3-fast"),
                "etcd-1" => new CoordinatorBench.Etcd.EtcdTarget(1, dir, TimeSpan.FromSeconds(15)),
                _ => new CoordinatorBench.Etcd.EtcdTarget(3, dir, TimeSpan.FromSeconds(15)),
            };
            var sw = Stopwatch.StartNew();
            await target.StartAsync(stop.Token);
            await target.PrepareAsync(100L << 40, stop.Token);
            described[target.Name] = target.Describe;
            log.WriteLine($"-- {target.Name}: {target.Describe}; ready in {sw.Elapsed.TotalSeconds:0.0} s");
            stats.AddRange(await new Workloads(target, opts, runId, log).RunAsync(opts.WorkloadNames, stop.Token));
            rss[target.Name] = target.RssBytes();
            log.WriteLine($"   RSS after the workloads: {Recovery.Mib(rss[target.Name])}");
            if (opts.FailoverTrials > 0 && target.Endpoints >= 3)
                failovers.Add(await Failover.RunAsync(target, opts.FailoverTrials, runId, log, stop.Token));
        }

        RecoveryResult? recovery = null;
        if (opts.RecoveryReservations > 0)
        {
            log.WriteLine($"-- recovery/size: ours, {opts.RecoveryReservations} reservations + {opts.RecoveryImages} images");
            await using var ours = new CoordinatorTarget(3, Directory.CreateDirectory(Path.Combine(opts.Dir, "recovery")).FullName,
                opts.ServiceDll, TimeSpan.FromSeconds(30), opts.Postgres);
            await ours.StartAsync(stop.Token);
            recovery = await Recovery.RunAsync(ours, opts.RecoveryReservations, opts.RecoveryImages, opts.Concurrency, runId, log, stop.Token);
        }

        var report = new Report(console, stats, failovers, recovery, rss);
        report.Print();
        var result = report.ToJson(machine, runId, opts, described);
        if (opts.Output is { } output) await File.WriteAllTextAsync(output, result + "\n", stop.Token);
        log.WriteLine("RESULT " + result);
        return stats.Any(s => s.Errors > 0) ? 1 : 0;
    }
}

/// <summary>What the numbers were measured on.</summary>
internal static class Machine
{
    public static string Describe()
    {
        string Read(string path, Func<string, bool> pick) =>
            File.Exists(path) ? File.ReadLines(path).FirstOrDefault(pick)?.Split(':', 2)[1].Trim() ?? "?" : "?";
        var cpu = Read("/proc/cpuinfo", l => l.StartsWith("model name", StringComparison.Ordinal));
        var mem = Read("/proc/meminfo", l => l.StartsWith("MemTotal", StringComparison.Ordinal));
        var load = File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "?";
        var commit = Environment.GetEnvironmentVariable("BENCH_COMMIT") ?? "?";
        return $"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} CPUs ({cpu}), {mem} RAM, load {load}, " +
               $".NET {Environment.Version}, commit {commit}";
    }
}
