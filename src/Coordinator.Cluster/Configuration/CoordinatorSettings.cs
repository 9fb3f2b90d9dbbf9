using Akka.Configuration;
using Coordinator.Domain;
using Coordinator.HyperV.Simulated;

namespace Coordinator.Cluster.Configuration;

/// <summary>One CSV as configured: capacity null means "read it from the file system".</summary>
public sealed record VolumeSettings(string Name, string Path, long? CapacityBytes, long HeadroomBytes);

/// <summary>The image cache: where images live, lease TTL, eviction, and the glance it fetches from.</summary>
public sealed record ImageCacheSettings(
    string Volume,
    string Folder,
    TimeSpan LeaseTtl,
    TimeSpan SweepInterval,
    TimeSpan EvictAfter,
    TimeSpan EvictionInterval,
    string GlanceEndpoint,
    string GlanceToken,
    TimeSpan GlanceTimeout,
    TimeSpan ProgressInterval,
    TimeSpan EnsureTimeout);

/// <summary>The Hyper-V back-end and the VM operations' timings.</summary>
public sealed record HyperVSettings(
    string Backend,
    long SimulatedMemoryMb,
    int SimulatedLogicalProcessors,
    string SimulatedDatabase,
    TimeSpan SimulatedHeartbeat,
    TimeSpan SimulatedFailoverAfter,
    TimeSpan OwnerSettle,
    TimeSpan MoveTimeout,
    TimeSpan ReconcileInterval,
    TimeSpan OperationTimeout,
    int DrainConcurrency,
    IReadOnlyDictionary<string, PeerClusterSettings> Peers);

public enum JournalProvider { Sqlite, PostgreSql }

/// <summary>The <c>coordinator { }</c> section of the HOCON, typed. Paths are resolved to absolute ones here.</summary>
public sealed record CoordinatorSettings
{
    public required string NodeName { get; init; }
    public required string DataDirectory { get; init; }
    public required string HttpHost { get; init; }
    public required int HttpPort { get; init; }
    public required TimeSpan AskTimeout { get; init; }

    /// <summary>How far apart the nodes' clocks may be; a 503 waits this much past a request's deadline.</summary>
    public required TimeSpan MaxClockSkew { get; init; }
    public required JournalProvider Provider { get; init; }

    /// <summary>With the password merged in (coordinator.persistence.password): never log it.</summary>
    public required string ConnectionString { get; init; }
    public required int SnapshotEvery { get; init; }

    /// <summary>How long after its last confirmed write the ledger may answer from memory (see LeaderReadLease).</summary>
    public required TimeSpan ReadLease { get; init; }

    /// <summary>How long a ledger whose write failed (possibly refused because a newer leader wrote) waits before serving again.</summary>
    public required TimeSpan WaitAfterWriteFailure { get; init; }
    public required QuotaPolicy QuotaPolicy { get; init; }
    public required IReadOnlyDictionary<string, double> NodeWeights { get; init; }
    public required TimeSpan RescanInterval { get; init; }
    public required IReadOnlyList<VolumeSettings> Volumes { get; init; }
    public required ImageCacheSettings Images { get; init; }
    public required HyperVSettings HyperV { get; init; }
    /// <summary>Bearer token for mutating admin routes (/cluster/members PUT, drain); empty: those routes are off.</summary>
    public string? AdminToken { get; init; }

    /// <summary>Bearer token the node-agent routes (/v1/...) require; empty: they are open (bound to loopback by default).</summary>
    public string? AgentToken { get; init; }

    /// <summary>Certificates, trust and TLS (coordinator.security).</summary>
    public required SecuritySettings Security { get; init; }

    public string? LogFile { get; init; }
    public string LogLevel { get; init; } = "Information";

    /// <summary>The role every member carries so that the ledger can map Akka addresses to Hyper-V host names.</summary>
    public string NodeRole => NodeRolePrefix + NodeName;

    public const string NodeRolePrefix = "node:";

    public double WeightOf(string node) => NodeWeights.TryGetValue(node, out var w) ? w : 1.0;

