using Coordinator.HyperV;
using Coordinator.HyperV.Windows;

namespace Coordinator.HyperV.Tests.Windows;

public sealed class WindowsHyperVHostTests
{
    private const string V = CimNames.Virtualization;
    private readonly HyperVShapes _hv = new();
    private readonly FakeClock _clock = new();
    private readonly FakeFiles _files = new();
    private readonly WindowsHyperVHost _host;

    public WindowsHyperVHostTests()
    {
        _host = new WindowsHyperVHost(_hv.Cim, "HV1", new WindowsHyperVHostOptions(), _clock, _files);
    }

    private RecordedCim Cim => _hv.Cim;

    private CimReference CompletedJob() => Cim.AddJob(new(CimJobRunner.JobStateRunning), new(CimJobRunner.JobStateCompleted));

    // ------------------------------------------------------------------ reading

    [Fact]
    public async Task Capacity_comes_from_Win32_ComputerSystem()
    {
        var capacity = await _host.GetCapacityAsync(default);

        Assert.Equal(new HostCapacity("HV1", 262_144, 48), capacity);
        Assert.Contains((CimNames.Cimv2, "SELECT * FROM Win32_ComputerSystem"), Cim.Queries);
    }

    [Fact]
    public async Task List_maps_every_VM_with_its_memory_vcpus_disk_and_state()
    {
        _hv.AddVm("web", enabledState: 2, memoryMb: 4096, vcpus: 4, vhd: @"C:\ClusterStorage\Volume1\web.vhdx");
        _hv.AddVm("db", enabledState: 3, memoryMb: 8192, vcpus: 8, vhd: @"C:\ClusterStorage\Volume1\db.vhdx");
        _hv.AddVm("paused", enabledState: 9);
        _hv.AddVm("saved", enabledState: 6);
        _hv.AddVm("legacy-saved", enabledState: 32769);
        _hv.AddVm("starting", enabledState: 10);
        _hv.AddSnapshotSettings(memoryMb: 999);

        var vms = await _host.ListVmsAsync(default);

        Assert.Equal(
        [
            new VmInfo("db", VmPowerState.Off, 8192, 8, @"C:\ClusterStorage\Volume1\db.vhdx"),
            new VmInfo("legacy-saved", VmPowerState.Saved, 2048, 2, null),
            new VmInfo("paused", VmPowerState.Paused, 2048, 2, null),
            new VmInfo("saved", VmPowerState.Saved, 2048, 2, null),
            new VmInfo("starting", VmPowerState.Starting, 2048, 2, null),
            new VmInfo("web", VmPowerState.Running, 4096, 4, @"C:\ClusterStorage\Volume1\web.vhdx"),
        ], vms);
        // The host's own Msvm_ComputerSystem is not a VM; four queries whatever the number of VMs.
        Assert.Equal(
        [
            "SELECT * FROM Msvm_ComputerSystem WHERE Caption = 'Virtual Machine'",
            "SELECT * FROM Msvm_MemorySettingData",
            "SELECT * FROM Msvm_ProcessorSettingData",
            "SELECT * FROM Msvm_StorageAllocationSettingData WHERE ResourceSubType = 'Microsoft:Hyper-V:Virtual Hard Disk'",
        ], Cim.Queries.Select(q => q.Wql));
    }

    [Fact]
    public async Task Get_finds_one_VM_by_ElementName_and_its_settings_by_InstanceID_prefix()
    {
        var vm = _hv.AddVm("web", enabledState: 2, memoryMb: 4096, vcpus: 4, vhd: @"C:\ClusterStorage\Volume1\web.vhdx");
        _hv.AddVm("other", memoryMb: 1024);

        var info = await _host.GetVmAsync("web", default);

        Assert.Equal(new VmInfo("web", VmPowerState.Running, 4096, 4, @"C:\ClusterStorage\Volume1\web.vhdx"), info);
        Assert.Equal(
        [
            "SELECT * FROM Msvm_ComputerSystem WHERE Caption = 'Virtual Machine' AND ElementName = 'web'",
            $"SELECT * FROM Msvm_MemorySettingData WHERE InstanceID LIKE 'Microsoft:{vm.Id}%'",
            $"SELECT * FROM Msvm_ProcessorSettingData WHERE InstanceID LIKE 'Microsoft:{vm.Id}%'",
            $"SELECT * FROM Msvm_StorageAllocationSettingData WHERE InstanceID LIKE 'Microsoft:{vm.Id}%' AND ResourceSubType = 'Microsoft:Hyper-V:Virtual Hard Disk'",
        ], Cim.Queries.Select(q => q.Wql));
    }

