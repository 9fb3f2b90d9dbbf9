using Coordinator.Domain;
using static Coordinator.Domain.Tests.LedgerDriver;

namespace Coordinator.Domain.Tests;

/// <summary>PUT semantics: idempotent repeats, resizes, re-homing, release, and the epoch.</summary>
public class ReservationTests
{
    private const string Vol = "Volume1";
    private const string Root = @"C:\ClusterStorage\Volume1";

    private static LedgerDriver Volume(long capacity = 100 * GiB, long headroom = 0)
    {
        var d = new LedgerDriver();
        d.Configure(Vol, Root, capacity, headroom);
        return d;
    }

    [Fact]
    public void The_same_put_twice_is_unchanged_the_second_time_and_emits_nothing()
    {
        var d = Volume();
        var first = d.Reserve(Vol, "vm1", "hv1", 10 * GiB, @"vms\vm1", "img-1");
        Assert.Equal(ReserveStatus.Created, first.Outcome.Status);
        Assert.Single(first.Events);
        var journal = d.Journal.Count;
        var state = StateOf(d.Ledger);

        var second = d.Reserve(Vol, "vm1", "hv1", 10 * GiB, @"vms\vm1", "img-1");

        Assert.Equal(ReserveStatus.Unchanged, second.Outcome.Status);
        Assert.Empty(second.Events);
        Assert.Equal(first.Outcome.Reservation, second.Outcome.Reservation);
        Assert.Equal(90 * GiB, second.Outcome.FreeBytes);
        Assert.Equal(journal, d.Journal.Count);
        Assert.Equal(state, StateOf(d.Ledger));
    }

    [Fact]
    public void The_same_put_with_an_equivalent_path_spelling_is_unchanged()
    {
        var d = Volume();
        d.Reserve(Vol, "vm1", "hv1", 10 * GiB, @"vms\vm1");

        Assert.Equal(ReserveStatus.Unchanged, d.Reserve(Vol, "vm1", "hv1", 10 * GiB, "vms/vm1").Outcome.Status);
        Assert.Equal(ReserveStatus.Unchanged, d.Reserve(Vol, "vm1", "hv1", 10 * GiB, Root + @"\vms\vm1").Outcome.Status);
        Assert.Equal(ReserveStatus.Updated, d.Reserve(Vol, "vm1", "hv1", 10 * GiB, "vms/vm2").Outcome.Status);
    }

    [Fact]
    public void Unchanged_is_answered_even_when_the_volume_is_overcommitted()
    {
        var d = Volume();
        d.Reserve(Vol, "vm1", "hv1", 80 * GiB);
        d.Configure(Vol, Root, 50 * GiB, 0);
        Assert.Equal(0, d.Free(Vol));
        Assert.Equal(30 * GiB, d.View(Vol).OvercommittedBytes);

        var again = d.Reserve(Vol, "vm1", "hv1", 80 * GiB);
        Assert.Equal(ReserveStatus.Unchanged, again.Outcome.Status);
        Assert.Empty(again.Events);
    }

    [Fact]
    public void Resize_up_that_fits_is_updated_and_keeps_the_creation_time()
    {
        var d = Volume();
        var created = d.Reserve(Vol, "vm1", "hv1", 10 * GiB).Outcome.Reservation!;

        var up = d.Reserve(Vol, "vm1", "hv1", 100 * GiB);

        Assert.Equal(ReserveStatus.Updated, up.Outcome.Status);
        Assert.Equal(0, up.Outcome.FreeBytes);
        Assert.Equal(0, d.Free(Vol));
        var r = d.Ledger.Find(Vol, "vm1")!;
        Assert.Equal(100 * GiB, r.Bytes);
        Assert.Equal(created.CreatedAt, r.CreatedAt);
        Assert.True(r.UpdatedAt > created.UpdatedAt);
        Assert.Equal(up.Outcome.Reservation, r);
        Assert.Equal(1, d.View(Vol).Reservations);
    }

    [Fact]
    public void Resize_up_that_does_not_fit_is_refused_and_leaves_the_old_claim()
    {
        var d = Volume();
        d.Reserve(Vol, "vm1", "hv1", 60 * GiB);
        d.Reserve(Vol, "vm2", "hv1", 30 * GiB);
        var journal = d.Journal.Count;

        // vm2 may grow by the 10 GiB that are free, not by one byte more.
        var refused = d.Reserve(Vol, "vm2", "hv1", 40 * GiB + 1);

        Assert.Equal(ReserveStatus.InsufficientSpace, refused.Outcome.Status);
        Assert.Equal(10 * GiB, refused.Outcome.FreeBytes);
        Assert.Equal(30 * GiB, refused.Outcome.Reservation!.Bytes);
        Assert.Empty(refused.Events);
        Assert.Equal(journal, d.Journal.Count);
        Assert.Equal(30 * GiB, d.Ledger.Find(Vol, "vm2")!.Bytes);

        Assert.Equal(ReserveStatus.Updated, d.Reserve(Vol, "vm2", "hv1", 40 * GiB).Outcome.Status);
        Assert.Equal(0, d.Free(Vol));
    }

