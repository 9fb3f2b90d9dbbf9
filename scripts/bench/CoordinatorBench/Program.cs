// The side-by-side benchmark of issues 7 and 12: our 3-node cluster (SQLite journal, PostgreSQL journal) against etcd
// (1 member, 3 members, 3 members with per-node usage keys) with the same load generator, failover timings, and a
// recovery/size run. Entry point: scripts/bench.sh (builds, owns the temp folders and the PIDs). Prints markdown
// tables and ratios; the last line is "RESULT {json}", also written to --output. Exit code 1 when any workload of any
// target had no successful operation, or any operation ended in an error.
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

    public static readonly string[] KnownTargets = ["ours-3", "ours-3-tls", "ours-3-pg", "ours-3-fast", "etcd-1", "etcd-3", "etcd-3-pernode"];

    [CommandOption("--targets <LIST>"), Description("Comma-separated: ours-3 (SQLite journal), ours-3-tls (ours-3 with mutual TLS between the nodes, --tls-certs), ours-3-pg (PostgreSQL journal), ours-3-fast (SQLite, --fast-profile), " +
        "etcd-1, etcd-3, etcd-3-pernode. Default all seven. 'ours' and 'ours-fast' are accepted for ours-3 and ours-3-fast.")]
    public string Targets { get; init; } = string.Join(",", KnownTargets);

    [CommandOption("--fast-profile <FILE>"), Description("HOCON layered over our defaults for the target ours-fast (hocon/fast-failover.hocon).")]
    public string? FastProfile { get; init; }

    [CommandOption("--tls-certs <DIR>"), Description("Certificates of target ours-3-tls: ca.crt, hv01..hv03.crt/.key (scripts/deploy/make-certs.sh; scripts/bench.sh makes them).")]
    public string? TlsCerts { get; init; }

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

    [CommandOption("--give-up <SECONDS>"), Description("An operation without a definite answer is retried until this many seconds after its first attempt, then counted as given up. Default 10.")]
    public double GiveUp { get; init; } = 10;

    [CommandOption("--postgres <CONNECTION-STRING>"), Description("The PostgreSQL server of target ours-3-pg, instead of a throwaway one (--pg-script).")]
    public string? Postgres { get; init; }

    [CommandOption("--pg-script <PATH>"), Description("scripts/pg-throwaway.sh: starts the throwaway PostgreSQL of ours-3-pg (fsync=on, synchronous_commit=on).")]
    public string? PgScript { get; init; }

    [CommandOption("--pg-dir <DIR>"), Description("The throwaway PostgreSQL's folder (must not exist yet; the caller removes it).")]
    public string? PgDir { get; init; }

    [CommandOption("--output <FILE>"), Description("Also write the result JSON here.")]
    public string? Output { get; init; }

    [CommandOption("--smoke"), Description("A short check that every part still runs (CI): every target, 1-second phases, 16 clients, small recovery, no failover.")]
    public bool Smoke { get; init; }

    public IReadOnlyList<string> TargetNames => Split(Targets).Select(t => t switch { "ours" => "ours-3", "ours-fast" => "ours-3-fast", _ => t }).Distinct().ToList();

    public IReadOnlyList<string> WorkloadNames => Split(WorkloadList);

    private static List<string> Split(string s) => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();

    public override ValidationResult Validate()
    {
        if (!File.Exists(ServiceDll)) return ValidationResult.Error($"--service-dll: no such file '{ServiceDll}'");
        if (string.IsNullOrEmpty(Dir) || !Directory.Exists(Dir)) return ValidationResult.Error($"--dir: no such folder '{Dir}'");
        if (TargetNames.Except(KnownTargets).FirstOrDefault() is { } t) return ValidationResult.Error($"--targets: unknown target '{t}'");
        if (TargetNames.Contains("ours-3-pg") && Postgres is null && (PgScript is null || PgDir is null))
            return ValidationResult.Error("ours-3-pg needs --postgres CONNECTION-STRING or --pg-script and --pg-dir (scripts/bench.sh passes them)");
        if (GiveUp <= 0) return ValidationResult.Error("--give-up must be positive");
        if (WorkloadNames.Except(Workloads.All).FirstOrDefault() is { } w) return ValidationResult.Error($"--workloads: unknown workload '{w}'");
        if (TargetNames.Contains("ours-3-tls") && !File.Exists(Path.Combine(TlsCerts ?? "", "ca.crt")))
            return ValidationResult.Error("ours-3-tls needs --tls-certs DIR with ca.crt and hv01..hv03.crt/.key (scripts/bench.sh passes it)");
        if (TargetNames.Contains("ours-3-fast") && !File.Exists(FastProfile)) return ValidationResult.Error("ours-3-fast needs --fast-profile FILE");
        if (Concurrency < 1) return ValidationResult.Error("--concurrency must be at least 1");
        if (Duration <= 0 || Warmup < 0) return ValidationResult.Error("--duration must be positive and --warmup not negative");
        if (FailoverTrials < 0 || RecoveryReservations < 0 || RecoveryImages < 0) return ValidationResult.Error("counts must not be negative");
        return ValidationResult.Success();
    }

    /// <summary>The smoke profile: every target and workload, 1.5 s each (ours-3-fast differs from ours-3 only by HOCON: left out).</summary>
    public BenchOptions Effective() => !Smoke ? this : With(o => new BenchOptions
    {
        ServiceDll = o.ServiceDll, Dir = o.Dir, FastProfile = o.FastProfile, Output = o.Output, Postgres = o.Postgres,
        PgScript = o.PgScript, PgDir = o.PgDir, Smoke = true, GiveUp = o.GiveUp, TlsCerts = o.TlsCerts,
        Targets = "ours-3,ours-3-tls,ours-3-pg,etcd-1,etcd-3,etcd-3-pernode", WorkloadList = o.WorkloadList, Concurrency = Math.Min(o.Concurrency, 16),
        Duration = 1, Warmup = 0.5, FailoverTrials = 0, RecoveryReservations = 300, RecoveryImages = 30,
    });

    /// <summary>A copy through <paramref name="make"/> (init-only properties).</summary>
    public BenchOptions With(Func<BenchOptions, BenchOptions> make) => make(this);

    /// <summary>The same options with every path absolute (child processes run in their own folders).</summary>
    public BenchOptions Absolute() => new()
    {
        ServiceDll = Path.GetFullPath(ServiceDll), Dir = Path.GetFullPath(Dir),
        FastProfile = FastProfile is null ? null : Path.GetFullPath(FastProfile), Output = Output, Postgres = Postgres,
        PgScript = PgScript is null ? null : Path.GetFullPath(PgScript), PgDir = PgDir is null ? null : Path.GetFullPath(PgDir),
        Smoke = Smoke, Targets = Targets, WorkloadList = WorkloadList, Concurrency = Concurrency, Duration = Duration,
        Warmup = Warmup, GiveUp = GiveUp, FailoverTrials = FailoverTrials, RecoveryReservations = RecoveryReservations,
        RecoveryImages = RecoveryImages, TlsCerts = TlsCerts is null ? null : Path.GetFullPath(TlsCerts),
    };
}

