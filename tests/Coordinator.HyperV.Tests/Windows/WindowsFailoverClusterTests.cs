using System.Text;
using Coordinator.HyperV;
using Coordinator.HyperV.Windows;
using static Coordinator.HyperV.Windows.ClusterGroupStateCode;
using Step = Coordinator.HyperV.Tests.Windows.FakeClusApi.Step;

namespace Coordinator.HyperV.Tests.Windows;

/// <summary>Role management and listings through root/MSCluster, as recorded shapes.</summary>
public sealed class WindowsFailoverClusterCimTests
{
    private const string C = CimNames.Cluster;
    private readonly RecordedCim _cim = new();
    private readonly CimRecord _cluster;

    public WindowsFailoverClusterCimTests()
    {
        _cluster = _cim.Add(C, "MSCluster_Cluster", new Dictionary<string, object?> { ["Name"] = "CLU1", ["Fqdn"] = "clu1.corp" }, "Name");
        foreach (var (name, state) in new[] { ("HV2", 0u), ("HV1", 0u), ("HV3", 1u) })
            _cim.Add(C, "MSCluster_Node", new Dictionary<string, object?> { ["Name"] = name, ["State"] = state, ["NodeWeight"] = 1u }, "Name");
        Group("Cluster Group", groupType: 1, owner: "HV1", state: 0);
        Group("Available Storage", groupType: 2, owner: "HV2", state: 0);
    }

    private CimRecord Group(string name, uint groupType, string owner, uint state) => _cim.Add(C, "MSCluster_ResourceGroup", new Dictionary<string, object?>
    {
        ["Name"] = name,
        ["GroupType"] = groupType,
        ["OwnerNode"] = owner,
        ["State"] = state,
        ["FailoverThreshold"] = 4294967295u,
        ["FailoverPeriod"] = 6u,
        ["AutoFailbackType"] = 0u,
        ["FailbackWindowStart"] = -1,
        ["FailbackWindowEnd"] = -1,
        ["PersistentState"] = false,
    }, "Name");

    private WindowsFailoverCluster Cluster(WindowsFailoverClusterOptions? options = null) => new(_cim, new FakeClusApi(), options);

    [Fact]
    public async Task Nodes_are_MSCluster_Node_names()
    {
        Assert.Equal(["HV1", "HV2", "HV3"], await Cluster().ListNodesAsync(default));
        Assert.Equal((C, "SELECT * FROM MSCluster_Node"), _cim.Queries.Single());
    }

    [Fact]
    public async Task Vm_roles_are_the_groups_of_type_111_with_owner_and_state()
    {
        Group("web", 111, "HV1", 0);
        Group("db", 111, "HV2", 4);
        Group("old", 111, "HV3", 2);
        Group("half", 111, "HV3", 3);
        Group("off", 111, "HV2", 1);
        Group("weird", 111, "HV2", 4294967295);

        var roles = await Cluster().ListVmRolesAsync(default);

        Assert.Equal(
        [
            new GroupOwner("db", "HV2", GroupState.Pending),
            new GroupOwner("half", "HV3", GroupState.PartialOnline),
            new GroupOwner("off", "HV2", GroupState.Offline),
            new GroupOwner("old", "HV3", GroupState.Failed),
            new GroupOwner("web", "HV1", GroupState.Online),
            new GroupOwner("weird", "HV2", GroupState.Unknown),
        ], roles);
        Assert.Equal("SELECT * FROM MSCluster_ResourceGroup WHERE GroupType = 111", _cim.Queries.Single().Wql);
    }

