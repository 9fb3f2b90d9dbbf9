using Coordinator.Domain;
using static Coordinator.Domain.Tests.LedgerDriver;

namespace Coordinator.Domain.Tests;

/// <summary>How scans of the volume enter the accounting: max(claimed, measured) per reservation, plus unowned usage.</summary>
public class MeasurementTests
{
    private const string Vol = "Volume1";
    private const string Root = @"C:\ClusterStorage\Volume1";

    private static LedgerDriver Volume(long capacity = 100 * GiB)
    {
        var d = new LedgerDriver();
        d.Configure(Vol, Root, capacity, 0);
        return d;
    }

    private static Dictionary<string, long> Usage(params (string Consumer, long Bytes)[] usage) =>
        usage.ToDictionary(u => u.Consumer, u => u.Bytes);

    [Fact]
    public void Measured_usage_above_the_claim_counts_instead_of_the_claim()
    {
        var d = Volume();
        d.Reserve(Vol, "c1", "hv1", 10 * GiB, "c1");
        Assert.Single(d.Measure(Vol, 30 * GiB, Usage(("c1", 25 * GiB))));

        var v = d.View(Vol);
        Assert.Equal(30 * GiB, v.UsedBytes);
        Assert.Equal(10 * GiB, v.ReservedBytes);
        Assert.Equal(5 * GiB, v.UnownedBytes);
        Assert.Equal(100 * GiB - 25 * GiB - 5 * GiB, v.FreeBytes);
        Assert.NotNull(v.MeasuredAt);
        var quota = Assert.Single(d.Ledger.Quotas(Vol, QuotaPolicy.Partitioned, new Dictionary<string, double> { ["hv1"] = 1 })!);
        Assert.Equal(25 * GiB, quota.ClaimedBytes);
        Assert.Equal(95 * GiB, quota.QuotaBytes);
    }

    [Fact]
    public void Measured_usage_below_the_claim_counts_the_claim()
    {
        var d = Volume();
        d.Reserve(Vol, "c1", "hv1", 10 * GiB, "c1");
        d.Measure(Vol, 30 * GiB, Usage(("c1", 4 * GiB)));

        var v = d.View(Vol);
        Assert.Equal(26 * GiB, v.UnownedBytes);
        Assert.Equal(100 * GiB - 10 * GiB - 26 * GiB, v.FreeBytes);
    }

    [Fact]
    public void Unowned_usage_reduces_free_space_and_what_claims_can_get()
    {
        var d = Volume();
        d.Measure(Vol, 40 * GiB);
        Assert.Equal(40 * GiB, d.View(Vol).UnownedBytes);
        Assert.Equal(60 * GiB, d.Free(Vol));

        Assert.Equal(ReserveStatus.InsufficientSpace, d.Reserve(Vol, "c1", "hv1", 60 * GiB + 1).Outcome.Status);
        Assert.Equal(ReserveStatus.Created, d.Reserve(Vol, "c1", "hv1", 60 * GiB).Outcome.Status);
        Assert.Equal(0, d.Free(Vol));
        var quotas = d.Ledger.Quotas(Vol, QuotaPolicy.Partitioned, new Dictionary<string, double> { ["hv1"] = 1, ["hv2"] = 3 })!;
        Assert.Equal(60 * GiB, quotas.Sum(q => q.QuotaBytes));
    }

    [Fact]
    public void Growing_a_claim_that_is_already_exceeded_by_its_usage_needs_only_the_difference()
    {
        var d = Volume();
        d.Reserve(Vol, "c1", "hv1", 10 * GiB, "c1");
        d.Measure(Vol, 30 * GiB, Usage(("c1", 25 * GiB)));
        Assert.Equal(70 * GiB, d.Free(Vol));

        var within = d.Reserve(Vol, "c1", "hv1", 20 * GiB, "c1"); // still below the measured 25 GiB
        Assert.Equal(ReserveStatus.Updated, within.Outcome.Status);
        Assert.Equal(70 * GiB, within.Outcome.FreeBytes);
        Assert.Equal(70 * GiB, d.Free(Vol));

        var beyond = d.Reserve(Vol, "c1", "hv1", 40 * GiB, "c1"); // 15 GiB beyond the measured usage
        Assert.Equal(ReserveStatus.Updated, beyond.Outcome.Status);
        Assert.Equal(55 * GiB, beyond.Outcome.FreeBytes);
        Assert.Equal(55 * GiB, d.Free(Vol));

        var back = d.Reserve(Vol, "c1", "hv1", 5 * GiB, "c1");
        Assert.Equal(70 * GiB, back.Outcome.FreeBytes);
        Assert.Equal(70 * GiB, d.Free(Vol));
    }