public sealed class BenchCommand : AsyncCommand<BenchOptions>
{
    protected override async Task<int> ExecuteAsync(CommandContext context, BenchOptions given, CancellationToken cancellation)
    {
        // Child processes run in their own folders: every path handed to them must be absolute.
        var opts = given.Effective().Absolute();
        var total = Stopwatch.StartNew();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
        var log = Console.Out;
        var runId = "b" + Guid.NewGuid().ToString("N")[..6];
        var machine = Machine.Describe();
        log.WriteLine($"== {machine}");
        log.WriteLine($"== run {runId}: targets {string.Join(",", opts.TargetNames)}; {opts.Concurrency} clients; " +
                      $"{opts.Warmup:0.#} s warmup + {opts.Duration:0.#} s per workload, give-up after {opts.GiveUp:0.#} s; failover trials {opts.FailoverTrials}; " +
                      $"recovery {opts.RecoveryReservations} reservations + {opts.RecoveryImages} images{(opts.Smoke ? " (smoke)" : "")}");

        var stats = new List<Stats>();
        var failovers = new List<FailoverResult>();
        RecoveryResult? recovery = null;
        var rss = new Dictionary<string, IReadOnlyList<long>>();
        var described = new Dictionary<string, string>();
        // One target: its PostgreSQL (ours-3-pg) and processes started, writes accepted. Stopped by its caller.
        async Task<(PgThrowaway? Pg, ITarget Target, double ReadySeconds)> LaunchAsync(string name)
        {
            var sw = Stopwatch.StartNew();
            var dir = Directory.CreateDirectory(Path.Combine(opts.Dir, name)).FullName;
            // One attempt's deadline is the operation's budget: a stuck request ends as "unavailable", then given up.
            var attempt = TimeSpan.FromSeconds(opts.GiveUp);
            var pg = name == "ours-3-pg" && opts.Postgres is null ? await PgThrowaway.StartAsync(opts.PgScript!, opts.PgDir!, log, stop.Token) : null;
            ITarget target = name switch
            {
                "ours-3" => new CoordinatorTarget(3, dir, opts.ServiceDll, attempt),
                "ours-3-pg" => new CoordinatorTarget(3, dir, opts.ServiceDll, attempt, pg?.ConnectionString ?? opts.Postgres, name: "ours-3-pg",
                    journal: pg?.Describe ?? "PostgreSQL given by --postgres (its fsync/synchronous_commit as configured there)"),
                "ours-3-tls" => new CoordinatorTarget(3, dir, opts.ServiceDll, attempt, name: "ours-3-tls", tlsCerts: Path.GetFullPath(opts.TlsCerts!)),
                "ours-3-fast" => new CoordinatorTarget(3, dir, opts.ServiceDll, attempt, null, File.ReadAllText(opts.FastProfile!), "ours-3-fast"),
                "etcd-1" => new CoordinatorBench.Etcd.EtcdTarget(1, dir, attempt),
                "etcd-3" => new CoordinatorBench.Etcd.EtcdTarget(3, dir, attempt),
                _ => new CoordinatorBench.Etcd.EtcdTarget(3, dir, attempt, perNode: true),
            };
            try
            {
                await target.StartAsync(stop.Token);
                await target.PrepareAsync(100L << 40, stop.Token);
                return (pg, target, sw.Elapsed.TotalSeconds);
            }
            catch
            {
                await target.DisposeAsync();
                if (pg is not null) await pg.DisposeAsync();
                throw;
            }
        }

        // The smoke starts every target at once (its figures mean nothing; cluster starts are most of its time on a
        // loaded machine); a measuring run starts each one only when the previous one is stopped.
        var launched = new Dictionary<string, Task<(PgThrowaway? Pg, ITarget Target, double ReadySeconds)>>();
        if (opts.Smoke)
            foreach (var name in opts.TargetNames) launched[name] = LaunchAsync(name);
        try
        {
            foreach (var name in opts.TargetNames)
            {
                if (!launched.TryGetValue(name, out var launch)) launched[name] = launch = LaunchAsync(name);
                var (pg, target, ready) = await launch;
                try
                {
                    described[target.Name] = target.Describe;
                    log.WriteLine($"-- {target.Name}: {target.Describe}; ready in {ready:0.0} s (bench at {total.Elapsed.TotalSeconds:0} s)");
                    stats.AddRange(await new Workloads(target, opts, runId, log).RunAsync(opts.WorkloadNames, stop.Token));
                    rss[target.Name] = target.RssBytes();
                    log.WriteLine($"   RSS after the workloads: {Recovery.Mib(rss[target.Name])}");
                    // etcd-3-pernode runs the same processes as etcd-3: its failover would measure the same thing again.
                    if (opts.FailoverTrials > 0 && target.Endpoints >= 3 && name != "etcd-3-pernode")
                        failovers.Add(await Failover.RunAsync(target, opts.FailoverTrials, runId, log, stop.Token));
                    // The smoke checks the recovery run's code on the cluster it already has (a fresh one costs half a minute).
                    if (opts.Smoke && recovery is null && opts.RecoveryReservations > 0 && target is CoordinatorTarget { Name: "ours-3" } oursSmoke)
                    {
                        log.WriteLine($"-- recovery/size (smoke: on {oursSmoke.Name}'s cluster): {opts.RecoveryReservations} reservations + {opts.RecoveryImages} images");
                        recovery = await Recovery.RunAsync(oursSmoke, opts.RecoveryReservations, opts.RecoveryImages, opts.Concurrency, runId, log, stop.Token,
                            failover: false);
                    }
                    log.WriteLine($"   {target.Name} done; stopping it (bench at {total.Elapsed.TotalSeconds:0} s)");
                }
                finally
                {
                    await target.DisposeAsync();
                    if (pg is not null) await pg.DisposeAsync();
                    launched.Remove(name);
                }
            }
        }
        finally
        {
            // Targets started ahead (smoke) but not reached because of a failure: stop them too.
            foreach (var left in launched.Values)
            {
                try
                {
                    var (pg, target, _) = await left;
                    await target.DisposeAsync();
                    if (pg is not null) await pg.DisposeAsync();
                }
                catch (Exception) { } // it failed to start: LaunchAsync stopped what it had started
            }
        }

        if (opts.RecoveryReservations > 0 && recovery is null)
        {
            log.WriteLine($"-- recovery/size: ours, {opts.RecoveryReservations} reservations + {opts.RecoveryImages} images");
            await using var ours = new CoordinatorTarget(3, Directory.CreateDirectory(Path.Combine(opts.Dir, "recovery")).FullName,
                opts.ServiceDll, TimeSpan.FromSeconds(30));
            await ours.StartAsync(stop.Token);
            recovery = await Recovery.RunAsync(ours, opts.RecoveryReservations, opts.RecoveryImages, opts.Concurrency, runId, log, stop.Token);
        }

        var report = new Report(log, stats, failovers, recovery, rss, described, machine, opts);
        report.Print();
        var result = report.ToJson(machine, runId, opts, described);
        if (opts.Output is { } output) await File.WriteAllTextAsync(output, result + "\n", stop.Token);
        log.WriteLine($"== bench finished in {total.Elapsed.TotalSeconds:0} s");
        var failed = report.Failures().ToList();
        foreach (var f in failed) log.WriteLine($"bench: FAILED: {f}");
        log.WriteLine("RESULT " + result);
        return failed.Count > 0 ? 1 : 0;
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