    [Fact]
    public async Task Adding_a_role_is_AddVirtualMachine_then_the_failover_policy_on_its_group()
    {
        _cim.OnMethod("MSCluster_Cluster", "AddVirtualMachine", call =>
        {
            Group((string)call["VirtualMachine"]!, 111, "HV1", 1);
            return CimMethodResult.Void;
        });

        await Cluster().AddVmRoleAsync("web", default);

        var add = _cim.Invocations.Single();
        Assert.Equal((C, _cluster.Path, "AddVirtualMachine"), (add.Namespace, add.Path, add.Method));
        Assert.Equal("web", add["VirtualMachine"]);
        var modify = _cim.Modifications.Single();
        Assert.Equal(C, modify.Namespace);
        Assert.Equal(@"\\HV1\root\MSCluster:MSCluster_ResourceGroup.Name=""web""", modify.Path);
        Assert.Equal(6, modify.Properties.Count);
        Assert.Equal(1u, Assert.IsType<uint>(modify.Properties["FailoverThreshold"]));
        Assert.Equal(6u, Assert.IsType<uint>(modify.Properties["FailoverPeriod"]));
        Assert.Equal(1u, Assert.IsType<uint>(modify.Properties["AutoFailbackType"]));
        Assert.Equal(true, modify.Properties["PersistentState"]);
        Assert.Equal(0, Assert.IsType<int>(modify.Properties["FailbackWindowStart"]));
        Assert.Equal(23, Assert.IsType<int>(modify.Properties["FailbackWindowEnd"]));
    }

    [Fact]
    public async Task The_failover_policy_comes_from_the_options()
    {
        _cim.OnMethod("MSCluster_Cluster", "AddVirtualMachine", call =>
        {
            Group("web", 111, "HV1", 1);
            return CimMethodResult.Void;
        });

        await Cluster(new WindowsFailoverClusterOptions { FailoverThreshold = 3, FailoverPeriodHours = 1, AutoFailback = false })
            .AddVmRoleAsync("web", default);

        var modify = _cim.Modifications.Single().Properties;
        Assert.Equal(3u, modify["FailoverThreshold"]);
        Assert.Equal(1u, modify["FailoverPeriod"]);
        Assert.Equal(0u, modify["AutoFailbackType"]);
    }

    [Fact]
    public async Task Adding_a_role_twice_is_AlreadyExists()
    {
        Group("web", 111, "HV1", 0);

        var e = await Assert.ThrowsAsync<HyperVException>(() => Cluster().AddVmRoleAsync("web", default));

        Assert.Equal(HyperVErrorKind.AlreadyExists, e.Kind);
        Assert.Empty(_cim.Invocations);
    }

    [Fact]
    public async Task Removing_a_role_is_DestroyGroup_with_option_1_which_keeps_the_VM()
    {
        var group = Group("web", 111, "HV1", 0);
        _cim.OnMethod("MSCluster_ResourceGroup", "DestroyGroup", _ => CimMethodResult.Void);

        await Cluster().RemoveVmRoleAsync("web", default);

        var call = _cim.Invocations.Single();
        Assert.Equal((C, group.Path, "DestroyGroup"), (call.Namespace, call.Path, call.Method));
        Assert.Equal(1u, Assert.IsType<uint>(call["Options"]));
        Assert.Single(call.Parameters);
    }

    [Fact]
    public async Task Removing_a_missing_role_is_NotFound_and_a_moving_one_InvalidState()
    {
        Group("moving", 111, "HV1", 4);

        var missing = await Assert.ThrowsAsync<HyperVException>(() => Cluster().RemoveVmRoleAsync("ghost", default));
        var moving = await Assert.ThrowsAsync<HyperVException>(() => Cluster().RemoveVmRoleAsync("moving", default));

        Assert.Equal(HyperVErrorKind.NotFound, missing.Kind);
        Assert.Equal(HyperVErrorKind.InvalidState, moving.Kind);
        Assert.Empty(_cim.Invocations);
    }
}