    public static CoordinatorSettings FromConfig(Config root)
    {
        var c = root.GetConfig("coordinator") ?? throw new ConfigurationException("missing 'coordinator' section");
        var nodeName = c.GetString("node-name", "");
        if (string.IsNullOrWhiteSpace(nodeName)) nodeName = Environment.MachineName;
        var idError = InputRules.CheckId("coordinator.node-name", nodeName);
        if (idError is not null) throw new ConfigurationException(idError);

        var dataDir = Path.GetFullPath(c.GetString("data-dir", "data"));
        var providerName = c.GetString("persistence.provider", "sqlite").Trim().ToLowerInvariant();
        var provider = providerName switch
        {
            "sqlite" => JournalProvider.Sqlite,
            "postgresql" or "postgres" => JournalProvider.PostgreSql,
            _ => throw new ConfigurationException($"coordinator.persistence.provider: '{providerName}' is not one of sqlite, postgresql"),
        };
        var conn = PersistenceHocon.ConnectionString(c, provider, dataDir);

        var policyName = c.GetString("csv.quota-policy", "shared").Trim().ToLowerInvariant();
        var policy = policyName switch
        {
            "shared" => QuotaPolicy.Shared,
            "partitioned" => QuotaPolicy.Partitioned,
            _ => throw new ConfigurationException($"coordinator.csv.quota-policy: '{policyName}' is not one of shared, partitioned"),
        };

        var weights = new Dictionary<string, double>(StringComparer.Ordinal);
        var weightsConfig = c.GetConfig("csv.node-weights");
        if (weightsConfig is not null && !weightsConfig.IsEmpty)
            foreach (var kv in weightsConfig.AsEnumerable())
            {
                var w = kv.Value.GetDouble();
                if (!(w > 0 && w <= 1e6)) throw new ConfigurationException($"coordinator.csv.node-weights.{kv.Key}: {w} is not in (0, 1e6]");
                weights[kv.Key] = w;
            }

        var volumes = new List<VolumeSettings>();
        var volumeValues = c.GetValue("csv.volumes");
        if (volumeValues is not null && !volumeValues.IsEmpty)
        {
            foreach (var item in volumeValues.GetArray())
            {
                var o = item.GetObject();
                string? Get(string key) => o.Items.TryGetValue(key, out var f) && !f.IsEmpty ? f.GetString() : null;
                var name = Get("name") ?? throw new ConfigurationException("coordinator.csv.volumes: every volume needs a name");
                if (InputRules.CheckId("volume name", name) is { } err) throw new ConfigurationException(err);
                var path = Get("path") ?? Path.Combine("csv", name);
                if (!Path.IsPathRooted(path)) path = Path.Combine(dataDir, path);
                long? capacity = Get("capacity") is { } cap ? ParseSize($"{name}.capacity", cap) : null;
                var headroom = Get("headroom") is { } h ? ParseSize($"{name}.headroom", h) : 0;
                // The ledger refuses sizes outside [0, 2^62] (its sums must never wrap): say so at start, not at the epoch.
                if (InputRules.CheckVolumeSizes(name, capacity ?? 0, headroom) is { } sizeErr)
                    throw new ConfigurationException($"coordinator.csv.volumes: {sizeErr}");
                if (volumes.Any(v => v.Name == name)) throw new ConfigurationException($"volume '{name}' is configured twice");
                volumes.Add(new VolumeSettings(name, Path.GetFullPath(path), capacity, headroom));
            }
        }

        var imageVolume = c.GetString("images.volume", "");
        if (string.IsNullOrWhiteSpace(imageVolume)) imageVolume = volumes.FirstOrDefault()?.Name ?? "";
        if (volumes.Count > 0 && volumes.All(v => v.Name != imageVolume))
            throw new ConfigurationException($"coordinator.images.volume: '{imageVolume}' is not a configured volume");
        var folder = c.GetString("images.folder", "_base").Replace('\\', '/').Trim('/');
        if (InputRules.NormalizeVolumePath("/v", folder, out _) is { } folderErr)
            throw new ConfigurationException($"coordinator.images.folder: {folderErr}");
        var token = SecretReader.Read(c, "images.glance.token") ?? "";
        var images = new ImageCacheSettings(
            imageVolume, folder,
            Positive("images.lease-ttl", c.GetTimeSpan("images.lease-ttl", TimeSpan.FromSeconds(30))),
            Positive("images.sweep-interval", c.GetTimeSpan("images.sweep-interval", TimeSpan.FromMilliseconds(250))),
            Positive("images.evict-after", c.GetTimeSpan("images.evict-after", TimeSpan.FromDays(7))),
            Positive("images.eviction-interval", c.GetTimeSpan("images.eviction-interval", TimeSpan.FromMinutes(10))),
            c.GetString("images.glance.endpoint", "").TrimEnd('/'),
            token,
            Positive("images.glance.timeout", c.GetTimeSpan("images.glance.timeout", TimeSpan.FromSeconds(30))),
            Positive("images.progress-interval", c.GetTimeSpan("images.progress-interval", TimeSpan.FromSeconds(5))),
            Positive("images.ensure-timeout", c.GetTimeSpan("images.ensure-timeout", TimeSpan.FromMinutes(30))));

        var backend = c.GetString("hyperv.backend", "simulated").Trim().ToLowerInvariant();
        if (backend is not ("simulated" or "windows"))
            throw new ConfigurationException($"coordinator.hyperv.backend: '{backend}' is not one of simulated, windows");
        var simDb = c.GetString("hyperv.simulated.database", "");
        if (string.IsNullOrWhiteSpace(simDb))
            simDb = volumes.Count > 0 && Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(volumes[0].Path)) is not null
                ? SimulatedClusterDatabase.PathForCsv(volumes[0].Path)
                : Path.Combine(dataDir, ".simcluster", "cluster.db");
        else if (!Path.IsPathRooted(simDb)) simDb = Path.Combine(dataDir, simDb);
        // On a volume the database would be measured as usage that belongs to no reservation.
        if (backend == "simulated" && volumes.FirstOrDefault(v => IsUnder(Path.GetFullPath(simDb), v.Path)) is { } measured)
            throw new ConfigurationException(
                $"coordinator.hyperv.simulated.database: '{simDb}' is inside volume '{measured.Name}' ({measured.Path}); put it beside the volume folder");
        var peers = PeerClusterSettings.FromConfig(c, c.GetBoolean("security.insecure", false));
        var memory = c.GetString("hyperv.simulated.memory", "64GiB");
        var hyperv = new HyperVSettings(
            backend,
            ParseSize("hyperv.simulated.memory", memory) / ByteSize.MiB,
            c.GetInt("hyperv.simulated.logical-processors", 16),
            Path.GetFullPath(simDb),
            Positive("hyperv.simulated.heartbeat-interval", c.GetTimeSpan("hyperv.simulated.heartbeat-interval", TimeSpan.FromSeconds(1))),
            Positive("hyperv.simulated.failover-after", c.GetTimeSpan("hyperv.simulated.failover-after", TimeSpan.FromSeconds(5))),
            Positive("hyperv.owner-settle", c.GetTimeSpan("hyperv.owner-settle", TimeSpan.FromSeconds(2))),
            Positive("hyperv.move-timeout", c.GetTimeSpan("hyperv.move-timeout", TimeSpan.FromMinutes(5))),
            Positive("hyperv.reconcile-interval", c.GetTimeSpan("hyperv.reconcile-interval", TimeSpan.FromSeconds(30))),
            Positive("hyperv.operation-timeout", c.GetTimeSpan("hyperv.operation-timeout", TimeSpan.FromMinutes(10))),
            Math.Max(1, c.GetInt("hyperv.drain-concurrency", 2)),
            peers);

