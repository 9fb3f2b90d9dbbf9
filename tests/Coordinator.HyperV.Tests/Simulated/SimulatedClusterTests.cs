using Coordinator.HyperV.Simulated;

namespace Coordinator.HyperV.Tests.Simulated;

public sealed class SimulatedClusterTests : IAsyncLifetime
{
    private readonly SimCluster _cluster = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    private static async Task<HyperVException> Refused(HyperVErrorKind kind, Func<Task> action)
    {
        var e = await Assert.ThrowsAsync<HyperVException>(action);
        Assert.Equal(kind, e.Kind);
        return e;
    }

    private IReadOnlyList<(string Owner, GroupState State)> Changes(string vm, long after = 0) =>
        _cluster.Db.ReadOwnerChanges(after).Where(c => c.VmName == vm).Select(c => (c.OwnerNode, c.State)).ToList();

    [Fact]
    public void The_cluster_database_lives_beside_the_csv_folder_not_in_it()
    {
        var expected = Path.Combine(_cluster.Root, ".simcluster", "cluster.db");
        Assert.Equal(expected, SimulatedClusterDatabase.PathForCsv(_cluster.Csv));
        Assert.Equal(expected, SimulatedClusterDatabase.PathForCsv(_cluster.Csv + Path.DirectorySeparatorChar));
        Assert.Equal(expected, _cluster.DbPath);
        Assert.True(File.Exists(expected));
        Assert.Empty(Directory.EnumerateFileSystemEntries(_cluster.Csv, "*", SearchOption.AllDirectories));
        Assert.Throws<ArgumentException>(() => SimulatedClusterDatabase.PathForCsv(Path.GetPathRoot(_cluster.Csv)!));
    }

    [Fact]
    public async Task Nodes_join_the_cluster_when_they_start()
    {
        var a = await _cluster.NodeAsync("node-a");
        await _cluster.NodeAsync("node-b");
        await _cluster.NodeAsync("node-c", start: false);
        Assert.Equal(["node-a", "node-b"], await a.ListNodesAsync(default));
        Assert.All(_cluster.Db.ListNodes(), n => Assert.True(n.Up));
    }

    [Fact]
    public async Task Adding_a_role_makes_the_node_its_owner()
    {
        var a = await _cluster.NodeAsync("node-a");
        var b = await _cluster.NodeAsync("node-b");
        await _cluster.VmAsync(a, "ha");
        await _cluster.VmAsync(a, "cold", start: false);
        await a.AddVmRoleAsync("ha", default);
        await a.AddVmRoleAsync("cold", default);

        Assert.Equal([new GroupOwner("cold", "node-a", GroupState.Offline), new GroupOwner("ha", "node-a", GroupState.Online)],
            await b.ListVmRolesAsync(default));
        Assert.Equal([("node-a", GroupState.Online)], Changes("ha"));
        Assert.True(_cluster.Db.GetVm("ha")!.Clustered);
        await Refused(HyperVErrorKind.AlreadyExists, () => a.AddVmRoleAsync("ha", default));
        await Refused(HyperVErrorKind.NotFound, () => b.AddVmRoleAsync("ha", default)); // not on node-b

        await a.StartVmAsync("cold", default); // the group follows its VM
        Assert.Equal(GroupState.Online, _cluster.Db.GetGroup("cold")!.State);
        await a.StopVmAsync("cold", default);
        Assert.Equal([("node-a", GroupState.Offline), ("node-a", GroupState.Online), ("node-a", GroupState.Offline)], Changes("cold"));
    }

    [Fact]
    public async Task A_node_that_never_started_cannot_own_roles()
    {
        var a = await _cluster.NodeAsync("node-a", start: false);
        await _cluster.VmAsync(a, "ha");
        await Refused(HyperVErrorKind.InvalidState, () => a.AddVmRoleAsync("ha", default));
    }