public sealed class ClusPropListTests
{
    private static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal));

    private static string Utf16Hex(string s) => Convert.ToHexString(Encoding.Unicode.GetBytes(s + "\0"));

    [Fact]
    public void The_live_migration_property_list_is_os_wins_byte_for_byte()
    {
        var expected = Hex(
            "02000000" // two properties
            + "03000400" + "20000000" + Utf16Hex("Virtual Machine") // CLUSPROP_SYNTAX_NAME, 32 bytes (15 chars + NUL), no padding needed
            + "02000100" + "04000000" + "04000000" // CLUSPROP_SYNTAX_LIST_VALUE_DWORD, 4 bytes, VmResdllContextLiveMigration
            + "00000000" // CLUSPROP_SYNTAX_ENDMARK
            + "03000400" + "3C000000" + Utf16Hex("Virtual Machine Configuration") // 60 bytes (29 chars + NUL)
            + "02000100" + "04000000" + "04000000"
            + "00000000");

        var actual = ClusPropList.ForVmMove(ClusterMoveKind.Live);

        Assert.Equal(144, expected.Length);
        Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(actual));
    }

    [Fact]
    public void A_quick_migration_asks_for_save_1()
    {
        var list = ClusPropList.Parse(ClusPropList.ForVmMove(ClusterMoveKind.Quick));

        Assert.Equal(1u, ClusPropList.GetDword(list, "Virtual Machine"));
        Assert.Equal(1u, ClusPropList.GetDword(list, "Virtual Machine Configuration"));
        Assert.Equal(ClusPropList.SyntaxListValueDword, list["Virtual Machine"].Syntax);
    }

    [Fact]
    public void Names_and_values_are_padded_to_a_DWORD_and_lengths_exclude_the_padding()
    {
        var bytes = ClusPropList.Build(("ab", ClusPropList.SyntaxListValueSz, Encoding.Unicode.GetBytes("xyz\0")));

        Assert.Equal(Hex(
            "01000000"
            + "03000400" + "06000000" + "6100" + "6200" + "0000" + "0000" // "ab\0" = 6 bytes + 2 bytes of padding
            + "03000100" + "08000000" + "7800" + "7900" + "7A00" + "0000" // "xyz\0" = 8 bytes, aligned
            + "00000000"), bytes);
    }

    [Fact]
    public void Parses_group_common_properties_with_several_values_per_property()
    {
        var bytes = ClusPropList.Build(
            ("GroupType", ClusPropList.SyntaxListValueDword, ClusPropList.Dword(111)),
            ("StatusInformation", ClusPropList.SyntaxListValueULargeInteger, ClusPropList.ULargeInteger(0x104)));
        // A property that carries a second value before its endmark (as some returned lists do): insert one after GroupType's value.
        var withExtra = new List<byte>(bytes);
        var afterFirstValue = 4 + 8 + 20 + 8 + 4; // count, name header, "GroupType\0", value header, DWORD
        withExtra.InsertRange(afterFirstValue, [.. ClusPropList.Dword(0x00010002), .. ClusPropList.Dword(4), .. ClusPropList.Dword(999)]);

        var list = ClusPropList.Parse(withExtra.ToArray());

        Assert.Equal(111u, ClusPropList.GetDword(list, "grouptype"));
        Assert.Equal(0x104UL, ClusPropList.GetULargeInteger(list, "StatusInformation"));
    }

    [Fact]
    public void A_truncated_list_is_a_format_error()
    {
        var bytes = ClusPropList.ForVmMove(ClusterMoveKind.Live);

        Assert.Throws<FormatException>(() => ClusPropList.Parse(bytes.AsSpan(0, 60)));
    }
}

/// <summary>Moves through clusapi: the call, the wait on the notify port and group state, timeouts and failures.</summary>
public sealed class WindowsFailoverClusterMoveTests
{
    private readonly FakeClusApi _api = new();
    private readonly FakeClock _clock = new();
    private readonly WindowsFailoverCluster _cluster;

    public WindowsFailoverClusterMoveTests()
    {
        _api.AddNode("1", "HV1");
        _api.AddNode("2", "HV2");
        _api.AddGroup("web", Online, "HV1");
        _cluster = new WindowsFailoverCluster(new RecordedCim(), _api,
            new WindowsFailoverClusterOptions { MovePollInterval = TimeSpan.FromSeconds(1), NotifyWaitMilliseconds = 10 }, _clock);
    }

