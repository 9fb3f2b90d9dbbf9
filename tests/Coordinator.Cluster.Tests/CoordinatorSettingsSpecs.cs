using Akka.Configuration;
using Coordinator.Cluster.Configuration;

namespace Coordinator.Cluster.Tests;

/// <summary>The shipped HOCON files load, and the stale-leader guard's settings are checked against Akka's timings.</summary>
public sealed class CoordinatorSettingsSpecs
{
    private static readonly string HoconDir = FindHoconDir();

    private static string FindHoconDir()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Coordinator.sln"))) return Path.Combine(dir.FullName, "hocon");
        throw new InvalidOperationException("Coordinator.sln not found above " + AppContext.BaseDirectory);
    }

    private static Config Defaults => ConfigurationFactory.ParseString(File.ReadAllText(Path.Combine(HoconDir, "coordinator.hocon")));
    private static Config FastFailover => ConfigurationFactory.ParseString(File.ReadAllText(Path.Combine(HoconDir, "fast-failover.hocon")));

    private static CoordinatorSettings Load(params Config[] layers) =>
        CoordinatorSettings.FromConfig(layers.Aggregate(Defaults, (below, over) => over.WithFallback(below)));

    [Fact]
    public void The_defaults_and_the_fast_failover_profile_load_with_the_guard_on()
    {
        var defaults = Load();
        Assert.Equal(TimeSpan.FromMilliseconds(500), defaults.ReadLease);
        Assert.Equal(TimeSpan.FromSeconds(5), defaults.WaitAfterWriteFailure);
        Assert.Equal(TimeSpan.FromMilliseconds(500), Load(FastFailover).ReadLease);
    }

    [Fact]
    public void A_read_lease_as_long_as_half_the_quickest_takeover_is_refused()
    {
        // fast-failover: 600 ms heartbeat pause + 500 ms stable-after + 100 ms margin = 1.2 s; half is 600 ms.
        var e = Assert.Throws<ConfigurationException>(() =>
            Load(FastFailover, ConfigurationFactory.ParseString("coordinator.ledger.read-lease = 600ms")));
        Assert.Contains("coordinator.ledger.read-lease", e.Message);
        Assert.Contains("1200 ms", e.Message);
        Assert.Equal(TimeSpan.FromMilliseconds(599), Load(FastFailover, ConfigurationFactory.ParseString("coordinator.ledger.read-lease = 599ms")).ReadLease);
        // The defaults: 3 s + 2 s + 1 s = 6 s, so up to 2,999 ms.
        Assert.Contains("6000 ms", Assert.Throws<ConfigurationException>(() =>
            Load(ConfigurationFactory.ParseString("coordinator.ledger { read-lease = 3s, wait-after-write-failure = 10s }"))).Message);
    }

    [Fact]
    public void The_wait_after_a_failed_write_must_outlast_the_read_lease()
    {
        var e = Assert.Throws<ConfigurationException>(() =>
            Load(ConfigurationFactory.ParseString("coordinator.ledger { read-lease = 1s, wait-after-write-failure = 1s }")));
        Assert.Contains("wait-after-write-failure", e.Message);
    }
}