    [Fact]
    public void Resize_down_is_always_allowed_even_when_the_volume_is_overcommitted()
    {
        var d = Volume();
        d.Reserve(Vol, "vm1", "hv1", 70 * GiB);
        d.Reserve(Vol, "vm2", "hv2", 30 * GiB);
        d.Configure(Vol, Root, 50 * GiB, 10 * GiB); // 100 GiB claimed on 40 usable: 60 GiB over, free reads 0
        Assert.Equal(0, d.Free(Vol));
        Assert.Equal(60 * GiB, d.View(Vol).OvercommittedBytes);

        var grow = d.Reserve(Vol, "vm2", "hv2", 30 * GiB + 1);
        Assert.Equal(ReserveStatus.InsufficientSpace, grow.Outcome.Status);
        Assert.Equal(0, grow.Outcome.FreeBytes);
        Assert.Empty(grow.Events);

        var shrink = d.Reserve(Vol, "vm1", "hv1", 20 * GiB);
        Assert.Equal(ReserveStatus.Updated, shrink.Outcome.Status);
        Assert.Equal(0, shrink.Outcome.FreeBytes);
        Assert.Equal(0, d.Free(Vol));
        Assert.Equal(10 * GiB, d.View(Vol).OvercommittedBytes);
        Assert.Single(shrink.Events);

        var newClaim = d.Reserve(Vol, "vm3", "hv2", 1);
        Assert.Equal(ReserveStatus.InsufficientSpace, newClaim.Outcome.Status);
    }

    [Fact]
    public void Changing_the_node_is_an_update_that_moves_the_claim_between_nodes()
    {
        var d = Volume();
        d.Reserve(Vol, "vm1", "hv1", 100 * GiB); // the volume is full

        var moved = d.Reserve(Vol, "vm1", "hv2", 100 * GiB);

        Assert.Equal(ReserveStatus.Updated, moved.Outcome.Status);
        var placed = Assert.IsType<ReservationPlaced>(Assert.Single(moved.Events));
        Assert.Equal("hv2", placed.Node);
        Assert.Equal("hv2", d.Ledger.Find(Vol, "vm1")!.Node);
        Assert.Equal(0, d.Free(Vol));
        var quotas = d.Ledger.Quotas(Vol, QuotaPolicy.Partitioned, new Dictionary<string, double> { ["hv1"] = 1, ["hv2"] = 1 })!;
        Assert.Equal(0, quotas.Single(q => q.Node == "hv1").ClaimedBytes);
        Assert.Equal(100 * GiB, quotas.Single(q => q.Node == "hv2").ClaimedBytes);
    }

    [Fact]
    public void Changing_the_image_is_an_update()
    {
        var d = Volume();
        d.Reserve(Vol, "vm1", "hv1", GiB, image: "img-1");
        var r = d.Reserve(Vol, "vm1", "hv1", GiB, image: "img-2");
        Assert.Equal(ReserveStatus.Updated, r.Outcome.Status);
        Assert.Equal("img-2", d.Ledger.Find(Vol, "vm1")!.ImageId);
        Assert.Equal(ReserveStatus.Updated, d.Reserve(Vol, "vm1", "hv1", GiB).Outcome.Status);
        Assert.Null(d.Ledger.Find(Vol, "vm1")!.ImageId);
    }

    [Fact]
    public void Release_frees_the_claim_and_a_second_release_finds_nothing()
    {
        var d = Volume();
        d.Reserve(Vol, "vm1", "hv1", 60 * GiB);

        var released = d.Release(Vol, "vm1");
        Assert.Equal(ReleaseStatus.Released, released.Outcome.Status);
        Assert.Equal(60 * GiB, released.Outcome.Released!.Bytes);
        Assert.IsType<ReservationReleased>(Assert.Single(released.Events));
        Assert.Equal(100 * GiB, d.Free(Vol));
        Assert.Null(d.Ledger.Find(Vol, "vm1"));
        Assert.Empty(d.Ledger.Reservations(Vol));

        var again = d.Release(Vol, "vm1");
        Assert.Equal(ReleaseStatus.NotFound, again.Outcome.Status);
        Assert.Empty(again.Events);

        var unknown = d.Release("Volume9", "vm1");
        Assert.Equal(ReleaseStatus.UnknownVolume, unknown.Outcome.Status);
        Assert.Empty(unknown.Events);
    }