    [Fact]
    public async Task A_live_move_calls_MoveClusterGroupEx_with_os_wins_flags_and_property_list_and_waits_for_Online_on_the_target()
    {
        _api.Script("web", new Step(Pending, "HV1"), new Step(Pending, "HV2"), new Step(Online, "HV2"));

        await _cluster.MoveVmRoleAsync("web", "HV2", ClusterMoveKind.Live, TimeSpan.FromMinutes(5), default);

        var move = Assert.Single(_api.Moves);
        Assert.Equal("web", move.Group);
        Assert.Equal("HV2", move.Node);
        Assert.Equal(2u | 4u | 8u, move.Flags); // RETURN_TO_SOURCE_NODE_ON_ERROR | QUEUE_ENABLED | HIGH_PRIORITY_START
        Assert.Equal(ClusPropList.ForVmMove(ClusterMoveKind.Live), move.PropertyList);
        Assert.Equal(0, _api.Cancels);
        Assert.Equal(0, _api.OpenHandles); // cluster, group, node and port all closed
        Assert.Equal(1, _api.PortsClosed);
        var filters = Assert.Single(_api.PortFilters);
        Assert.All(filters, f => Assert.Equal(ClusApiConstants.ObjectTypeGroup, f.ObjectType));
        Assert.Equal([0x8UL, 0x2UL, 0x10UL], filters.Select(f => f.FilterFlags));
        // The port existed before the move was asked for, so no notification could be missed.
        var calls = _api.Calls.ToList();
        Assert.True(calls.IndexOf("CreateClusterNotifyPortV2") < calls.IndexOf("MoveClusterGroupEx"));
    }

    [Fact]
    public async Task A_quick_move_sends_the_save_context()
    {
        _api.Script("web", new Step(Online, "HV2"));

        await _cluster.MoveVmRoleAsync("web", "HV2", ClusterMoveKind.Quick, TimeSpan.FromMinutes(5), default);

        Assert.Equal(ClusPropList.ForVmMove(ClusterMoveKind.Quick), _api.Moves.Single().PropertyList);
    }

    [Fact]
    public async Task Queued_and_pending_states_are_waited_through_until_Online_on_the_target()
    {
        _api.Script("web",
            new Step(Online, "HV1", Queued: true), // waiting in the move queue: still Online on the source
            new Step(Online, "HV1", Queued: true),
            new Step(Pending, "HV1"),
            new Step(Pending, "HV2"),
            new Step(PartialOnline, "HV2"),
            new Step(Online, "HV2", Queued: true), // not done while the status still says queued
            new Step(Online, "HV2"));

        await _cluster.MoveVmRoleAsync("web", "HV2", ClusterMoveKind.Live, TimeSpan.FromMinutes(5), default);

        Assert.Equal(8, _api.StateReads); // the check before the move, then the seven steps
        Assert.Equal(0, _api.Cancels);
    }

    [Fact]
    public async Task Online_on_the_source_before_the_move_shows_is_not_mistaken_for_a_failure()
    {
        _api.Script("web", new Step(Online, "HV1"), new Step(Online, "HV1"), new Step(Pending, "HV1"), new Step(Online, "HV2"));

        await _cluster.MoveVmRoleAsync("web", "HV2", ClusterMoveKind.Live, TimeSpan.FromMinutes(5), default);
    }

    [Fact]
    public async Task Back_online_on_the_source_after_the_move_started_is_JobFailed()
    {
        _api.Script("web", new Step(Pending, "HV1"), new Step(Online, "HV1"));

        var e = await Assert.ThrowsAsync<HyperVException>(() =>
            _cluster.MoveVmRoleAsync("web", "HV2", ClusterMoveKind.Live, TimeSpan.FromMinutes(5), default));

        Assert.Equal(HyperVErrorKind.JobFailed, e.Kind);
        Assert.Contains("returned the group to HV1", e.Message);
        Assert.Equal(0, _api.OpenHandles);
    }

