using Coordinator.Domain;

namespace Coordinator.Domain.Tests;

/// <summary>The VM inventory: exact memory per node, the disk claim following its VM, drains and the arrival feed.</summary>
public sealed class VmInventoryTests
{
    private const long GiB = ByteSize.GiB;
    private readonly LedgerDriver _d = new();

    public VmInventoryTests()
    {
        _d.Configure("Volume1", "/csv/Volume1", 500 * GiB);
        foreach (var (node, mem) in new[] { ("hv1", 16_384L), ("hv2", 32_768L), ("hv3", 8_192L) })
            _d.Apply(_d.Ledger.ReportCapacity(node, mem, 8, _d.Now));
    }

    private Decision<PlaceOutcome> Place(string name, string node, int mem = 4096, int cpus = 2, long disk = 20 * GiB, string? image = null)
    {
        var d = _d.Ledger.PlaceVm(new PlaceVmRequest(name, node, mem, cpus, "Volume1", disk, image), _d.Now);
        _d.Apply(d.Events);
        return d;
    }

    [Fact]
    public void Memory_is_exact_a_spawn_that_does_not_fit_is_refused_before_anything_is_claimed()
    {
        Assert.Equal(PlaceStatus.Placed, Place("vm1", "hv3", mem: 4096).Outcome.Status);
        Assert.Equal(PlaceStatus.Placed, Place("vm2", "hv3", mem: 4096).Outcome.Status);
        var free = _d.Ledger.View("Volume1")!.FreeBytes;
        var refused = Place("vm3", "hv3", mem: 1);
        Assert.Equal(PlaceStatus.InsufficientMemory, refused.Outcome.Status);
        Assert.Empty(refused.Events);
        Assert.Equal(free, _d.Ledger.View("Volume1")!.FreeBytes);
        Assert.Equal(0, _d.Ledger.Usage("hv3").FreeMemoryMb);
        Assert.Equal(32_768, _d.Ledger.Usage("hv2").FreeMemoryMb);
    }

    [Fact]
    public void The_disk_claim_is_refused_when_the_volume_is_full_and_vcpus_are_bounded()
    {
        Assert.Equal(PlaceStatus.InsufficientSpace, Place("big", "hv2", disk: 501 * GiB).Outcome.Status);
        Assert.Equal(PlaceStatus.InsufficientMemory, Place("cpus", "hv2", cpus: 8 * CsvLedger.VcpuOvercommit + 1).Outcome.Status);
        Assert.Equal(PlaceStatus.NodeUnavailable, Place("nowhere", "hv9").Outcome.Status);
        Assert.Equal(PlaceStatus.Invalid, Place("../x", "hv1").Outcome.Status);
        Assert.Empty(_d.Ledger.Vms);
    }

    [Fact]
    public void A_placement_is_idempotent_and_a_name_is_unique()
    {
        Assert.Equal(PlaceStatus.Placed, Place("vm1", "hv1").Outcome.Status);
        var again = Place("vm1", "hv1");
        Assert.Equal(PlaceStatus.Unchanged, again.Outcome.Status);
        Assert.Empty(again.Events);
        Assert.Equal(PlaceStatus.AlreadyExists, Place("vm1", "hv2").Outcome.Status);
    }

    [Fact]
    public void A_move_carries_memory_and_the_claim_to_the_new_owner_and_feeds_both_agents()
    {
        Place("vm1", "hv1", mem: 8192, disk: 40 * GiB);
        _d.Apply(_d.Ledger.SetVmPhase("vm1", VmPhase.Running, _d.Now));
        var freeDisk = _d.Ledger.View("Volume1")!.FreeBytes;
        var head = _d.Ledger.FeedHead;

        _d.Apply(_d.Ledger.ObserveOwner("vm1", "hv2", "failover", _d.Now));
        Assert.Equal("hv2", _d.Ledger.FindVm("vm1")!.Node);
        Assert.Equal(16_384, _d.Ledger.Usage("hv1").FreeMemoryMb);
        Assert.Equal(32_768 - 8192, _d.Ledger.Usage("hv2").FreeMemoryMb);
        Assert.Equal("hv2", _d.Ledger.Find("Volume1", "vm1")!.Node);
        Assert.Equal(freeDisk, _d.Ledger.View("Volume1")!.FreeBytes); // one claim, moved, not copied
        Assert.Equal([("hv1", "left"), ("hv2", "arrived")], _d.Ledger.FeedAfter(head, null).Select(f => (f.Node, f.Kind)));
        Assert.Single(_d.Ledger.FeedAfter(head, "hv2"));

        // The same observation again changes nothing.
        Assert.Empty(_d.Ledger.ObserveOwner("vm1", "hv2", "failover", _d.Now));
    }

