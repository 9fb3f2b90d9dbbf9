using System.Runtime.CompilerServices;
using Coordinator.HyperV.Windows;

namespace Coordinator.HyperV.Tests.Windows;

/// <summary>
/// A spawn on the Windows back-end (recorded WMI shapes, NTFS-like fake files) undoes only what it created: a folder
/// that already holds another VM's files (`VM1` next to vm1) is refused before any WMI call, an empty folder that was
/// there is kept, and a disk, VM and folder that the spawn did create are removed.
/// </summary>
public sealed class WindowsSpawnTests
{
    private const string V = CimNames.Virtualization;
    private const string Instances = @"C:\ClusterStorage\Volume1\instances";
    private readonly HyperVShapes _hv = new();
    private readonly FakeFiles _files = new();
    private readonly RolesOnly _cluster = new();
    private readonly WindowsHyperVHost _host;

    public WindowsSpawnTests() => _host = new WindowsHyperVHost(_hv.Cim, "HV1", new WindowsHyperVHostOptions(), new FakeClock(), _files);

    private RecordedCim Cim => _hv.Cim;

    private VmSpawn Spawn(string name) =>
        new(_host, _cluster, new VmSpawnPlan(name, 1024, 1, $@"{Instances}\{name}", $@"{Instances}\{name}\{name}.vhdx", null, 2L << 30));

    private CimReference CompletedJob() => Cim.AddJob(new(CimJobRunner.JobStateRunning), new(CimJobRunner.JobStateCompleted));

    private CimReference FailedJob(string why) => Cim.AddJob(new RecordedCim.JobStep(CimJobRunner.JobStateException, 32768, why));

    /// <summary>CreateVirtualHardDisk makes the file (as the provider does), or fails its job.</summary>
    private void WireDisk(string? failure = null) =>
        Cim.OnMethod("Msvm_ImageManagementService", "CreateVirtualHardDisk", call =>
        {
            if (failure is not null)
                return RecordedCim.Result(4096, ("Job", FailedJob(failure)));
            _files.Files.Add((string)((CimEmbeddedInstance)call["VirtualDiskSettingData"]!)["Path"]!);
            return RecordedCim.Result(4096, ("Job", CompletedJob()));
        });

    private void AssertVm1Intact()
    {
        Assert.True(_files.FolderExists($@"{Instances}\vm1"));
        Assert.Contains($@"{Instances}\vm1\vm1.vhdx", _files.Files);
        Assert.Contains($@"{Instances}\vm1\Virtual Machines\vm1.vmcx", _files.Files);
        Assert.Equal(2, _files.Files.Count);
    }

    [Theory]
    [InlineData("VM1")]
    [InlineData("vm1.")]
    [InlineData("vm1")]
    public async Task A_spawn_into_a_folder_holding_another_vms_files_is_refused_before_any_WMI_call_and_undoes_nothing(string name)
    {
        _hv.AddVm("vm1", enabledState: 3, vhd: $@"{Instances}\vm1\vm1.vhdx");
        _files.Folders.Add($@"{Instances}\vm1");
        _files.Files.Add($@"{Instances}\vm1\vm1.vhdx");
        _files.Files.Add($@"{Instances}\vm1\Virtual Machines\vm1.vmcx");
        var spawn = Spawn(name);

        var e = await Assert.ThrowsAsync<HyperVException>(() => spawn.RunAsync(default));
        var failures = await spawn.UndoAsync();

        Assert.Equal(HyperVErrorKind.AlreadyExists, e.Kind);
        Assert.Empty(spawn.Created);
        Assert.Empty(failures);
        Assert.Empty(Cim.Invocations);
        Assert.Empty(_cluster.Calls);
        AssertVm1Intact();
        Assert.Single(Cim.Query(V, "SELECT * FROM Msvm_ComputerSystem WHERE Caption = 'Virtual Machine'"));
    }

    [Fact]
    public async Task An_existing_disk_is_refused_without_a_WMI_call_and_its_empty_folder_that_was_there_is_kept()
    {
        _files.Folders.Add($@"{Instances}\web");
        _files.Files.Add($@"C:\ClusterStorage\Volume1\elsewhere.vhdx");
        var spawn = new VmSpawn(_host, _cluster, new VmSpawnPlan("web", 1024, 1, $@"{Instances}\web", @"C:\ClusterStorage\Volume1\ELSEWHERE.vhdx.", null, 1L << 30));

        var e = await Assert.ThrowsAsync<HyperVException>(() => spawn.RunAsync(default));
        Assert.Empty(await spawn.UndoAsync());

        Assert.Equal(HyperVErrorKind.AlreadyExists, e.Kind);
        Assert.True(spawn.FolderWasThere);
        Assert.Empty(Cim.Invocations);
        Assert.Contains(@"C:\ClusterStorage\Volume1\elsewhere.vhdx", _files.Files);
        Assert.True(_files.FolderExists($@"{Instances}\web"));
    }