    [Fact]
    public async Task Get_of_a_missing_VM_is_null_and_names_are_quoted_for_WQL()
    {
        Assert.Null(await _host.GetVmAsync(@"o'brien\vm", default));
        Assert.Equal(@"SELECT * FROM Msvm_ComputerSystem WHERE Caption = 'Virtual Machine' AND ElementName = 'o\'brien\\vm'", Cim.Queries.Single().Wql);
    }

    // ------------------------------------------------------------------ define

    /// <summary>Wires DefineSystem / Modify / AddResourceSettings like the provider: DefineSystem creates the VM (job),
    /// AddResourceSettings returns references to the new resources.</summary>
    private HyperVShapes.Vm? WireDefine(string name, Func<string, CimMethodResult?>? addOverride = null)
    {
        HyperVShapes.Vm? created = null;
        Cim.OnMethod("Msvm_VirtualSystemManagementService", "DefineSystem", call =>
        {
            created = _hv.AddVm(name, memoryMb: 1024, vcpus: 1);
            return RecordedCim.Result(4096, ("Job", CompletedJob()), ("ResultingSystem", created.System.AsReference()));
        });
        Cim.OnMethod("Msvm_VirtualSystemManagementService", "ModifyResourceSettings", call =>
            RecordedCim.Result(0, ("ResultingResourceSettings", Array.Empty<CimReference>())));
        var added = 0;
        Cim.OnMethod("Msvm_VirtualSystemManagementService", "AddResourceSettings", call =>
        {
            var settings = ((CimEmbeddedInstance[])call["ResourceSettings"]!)[0];
            var subType = (string)Cim.Get(settings.BasedOn!)["ResourceSubType"]!;
            if (addOverride?.Invoke(subType) is { } overridden)
                return overridden;
            var resource = Cim.Add(V, settings.ClassName, new Dictionary<string, object?>
            {
                ["InstanceID"] = $@"Microsoft:{created!.Id}\{++added}",
                ["ResourceSubType"] = subType,
            }, "InstanceID");
            return RecordedCim.Result(4096, ("Job", CompletedJob()), ("ResultingResourceSettings", new[] { resource.AsReference() }));
        });
        Cim.OnMethod("Msvm_VirtualSystemManagementService", "DestroySystem", call =>
            RecordedCim.Result(4096, ("Job", CompletedJob())));
        return created;
    }