    [Fact]
    public void Resizing_or_rehoming_a_reservation_keeps_its_measured_usage_owned()
    {
        var d = Volume();
        d.Reserve(Vol, "c1", "hv1", 10 * GiB, "c1");
        d.Measure(Vol, 30 * GiB, Usage(("c1", 25 * GiB)));

        var moved = d.Reserve(Vol, "c1", "hv2", 10 * GiB, "c1");
        Assert.Equal(ReserveStatus.Updated, moved.Outcome.Status);
        var v = d.View(Vol);
        Assert.Equal(5 * GiB, v.UnownedBytes);
        Assert.Equal(70 * GiB, v.FreeBytes);
        Assert.Equal(moved.Outcome.FreeBytes, v.FreeBytes);
        Assert.Equal(25 * GiB, d.Ledger.ToSnapshot().Volumes.Single().ConsumerUsage["c1"]);
    }

    [Fact]
    public void Release_drops_the_consumers_measured_usage_which_becomes_unowned()
    {
        var d = Volume();
        d.Reserve(Vol, "c1", "hv1", 40 * GiB, "c1");
        d.Measure(Vol, 30 * GiB, Usage(("c1", 25 * GiB)));
        Assert.Equal(5 * GiB, d.View(Vol).UnownedBytes);
        Assert.Equal(55 * GiB, d.Free(Vol));

        d.Release(Vol, "c1");

        var v = d.View(Vol);
        Assert.Equal(30 * GiB, v.UnownedBytes); // the directory is still on disk until the next scan
        Assert.Equal(70 * GiB, v.FreeBytes);
        Assert.Equal(0, v.ReservedBytes);
        Assert.Empty(d.Ledger.ToSnapshot().Volumes.Single().ConsumerUsage);
        Assert.Empty(d.Ledger.MeasuredDirectories(Vol));

        // A new reservation under the same id starts without the old measurement.
        var again = d.Reserve(Vol, "c1", "hv1", 40 * GiB, "c1");
        Assert.Equal(30 * GiB, again.Outcome.FreeBytes);
        Assert.Equal(30 * GiB, d.Free(Vol));

        d.Measure(Vol, 30 * GiB, Usage(("c1", 25 * GiB)));
        Assert.Equal(55 * GiB, d.Free(Vol));
    }

    [Fact]
    public void Measure_returns_no_events_when_nothing_changed()
    {
        var d = Volume();
        d.Reserve(Vol, "c1", "hv1", 10 * GiB, "c1");
        d.Reserve(Vol, "c2", "hv1", 10 * GiB, "c2");

        Assert.Single(d.Measure(Vol, 30 * GiB, Usage(("c1", 5 * GiB), ("c2", 6 * GiB))));
        var at = d.View(Vol).MeasuredAt;
        Assert.Empty(d.Measure(Vol, 30 * GiB, Usage(("c2", 6 * GiB), ("c1", 5 * GiB))));
        Assert.Equal(at, d.View(Vol).MeasuredAt);

        Assert.Single(d.Measure(Vol, 31 * GiB, Usage(("c1", 5 * GiB), ("c2", 6 * GiB))));
        Assert.Single(d.Measure(Vol, 31 * GiB, Usage(("c1", 5 * GiB), ("c2", 7 * GiB))));
        Assert.Single(d.Measure(Vol, 31 * GiB, Usage(("c1", 5 * GiB))));
        Assert.Empty(d.Measure(Vol, 31 * GiB, Usage(("c1", 5 * GiB))));
        Assert.Equal(31 * GiB, d.View(Vol).UsedBytes);
    }

    [Fact]
    public void The_first_scan_is_recorded_even_if_the_volume_is_empty()
    {
        var d = Volume();
        Assert.Null(d.View(Vol).MeasuredAt);
        var first = Assert.IsType<VolumeMeasured>(Assert.Single(d.Measure(Vol, 0)));
        Assert.Equal(0, first.UsedBytes);
        Assert.Equal(first.At, d.View(Vol).MeasuredAt);
        Assert.Empty(d.Measure(Vol, 0));
    }

    [Fact]
    public void Measuring_an_unknown_volume_returns_no_events()
    {
        var d = Volume();
        Assert.Empty(d.Ledger.Measure("Volume9", GiB, new Dictionary<string, long>(), T0));
    }

