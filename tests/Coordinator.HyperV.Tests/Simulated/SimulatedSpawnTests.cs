using Coordinator.HyperV.Simulated;

namespace Coordinator.HyperV.Tests.Simulated;

/// <summary>
/// A spawn undoes only what it created, on the simulated host, whose file names behave as on NTFS: `VM1` and `vm1.` are
/// vm1's folder and disk even on a case-sensitive file system, so the collision a spawn of `VM1` next to vm1 meets on
/// Windows happens here too, and a failed spawn leaves the folder, disk and VM that were there before intact.
/// </summary>
public sealed class SimulatedSpawnTests : IAsyncLifetime
{
    private const long GiB = 1L << 30;
    private readonly SimCluster _cluster = new();
    private SimulatedHyperV _node = null!;

    public async Task InitializeAsync() => _node = await _cluster.NodeAsync("hv01", memoryMb: 8192, logicalProcessors: 4);

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    private string Folder(string name) => Path.Combine(_cluster.Csv, "instances", name);

    private VmSpawn Spawn(string name, int memoryMb = 1024) =>
        new(_node, _node, new VmSpawnPlan(name, memoryMb, 1, Folder(name), Path.Combine(Folder(name), name + ".vhdx"), null, 2 * GiB));

    /// <summary>vm1 spawned and running (or stopped), with a file of its own next to its disk.</summary>
    private async Task<string> Vm1Async(bool stopped)
    {
        await Spawn("vm1").RunAsync(default);
        if (stopped)
            await _node.StopVmAsync("vm1", default);
        var config = Path.Combine(Folder("vm1"), "vm1.vmcx");
        await File.WriteAllTextAsync(config, "vm1's configuration");
        return config;
    }

    private void AssertVm1Intact(string config, VmPowerState state)
    {
        Assert.Equal(["vm1"], Directory.GetDirectories(Path.Combine(_cluster.Csv, "instances")).Select(Path.GetFileName));
        Assert.Equal(2 * GiB, new FileInfo(Path.Combine(Folder("vm1"), "vm1.vhdx")).Length);
        Assert.Equal("vm1's configuration", File.ReadAllText(config));
        var vm = _cluster.Db.GetVm("vm1")!;
        Assert.Equal(("vm1", state, true), (vm.Name, vm.State, vm.Clustered));
        Assert.Equal(Path.Combine(Folder("vm1"), "vm1.vhdx"), vm.DiskPath);
        Assert.NotNull(_cluster.Db.GetGroup("vm1"));
    }

    [Theory]
    [InlineData("VM1", true)]
    [InlineData("vm1.", true)]
    [InlineData("Vm1 ", false)]
    public async Task A_spawn_whose_folder_is_another_vms_is_refused_and_undoes_nothing(string name, bool stopped)
    {
        var config = await Vm1Async(stopped);

        var spawn = Spawn(name);
        var e = await Assert.ThrowsAsync<HyperVException>(() => spawn.RunAsync(default));
        var failures = await spawn.UndoAsync();

        Assert.Equal(HyperVErrorKind.AlreadyExists, e.Kind);
        Assert.Empty(spawn.Created);
        Assert.Empty(failures);
        AssertVm1Intact(config, stopped ? VmPowerState.Off : VmPowerState.Running);
    }

    [Fact]
    public async Task Creating_a_disk_that_exists_under_another_NTFS_name_fails_without_touching_it()
    {
        var config = await Vm1Async(stopped: true);

        var e = await Assert.ThrowsAsync<HyperVException>(() =>
            _node.CreateDiskAsync(Path.Combine(Folder("VM1"), "VM1.vhdx"), null, DiskKind.Differencing, GiB, default));

        Assert.Equal(HyperVErrorKind.AlreadyExists, e.Kind);
        AssertVm1Intact(config, VmPowerState.Off);
    }