    [Fact]
    public async Task Define_is_DefineSystem_then_memory_processor_then_controller_drive_and_vhd()
    {
        _files.Files.Add(@"C:\ClusterStorage\Volume1\vms\web\web.vhdx");
        WireDefine("web");

        await _host.DefineVmAsync(new VmDefinition("web", 4096, 4, @"C:\ClusterStorage\Volume1\vms\web\web.vhdx"), default);

        var calls = Cim.Invocations.Select(i => $"{i.ClassName}.{i.Method}").ToList();
        Assert.Equal(
        [
            "Msvm_VirtualSystemManagementService.DefineSystem",
            "Msvm_VirtualSystemManagementService.ModifyResourceSettings",
            "Msvm_VirtualSystemManagementService.ModifyResourceSettings",
            "Msvm_VirtualSystemManagementService.AddResourceSettings",
            "Msvm_VirtualSystemManagementService.AddResourceSettings",
            "Msvm_VirtualSystemManagementService.AddResourceSettings",
        ], calls);
        Assert.All(Cim.Invocations, i => Assert.Equal(V, i.Namespace));
        Assert.All(Cim.Invocations, i => Assert.Equal(_hv.Vsms.Path, i.Path));
        var vm = Cim.Calls("DefineSystem").Single();
        var systemSettings = Assert.IsType<CimEmbeddedInstance>(vm["SystemSettings"]);
        Assert.Equal("Msvm_VirtualSystemSettingData", systemSettings.ClassName);
        Assert.Null(systemSettings.BasedOn);
        Assert.Equal("web", systemSettings["ElementName"]);
        Assert.Equal("Microsoft:Hyper-V:SubType:2", systemSettings["VirtualSystemSubType"]);
        Assert.Equal((ushort)2, systemSettings["AutomaticStartupAction"]);
        Assert.Equal(@"C:\ClusterStorage\Volume1\vms\web", systemSettings["ConfigurationDataRoot"]);
        Assert.Equal(@"C:\ClusterStorage\Volume1\vms\web", systemSettings["SnapshotDataRoot"]);
        Assert.Equal(@"C:\ClusterStorage\Volume1\vms\web", systemSettings["SwapFileDataRoot"]);
        Assert.Empty(Assert.IsType<CimEmbeddedInstance[]>(vm["ResourceSettings"]));

        var memoryCall = Cim.Calls("ModifyResourceSettings")[0];
        var memory = Assert.Single(Assert.IsType<CimEmbeddedInstance[]>(memoryCall["ResourceSettings"]));
        Assert.Equal("Msvm_MemorySettingData", memory.ClassName);
        Assert.StartsWith(@"\\HV1\root\virtualization\v2:Msvm_MemorySettingData.InstanceID=""Microsoft:", memory.BasedOn);
        Assert.Equal(4096UL, memory["VirtualQuantity"]);
        Assert.Equal(4096UL, memory["Reservation"]);
        Assert.Equal(4096UL, memory["Limit"]);
        Assert.Equal(false, memory["DynamicMemoryEnabled"]);

        var processor = Assert.Single(Assert.IsType<CimEmbeddedInstance[]>(Cim.Calls("ModifyResourceSettings")[1]["ResourceSettings"]));
        Assert.Equal("Msvm_ProcessorSettingData", processor.ClassName);
        Assert.Equal(4UL, processor["VirtualQuantity"]);
        Assert.Equal(4UL, processor["Reservation"]);
        Assert.Equal(100000UL, processor["Limit"]);

        var adds = Cim.Calls("AddResourceSettings");
        Assert.All(adds, a => Assert.StartsWith(@"\\HV1\root\virtualization\v2:Msvm_VirtualSystemSettingData.InstanceID=""Microsoft:",
            Assert.IsType<CimReference>(a["AffectedConfiguration"]).Path));
        var controller = Assert.Single((CimEmbeddedInstance[])adds[0]["ResourceSettings"]!);
        Assert.Equal(_hv.ScsiTemplate.Path, controller.BasedOn);
        Assert.Matches(@"^\{[0-9A-F-]{36}\}$", Assert.Single((string[])controller["VirtualSystemIdentifiers"]!));
        var drive = Assert.Single((CimEmbeddedInstance[])adds[1]["ResourceSettings"]!);
        Assert.Equal(_hv.DriveTemplate.Path, drive.BasedOn);
        Assert.EndsWith(@"\1""", (string)drive["Parent"]!); // the controller AddResourceSettings returned
        Assert.Equal("0", drive["AddressOnParent"]);
        Assert.Equal("0", drive["Address"]);
        var vhd = Assert.Single((CimEmbeddedInstance[])adds[2]["ResourceSettings"]!);
        Assert.Equal("Msvm_StorageAllocationSettingData", vhd.ClassName);
        Assert.Equal(_hv.VhdTemplate.Path, vhd.BasedOn);
        Assert.EndsWith(@"\2""", (string)vhd["Parent"]!); // the drive
        Assert.Equal(new[] { @"C:\ClusterStorage\Volume1\vms\web\web.vhdx" }, vhd["HostResource"]);
        Assert.Contains(Cim.Queries, q => q.Wql ==
            @"SELECT * FROM Msvm_ResourceAllocationSettingData WHERE ResourceSubType = 'Microsoft:Hyper-V:Synthetic SCSI Controller' AND InstanceID LIKE '%\\Default'");
    }

