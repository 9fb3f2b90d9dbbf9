using System.Text.Json;
using System.Text.Json.Nodes;
using Coordinator.Domain;
using static Coordinator.Domain.Tests.LedgerDriver;

namespace Coordinator.Domain.Tests;

/// <summary>
/// The holes issue 11 found in the ledger's authority, one example each: every test here failed on main b249e5f.
/// </summary>
public class AuthorityHoleTests
{
    private const string Vol = "Volume1";
    private const string Root = @"C:\ClusterStorage\Volume1";

    private static LedgerDriver Volume(long capacity = 50 * GiB, long headroom = 0)
    {
        var d = new LedgerDriver();
        d.Configure(Vol, Root, capacity, headroom);
        foreach (var node in new[] { "hv1", "hv2" }) d.Apply(d.Ledger.ReportCapacity(node, 65_536, 16, d.Now));
        return d;
    }

    /// <summary>Runs <paramref name="act"/> and asserts it emitted nothing and changed nothing.</summary>
    private static T Silent<T>(LedgerDriver d, Func<T> act, Func<T, IReadOnlyList<LedgerEvent>> events)
    {
        var (journal, state) = (d.Journal.Count, StateOf(d.Ledger));
        var result = act();
        Assert.Empty(events(result));
        Assert.Equal(journal, d.Journal.Count);
        Assert.Equal(state, StateOf(d.Ledger));
        return result;
    }

    private static void AssertSane(VolumeView v)
    {
        Assert.True(v.FreeBytes >= 0, $"negative free: {v}");
        Assert.True(v.OvercommittedBytes >= 0, $"negative overcommitment: {v}");
        Assert.True(v.FreeBytes == 0 || v.OvercommittedBytes == 0, v.ToString());
    }

    // ---------------------------------------------------------------- completions

    [Fact]
    public void A_completion_of_2_pow_62_after_a_grant_of_1_byte_is_refused_and_the_lease_stays()
    {
        var d = Volume();
        var lease = d.Grant("img", "hv1", 1, Vol);
        var before = d.View(Vol);

        var done = Silent(d, () => d.Complete(lease, ByteSize.MaxBytes), x => x.Events);

        Assert.Equal(LeaseActionStatus.InsufficientSpace, done.Outcome.Status);
        Assert.Contains("free", done.Outcome.Error);
        Assert.Equal(lease, d.Ledger.FindLease("img"));
        Assert.Null(d.Ledger.FindImage("img"));
        Assert.Equal(before, d.View(Vol));
        Assert.Equal(50 * GiB - 1, d.Free(Vol));
        // The volume still takes claims: nothing was poisoned.
        Assert.Equal(ReserveStatus.Created, d.Reserve(Vol, "vm1", "hv1", GiB).Outcome.Status);
        // The holder can still finish at a size that fits, or abort.
        Assert.Equal(LeaseActionStatus.Done, d.Complete(lease, 2 * GiB).Outcome.Status);
        Assert.Equal(2 * GiB, d.Ledger.Find(Vol, CsvLedger.ImageClaim("img"))!.Bytes);
        Assert.Equal(47 * GiB, d.Free(Vol));
    }

    [Fact]
    public void Three_completions_that_would_wrap_the_totals_are_refused_and_free_never_turns_huge()
    {
        var d = Volume();
        var leases = new[] { "a", "b", "c" }.Select(i => d.Grant(i, "hv1", 1, Vol)).ToList();
        foreach (var lease in leases)
            Assert.Equal(LeaseActionStatus.InsufficientSpace, d.Complete(lease, ByteSize.MaxBytes).Outcome.Status);
        Assert.Equal(50 * GiB - 3, d.Free(Vol));
        AssertSane(d.View(Vol));
        Assert.Equal(ReserveStatus.InsufficientSpace, d.Reserve(Vol, "vm1", "hv1", 50 * GiB).Outcome.Status);
    }

