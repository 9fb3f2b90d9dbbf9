using Coordinator.HyperV.Windows;

namespace Coordinator.HyperV.Tests.Windows;

/// <summary>
/// A Hyper-V host as root/virtualization/v2 and root/cimv2 show it, in <see cref="RecordedCim"/>: property names,
/// .NET types (uint16 → ushort, uint64 → ulong, string[]...), InstanceID shapes and keys as the real classes have them.
/// </summary>
public sealed class HyperVShapes
{
    public const string V = CimNames.Virtualization;

    // The device GUIDs Hyper-V uses in the InstanceIDs of memory and processor settings.
    private const string MemoryDevice = "4764334D-E001-4176-82EE-5594EC9B530E";
    private const string ProcessorDevice = "B637F346-6A0E-4DEC-AF52-BD70CB80A21D";

    public RecordedCim Cim { get; } = new();

    public CimRecord Vsms { get; }
    public CimRecord ImageService { get; }
    public CimRecord MigrationService { get; }
    public CimRecord HostSystem { get; }
    public CimRecord ScsiTemplate { get; }
    public CimRecord DriveTemplate { get; }
    public CimRecord VhdTemplate { get; }
    public CimRecord MigrationTemplateVm { get; }
    public CimRecord MigrationTemplateVmAndStorage { get; }

    public HyperVShapes()
    {
        HostSystem = Cim.Add(V, "Msvm_ComputerSystem", new Dictionary<string, object?>
        {
            ["Caption"] = "Hosting Computer System",
            ["CreationClassName"] = "Msvm_ComputerSystem",
            ["Name"] = RecordedCim.Server,
            ["ElementName"] = RecordedCim.Server,
            ["EnabledState"] = (ushort)2,
        }, "CreationClassName", "Name");
        Vsms = Service("Msvm_VirtualSystemManagementService", "vmms");
        ImageService = Service("Msvm_ImageManagementService", "vhdsvc");
        MigrationService = Service("Msvm_VirtualSystemMigrationService", "vsms");

        ScsiTemplate = Template("Msvm_ResourceAllocationSettingData", WindowsHyperVHost.ScsiControllerSubType, 6, "E5F3F5A2-8A3E-4F5B-A7F1-2F5A0C0B9A11");
        DriveTemplate = Template("Msvm_ResourceAllocationSettingData", WindowsHyperVHost.DiskDriveSubType, 17, "A4E6C9B4-3C92-4F5F-9D2B-4B6C8E0B2C22");
        VhdTemplate = Template("Msvm_StorageAllocationSettingData", WindowsHyperVHost.VirtualHardDiskSubType, 31, "70BB60D2-A9D3-46AA-B654-3DE53004B4F8");
        // Another subtype of the same classes, to show that the subtype is what selects the template.
        Template("Msvm_ResourceAllocationSettingData", "Microsoft:Hyper-V:Synthetic DVD Drive", 16, "D8BD0F77-FF2F-4C5B-9B6C-3E7A43FE2D33");

        MigrationTemplateVm = MigrationSetting(WindowsHyperVHost.MigrationTypeVirtualSystem);
        MigrationTemplateVmAndStorage = MigrationSetting(WindowsHyperVHost.MigrationTypeVirtualSystemAndStorage);

        Cim.Add(CimNames.Cimv2, "Win32_ComputerSystem", new Dictionary<string, object?>
        {
            ["Name"] = RecordedCim.Server,
            ["TotalPhysicalMemory"] = 274_877_906_944UL, // 256 GiB
            ["NumberOfLogicalProcessors"] = 48u,
            ["NumberOfProcessors"] = 2u,
        }, "Name");
    }

    public sealed record Vm(string Name, string Id, CimRecord System, CimRecord Settings, CimRecord Memory, CimRecord Processor, CimRecord? Vhd);