    [Fact]
    public async Task Define_of_an_existing_name_is_AlreadyExists_and_of_a_missing_disk_NotFound()
    {
        _hv.AddVm("web");
        _files.Files.Add(@"D:\web.vhdx");

        var exists = await Assert.ThrowsAsync<HyperVException>(() => _host.DefineVmAsync(new VmDefinition("web", 1024, 1, @"D:\web.vhdx"), default));
        var missing = await Assert.ThrowsAsync<HyperVException>(() => _host.DefineVmAsync(new VmDefinition("new", 1024, 1, @"D:\nope.vhdx"), default));

        Assert.Equal(HyperVErrorKind.AlreadyExists, exists.Kind);
        Assert.Equal(HyperVErrorKind.NotFound, missing.Kind);
        Assert.Empty(Cim.Invocations);
    }

    [Fact]
    public async Task A_define_that_fails_after_DefineSystem_destroys_the_half_made_VM()
    {
        _files.Files.Add(@"D:\web.vhdx");
        WireDefine("web", subType => subType == WindowsHyperVHost.VirtualHardDiskSubType
            ? RecordedCim.Result(4096, ("Job", Cim.AddJob(new RecordedCim.JobStep(CimJobRunner.JobStateException, 32768, "The file is not a valid VHDX"))))
            : null);

        var e = await Assert.ThrowsAsync<HyperVException>(() => _host.DefineVmAsync(new VmDefinition("web", 1024, 1, @"D:\web.vhdx"), default));

        Assert.Equal(HyperVErrorKind.JobFailed, e.Kind);
        Assert.Equal(32768, e.Code);
        Assert.Contains("The file is not a valid VHDX", e.Message);
        var destroy = Cim.Calls("DestroySystem").Single();
        var created = Cim.Query(V, "SELECT * FROM Msvm_ComputerSystem WHERE ElementName = 'web'").Single();
        Assert.Equal(created.AsReference(), destroy["AffectedSystem"]);
    }

    // ------------------------------------------------------------------ power

    [Fact]
    public async Task Start_is_RequestStateChange_2_on_the_VM_and_waits_for_its_job()
    {
        var vm = _hv.AddVm("web", enabledState: 3);
        var job = Cim.AddJob(new(CimJobRunner.JobStateStarting), new(CimJobRunner.JobStateRunning), new(CimJobRunner.JobStateCompleted));
        Cim.OnMethod("Msvm_ComputerSystem", "RequestStateChange", _ => RecordedCim.Result(4096, ("Job", job)));

        await _host.StartVmAsync("web", default);

        var call = Cim.Calls("RequestStateChange").Single();
        Assert.Equal(vm.System.Path, call.Path);
        Assert.Equal((ushort)2, Assert.IsType<ushort>(call["RequestedState"]));
        Assert.Equal(3, Cim.ReadsOf(job));
    }

    [Fact]
    public async Task Stop_is_RequestStateChange_3_and_32775_is_success_when_the_VM_is_already_off()
    {
        var vm = _hv.AddVm("web", enabledState: 3);
        Cim.OnMethod("Msvm_ComputerSystem", "RequestStateChange", _ => RecordedCim.Result(32775));

        await _host.StopVmAsync("web", default);

        Assert.Equal((ushort)3, Cim.Calls("RequestStateChange").Single()["RequestedState"]);
        Assert.Contains(vm.System.Path, Cim.Gets); // the state was checked
    }

    [Fact]
    public async Task A_32775_when_the_VM_is_not_in_the_requested_state_is_InvalidState()
    {
        _hv.AddVm("web", enabledState: 32773); // saving
        Cim.OnMethod("Msvm_ComputerSystem", "RequestStateChange", _ => RecordedCim.Result(32775));

        var e = await Assert.ThrowsAsync<HyperVException>(() => _host.StartVmAsync("web", default));

        Assert.Equal(HyperVErrorKind.InvalidState, e.Kind);
        Assert.Equal(32775, e.Code);
        Assert.Contains("invalid state for this operation", e.Message);
    }