    [Fact]
    public void On_a_2_pow_62_volume_completions_fill_it_exactly_and_the_next_byte_is_refused()
    {
        var d = Volume(capacity: ByteSize.MaxBytes);
        var a = d.Grant("a", "hv1", 1, Vol);
        var b = d.Grant("b", "hv1", 1, Vol);
        Assert.Equal(LeaseActionStatus.Done, d.Complete(a, ByteSize.MaxBytes - 1).Outcome.Status);
        Assert.Equal(0, d.Free(Vol));
        Assert.Equal(LeaseActionStatus.InsufficientSpace, d.Complete(b, 2).Outcome.Status);
        Assert.Equal(LeaseActionStatus.Done, d.Complete(b, 1).Outcome.Status);
        var v = d.View(Vol);
        Assert.Equal((ByteSize.MaxBytes, 0L, 0L), (v.ReservedBytes, v.FreeBytes, v.OvercommittedBytes));
    }

    [Fact]
    public void A_completion_larger_than_its_grant_that_fits_claims_the_growth()
    {
        var d = Volume();
        var lease = d.Grant("img", "hv1", GiB, Vol);
        Assert.Equal(49 * GiB, d.Free(Vol));
        Assert.Equal(LeaseActionStatus.Done, d.Complete(lease, 50 * GiB).Outcome.Status);
        Assert.Equal(0, d.Free(Vol));
    }

    // ---------------------------------------------------------------- arrivals

    public static TheoryData<PlaceVmRequest> BadArrivals() => new()
    {
        new("vm9", "hv1", 1024, 1, Vol, 0, null),
        new("vm9", "hv1", 1024, 1, Vol, -1, null),
        new("vm9", "hv1", 1024, 1, Vol, ByteSize.MaxBytes + 1, null),
        new("vm9", "hv1", 1024, 1, Vol, long.MaxValue, null),
        new("vm9", "hv1", 1024, 1, Vol, long.MinValue, null),
        new("vm9", "hv1", 0, 1, Vol, GiB, null),
        new("vm9", "hv1", -5, 1, Vol, GiB, null),
        new("vm9", "hv1", int.MaxValue, 1, Vol, GiB, null),
        new("vm9", "hv1", 1024, 0, Vol, GiB, null),
        new("vm9", "hv1", 1024, 100_000, Vol, GiB, null),
        new("vm9.", "hv1", 1024, 1, Vol, GiB, null),
        new("CON", "hv1", 1024, 1, Vol, GiB, null),
        new("..%2F..%2Fetc", "hv1", 1024, 1, Vol, GiB, null),
        new("../x", "hv1", 1024, 1, Vol, GiB, null),
        new("_image-x", "hv1", 1024, 1, Vol, GiB, null),
        new("vm9", "", 1024, 1, Vol, GiB, null),
        new("vm9", "hv/1", 1024, 1, Vol, GiB, null),
        new("vm9", "hv1", 1024, 1, Vol, GiB, "bad/img"),
    };

    [Theory]
    [MemberData(nameof(BadArrivals))]
    public void Arrivals_with_bad_sizes_or_names_are_refused_like_spawns(PlaceVmRequest request)
    {
        var d = Volume();
        Silent(d, () => d.Ledger.AdoptVm(request, "arrival", d.Now), x => x);
        Assert.Equal(PlaceStatus.Invalid, d.Ledger.DecideAdoption(request, "arrival", d.Now).Outcome.Status);
        Assert.Equal(PlaceStatus.Invalid, d.Ledger.PlaceVm(request, d.Now).Outcome.Status);
        Assert.Equal(PlaceStatus.Invalid, Silent(d, () => d.Ledger.Arrive(request, d.Now), x => x.Events).Outcome.Status);
        Assert.Empty(d.Ledger.Vms);
    }