    [Fact]
    public async Task A_folder_is_created_once_an_empty_one_is_adopted_and_one_holding_files_is_refused()
    {
        Assert.True(await _node.CreateFolderAsync(Folder("a"), default));
        Assert.False(await _node.CreateFolderAsync(Folder("A."), default));
        await File.WriteAllTextAsync(Path.Combine(Folder("a"), "x"), "x");
        var e = await Assert.ThrowsAsync<HyperVException>(() => _node.CreateFolderAsync(Folder("A"), default));

        Assert.Equal(HyperVErrorKind.AlreadyExists, e.Kind);
        Assert.False(await _node.RemoveEmptyFolderAsync(Folder("A"), default));
        Assert.True(File.Exists(Path.Combine(Folder("a"), "x")));
        await _node.DeleteFolderAsync(Folder("A. "), default);
        Assert.False(Directory.Exists(Folder("a")));
        Assert.True(await _node.RemoveEmptyFolderAsync(Folder("a"), default)); // gone already
    }

    [Fact]
    public async Task A_spawn_that_fails_after_its_disk_removes_its_disk_and_the_folder_it_created()
    {
        var spawn = Spawn("big", memoryMb: 64 * 1024); // more memory than the node has: Define fails

        var e = await Assert.ThrowsAsync<HyperVException>(() => spawn.RunAsync(default));
        Assert.Equal([SpawnStep.FolderCreated, SpawnStep.DiskCreated], spawn.Created);
        var failures = await spawn.UndoAsync();

        Assert.Equal(HyperVErrorKind.InsufficientResources, e.Kind);
        Assert.Empty(failures);
        Assert.False(Directory.Exists(Folder("big")));
        Assert.Null(_cluster.Db.GetVm("big"));
    }

    [Fact]
    public async Task A_spawn_that_fails_in_an_empty_folder_that_was_there_keeps_the_folder()
    {
        Directory.CreateDirectory(Folder("big"));
        var spawn = Spawn("big", memoryMb: 64 * 1024);

        await Assert.ThrowsAsync<HyperVException>(() => spawn.RunAsync(default));
        Assert.True(spawn.FolderWasThere);
        Assert.Equal([SpawnStep.DiskCreated], spawn.Created);
        Assert.Empty(await spawn.UndoAsync());

        Assert.True(Directory.Exists(Folder("big")));
        Assert.Empty(Directory.GetFileSystemEntries(Folder("big")));
    }

    [Fact]
    public async Task The_folder_a_spawn_created_is_kept_when_someone_else_put_a_file_in_it()
    {
        var spawn = Spawn("big", memoryMb: 64 * 1024);
        await Assert.ThrowsAsync<HyperVException>(() => spawn.RunAsync(default));
        var other = Path.Combine(Folder("big"), "not-this-spawns.vhdx");
        await File.WriteAllTextAsync(other, "another spawn's disk");

        var failure = Assert.Single(await spawn.UndoAsync());

        Assert.Equal(SpawnStep.FolderCreated, failure.Step);
        Assert.Equal("another spawn's disk", File.ReadAllText(other));
        Assert.False(File.Exists(Path.Combine(Folder("big"), "big.vhdx")));
    }

    [Fact]
    public async Task A_spawn_that_fails_after_starting_undoes_every_step_backwards()
    {
        var spawn = Spawn("late");
        await spawn.RunAsync(default);
        Assert.Equal([SpawnStep.FolderCreated, SpawnStep.DiskCreated, SpawnStep.VmDefined, SpawnStep.RoleAdded, SpawnStep.VmStarted], spawn.Created);

        Assert.Empty(await spawn.UndoAsync()); // as after a ledger failure that follows the host's steps
        Assert.Empty(await spawn.UndoAsync()); // once only

        Assert.Null(_cluster.Db.GetVm("late"));
        Assert.Null(_cluster.Db.GetGroup("late"));
        Assert.False(Directory.Exists(Folder("late")));
    }
}