    [Fact]
    public async Task A_state_notification_counts_as_the_move_having_started()
    {
        // The group never shows a transition in the reads, but the port reported one: Online on HV1 afterwards is a return.
        _api.OnMove = _ => _api.Notify("web", ClusApiConstants.GroupStateV2, FakeClusApi.StateBuffer(Pending));
        _api.Script("web", new Step(Online, "HV1"));
        var cluster = new WindowsFailoverCluster(new RecordedCim(), _api,
            new WindowsFailoverClusterOptions { MovePollInterval = TimeSpan.FromSeconds(1), NotifyWaitMilliseconds = 10 }, new RealTimeClock());

        var e = await Assert.ThrowsAsync<HyperVException>(() =>
            cluster.MoveVmRoleAsync("web", "HV2", ClusterMoveKind.Live, TimeSpan.FromMinutes(1), default));

        Assert.Equal(HyperVErrorKind.JobFailed, e.Kind);
        Assert.Contains("returned the group to HV1", e.Message);
    }

    [Fact]
    public async Task A_group_that_goes_Failed_is_JobFailed()
    {
        _api.Script("web", new Step(Pending, "HV1"), new Step(Failed, "HV2"));

        var e = await Assert.ThrowsAsync<HyperVException>(() =>
            _cluster.MoveVmRoleAsync("web", "HV2", ClusterMoveKind.Live, TimeSpan.FromMinutes(5), default));

        Assert.Equal(HyperVErrorKind.JobFailed, e.Kind);
    }

    [Fact]
    public async Task On_timeout_the_move_is_cancelled_and_Timeout_is_thrown()
    {
        _api.Script("web", new Step(Online, "HV1", Queued: true)); // stuck in the move queue

        var e = await Assert.ThrowsAsync<HyperVException>(() =>
            _cluster.MoveVmRoleAsync("web", "HV2", ClusterMoveKind.Live, TimeSpan.FromSeconds(30), default));

        Assert.Equal(HyperVErrorKind.Timeout, e.Kind);
        Assert.Equal(1, _api.Cancels);
        Assert.True(_clock.UtcNow - new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero) >= TimeSpan.FromSeconds(30));
        Assert.All(_clock.Delays, d => Assert.True(d <= TimeSpan.FromSeconds(1)));
        Assert.Equal(0, _api.OpenHandles);
    }

    [Fact]
    public async Task A_move_that_lands_while_being_cancelled_is_a_success()
    {
        _api.Script("web", new Step(Pending, "HV1"));
        // The read after the cancel finds the move done: as os-win, that is not a timeout.
        _api.OnCancel = () => _api.Script("web", new Step(Online, "HV2"));

        await _cluster.MoveVmRoleAsync("web", "HV2", ClusterMoveKind.Live, TimeSpan.FromSeconds(10), default);

        Assert.Equal(1, _api.Cancels);
    }

    [Fact]
    public async Task Cancellation_cancels_the_cluster_operation()
    {
        _api.Script("web", new Step(Pending, "HV1"));
        using var cts = new CancellationTokenSource();
        _api.OnMove = _ => cts.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            _cluster.MoveVmRoleAsync("web", "HV2", ClusterMoveKind.Live, TimeSpan.FromMinutes(5), cts.Token));

        Assert.Equal(1, _api.Cancels);
        Assert.Equal(0, _api.OpenHandles);
    }

    [Fact]
    public async Task Already_on_the_target_is_success_without_a_move()
    {
        await _cluster.MoveVmRoleAsync("web", "hv1", ClusterMoveKind.Live, TimeSpan.FromMinutes(5), default);

        Assert.Empty(_api.Moves);
    }

    [Fact]
    public async Task A_pending_role_missing_role_or_unknown_node_is_refused()
    {
        _api.AddGroup("moving", Pending, "HV1");

        var pending = await Assert.ThrowsAsync<HyperVException>(() => _cluster.MoveVmRoleAsync("moving", "HV2", ClusterMoveKind.Live, TimeSpan.FromMinutes(1), default));
        var missing = await Assert.ThrowsAsync<HyperVException>(() => _cluster.MoveVmRoleAsync("ghost", "HV2", ClusterMoveKind.Live, TimeSpan.FromMinutes(1), default));
        var node = await Assert.ThrowsAsync<HyperVException>(() => _cluster.MoveVmRoleAsync("web", "HV9", ClusterMoveKind.Live, TimeSpan.FromMinutes(1), default));

        Assert.Equal(HyperVErrorKind.InvalidState, pending.Kind);
        Assert.Equal(HyperVErrorKind.NotFound, missing.Kind);
        Assert.Equal(5013, missing.Code);
        Assert.Equal(HyperVErrorKind.NotFound, node.Kind);
        Assert.Equal(5042, node.Code);
        Assert.Empty(_api.Moves);
        Assert.Equal(0, _api.OpenHandles);
    }

    [Fact]
    public async Task A_refused_MoveClusterGroupEx_maps_its_Win32_code()
    {
        _api.MoveResult = ClusApiConstants.ErrorInvalidState;

        var e = await Assert.ThrowsAsync<HyperVException>(() => _cluster.MoveVmRoleAsync("web", "HV2", ClusterMoveKind.Live, TimeSpan.FromMinutes(1), default));

        Assert.Equal(HyperVErrorKind.InvalidState, e.Kind);
        Assert.Equal(5023, e.Code);
        Assert.Equal(0, _api.OpenHandles);
    }
}