    [Fact]
    public void Usage_of_directories_without_a_reservation_is_not_owned()
    {
        var d = Volume();
        d.Measure(Vol, 30 * GiB, Usage(("ghost", 20 * GiB)));
        var v = d.View(Vol);
        Assert.Equal(30 * GiB, v.UnownedBytes);
        Assert.Equal(70 * GiB, v.FreeBytes);
        Assert.Empty(d.Ledger.ToSnapshot().Volumes.Single().ConsumerUsage);
    }

    [Fact]
    public void Usage_above_the_volume_total_never_makes_unowned_negative()
    {
        var d = Volume();
        d.Reserve(Vol, "c1", "hv1", 10 * GiB, "c1");
        d.Measure(Vol, 5 * GiB, Usage(("c1", 20 * GiB)));
        var v = d.View(Vol);
        Assert.Equal(0, v.UnownedBytes);
        Assert.Equal(80 * GiB, v.FreeBytes);
    }

    [Fact]
    public void A_scan_may_overcommit_the_volume_then_only_shrinking_is_allowed()
    {
        var d = Volume();
        d.Reserve(Vol, "c1", "hv1", 90 * GiB, "c1");
        d.Measure(Vol, 120 * GiB, Usage(("c1", 95 * GiB)));
        // Free never reads negative: the excess is reported on its own (95 + 25 unowned on 100 usable).
        Assert.Equal(0, d.Free(Vol));
        Assert.Equal(20 * GiB, d.View(Vol).OvercommittedBytes);

        Assert.Equal(ReserveStatus.InsufficientSpace, d.Reserve(Vol, "c2", "hv1", 1).Outcome.Status);
        Assert.Equal(ReserveStatus.InsufficientSpace, d.Reserve(Vol, "c1", "hv1", 95 * GiB + 1, "c1").Outcome.Status);
        var shrink = d.Reserve(Vol, "c1", "hv1", 50 * GiB, "c1");
        Assert.Equal(ReserveStatus.Updated, shrink.Outcome.Status);
        Assert.Equal(0, d.Free(Vol));
        Assert.Equal(20 * GiB, d.View(Vol).OvercommittedBytes);

        // Quotas never hand out negative free space; shared and partitioned agree on claims.
        var live = new Dictionary<string, double> { ["hv1"] = 1, ["hv2"] = 1 };
        Assert.All(d.Ledger.Quotas(Vol, QuotaPolicy.Partitioned, live)!, q => Assert.Equal(0, q.FreeBytes));
        Assert.All(d.Ledger.Quotas(Vol, QuotaPolicy.Shared, live)!, q => Assert.Equal(0, q.FreeBytes));
    }

    [Fact]
    public void Measured_directories_are_the_reservations_with_a_path()
    {
        var d = Volume();
        d.Reserve(Vol, "c1", "hv1", GiB, @"vms\c1");
        d.Reserve(Vol, "c2", "hv1", GiB);
        d.Reserve(Vol, "c3", "hv2", GiB, Root + @"\vms\c3\");

        var dirs = d.Ledger.MeasuredDirectories(Vol);
        Assert.Equal(2, dirs.Count);
        Assert.Equal("vms/c1", dirs["c1"]);
        Assert.Equal("vms/c3", dirs["c3"]);
        Assert.Empty(d.Ledger.MeasuredDirectories("Volume9"));
    }

    [Fact]
    public void Snapshot_restores_measurements_and_running_totals()
    {
        var d = Volume();
        d.Reserve(Vol, "c1", "hv1", 10 * GiB, "c1");
        d.Reserve(Vol, "c2", "hv2", 20 * GiB, "c2");
        d.Measure(Vol, 50 * GiB, Usage(("c1", 25 * GiB), ("c2", 5 * GiB), ("ghost", 7 * GiB)));
        d.Reserve(Vol, "c1", "hv1", 12 * GiB, "c1");

        var restored = CsvLedger.FromSnapshot(RoundTrip(d.Ledger.ToSnapshot()));

        Assert.Equal(d.View(Vol), restored.View(Vol));
        Assert.Equal(StateOf(d.Ledger), StateOf(restored));
        Assert.Equal(100 * GiB - 25 * GiB - 20 * GiB - 20 * GiB, restored.View(Vol)!.FreeBytes);
        // The restored ledger decides the same.
        var req = new ReserveRequest(Vol, "c3", "hv1", 35 * GiB + 1);
        Assert.Equal(ReserveStatus.InsufficientSpace, restored.Reserve(req, T0).Outcome.Status);
        Assert.Equal(ReserveStatus.InsufficientSpace, d.Ledger.Reserve(req, T0).Outcome.Status);
        Assert.Equal(ReserveStatus.Created, restored.Reserve(req with { Bytes = 35 * GiB }, T0).Outcome.Status);
    }
}