    [Fact]
    public async Task Power_operations_on_a_missing_VM_are_NotFound()
    {
        var start = await Assert.ThrowsAsync<HyperVException>(() => _host.StartVmAsync("ghost", default));
        var destroy = await Assert.ThrowsAsync<HyperVException>(() => _host.DestroyVmAsync("ghost", default));

        Assert.Equal(HyperVErrorKind.NotFound, start.Kind);
        Assert.Equal(HyperVErrorKind.NotFound, destroy.Kind);
    }

    [Fact]
    public async Task A_VM_that_vanishes_under_a_call_is_WMI_NotFound_mapped_to_NotFound()
    {
        var vm = _hv.AddVm("web");
        Cim.OnMethod("Msvm_ComputerSystem", "RequestStateChange", _ => throw RecordedCim.NotFound("Msvm_ComputerSystem.RequestStateChange"));

        var e = await Assert.ThrowsAsync<HyperVException>(() => _host.StartVmAsync("web", default));

        Assert.Equal(HyperVErrorKind.NotFound, e.Kind);
        Assert.Equal(CimErrors.WbemENotFound, (uint)e.Code!.Value);
        Assert.Equal(vm.System.Path, Cim.Calls("RequestStateChange").Single().Path);
    }

    [Fact]
    public async Task Destroy_is_DestroySystem_of_the_VM()
    {
        var vm = _hv.AddVm("web");
        Cim.OnMethod("Msvm_VirtualSystemManagementService", "DestroySystem", _ => RecordedCim.Result(4096, ("Job", CompletedJob())));

        await _host.DestroyVmAsync("web", default);

        var call = Cim.Calls("DestroySystem").Single();
        Assert.Equal(_hv.Vsms.Path, call.Path);
        Assert.Equal(vm.System.AsReference(), call["AffectedSystem"]);
    }

    // ------------------------------------------------------------------ disks

    [Fact]
    public async Task A_differencing_disk_is_CreateVirtualHardDisk_type_4_vhdx_with_its_parent()
    {
        _files.Files.Add(@"C:\ClusterStorage\Volume1\images\base.vhdx");
        Cim.OnMethod("Msvm_ImageManagementService", "CreateVirtualHardDisk", _ => RecordedCim.Result(4096, ("Job", CompletedJob())));

        await _host.CreateDiskAsync(@"C:\ClusterStorage\Volume1\vms\web.vhdx", @"C:\ClusterStorage\Volume1\images\base.vhdx", DiskKind.Differencing, 0, default);

        var call = Cim.Calls("CreateVirtualHardDisk").Single();
        Assert.Equal(_hv.ImageService.Path, call.Path);
        var settings = Assert.IsType<CimEmbeddedInstance>(call["VirtualDiskSettingData"]);
        Assert.Equal("Msvm_VirtualHardDiskSettingData", settings.ClassName);
        Assert.Null(settings.BasedOn);
        Assert.Equal((ushort)4, Assert.IsType<ushort>(settings["Type"]));
        Assert.Equal((ushort)3, Assert.IsType<ushort>(settings["Format"]));
        Assert.Equal(@"C:\ClusterStorage\Volume1\vms\web.vhdx", settings["Path"]);
        Assert.Equal(@"C:\ClusterStorage\Volume1\images\base.vhdx", settings["ParentPath"]);
        Assert.Null(settings["MaxInternalSize"]);
    }

    [Fact]
    public async Task A_copy_is_ConvertVirtualHardDisk_of_the_base_into_a_dynamic_vhdx()
    {
        _files.Files.Add(@"D:\base.vhdx");
        Cim.OnMethod("Msvm_ImageManagementService", "ConvertVirtualHardDisk", _ => RecordedCim.Result(0));

        await _host.CreateDiskAsync(@"D:\copy.vhdx", @"D:\base.vhdx", DiskKind.Copy, 0, default);

        var call = Cim.Calls("ConvertVirtualHardDisk").Single();
        Assert.Equal(@"D:\base.vhdx", call["SourcePath"]);
        var settings = Assert.IsType<CimEmbeddedInstance>(call["VirtualDiskSettingData"]);
        Assert.Equal((ushort)3, settings["Type"]);
        Assert.Equal((ushort)3, settings["Format"]);
        Assert.Equal(@"D:\copy.vhdx", settings["Path"]);
        Assert.Null(settings["ParentPath"]);
    }