    [Fact]
    public void An_arrival_is_a_request_its_disk_must_fit_like_any_claim()
    {
        var d = Volume();
        d.Reserve(Vol, "inst-1", "hv1", 45 * GiB);
        var refused = Silent(d, () => d.Ledger.Arrive(new PlaceVmRequest("mig-1", "hv1", 1024, 1, Vol, 6 * GiB, null), d.Now), x => x.Events);
        Assert.Equal(PlaceStatus.InsufficientSpace, refused.Outcome.Status);
        Assert.Equal(PlaceStatus.InsufficientSpace,
            d.Ledger.Arrive(new PlaceVmRequest("mig-2", "hv1", 1024, 1, Vol, ByteSize.MaxBytes, null), d.Now).Outcome.Status);
        var fits = d.Ledger.Arrive(new PlaceVmRequest("mig-3", "hv1", 1024, 1, Vol, 5 * GiB, null), d.Now);
        Assert.Equal(PlaceStatus.Placed, fits.Outcome.Status);
        d.Apply(fits.Events);
        Assert.Equal((0L, 0L), (d.View(Vol).FreeBytes, d.View(Vol).OvercommittedBytes));
        // The same announcement again (a retry) is unchanged, not refused for the room its own claim takes.
        Assert.Equal(PlaceStatus.Unchanged, d.Ledger.Arrive(new PlaceVmRequest("MIG-3", "hv1", 1024, 1, Vol, 5 * GiB, null), d.Now).Outcome.Status);
    }

    [Fact]
    public void A_vm_found_at_reconciliation_that_overcommits_is_adopted_and_the_excess_is_reported_not_a_negative_free()
    {
        // A fact, not a request: the VM runs on a host already, its disk is on the volume whatever the ledger says.
        var d = Volume();
        d.Apply(d.Ledger.AdoptVm(new PlaceVmRequest("big", "hv1", 1024, 1, Vol, 60 * GiB, null), "adopted", d.Now));
        Assert.NotNull(d.Ledger.FindVm("big"));
        var v = d.View(Vol);
        Assert.Equal((0L, 10 * GiB), (v.FreeBytes, v.OvercommittedBytes));
        Assert.Equal(ReserveStatus.InsufficientSpace, d.Reserve(Vol, "vm1", "hv1", 1).Outcome.Status);
        Assert.Equal(PlaceStatus.InsufficientSpace,
            d.Ledger.PlaceVm(new PlaceVmRequest("vm2", "hv2", 1024, 1, Vol, 1, null), d.Now).Outcome.Status);
    }

    [Fact]
    public void Arrivals_of_2_pow_62_never_wrap_the_totals_the_one_that_would_is_refused()
    {
        var d = Volume();
        Assert.Equal(PlaceStatus.Placed, Adopt(d, "a1", ByteSize.MaxBytes).Status);
        var refused = d.Ledger.DecideAdoption(new PlaceVmRequest("a2", "hv1", 1024, 1, Vol, ByteSize.MaxBytes, null), "arrival", d.Now);
        Assert.Equal(PlaceStatus.Invalid, refused.Outcome.Status);
        Assert.Empty(refused.Events);
        var v = d.View(Vol);
        Assert.Equal((ByteSize.MaxBytes, 0L, ByteSize.MaxBytes - 50 * GiB), (v.ReservedBytes, v.FreeBytes, v.OvercommittedBytes));
    }

    private static PlaceOutcome Adopt(LedgerDriver d, string name, long disk)
    {
        var decision = d.Ledger.DecideAdoption(new PlaceVmRequest(name, "hv1", 1024, 1, Vol, disk, null), "arrival", d.Now);
        d.Apply(decision.Events);
        return decision.Outcome;
    }

    // ---------------------------------------------------------------- measurements and configuration