        var readLease = c.GetTimeSpan("ledger.read-lease", TimeSpan.FromMilliseconds(500));
        if (readLease < TimeSpan.Zero) throw new ConfigurationException("coordinator.ledger.read-lease must not be negative");
        // The lease is safe only while no takeover can be quicker: a member is downed no sooner than
        // acceptable-heartbeat-pause + stable-after after it fell silent, and the singleton moves down-removal-margin later.
        var quickestTakeover = root.GetTimeSpan("akka.cluster.failure-detector.acceptable-heartbeat-pause", TimeSpan.FromSeconds(3))
                               + root.GetTimeSpan("akka.cluster.split-brain-resolver.stable-after", TimeSpan.FromSeconds(20))
                               + root.GetTimeSpan("akka.cluster.down-removal-margin", TimeSpan.Zero);
        if (readLease >= quickestTakeover / 2)
            throw new ConfigurationException(
                $"coordinator.ledger.read-lease ({readLease.TotalMilliseconds:0} ms) must stay below half the quickest takeover " +
                $"(acceptable-heartbeat-pause + split-brain-resolver.stable-after + down-removal-margin = {quickestTakeover.TotalMilliseconds:0} ms)");
        var waitAfterFailure = c.GetTimeSpan("ledger.wait-after-write-failure", TimeSpan.FromSeconds(5));
        if (waitAfterFailure <= readLease)
            throw new ConfigurationException("coordinator.ledger.wait-after-write-failure must be longer than coordinator.ledger.read-lease");