    [Fact]
    public async Task Removing_a_role_keeps_the_vm_unclustered_where_it_is()
    {
        var a = await _cluster.NodeAsync("node-a");
        var b = await _cluster.NodeAsync("node-b");
        await _cluster.VmAsync(a, "ha", clustered: true);
        await b.RemoveVmRoleAsync("ha", default);
        Assert.Empty(await a.ListVmRolesAsync(default));
        Assert.Equal(VmPowerState.Running, (await a.GetVmAsync("ha", default))!.State);
        Assert.False(_cluster.Db.GetVm("ha")!.Clustered);
        await Refused(HyperVErrorKind.NotFound, () => a.RemoveVmRoleAsync("ha", default));
    }

    [Theory]
    [InlineData(ClusterMoveKind.Live, VmPowerState.Running)]
    [InlineData(ClusterMoveKind.Quick, VmPowerState.Saved)]
    public async Task A_move_goes_pending_then_online_on_the_target_with_the_disk_untouched(ClusterMoveKind kind, VmPowerState duringMove)
    {
        // A move long enough that the test sees it Pending however loaded the machine; it waits for the end anyway.
        var slow = SimCluster.Fast with { MoveDelay = TimeSpan.FromSeconds(5) };
        var a = await _cluster.NodeAsync("node-a", options: slow);
        var b = await _cluster.NodeAsync("node-b", options: slow);
        var definition = await _cluster.VmAsync(a, "ha", clustered: true);
        var diskBefore = new FileInfo(definition.DiskPath);
        var (length, written) = (diskBefore.Length, diskBefore.LastWriteTimeUtc);
        var mark = _cluster.Db.LastOwnerChangeSeq();

        var move = b.MoveVmRoleAsync("ha", "node-b", kind, TimeSpan.FromSeconds(10), default);
        await SimCluster.EventuallyAsync(() => move.IsCompleted || _cluster.Db.GetGroup("ha")!.State == GroupState.Pending, "the group is pending");
        Assert.False(move.IsCompleted, $"move completed: {move.Status} {move.Exception}");
        Assert.Equal("node-a", _cluster.Db.GetGroup("ha")!.OwnerNode);
        Assert.Equal(duringMove, _cluster.Db.GetVm("ha")!.State);
        await move;

        Assert.Equal(new GroupOwner("ha", "node-b", GroupState.Online), (await a.ListVmRolesAsync(default)).Single());
        Assert.Empty(await a.ListVmsAsync(default));
        Assert.Equal(new VmInfo("ha", VmPowerState.Running, 1024, 2, definition.DiskPath), await b.GetVmAsync("ha", default));
        var diskAfter = new FileInfo(definition.DiskPath);
        Assert.Equal((length, written), (diskAfter.Length, diskAfter.LastWriteTimeUtc));
        Assert.Equal([("node-a", GroupState.Pending), ("node-b", GroupState.Online)], Changes("ha", mark));

        await b.MoveVmRoleAsync("ha", "node-b", kind, TimeSpan.FromSeconds(10), default); // already there: success
        Assert.Equal([("node-a", GroupState.Pending), ("node-b", GroupState.Online)], Changes("ha", mark));
    }

    [Fact]
    public async Task A_move_is_refused_without_room_or_to_a_node_that_is_down_or_unknown()
    {
        var a = await _cluster.NodeAsync("node-a", memoryMb: 8192);
        var small = await _cluster.NodeAsync("small", memoryMb: 2048);
        await _cluster.NodeAsync("gone");
        await _cluster.VmAsync(small, "resident", memoryMb: 1500);
        await _cluster.VmAsync(a, "ha", memoryMb: 1024, clustered: true);
        var mark = _cluster.Db.LastOwnerChangeSeq();

        await Refused(HyperVErrorKind.InsufficientResources, () => a.MoveVmRoleAsync("ha", "small", ClusterMoveKind.Live, TimeSpan.FromSeconds(5), default));
        _cluster.Db.MarkNodeDown("gone");
        await Refused(HyperVErrorKind.InvalidState, () => a.MoveVmRoleAsync("ha", "gone", ClusterMoveKind.Live, TimeSpan.FromSeconds(5), default));
        await Refused(HyperVErrorKind.NotFound, () => a.MoveVmRoleAsync("ha", "nowhere", ClusterMoveKind.Live, TimeSpan.FromSeconds(5), default));
        await Refused(HyperVErrorKind.NotFound, () => a.MoveVmRoleAsync("no-role", "small", ClusterMoveKind.Live, TimeSpan.FromSeconds(5), default));

        Assert.Equal(new GroupOwner("ha", "node-a", GroupState.Online), _cluster.Db.GetGroup("ha"));
        Assert.Empty(Changes("ha", mark));
    }