    [Fact]
    public void Release_then_reserve_again_is_created_with_a_new_creation_time()
    {
        var d = Volume();
        var first = d.Reserve(Vol, "vm1", "hv1", GiB).Outcome.Reservation!;
        d.Release(Vol, "vm1");
        var second = d.Reserve(Vol, "vm1", "hv1", GiB);
        Assert.Equal(ReserveStatus.Created, second.Outcome.Status);
        Assert.True(second.Outcome.Reservation!.CreatedAt > first.CreatedAt);
    }

    [Fact]
    public void Headroom_is_never_handed_out()
    {
        var d = Volume(100 * GiB, 5 * GiB);
        Assert.Equal(95 * GiB, d.Free(Vol));
        Assert.Equal(ReserveStatus.InsufficientSpace, d.Reserve(Vol, "vm1", "hv1", 95 * GiB + 1).Outcome.Status);
        Assert.Equal(ReserveStatus.Created, d.Reserve(Vol, "vm1", "hv1", 95 * GiB).Outcome.Status);
    }

    [Fact]
    public void Reservations_on_different_volumes_do_not_interfere()
    {
        var d = Volume();
        d.Configure("Volume2", @"C:\ClusterStorage\Volume2", 10 * GiB, 0);
        d.Reserve(Vol, "vm1", "hv1", 100 * GiB);
        Assert.Equal(ReserveStatus.Created, d.Reserve("Volume2", "vm1", "hv1", 10 * GiB).Outcome.Status);
        Assert.Equal(0, d.Free(Vol));
        Assert.Equal(0, d.Free("Volume2"));
        Assert.Equal(["Volume1", "Volume2"], d.Ledger.VolumeNames);
    }

    [Fact]
    public void Configure_emits_only_when_something_changed_and_keeps_reservations()
    {
        var d = new LedgerDriver();
        Assert.IsType<VolumeConfigured>(Assert.Single(d.Configure(Vol, Root, 100 * GiB, GiB)));
        Assert.True(d.Ledger.HasVolume(Vol));
        Assert.Empty(d.Configure(Vol, Root, 100 * GiB, GiB));
        d.Reserve(Vol, "vm1", "hv1", 10 * GiB);

        Assert.Single(d.Configure(Vol, Root, 200 * GiB, GiB));
        Assert.Single(d.Configure(Vol, Root, 200 * GiB, 2 * GiB));
        Assert.Single(d.Configure(Vol, @"D:\Other", 200 * GiB, 2 * GiB));
        Assert.Equal(188 * GiB, d.Free(Vol));
        Assert.Equal(@"D:\Other", d.View(Vol).Path);
        Assert.Equal(10 * GiB, d.Ledger.Find(Vol, "vm1")!.Bytes);
    }

    [Fact]
    public void Decisions_do_not_mutate_until_applied()
    {
        var d = Volume();
        var state = StateOf(d.Ledger);

        var reserve = d.Ledger.Reserve(new ReserveRequest(Vol, "vm1", "hv1", GiB), T0);
        d.Ledger.Configure(Vol, Root, 1, 0);
        d.Ledger.Measure(Vol, 50 * GiB, new Dictionary<string, long>(), T0);
        d.Ledger.NextEpoch("hv1", T0);
        Assert.Equal(ReserveStatus.Created, reserve.Outcome.Status);
        Assert.Equal(state, StateOf(d.Ledger));

        d.Apply(reserve.Events);
        Assert.NotEqual(state, StateOf(d.Ledger));
        Assert.Equal(ReleaseStatus.Released, d.Ledger.Release(Vol, "vm1", T0).Outcome.Status);
        Assert.NotNull(d.Ledger.Find(Vol, "vm1"));
    }

    [Fact]
    public void Epochs_count_up_and_survive_snapshots()
    {
        var d = Volume();
        Assert.Equal(0, d.Ledger.Epoch);
        var e1 = d.NextEpoch("hv1");
        Assert.Equal(1, e1.Epoch);
        var e2 = d.NextEpoch("hv2");
        Assert.Equal(2, e2.Epoch);
        Assert.Equal((2L, "hv2", e2.At), (d.Ledger.Epoch, d.Ledger.EpochNode, d.Ledger.EpochStartedAt));

        var restored = CsvLedger.FromSnapshot(RoundTrip(d.Ledger.ToSnapshot()));
        Assert.Equal((2L, "hv2", (DateTimeOffset?)e2.At), (restored.Epoch, restored.EpochNode, restored.EpochStartedAt));
        Assert.Equal(3, restored.NextEpoch("hv1", T0).Epoch);
    }

    [Fact]
    public void Applying_an_unknown_event_type_throws()
    {
        var ledger = new CsvLedger();
        Assert.Throws<ArgumentOutOfRangeException>(() => ledger.Apply(new StrangeEvent()));
    }

    private sealed record StrangeEvent : LedgerEvent;
}