/// <summary>Owner notifications through the clusapi notify port.</summary>
public sealed class WindowsFailoverClusterWatchTests
{
    private readonly FakeClusApi _api = new();
    private readonly FakeClock _clock = new();
    private readonly WindowsFailoverCluster _cluster;

    public WindowsFailoverClusterWatchTests()
    {
        _api.AddNode("1", "HV1");
        _api.AddNode("2", "HV2");
        _api.AddGroup("web", Pending, "HV1");
        _api.AddGroup("db", Online, "HV2");
        _api.AddGroup("Cluster Group", Online, "HV1", type: 1);
        _api.AddGroup("Available Storage", Online, "HV1", type: 2);
        _cluster = new WindowsFailoverCluster(new RecordedCim(), _api, new WindowsFailoverClusterOptions { NotifyWaitMilliseconds = 10 }, _clock);
    }

    private static async Task<List<OwnerChange>> Take(IAsyncEnumerator<OwnerChange> e, int count)
    {
        var list = new List<OwnerChange>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (list.Count < count)
        {
            Assert.True(await e.MoveNextAsync().AsTask().WaitAsync(timeout.Token));
            list.Add(e.Current);
        }

        return list;
    }

    [Fact]
    public async Task Owner_and_state_changes_of_VM_groups_only_with_the_new_owner_from_the_parent_node_id()
    {
        using var cts = new CancellationTokenSource();
        var stream = _cluster.WatchOwnerChangesAsync(cts.Token);
        await using var e = stream.GetAsyncEnumerator();

        _api.Notify("Cluster Group", ClusApiConstants.GroupOwnerNodeV2, parentId: "2");
        _api.Notify("web", ClusApiConstants.GroupOwnerNodeV2, parentId: "2");
        _api.Notify("Available Storage", ClusApiConstants.GroupStateV2, FakeClusApi.StateBuffer(Offline));
        _api.Notify("web", ClusApiConstants.GroupStateV2, FakeClusApi.StateBuffer(Online));
        _api.Notify("web", ClusApiConstants.GroupStateV2, FakeClusApi.StateBuffer(Online)); // the same again: reported once
        _api.Notify("db", ClusApiConstants.GroupStateV2, FakeClusApi.StateBuffer(Pending));
        _api.Notify("db", ClusApiConstants.GroupOwnerNodeV2, parentId: "1");
        var changes = await Take(e, 4);

        var at = _clock.UtcNow;
        Assert.Equal(
        [
            new OwnerChange("web", "HV2", GroupState.Pending, at), // the state it had (queried once)
            new OwnerChange("web", "HV2", GroupState.Online, at),
            new OwnerChange("db", "HV2", GroupState.Pending, at), // the owner it had (queried once)
            new OwnerChange("db", "HV1", GroupState.Pending, at),
        ], changes);
        var filters = Assert.Single(_api.PortFilters);
        Assert.Equal([(2u, 0x10UL), (2u, 0x8UL)], filters.Select(f => (f.ObjectType, f.FilterFlags)));
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await e.MoveNextAsync());
    }

    [Fact]
    public async Task Notifications_are_drained_and_buffered_while_the_consumer_is_slow()
    {
        using var cts = new CancellationTokenSource();
        var stream = _cluster.WatchOwnerChangesAsync(cts.Token); // the port is open from here on
        for (var i = 0; i < 200; i++)
            _api.Notify("web", ClusApiConstants.GroupStateV2, FakeClusApi.StateBuffer(i % 2 == 0 ? Online : Pending));

        // Nobody reads yet: the pump still empties the port.
        Assert.True(SpinWait.SpinUntil(() => _api.PortQueue.Count == 0, TimeSpan.FromSeconds(10)));
        await using var e = stream.GetAsyncEnumerator();
        var changes = new List<OwnerChange>();
        foreach (var _ in Enumerable.Range(0, 200))
        {
            changes.AddRange(await Take(e, 1));
            if (changes.Count % 50 == 0)
                await Task.Delay(20); // a slow consumer
        }

        Assert.Equal(200, changes.Count);
        Assert.Equal(Enumerable.Range(0, 200).Select(i => i % 2 == 0 ? GroupState.Online : GroupState.Pending), changes.Select(c => c.State));
        Assert.All(changes, c => Assert.Equal(("web", "HV1"), (c.VmName, c.OwnerNode)));
        await cts.CancelAsync();
    }

    [Fact]
    public async Task Ending_the_enumeration_closes_the_port_and_the_cluster_handle()
    {
        using var cts = new CancellationTokenSource();
        await using (var e = _cluster.WatchOwnerChangesAsync(cts.Token).GetAsyncEnumerator())
        {
            _api.Notify("web", ClusApiConstants.GroupOwnerNodeV2, parentId: "2");
            await Take(e, 1);
        }

        Assert.Equal(1, _api.PortsClosed);
        Assert.Equal(0, _api.OpenHandles);
    }

    [Fact]
    public async Task An_unknown_node_id_falls_back_to_the_groups_owner()
    {
        using var cts = new CancellationTokenSource();
        await using var e = _cluster.WatchOwnerChangesAsync(cts.Token).GetAsyncEnumerator();
        _api.AddNode("3", "HV3"); // joined after the id map was made? The map is refreshed on a miss.
        _api.Notify("db", ClusApiConstants.GroupOwnerNodeV2, parentId: "3");
        _api.Notify("web", ClusApiConstants.GroupOwnerNodeV2, parentId: "");

        var changes = await Take(e, 2);

        Assert.Equal(("db", "HV3"), (changes[0].VmName, changes[0].OwnerNode));
        Assert.Equal(("web", "HV1"), (changes[1].VmName, changes[1].OwnerNode));
        await cts.CancelAsync();
    }
}

/// <summary>Real time, for the one test where a notification must win the race against the poll.</summary>
public sealed class RealTimeClock : IHyperVClock
{
    public DateTimeOffset UtcNow => DateTimeOffset.UtcNow;

    public Task Delay(TimeSpan delay, CancellationToken ct) => Task.Delay(delay, ct);
}