    [Fact]
    public void Scans_with_absurd_numbers_never_wrap_a_sum_or_report_a_negative_free()
    {
        var d = Volume();
        d.Reserve(Vol, "c1", "hv1", GiB, "c1");
        d.Reserve(Vol, "c2", "hv2", GiB, "c2");
        d.Reserve(Vol, "c3", "hv2", GiB, "c3");
        d.Measure(Vol, long.MaxValue, new Dictionary<string, long> { ["c1"] = long.MaxValue, ["c2"] = long.MaxValue, ["c3"] = long.MaxValue });
        var v = d.View(Vol);
        AssertSane(v);
        // Each measured number counts as at most 2^62 (a comment in the volume book says why).
        Assert.Equal(ByteSize.MaxBytes, v.UsedBytes);
        Assert.Equal(0, v.FreeBytes);
        Assert.Equal(long.MaxValue, v.OvercommittedBytes); // 3 * 2^62 - 50 GiB saturates
        var quotas = d.Ledger.Quotas(Vol, QuotaPolicy.Shared, new Dictionary<string, double> { ["hv1"] = 1, ["hv2"] = 1 })!;
        Assert.All(quotas, q => Assert.True(q.ClaimedBytes > 0 && q.QuotaBytes >= q.ClaimedBytes && q.FreeBytes == 0));

        d.Measure(Vol, -5, new Dictionary<string, long> { ["c1"] = long.MinValue });
        v = d.View(Vol);
        Assert.Equal((0L, 0L, 47 * GiB), (v.UsedBytes, v.UnownedBytes, v.FreeBytes));
    }

    [Theory]
    [InlineData(-1L, 0L)]
    [InlineData(ByteSize.MaxBytes + 1, 0L)]
    [InlineData(long.MaxValue, 0L)]
    [InlineData(100L, -1L)]
    [InlineData(100L, long.MaxValue)]
    public void A_configured_capacity_or_headroom_outside_0_to_2_pow_62_is_refused(long capacity, long headroom)
    {
        var d = Volume();
        Assert.Throws<ArgumentOutOfRangeException>(() => d.Ledger.Configure(Vol, Root, capacity, headroom));
        Assert.Throws<ArgumentOutOfRangeException>(() => d.Ledger.Configure("Other", Root, capacity, headroom));
        Assert.Equal(50 * GiB, d.View(Vol).CapacityBytes);
    }

    [Fact]
    public void Capacity_and_headroom_of_2_pow_62_each_are_accepted_and_add_up_without_overflow()
    {
        var d = Volume(capacity: ByteSize.MaxBytes, headroom: ByteSize.MaxBytes);
        Assert.Equal(0, d.Free(Vol));
        Assert.Equal(ReserveStatus.InsufficientSpace, d.Reserve(Vol, "vm1", "hv1", 1).Outcome.Status);
        var small = Volume(capacity: 10 * GiB, headroom: ByteSize.MaxBytes);
        AssertSane(small.View(Vol));
        Assert.Equal(ReserveStatus.InsufficientSpace, small.Reserve(Vol, "vm1", "hv1", 1).Outcome.Status);
    }

    [Fact]
    public void A_shrunk_capacity_reports_the_overcommitment_and_refuses_growth_in_every_answer()
    {
        var d = Volume();
        d.Reserve(Vol, "vm1", "hv1", 40 * GiB);
        d.Configure(Vol, Root, 30 * GiB);
        var refused = d.Reserve(Vol, "vm2", "hv1", 1);
        Assert.Equal((ReserveStatus.InsufficientSpace, 0L), (refused.Outcome.Status, refused.Outcome.FreeBytes));
        var lease = d.Acquire("img", "hv1", 1, Vol);
        Assert.Equal((LeaseStatus.InsufficientSpace, 0L), (lease.Outcome.Status, lease.Outcome.FreeBytes));
        Assert.Equal(10 * GiB, d.View(Vol).OvercommittedBytes);
    }

    // ---------------------------------------------------------------- names that become files