    /// <summary>A VM with its settings, memory, processor and (optionally) one VHD in a disk drive.</summary>
    public Vm AddVm(string name, ushort enabledState = 3, ulong memoryMb = 2048, ulong vcpus = 2, string? vhd = null, string? id = null)
    {
        id ??= Guid.NewGuid().ToString().ToUpperInvariant();
        var system = Cim.Add(V, "Msvm_ComputerSystem", new Dictionary<string, object?>
        {
            ["Caption"] = "Virtual Machine",
            ["Description"] = "Microsoft Virtual Machine",
            ["CreationClassName"] = "Msvm_ComputerSystem",
            ["Name"] = id,
            ["ElementName"] = name,
            ["EnabledState"] = enabledState,
            ["HealthState"] = (ushort)5,
            ["OperationalStatus"] = new ushort[] { 2 },
        }, "CreationClassName", "Name");
        var settings = Cim.Add(V, "Msvm_VirtualSystemSettingData", new Dictionary<string, object?>
        {
            ["InstanceID"] = $"Microsoft:{id}",
            ["ElementName"] = name,
            ["VirtualSystemIdentifier"] = id,
            ["VirtualSystemType"] = "Microsoft:Hyper-V:System:Realized",
            ["VirtualSystemSubType"] = WindowsHyperVHost.Gen2SubType,
            ["ConfigurationDataRoot"] = @"C:\ClusterStorage\Volume1\vms",
        }, "InstanceID");
        Cim.Associate(system, "Msvm_SettingsDefineState", settings);
        var memory = Cim.Add(V, "Msvm_MemorySettingData", new Dictionary<string, object?>
        {
            ["InstanceID"] = $@"Microsoft:{id}\{MemoryDevice}",
            ["ElementName"] = "Memory",
            ["ResourceType"] = (ushort)4,
            ["ResourceSubType"] = "Microsoft:Hyper-V:Memory",
            ["AllocationUnits"] = "byte * 2^20",
            ["VirtualQuantity"] = memoryMb,
            ["Reservation"] = memoryMb,
            ["Limit"] = 1_048_576UL,
            ["DynamicMemoryEnabled"] = false,
        }, "InstanceID");
        var processor = Cim.Add(V, "Msvm_ProcessorSettingData", new Dictionary<string, object?>
        {
            ["InstanceID"] = $@"Microsoft:{id}\{ProcessorDevice}\0",
            ["ElementName"] = "Processor",
            ["ResourceType"] = (ushort)3,
            ["ResourceSubType"] = "Microsoft:Hyper-V:Processor",
            ["VirtualQuantity"] = vcpus,
            ["Reservation"] = 0UL,
            ["Limit"] = 100_000UL,
        }, "InstanceID");
        CimRecord? disk = null;
        if (vhd is not null)
        {
            var controller = Cim.Add(V, "Msvm_ResourceAllocationSettingData", new Dictionary<string, object?>
            {
                ["InstanceID"] = $@"Microsoft:{id}\{Guid.NewGuid().ToString().ToUpperInvariant()}",
                ["ResourceType"] = (ushort)6,
                ["ResourceSubType"] = WindowsHyperVHost.ScsiControllerSubType,
            }, "InstanceID");
            var drive = Cim.Add(V, "Msvm_ResourceAllocationSettingData", new Dictionary<string, object?>
            {
                ["InstanceID"] = $@"Microsoft:{id}\{Guid.NewGuid().ToString().ToUpperInvariant()}\0\0\D",
                ["ResourceType"] = (ushort)17,
                ["ResourceSubType"] = WindowsHyperVHost.DiskDriveSubType,
                ["Parent"] = controller.Path,
                ["AddressOnParent"] = "0",
            }, "InstanceID");
            disk = Cim.Add(V, "Msvm_StorageAllocationSettingData", new Dictionary<string, object?>
            {
                ["InstanceID"] = $@"Microsoft:{id}\{Guid.NewGuid().ToString().ToUpperInvariant()}\0\0\L",
                ["ResourceType"] = (ushort)31,
                ["ResourceSubType"] = WindowsHyperVHost.VirtualHardDiskSubType,
                ["Parent"] = drive.Path,
                ["HostResource"] = new[] { vhd },
            }, "InstanceID");
        }

        return new Vm(name, id, system, settings, memory, processor, disk);
    }

    /// <summary>A snapshot's settings of a VM (other GUID): must not be mistaken for a VM's.</summary>
    public void AddSnapshotSettings(ulong memoryMb)
    {
        var snapshot = Guid.NewGuid().ToString().ToUpperInvariant();
        Cim.Add(V, "Msvm_MemorySettingData", new Dictionary<string, object?>
        {
            ["InstanceID"] = $@"Microsoft:{snapshot}\{MemoryDevice}",
            ["ResourceType"] = (ushort)4,
            ["ResourceSubType"] = "Microsoft:Hyper-V:Memory",
            ["VirtualQuantity"] = memoryMb,
        }, "InstanceID");
    }

    private CimRecord Service(string className, string name) => Cim.Add(V, className, new Dictionary<string, object?>
    {
        ["CreationClassName"] = className,
        ["Name"] = name,
        ["SystemCreationClassName"] = "Msvm_ComputerSystem",
        ["SystemName"] = RecordedCim.Server,
        ["ElementName"] = className,
    }, "CreationClassName", "Name", "SystemCreationClassName", "SystemName");

    private CimRecord Template(string className, string subType, ushort resourceType, string pool) => Cim.Add(V, className, new Dictionary<string, object?>
    {
        ["InstanceID"] = $@"Microsoft:Definition\{pool}\Default",
        ["ResourceType"] = resourceType,
        ["ResourceSubType"] = subType,
        ["PoolID"] = "",
    }, "InstanceID");

    private CimRecord MigrationSetting(ushort type) => Cim.Add(V, "Msvm_VirtualSystemMigrationSettingData", new Dictionary<string, object?>
    {
        ["InstanceID"] = $@"Microsoft:Definition\{type}",
        ["MigrationType"] = type,
        ["TransportType"] = (ushort)5,
        ["Priority"] = (ushort)0,
    }, "InstanceID");
}