    [Fact]
    public async Task An_empty_disk_is_CreateVirtualHardDisk_type_3_with_MaxInternalSize()
    {
        Cim.OnMethod("Msvm_ImageManagementService", "CreateVirtualHardDisk", _ => RecordedCim.Result(4096, ("Job", CompletedJob())));

        await _host.CreateDiskAsync(@"D:\empty.vhdx", null, DiskKind.Differencing, 10L << 30, default);

        var settings = (CimEmbeddedInstance)Cim.Calls("CreateVirtualHardDisk").Single()["VirtualDiskSettingData"]!;
        Assert.Equal((ushort)3, settings["Type"]);
        Assert.Equal(10UL << 30, Assert.IsType<ulong>(settings["MaxInternalSize"]));
        Assert.Null(settings["ParentPath"]);
    }

    [Fact]
    public async Task Disk_creation_refuses_an_existing_target_and_a_missing_base()
    {
        _files.Files.Add(@"D:\there.vhdx");

        var exists = await Assert.ThrowsAsync<HyperVException>(() => _host.CreateDiskAsync(@"D:\there.vhdx", null, DiskKind.Copy, 1024, default));
        var noBase = await Assert.ThrowsAsync<HyperVException>(() => _host.CreateDiskAsync(@"D:\new.vhdx", @"D:\nobase.vhdx", DiskKind.Copy, 0, default));

        Assert.Equal(HyperVErrorKind.AlreadyExists, exists.Kind);
        Assert.Equal(HyperVErrorKind.NotFound, noBase.Kind);
        Assert.Empty(Cim.Invocations);
    }

    [Fact]
    public async Task Delete_removes_the_file_and_a_missing_one_is_fine_and_one_in_use_is_InvalidState()
    {
        _files.Files.Add(@"D:\a.vhdx");

        await _host.DeleteDiskAsync(@"D:\a.vhdx", default);
        await _host.DeleteDiskAsync(@"D:\a.vhdx", default);
        _files.Files.Add(@"D:\busy.vhdx");
        _files.DeleteFailure = new IOException("The process cannot access the file because it is being used by another process.");
        var busy = await Assert.ThrowsAsync<HyperVException>(() => _host.DeleteDiskAsync(@"D:\busy.vhdx", default));

        Assert.DoesNotContain(@"D:\a.vhdx", _files.Files);
        Assert.Equal(HyperVErrorKind.InvalidState, busy.Kind);
    }

    // ------------------------------------------------------------------ migration

    [Fact]
    public async Task Migrating_the_VM_only_is_MigrateVirtualSystemToHost_with_type_32768()
    {
        var vm = _hv.AddVm("web", enabledState: 2, vhd: @"\\sofs\share\web.vhdx");
        var job = Cim.AddJob(new(CimJobRunner.JobStateRunning), new(CimJobRunner.JobStateRunning), new(CimJobRunner.JobStateCompleted));
        Cim.OnMethod("Msvm_VirtualSystemMigrationService", "MigrateVirtualSystemToHost", _ => RecordedCim.Result(4096, ("Job", job)));

        await _host.MigrateToHostAsync("web", "HV9", includeStorage: false, destinationPath: null, default);

        var call = Cim.Calls("MigrateVirtualSystemToHost").Single();
        Assert.Equal(_hv.MigrationService.Path, call.Path);
        Assert.Equal(vm.System.AsReference(), call["ComputerSystem"]);
        Assert.Equal("HV9", call["DestinationHost"]);
        var setting = Assert.IsType<CimEmbeddedInstance>(call["MigrationSettingData"]);
        Assert.Equal("Msvm_VirtualSystemMigrationSettingData", setting.ClassName);
        Assert.Equal(_hv.MigrationTemplateVm.Path, setting.BasedOn);
        Assert.Equal((ushort)32768, Assert.IsType<ushort>(setting["MigrationType"]));
        Assert.Null(call["NewResourceSettingData"]);
        Assert.Null(call["NewSystemSettingData"]);
        Assert.Equal(3, Cim.ReadsOf(job));
    }