    [Fact]
    public async Task A_failed_move_returns_the_role_to_its_source()
    {
        var a = await _cluster.NodeAsync("node-a");
        await _cluster.NodeAsync("node-b");
        await _cluster.VmAsync(a, "ha", clustered: true);
        var mark = _cluster.Db.LastOwnerChangeSeq();
        _cluster.Db.FailNextMoves("ha");

        var e = await Refused(HyperVErrorKind.JobFailed, () => a.MoveVmRoleAsync("ha", "node-b", ClusterMoveKind.Quick, TimeSpan.FromSeconds(5), default));
        Assert.Equal(SimulatedHyperV.JobFailedCode, e.Code);
        Assert.EndsWith("simulated move failure", e.Message);
        Assert.Equal(new GroupOwner("ha", "node-a", GroupState.Online), _cluster.Db.GetGroup("ha"));
        Assert.Equal(VmPowerState.Running, (await a.GetVmAsync("ha", default))!.State);
        Assert.Equal([("node-a", GroupState.Pending), ("node-a", GroupState.Online)], Changes("ha", mark));

        await a.MoveVmRoleAsync("ha", "node-b", ClusterMoveKind.Live, TimeSpan.FromSeconds(5), default); // one failure only
        Assert.Equal("node-b", _cluster.Db.GetGroup("ha")!.OwnerNode);
    }

