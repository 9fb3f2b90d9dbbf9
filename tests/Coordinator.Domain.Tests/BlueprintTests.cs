using Coordinator.Domain;
using static Coordinator.Domain.Tests.LedgerDriver;

namespace Coordinator.Domain.Tests;

/// <summary>The worked example of the blueprint: a 500 GiB volume shared by two Hyper-V hosts.</summary>
public class BlueprintTests
{
    private const string Vol = "Volume1";
    private const string Root = @"C:\ClusterStorage\Volume1";

    private static readonly Dictionary<string, double> BothLive = new() { ["hv1"] = 1, ["hv2"] = 1 };

    private static LedgerDriver TwoInstancesOnHv1()
    {
        var d = new LedgerDriver();
        d.Configure(Vol, Root, 500 * GiB, 0);
        Assert.Equal(ReserveStatus.Created, d.Reserve(Vol, "vm-a", "hv1", 200 * GiB).Outcome.Status);
        Assert.Equal(ReserveStatus.Created, d.Reserve(Vol, "vm-b", "hv1", 200 * GiB).Outcome.Status);
        return d;
    }

    [Fact]
    public void Two_instances_leave_100_GiB_free()
    {
        var d = TwoInstancesOnHv1();
        var v = d.View(Vol);
        Assert.Equal(500 * GiB, v.CapacityBytes);
        Assert.Equal(400 * GiB, v.ReservedBytes);
        Assert.Equal(100 * GiB, v.FreeBytes);
        Assert.Equal(2, v.Reservations);
    }

    [Fact]
    public void A_claim_of_200_GiB_by_hv2_is_refused_and_reports_100_GiB_free()
    {
        var d = TwoInstancesOnHv1();
        var journal = d.Journal.Count;

        var r = d.Reserve(Vol, "vm-c", "hv2", 200 * GiB);

        Assert.Equal(ReserveStatus.InsufficientSpace, r.Outcome.Status);
        Assert.Equal(100 * GiB, r.Outcome.FreeBytes);
        Assert.Null(r.Outcome.Reservation);
        Assert.NotNull(r.Outcome.Error);
        Assert.Empty(r.Events);
        Assert.Equal(journal, d.Journal.Count);
        Assert.Null(d.Ledger.Find(Vol, "vm-c"));
        Assert.Equal(100 * GiB, d.Free(Vol));
    }

    [Fact]
    public void A_claim_of_100_GiB_by_hv2_fits_exactly_and_then_one_more_byte_does_not()
    {
        var d = TwoInstancesOnHv1();

        var ok = d.Reserve(Vol, "vm-c", "hv2", 100 * GiB);
        Assert.Equal(ReserveStatus.Created, ok.Outcome.Status);
        Assert.Equal(0, ok.Outcome.FreeBytes);
        var placed = Assert.IsType<ReservationPlaced>(Assert.Single(ok.Events));
        Assert.Equal(("vm-c", "hv2", 100 * GiB), (placed.ConsumerId, placed.Node, placed.Bytes));
        Assert.Equal(0, d.Free(Vol));
        Assert.Equal(500 * GiB, d.View(Vol).ReservedBytes);

        // One more byte, as a new claim ...
        var newClaim = d.Reserve(Vol, "vm-d", "hv2", 1);
        Assert.Equal(ReserveStatus.InsufficientSpace, newClaim.Outcome.Status);
        Assert.Equal(0, newClaim.Outcome.FreeBytes);
        Assert.Empty(newClaim.Events);

        // ... or as growing an existing one.
        var grow = d.Reserve(Vol, "vm-c", "hv2", 100 * GiB + 1);
        Assert.Equal(ReserveStatus.InsufficientSpace, grow.Outcome.Status);
        Assert.Empty(grow.Events);
        Assert.Equal(100 * GiB, d.Ledger.Find(Vol, "vm-c")!.Bytes);
        Assert.Equal(0, d.Free(Vol));
    }