    [Fact]
    public void Reserving_VM1_after_vm1_is_the_same_reservation_an_update_that_keeps_the_first_spelling()
    {
        var d = Volume();
        d.Reserve(Vol, "vm1", "hv1", 10 * GiB);
        var again = d.Reserve(Vol, "VM1", "hv1", 20 * GiB);
        Assert.Equal(ReserveStatus.Updated, again.Outcome.Status);
        Assert.Equal("vm1", again.Outcome.Reservation!.ConsumerId);
        var only = Assert.Single(d.Ledger.Reservations(Vol));
        Assert.Equal(("vm1", 20 * GiB), (only.ConsumerId, only.Bytes));
        Assert.Equal(30 * GiB, d.Free(Vol));
        Assert.Equal(ReserveStatus.Unchanged, d.Reserve(Vol, "Vm1", "hv1", 20 * GiB).Outcome.Status);
        Assert.Equal(ReleaseStatus.Released, d.Release(Vol, "VM1").Outcome.Status);
        Assert.Empty(d.Ledger.Reservations(Vol));
    }

    [Fact]
    public void Spawning_VM1_beside_vm1_is_AlreadyExists_so_nothing_is_created_in_vm1s_folder()
    {
        var d = Volume();
        var vm1 = d.Ledger.PlaceVm(new PlaceVmRequest("vm1", "hv1", 1024, 1, Vol, GiB, null), d.Now);
        d.Apply(vm1.Events);
        d.Apply(d.Ledger.SetVmPhase("vm1", VmPhase.Running, d.Now));

        foreach (var node in new[] { "hv1", "hv2" })
        {
            var twin = Silent(d, () => d.Ledger.PlaceVm(new PlaceVmRequest("VM1", node, 1024, 1, Vol, GiB, null), d.Now), x => x.Events);
            Assert.Equal(PlaceStatus.AlreadyExists, twin.Outcome.Status);
            Assert.Equal("vm1", twin.Outcome.Vm!.Name);
        }
        Assert.Equal(PlaceStatus.Invalid, d.Ledger.PlaceVm(new PlaceVmRequest("vm1.", "hv1", 1024, 1, Vol, GiB, null), d.Now).Outcome.Status);
        Assert.Equal("vm1", Assert.Single(d.Ledger.Vms).Name);
        // Operations on the other spelling reach the one VM.
        Assert.Equal([new VmRemoved("vm1", "destroy", d.Now)], d.Ledger.RemoveVm("VM1", "destroy", d.Now));
    }

    [Fact]
    public void A_lease_on_ABC_while_abc_is_cached_answers_cached_and_while_leased_pending()
    {
        var d = Volume();
        var cached = d.Cache("abc", "hv1", GiB, Vol);
        var hit = d.Acquire("ABC", "hv2", GiB, Vol);
        Assert.Equal(LeaseStatus.Cached, hit.Outcome.Status);
        Assert.Equal(cached.ImageId, hit.Outcome.Cached!.ImageId);

        var lease = d.Grant("def", "hv1", GiB, Vol);
        Assert.Equal(LeaseStatus.Pending, d.Acquire("DEF", "hv2", GiB, Vol).Outcome.Status);
        var mine = d.Acquire("Def", "hv1", GiB, Vol);
        Assert.Equal((LeaseStatus.Granted, lease), (mine.Outcome.Status, mine.Outcome.Lease));
        Assert.Equal(2, d.Ledger.Reservations(Vol).Count);
    }

    [Theory]
    [InlineData("..%2F..%2Fetc")]
    [InlineData("vm%41")]
    [InlineData("vm1.")]
    [InlineData("vm1 ")]
    [InlineData("vm1:stream")]
    [InlineData("CON")]
    [InlineData("con")]
    [InlineData("NUL.txt")]
    [InlineData("COM1")]
    [InlineData("lpt9.log")]
    [InlineData("a*b")]
    [InlineData("a?b")]
    [InlineData("a\"b")]
    [InlineData("a<b")]
    [InlineData("a>b")]
    [InlineData("a|b")]
    [InlineData("_IMAGE-x")]
    public void Consumer_ids_that_are_not_NTFS_names_of_their_own_are_refused(string id)
    {
        var d = Volume();
        var r = Silent(d, () => d.Reserve(Vol, id, "hv1", GiB), x => x.Events);
        Assert.Equal(ReserveStatus.Invalid, r.Outcome.Status);
    }