    [Fact]
    public void Removal_releases_the_claim_and_adoption_records_a_vm_already_on_a_host()
    {
        var before = _d.Ledger.View("Volume1")!.FreeBytes;
        Place("vm1", "hv1", disk: 10 * GiB);
        _d.Apply(_d.Ledger.RemoveVm("vm1", "destroyed", _d.Now));
        Assert.Null(_d.Ledger.FindVm("vm1"));
        Assert.Equal(before, _d.Ledger.View("Volume1")!.FreeBytes);

        // Adoption accepts what is already there, even beyond the node's memory.
        _d.Apply(_d.Ledger.AdoptVm(new PlaceVmRequest("arrived", "hv3", 16_384, 2, "Volume1", 5 * GiB, null), "arrival", _d.Now));
        Assert.Equal(VmPhase.Running, _d.Ledger.FindVm("arrived")!.Phase);
        Assert.True(_d.Ledger.Usage("hv3").FreeMemoryMb < 0);
        Assert.Contains(_d.Ledger.FeedAfter(0, "hv3"), f => f.Vm == "arrived" && f.Kind == "arrived" && f.Reason == "arrival");
    }

    [Fact]
    public void Drain_targets_the_node_with_most_free_memory_that_can_hold_the_vm_and_draining_nodes_take_nothing()
    {
        Place("vm1", "hv1", mem: 8192);
        var live = new[] { "hv1", "hv2", "hv3" };
        Assert.Equal("hv2", _d.Ledger.PickTarget("vm1", live));
        _d.Apply(_d.Ledger.SetDraining("hv2", true, _d.Now));
        Assert.Equal("hv3", _d.Ledger.PickTarget("vm1", live));
        Assert.Equal(PlaceStatus.NodeUnavailable, Place("vm2", "hv2").Outcome.Status);
        Assert.Null(_d.Ledger.PickTarget("vm1", ["hv1", "hv2"])); // hv3 not live, hv2 draining
        _d.Apply(_d.Ledger.SetDraining("hv2", false, _d.Now));
        Assert.Equal("hv2", _d.Ledger.PickTarget("vm1", live));
    }

    [Fact]
    public void The_inventory_survives_a_snapshot_and_a_replay()
    {
        Place("vm1", "hv1");
        _d.Apply(_d.Ledger.SetVmPhase("vm1", VmPhase.Running, _d.Now));
        Place("vm2", "hv2");
        _d.Apply(_d.Ledger.ObserveOwner("vm2", "hv3", "failover", _d.Now));
        _d.Apply(_d.Ledger.SetDraining("hv1", true, _d.Now));

        var restored = CsvLedger.FromSnapshot(System.Text.Json.JsonSerializer.Deserialize<LedgerSnapshot>(
            System.Text.Json.JsonSerializer.Serialize(_d.Ledger.ToSnapshot(), LedgerDriver.Json), LedgerDriver.Json)!);
        var replayed = new CsvLedger();
        foreach (var e in _d.Journal) replayed.Apply(e);
        foreach (var other in new[] { restored, replayed })
        {
            Assert.Equal(_d.Ledger.Vms, other.Vms);
            Assert.Equal(_d.Ledger.Usages(), other.Usages());
            Assert.Equal(_d.Ledger.FeedAfter(0, null), other.FeedAfter(0, null));
            Assert.Equal(_d.Ledger.View("Volume1"), other.View("Volume1"));
        }
    }
}