    [Fact]
    public async Task A_disk_job_that_fails_in_a_folder_that_was_there_deletes_nothing()
    {
        _files.Folders.Add($@"{Instances}\web");
        WireDisk(failure: "The system cannot find the path specified.");
        var spawn = Spawn("web");

        var e = await Assert.ThrowsAsync<HyperVException>(() => spawn.RunAsync(default));
        Assert.Empty(await spawn.UndoAsync());

        Assert.Equal(HyperVErrorKind.JobFailed, e.Kind);
        Assert.Empty(spawn.Created);
        Assert.True(_files.FolderExists($@"{Instances}\web"));
        Assert.Empty(Cim.Calls("DestroySystem"));
    }

    [Fact]
    public async Task A_spawn_whose_role_cannot_be_added_destroys_its_VM_deletes_its_disk_and_removes_its_folder()
    {
        WireDisk();
        Cim.OnMethod("Msvm_VirtualSystemManagementService", "DefineSystem", call =>
        {
            var vm = _hv.AddVm("web", memoryMb: 1024, vcpus: 1);
            return RecordedCim.Result(4096, ("Job", CompletedJob()), ("ResultingSystem", vm.System.AsReference()));
        });
        Cim.OnMethod("Msvm_VirtualSystemManagementService", "ModifyResourceSettings", _ => RecordedCim.Result(0));
        var added = 0;
        Cim.OnMethod("Msvm_VirtualSystemManagementService", "AddResourceSettings", call =>
        {
            var settings = ((CimEmbeddedInstance[])call["ResourceSettings"]!)[0];
            var resource = Cim.Add(V, settings.ClassName, new Dictionary<string, object?> { ["InstanceID"] = $"Microsoft:r{++added}" }, "InstanceID");
            return RecordedCim.Result(0, ("ResultingResourceSettings", new[] { resource.AsReference() }));
        });
        Cim.OnMethod("Msvm_VirtualSystemManagementService", "DestroySystem", _ => RecordedCim.Result(4096, ("Job", CompletedJob())));
        _cluster.AddFailure = new HyperVException(HyperVErrorKind.Failed, "the cluster service is not running");
        var spawn = Spawn("web");

        await Assert.ThrowsAsync<HyperVException>(() => spawn.RunAsync(default));
        Assert.Equal([SpawnStep.FolderCreated, SpawnStep.DiskCreated, SpawnStep.VmDefined], spawn.Created);
        Assert.Empty(await spawn.UndoAsync());

        Assert.Single(Cim.Calls("DestroySystem"));
        Assert.Empty(_files.Files);
        Assert.False(_files.FolderExists($@"{Instances}\web"));
        Assert.Equal(["add web"], _cluster.Calls);
    }

    /// <summary>Only the role calls a spawn makes; every other call fails the test.</summary>
    private sealed class RolesOnly : IFailoverCluster
    {
        public List<string> Calls { get; } = [];

        public Exception? AddFailure { get; set; }

        public Task AddVmRoleAsync(string vmName, CancellationToken ct)
        {
            Calls.Add("add " + vmName);
            return AddFailure is { } e ? Task.FromException(e) : Task.CompletedTask;
        }

        public Task RemoveVmRoleAsync(string vmName, CancellationToken ct)
        {
            Calls.Add("remove " + vmName);
            return Task.CompletedTask;
        }

        public Task<IReadOnlyList<string>> ListNodesAsync(CancellationToken ct) => throw new NotSupportedException();

        public Task MoveVmRoleAsync(string vmName, string targetNode, ClusterMoveKind kind, TimeSpan timeout, CancellationToken ct) =>
            throw new NotSupportedException();

        public Task<IReadOnlyList<GroupOwner>> ListVmRolesAsync(CancellationToken ct) => throw new NotSupportedException();

        public async IAsyncEnumerable<OwnerChange> WatchOwnerChangesAsync([EnumeratorCancellation] CancellationToken ct)
        {
            await Task.CompletedTask;
            throw new NotSupportedException();
#pragma warning disable CS0162
            yield break;
#pragma warning restore CS0162
        }
    }
}