    [Theory]
    [InlineData("CON")]
    [InlineData("aux")]
    [InlineData("COM9.img")]
    public void Image_ids_that_are_device_names_are_refused(string image)
    {
        var d = Volume();
        Assert.Equal(LeaseStatus.Invalid, Silent(d, () => d.Acquire(image, "hv1", GiB, Vol), x => x.Events).Outcome.Status);
    }

    [Fact]
    public void A_legacy_journal_with_ids_that_differ_only_by_case_replays_without_throwing_last_write_wins()
    {
        var l = new CsvLedger();
        var t = T0;
        l.Apply(new VolumeConfigured(Vol, Root, 100 * GiB, 0));
        l.Apply(new ReservationPlaced(Vol, "vm1", "hv1", 10 * GiB, "vm1", null, t));
        l.Apply(new ReservationPlaced(Vol, "VM1", "hv2", 20 * GiB, "VM1", null, t.AddSeconds(1)));
        l.Apply(new VolumeMeasured(Vol, 5 * GiB, new Dictionary<string, long> { ["vm1"] = GiB, ["VM1"] = 2 * GiB }, t.AddSeconds(2)));
        var r = Assert.Single(l.Reservations(Vol));
        Assert.Equal(("VM1", "hv2", 20 * GiB, t), (r.ConsumerId, r.Node, r.Bytes, r.CreatedAt));
        Assert.Equal(80 * GiB - 3 * GiB, l.View(Vol)!.FreeBytes);

        l.Apply(new VmPlaced("web", "hv1", 1024, 1, Vol, GiB, null, "instances/web", "spawn", t));
        l.Apply(new VmPlaced("WEB", "hv2", 2048, 2, Vol, 2 * GiB, null, "instances/WEB", "arrival", t));
        Assert.Equal(("WEB", "hv2"), (Assert.Single(l.Vms).Name, l.Vms.Single().Node));
        l.Apply(new ImageLeaseGranted("img", "img.1", "hv1", 1, Vol, "_base/img", "_base/img/img.t1", GiB, t, t.AddMinutes(1)));
        l.Apply(new ImageCached("IMG", "img.1", GiB, "ab", t));
        Assert.Equal("img", Assert.Single(l.Images).ImageId);
        l.Apply(new ReservationReleased(Vol, "vm1", t));
        l.Apply(new VmRemoved("web", "destroy", t));
        Assert.Equal([CsvLedger.ImageClaim("img")], l.Reservations(Vol).Select(x => x.ConsumerId));

        var restored = CsvLedger.FromSnapshot(RoundTrip(l.ToSnapshot()));
        Assert.Equal(StateOf(l), StateOf(restored));
    }

    // ---------------------------------------------------------------- the recorded journal's state

    [Fact]
    public void The_state_recorded_at_main_b249e5f_loads_and_snapshots_back_to_the_same_json()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Fixtures", "ledger-main-b249e5f.state.json");
        var json = JsonNode.Parse(File.ReadAllText(path))!;
        var snapshot = json.Deserialize<LedgerSnapshot>(Json)!;
        var ledger = CsvLedger.FromSnapshot(snapshot);
        Assert.True(JsonNode.DeepEquals(json, JsonSerializer.SerializeToNode(ledger.ToSnapshot(), Json)),
            JsonSerializer.Serialize(ledger.ToSnapshot(), Json));
        Assert.All(ledger.Views(), AssertSane);
        Assert.NotEmpty(ledger.Vms);
        Assert.NotEmpty(ledger.Images);
    }
}