    [Fact]
    public void Partitioned_quotas_add_up_to_the_volume_before_and_after_hv2_claims()
    {
        var d = TwoInstancesOnHv1();

        var before = d.Ledger.Quotas(Vol, QuotaPolicy.Partitioned, BothLive)!;
        Assert.Equal(500 * GiB, before.Sum(q => q.QuotaBytes));
        var hv1 = before.Single(q => q.Node == "hv1");
        var hv2 = before.Single(q => q.Node == "hv2");
        Assert.Equal((400 * GiB, 50 * GiB, 450 * GiB), (hv1.ClaimedBytes, hv1.FreeBytes, hv1.QuotaBytes));
        Assert.Equal((0L, 50 * GiB, 50 * GiB), (hv2.ClaimedBytes, hv2.FreeBytes, hv2.QuotaBytes));
        Assert.True(hv1.Live && hv2.Live);

        d.Reserve(Vol, "vm-c", "hv2", 100 * GiB);
        var after = d.Ledger.Quotas(Vol, QuotaPolicy.Partitioned, BothLive)!;
        Assert.Equal(500 * GiB, after.Sum(q => q.QuotaBytes));
        Assert.Equal(400 * GiB, after.Single(q => q.Node == "hv1").QuotaBytes);
        Assert.Equal(100 * GiB, after.Single(q => q.Node == "hv2").QuotaBytes);
        Assert.All(after, q => Assert.Equal(0, q.FreeBytes));
    }

    [Fact]
    public void Partitioned_quotas_follow_weights_and_keep_gone_nodes_claims()
    {
        var d = TwoInstancesOnHv1();
        d.Reserve(Vol, "vm-c", "hv3", 40 * GiB); // hv3 will be gone
        // free = 60 GiB; hv1 weighs 2, hv2 weighs 1.
        var quotas = d.Ledger.Quotas(Vol, QuotaPolicy.Partitioned, new Dictionary<string, double> { ["hv1"] = 2, ["hv2"] = 1 })!;

        Assert.Equal(["hv1", "hv2", "hv3"], quotas.Select(q => q.Node));
        Assert.Equal(500 * GiB, quotas.Sum(q => q.QuotaBytes));
        Assert.Equal(40 * GiB, quotas.Single(q => q.Node == "hv1").FreeBytes);
        Assert.Equal(20 * GiB, quotas.Single(q => q.Node == "hv2").FreeBytes);
        var gone = quotas.Single(q => q.Node == "hv3");
        Assert.False(gone.Live);
        Assert.Equal((40 * GiB, 0L, 40 * GiB), (gone.ClaimedBytes, gone.FreeBytes, gone.QuotaBytes));
    }

    [Fact]
    public void Shared_quotas_give_every_live_node_the_whole_free_space()
    {
        var d = TwoInstancesOnHv1();

        var quotas = d.Ledger.Quotas(Vol, QuotaPolicy.Shared, BothLive)!;
        Assert.Equal(2, quotas.Count);
        Assert.All(quotas, q => Assert.Equal(d.Free(Vol), q.FreeBytes));
        Assert.Equal(100 * GiB, quotas.Single(q => q.Node == "hv2").FreeBytes);
        Assert.Equal(500 * GiB, quotas.Single(q => q.Node == "hv1").QuotaBytes);

        d.Reserve(Vol, "vm-c", "hv2", 30 * GiB);
        quotas = d.Ledger.Quotas(Vol, QuotaPolicy.Shared, BothLive)!;
        Assert.All(quotas, q => Assert.Equal(70 * GiB, q.FreeBytes));
        Assert.Equal(100 * GiB, quotas.Single(q => q.Node == "hv2").QuotaBytes);
    }

    [Fact]
    public void Quotas_of_an_unknown_volume_are_null()
    {
        var d = TwoInstancesOnHv1();
        Assert.Null(d.Ledger.Quotas("Volume9", QuotaPolicy.Shared, BothLive));
    }

    [Fact]
    public void Replaying_the_journal_rebuilds_the_example()
    {
        var d = TwoInstancesOnHv1();
        d.Reserve(Vol, "vm-c", "hv2", 100 * GiB);
        d.Reserve(Vol, "vm-d", "hv2", 1); // refused, no event

        var replayed = new CsvLedger();
        foreach (var e in d.Journal) replayed.Apply(RoundTrip(e));

        Assert.Equal(3, d.Journal.Count(e => e is ReservationPlaced));
        Assert.Equal(StateOf(d.Ledger), StateOf(replayed));
        Assert.Equal(0, replayed.View(Vol)!.FreeBytes);
    }
}