    [Fact]
    public async Task A_move_that_times_out_returns_the_role_to_its_source()
    {
        var slow = SimCluster.Fast with { MoveDelay = TimeSpan.FromSeconds(30) }; // far beyond the 200 ms the move is given
        var a = await _cluster.NodeAsync("node-a", options: slow);
        await _cluster.NodeAsync("node-b", options: slow);
        await _cluster.VmAsync(a, "ha", clustered: true);

        await Refused(HyperVErrorKind.Timeout, () => a.MoveVmRoleAsync("ha", "node-b", ClusterMoveKind.Live, TimeSpan.FromMilliseconds(200), default));
        Assert.Equal(new GroupOwner("ha", "node-a", GroupState.Online), _cluster.Db.GetGroup("ha"));

        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => a.MoveVmRoleAsync("ha", "node-b", ClusterMoveKind.Quick, TimeSpan.FromSeconds(10), cts.Token));
        Assert.Equal(new GroupOwner("ha", "node-a", GroupState.Online), _cluster.Db.GetGroup("ha"));
        Assert.Equal(VmPowerState.Running, _cluster.Db.GetVm("ha")!.State);
    }

    [Fact]
    public async Task When_a_node_crashes_the_cluster_restarts_its_roles_on_the_survivors()
    {
        var a = await _cluster.NodeAsync("node-a");
        var b = await _cluster.NodeAsync("node-b", memoryMb: 4096);
        var c = await _cluster.NodeAsync("node-c", memoryMb: 4096);
        await _cluster.VmAsync(a, "ha1", memoryMb: 3000, clustered: true);
        await _cluster.VmAsync(a, "ha2", memoryMb: 3000, clustered: true);
        await _cluster.VmAsync(a, "cold", memoryMb: 512, start: false, clustered: true);
        await _cluster.VmAsync(a, "plain", memoryMb: 512);
        var mark = _cluster.Db.LastOwnerChangeSeq();

        await a.DisposeAsync(); // a crash: the heartbeat stops, the node is still registered

        await SimCluster.EventuallyAsync(
            () => _cluster.Db.ListGroups().All(g => g.OwnerNode != "node-a" && g.State != GroupState.Pending), "the roles fail over");
        // Each needs 3000 MiB: one per survivor. The offline role moves too and stays offline.
        Assert.Equal(VmPowerState.Running, (await b.GetVmAsync("ha1", default) ?? await c.GetVmAsync("ha1", default))!.State);
        Assert.Equal(VmPowerState.Running, (await b.GetVmAsync("ha2", default) ?? await c.GetVmAsync("ha2", default))!.State);
        Assert.NotEqual(_cluster.Db.GetVm("ha1")!.HostNode, _cluster.Db.GetVm("ha2")!.HostNode);
        Assert.Equal(VmPowerState.Off, _cluster.Db.GetVm("cold")!.State);
        Assert.All(_cluster.Db.ListGroups().Where(g => g.VmName != "cold"), g => Assert.Equal(GroupState.Online, g.State));
        foreach (var vm in new[] { "ha1", "ha2" })
        {
            var owner = _cluster.Db.GetGroup(vm)!.OwnerNode;
            Assert.Equal([("node-a", GroupState.Pending), (owner, GroupState.Online)], Changes(vm, mark));
        }

        Assert.Equal([("node-a", GroupState.Pending), (_cluster.Db.GetGroup("cold")!.OwnerNode, GroupState.Offline)], Changes("cold", mark));
        Assert.Equal(new SimulatedVm("plain", "node-a", VmPowerState.Off, 512, 2, _cluster.Db.GetVm("plain")!.DiskPath, false), _cluster.Db.GetVm("plain"));
        Assert.False(_cluster.Db.GetNode("node-a")!.Up);

        // node-a comes back: it is up again and gets nothing back but its unclustered VM.
        var back = await _cluster.NodeAsync("node-a");
        Assert.True(_cluster.Db.GetNode("node-a")!.Up);
        Assert.Equal(["plain"], (await back.ListVmsAsync(default)).Select(v => v.Name));
        await Task.Delay(300);
        Assert.DoesNotContain(_cluster.Db.ListGroups(), g => g.OwnerNode == "node-a");
    }

    [Fact]
    public async Task A_role_that_fits_nowhere_fails()
    {
        var a = await _cluster.NodeAsync("node-a");
        await _cluster.NodeAsync("node-b", memoryMb: 1024);
        await _cluster.VmAsync(a, "huge", memoryMb: 8192, clustered: true);
        var mark = _cluster.Db.LastOwnerChangeSeq();

        await a.DisposeAsync();
        await SimCluster.EventuallyAsync(() => _cluster.Db.GetGroup("huge")!.State == GroupState.Failed, "the role fails");
        Assert.Equal([("node-a", GroupState.Pending), ("node-a", GroupState.Failed)], Changes("huge", mark));
        Assert.Equal(VmPowerState.Off, _cluster.Db.GetVm("huge")!.State);
        await Task.Delay(300); // a failed role is not retried at every scan
        Assert.Equal(2, Changes("huge", mark).Count);
    }

    [Fact]
    public async Task Exactly_one_survivor_performs_a_failover()
    {
        // Long heartbeat intervals: the loops stay out of the way and the test runs the scans itself, all at once.
        var manual = SimCluster.Fast with { HeartbeatInterval = TimeSpan.FromHours(1), FailoverAfter = TimeSpan.FromSeconds(1) };
        var a = await _cluster.NodeAsync("node-a", options: manual);
        var survivors = new[]
        {
            await _cluster.NodeAsync("node-b", memoryMb: 65_536, options: manual),
            await _cluster.NodeAsync("node-c", memoryMb: 65_536, options: manual),
            await _cluster.NodeAsync("node-d", memoryMb: 65_536, options: manual),
        };
        for (var i = 0; i < 8; i++)
            await _cluster.VmAsync(a, $"ha{i}", memoryMb: 512, clustered: true);
        var mark = _cluster.Db.LastOwnerChangeSeq();
        await a.DisposeAsync();
        await Task.Delay(1200);

        foreach (var s in survivors)
            Assert.True(_cluster.Db.Heartbeat(s.NodeName)); // fresh heartbeats for all before anyone scans
        var results = await Task.WhenAll(survivors.SelectMany(s => Enumerable.Range(0, 5).Select(_ => Task.Run(s.RunServiceOnce))));

        var changes = _cluster.Db.ReadOwnerChanges(mark);
        Assert.Equal(16, changes.Count);
        Assert.Single(changes.Select(c => c.Actor).Distinct());
        Assert.Single(results, r => r.Count > 0);
        for (var i = 0; i < 8; i++)
        {
            var vm = $"ha{i}";
            Assert.Equal([GroupState.Pending, GroupState.Online], changes.Where(c => c.VmName == vm).Select(c => c.State));
            var owners = new List<string>();
            foreach (var s in survivors)
                if (await s.GetVmAsync(vm, default) is not null)
                    owners.Add(s.NodeName);
            Assert.Equal([_cluster.Db.GetGroup(vm)!.OwnerNode], owners);
        }

        // Most free memory first, ties by name: the eight 512 MiB roles spread over the three survivors.
        Assert.Equal([3, 3, 2], survivors.Select(s => _cluster.Db.ListVms(s.NodeName).Count));
        Assert.All(_cluster.Db.ListNodes(), n => Assert.Equal(n.Name != "node-a", n.Up));
    }

    [Fact]
    public async Task A_node_marked_down_loses_its_roles_and_stays_down_while_its_heartbeat_goes_on()
    {
        var a = await _cluster.NodeAsync("node-a");
        var b = await _cluster.NodeAsync("node-b");
        await _cluster.VmAsync(a, "ha", clustered: true);

        var changes = _cluster.Db.MarkNodeDown("node-a");
        Assert.Equal([("node-a", GroupState.Pending), ("node-b", GroupState.Online)], changes.Select(c => (c.OwnerNode, c.State)));
        Assert.Equal(SimulatedClusterDatabase.AdminActor, changes[0].Actor);
        await Task.Delay(300);
        Assert.False(_cluster.Db.GetNode("node-a")!.Up);
        Assert.Empty(await a.ListVmsAsync(default));
        Assert.Equal(VmPowerState.Running, (await b.GetVmAsync("ha", default))!.State);
    }

    [Fact]
    public async Task Watching_sees_every_owner_change_in_order_from_the_moment_of_the_call()
    {
        var a = await _cluster.NodeAsync("node-a");
        var b = await _cluster.NodeAsync("node-b");
        var c = await _cluster.NodeAsync("node-c");
        await _cluster.VmAsync(a, "w1", clustered: true);
        await _cluster.VmAsync(a, "w2", clustered: true);
        var mark = _cluster.Db.LastOwnerChangeSeq();

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var watchers = new[] { a, c }.Select(n => n.WatchOwnerChangesAsync(cts.Token)).ToList();
        var seen = watchers.Select(w => Task.Run(async () =>
        {
            var list = new List<OwnerChange>();
            await foreach (var change in w)
            {
                list.Add(change);
                if (change is { VmName: "w2", OwnerNode: "node-c", State: GroupState.Online } && list.Count > 1)
                    break;
            }

            return list;
        })).ToList();

        var bouncing = Task.Run(() => _cluster.Db.Bounce("w1", ["node-b", "node-c", "node-a"], times: 10));
        await b.MoveVmRoleAsync("w2", "node-b", ClusterMoveKind.Live, TimeSpan.FromSeconds(5), default);
        await bouncing;
        _cluster.Db.ForceOwner("w2", "node-c", GroupState.Online); // the last change

        var expected = _cluster.Db.ReadOwnerChanges(mark).Select(r => r.ToOwnerChange()).ToList();
        Assert.Equal(2 * 3 * 10 + 2 + 1, expected.Count);
        foreach (var watcher in seen)
            Assert.Equal(expected, await watcher);
    }

    [Fact]
    public async Task Bounce_ends_with_one_consistent_owner()
    {
        var a = await _cluster.NodeAsync("node-a");
        var b = await _cluster.NodeAsync("node-b");
        var c = await _cluster.NodeAsync("node-c");
        await _cluster.VmAsync(a, "csv-trouble", clustered: true);
        var mark = _cluster.Db.LastOwnerChangeSeq();

        _cluster.Db.Bounce("csv-trouble", ["node-b", "node-a", "node-c"], times: 3);

        var changes = Changes("csv-trouble", mark);
        Assert.Equal(18, changes.Count);
        Assert.Equal(("node-a", GroupState.Pending), changes[0]);
        Assert.Equal(("node-c", GroupState.Online), changes[^1]);
        Assert.Equal(new GroupOwner("csv-trouble", "node-c", GroupState.Online), (await a.ListVmRolesAsync(default)).Single());
        var hosts = new List<string>();
        foreach (var n in new[] { a, b, c })
            if (await n.GetVmAsync("csv-trouble", default) is { State: VmPowerState.Running })
                hosts.Add(n.NodeName);
        Assert.Equal(["node-c"], hosts);

        _cluster.Db.Bounce("csv-trouble", ["node-b"], times: 1, pendingBetween: false);
        Assert.Equal([("node-b", GroupState.Online)], Changes("csv-trouble", mark).Skip(18));
    }

    [Fact]
    public async Task Force_owner_moves_the_vm_with_its_group()
    {
        var a = await _cluster.NodeAsync("node-a");
        var b = await _cluster.NodeAsync("node-b");
        await _cluster.VmAsync(a, "ha", clustered: true);
        _cluster.Db.ForceOwner("ha", "node-b", GroupState.Online);
        Assert.Null(await a.GetVmAsync("ha", default));
        Assert.Equal(VmPowerState.Running, (await b.GetVmAsync("ha", default))!.State);
        _cluster.Db.ForceOwner("ha", "node-b", GroupState.Failed);
        Assert.Equal(VmPowerState.Off, (await b.GetVmAsync("ha", default))!.State);
        Assert.Throws<HyperVException>(() => _cluster.Db.ForceOwner("no-role", "node-b", GroupState.Online));
    }

    [Fact]
    public async Task A_moving_role_refuses_power_changes_and_removal()
    {
        var slow = SimCluster.Fast with { MoveDelay = TimeSpan.FromSeconds(5) }; // room for the four refusals on a loaded machine
        var a = await _cluster.NodeAsync("node-a", options: slow);
        await _cluster.NodeAsync("node-b", options: slow);
        await _cluster.VmAsync(a, "ha", clustered: true);
        var move = a.MoveVmRoleAsync("ha", "node-b", ClusterMoveKind.Quick, TimeSpan.FromSeconds(10), default);
        await SimCluster.EventuallyAsync(() => _cluster.Db.GetGroup("ha")!.State == GroupState.Pending, "the group is pending");
        await Refused(HyperVErrorKind.InvalidState, () => a.StopVmAsync("ha", default));
        await Refused(HyperVErrorKind.InvalidState, () => a.StartVmAsync("ha", default));
        await Refused(HyperVErrorKind.InvalidState, () => a.RemoveVmRoleAsync("ha", default));
        await Refused(HyperVErrorKind.InvalidState, () => a.MoveVmRoleAsync("ha", "node-b", ClusterMoveKind.Live, TimeSpan.FromSeconds(5), default));
        await move;
        Assert.Equal(new GroupOwner("ha", "node-b", GroupState.Online), _cluster.Db.GetGroup("ha"));
    }

    [Fact]
    public async Task A_move_abandoned_by_a_dead_requester_is_settled_by_the_cluster_service()
    {
        var a = await _cluster.NodeAsync("node-a");
        await _cluster.NodeAsync("node-b");
        await _cluster.VmAsync(a, "ha", clustered: true);
        var mark = _cluster.Db.LastOwnerChangeSeq();

        _cluster.Db.ForceOwner("ha", "node-a", GroupState.Pending, settleAfter: TimeSpan.FromMilliseconds(300));
        await SimCluster.EventuallyAsync(() => _cluster.Db.GetGroup("ha")!.State != GroupState.Pending, "the move is settled");
        Assert.Equal(new GroupOwner("ha", "node-a", GroupState.Online), _cluster.Db.GetGroup("ha"));
        Assert.Equal(VmPowerState.Running, (await a.GetVmAsync("ha", default))!.State);
        Assert.Equal([("node-a", GroupState.Pending), ("node-a", GroupState.Online)], Changes("ha", mark));

        _cluster.Db.ForceOwner("ha", "node-a", GroupState.Pending); // no deadline: pending until changed again
        await Task.Delay(400);
        Assert.Equal(GroupState.Pending, _cluster.Db.GetGroup("ha")!.State);
    }
}