    [Fact]
    public async Task Migrating_with_storage_is_type_32771_with_the_disks_pointed_at_the_destination()
    {
        var vm = _hv.AddVm("web", enabledState: 2, vhd: @"D:\vms\web\web.vhdx");
        Cim.OnMethod("Msvm_VirtualSystemMigrationService", "MigrateVirtualSystemToHost", _ => RecordedCim.Result(4096, ("Job", CompletedJob())));

        await _host.MigrateToHostAsync("web", "HV9", includeStorage: true, destinationPath: @"E:\vms\web", default);

        var call = Cim.Calls("MigrateVirtualSystemToHost").Single();
        var setting = (CimEmbeddedInstance)call["MigrationSettingData"]!;
        Assert.Equal((ushort)32771, setting["MigrationType"]);
        Assert.Equal(_hv.MigrationTemplateVmAndStorage.Path, setting.BasedOn);
        var disk = Assert.Single(Assert.IsType<CimEmbeddedInstance[]>(call["NewResourceSettingData"]));
        Assert.Equal("Msvm_StorageAllocationSettingData", disk.ClassName);
        Assert.Equal(vm.Vhd!.Path, disk.BasedOn);
        Assert.Equal(new[] { @"E:\vms\web\web.vhdx" }, disk["HostResource"]);
        var system = Assert.IsType<CimEmbeddedInstance>(call["NewSystemSettingData"]);
        Assert.Equal(vm.Settings.Path, system.BasedOn);
        Assert.Equal(@"E:\vms\web", system["ConfigurationDataRoot"]);
    }

    [Fact]
    public async Task A_failed_migration_job_is_JobFailed_with_its_error()
    {
        _hv.AddVm("web", enabledState: 2);
        Cim.OnMethod("Msvm_VirtualSystemMigrationService", "MigrateVirtualSystemToHost", _ => RecordedCim.Result(4096,
            ("Job", Cim.AddJob(new(CimJobRunner.JobStateRunning), new(CimJobRunner.JobStateException, 32768,
                "Virtual machine migration operation for 'web' failed at migration source 'HV1'.",
                "The Virtual Machine Management Service failed to establish a connection for a Virtual Machine migration with host 'HV9'.")))));

        var e = await Assert.ThrowsAsync<HyperVException>(() => _host.MigrateToHostAsync("web", "HV9", false, null, default));

        Assert.Equal(HyperVErrorKind.JobFailed, e.Kind);
        Assert.Equal(32768, e.Code);
        Assert.Contains("failed at migration source 'HV1'", e.Message);
        Assert.Contains("failed to establish a connection", e.Message);
    }

    [Fact]
    public async Task Migration_refuses_storage_without_a_destination_path_and_this_host_as_destination()
    {
        _hv.AddVm("web");

        var noPath = await Assert.ThrowsAsync<HyperVException>(() => _host.MigrateToHostAsync("web", "HV9", true, null, default));
        var self = await Assert.ThrowsAsync<HyperVException>(() => _host.MigrateToHostAsync("web", "hv1", false, null, default));

        Assert.Equal(HyperVErrorKind.InvalidState, noPath.Kind);
        Assert.Equal(HyperVErrorKind.InvalidState, self.Kind);
        Assert.Empty(Cim.Invocations);
    }

    [Theory]
    [InlineData(2, VmPowerState.Running)]
    [InlineData(3, VmPowerState.Off)]
    [InlineData(32768, VmPowerState.Paused)]
    [InlineData(32769, VmPowerState.Saved)]
    [InlineData(10, VmPowerState.Starting)]
    [InlineData(4, VmPowerState.Stopping)]
    [InlineData(32774, VmPowerState.Stopping)]
    [InlineData(0, VmPowerState.Unknown)]
    public void EnabledState_maps_to_power_state(int enabledState, VmPowerState expected) =>
        Assert.Equal(expected, WindowsHyperVHost.MapState((ulong)enabledState));
}