        var logFile = c.GetString("logging.file", "");
        var security = SecuritySettings.FromConfig(c);
        // Plain remoting beyond loopback is refused, and with TLS the node's certificate must load: both exit 2.
        Coordinator.Cluster.Security.RemotingTls.CheckAtStart(root, security);
        return new CoordinatorSettings
        {
            NodeName = nodeName,
            DataDirectory = dataDir,
            HttpHost = c.GetString("http.host", "127.0.0.1"),
            HttpPort = c.GetInt("http.port", 7070),
            AskTimeout = c.GetTimeSpan("ask-timeout", TimeSpan.FromSeconds(5)),
            MaxClockSkew = c.GetTimeSpan("max-clock-skew", TimeSpan.FromMilliseconds(500)),
            Provider = provider,
            ConnectionString = conn,
            SnapshotEvery = c.GetInt("persistence.snapshot-every", 1000),
            ReadLease = readLease,
            WaitAfterWriteFailure = waitAfterFailure,
            QuotaPolicy = policy,
            NodeWeights = weights,
            Images = images,
            HyperV = hyperv,
            AdminToken = Secret(c, "http.admin-token"),
            AgentToken = Secret(c, "http.agent-token"),
            Security = security,
            RescanInterval = c.GetTimeSpan("csv.rescan-interval", TimeSpan.FromSeconds(30)),
            Volumes = volumes,
            LogFile = string.IsNullOrWhiteSpace(logFile) ? null : Path.GetFullPath(Path.IsPathRooted(logFile) ? logFile : Path.Combine(dataDir, logFile)),
            LogLevel = c.GetString("logging.level", "Information"),
        };
    }

    /// <summary>A secret from HOCON, a file (key-file) or the environment (key-env); never logged.</summary>
    private static string? Secret(Config c, string key) => SecretReader.Read(c, key);

    /// <summary>Whether <paramref name="path"/> is <paramref name="folder"/> or inside it (both full paths).</summary>
    private static bool IsUnder(string path, string folder)
    {
        var comparison = OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        var f = Path.TrimEndingDirectorySeparator(folder);
        return path.Equals(f, comparison) || path.StartsWith(f + Path.DirectorySeparatorChar, comparison);
    }

    private static TimeSpan Positive(string key, TimeSpan t) =>
        t > TimeSpan.Zero ? t : throw new ConfigurationException($"coordinator.{key} must be positive");

    private static long ParseSize(string key, string text) =>
        ByteSize.TryParse(text, out var b) ? b : throw new ConfigurationException($"coordinator.csv.volumes {key}: '{text}' is not a size");
}
