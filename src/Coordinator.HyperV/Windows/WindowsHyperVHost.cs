using System.Globalization;

namespace Coordinator.HyperV.Windows;

public sealed record WindowsHyperVHostOptions
{
    /// <summary>Polling of ordinary WMI jobs (define, disks, state changes).</summary>
    public CimJobOptions Jobs { get; init; } = new();

    /// <summary>Overall limit of a live migration job (it copies memory, and storage when asked).</summary>
    public TimeSpan MigrationTimeout { get; init; } = TimeSpan.FromHours(4);

    /// <summary>Where a new VM keeps its configuration, checkpoints and smart paging file. Null: the folder of its disk,
    /// which for a clustered VM is on the CSV, where WSFC needs the configuration to be (os-win puts every *DataRoot in
    /// the instance folder for the same reason).</summary>
    public string? ConfigurationRoot { get; init; }
}

/// <summary>
/// <see cref="IHyperVHost"/> over the Hyper-V WMI v2 provider (root/virtualization/v2), following os-win's vmutils,
/// livemigrationutils and (pre-virtdisk) vhdutilsv2. All WMI goes through <see cref="ICimGateway"/>, every
/// method/job through <see cref="CimJobRunner"/>.
/// </summary>
public sealed class WindowsHyperVHost : IHyperVHost
{
    // Resource subtypes (os-win vmutils).
    public const string ScsiControllerSubType = "Microsoft:Hyper-V:Synthetic SCSI Controller";
    public const string DiskDriveSubType = "Microsoft:Hyper-V:Synthetic Disk Drive";
    public const string VirtualHardDiskSubType = "Microsoft:Hyper-V:Virtual Hard Disk";
    public const string Gen2SubType = "Microsoft:Hyper-V:SubType:2";

    public const ushort RequestStateRunning = 2;
    public const ushort RequestStateOff = 3;
    public const uint InvalidStateForOperation = 32775;

    /// <summary>AutomaticStartupAction "None": the coordinator, not the host's boot, decides what runs.</summary>
    public const ushort AutomaticStartupActionNone = 2;

    // Msvm_VirtualHardDiskSettingData (vhdutilsv2).
    public const ushort VhdTypeDynamic = 3;
    public const ushort VhdTypeDifferencing = 4;
    public const ushort VhdFormatVhdx = 3;

    // Msvm_VirtualSystemMigrationSettingData.MigrationType (livemigrationutils).
    public const ushort MigrationTypeVirtualSystem = 32768;
    public const ushort MigrationTypeVirtualSystemAndStorage = 32771;

    private const string Ns = CimNames.Virtualization;

    private readonly ICimGateway _cim;
    private readonly CimJobRunner _jobs;
    private readonly IHostFiles _files;
    private readonly WindowsHyperVHostOptions _options;

    public WindowsHyperVHost(
        ICimGateway cim, string nodeName, WindowsHyperVHostOptions? options = null, IHyperVClock? clock = null, IHostFiles? files = null)
    {
        ArgumentNullException.ThrowIfNull(cim);
        ArgumentException.ThrowIfNullOrWhiteSpace(nodeName);
        _cim = cim;
        NodeName = nodeName;
        _options = options ?? new WindowsHyperVHostOptions();
        _jobs = new CimJobRunner(cim, _options.Jobs, clock);
        _files = files ?? LocalHostFiles.Instance;
    }

    public string NodeName { get; }

    // ------------------------------------------------------------------ reading

    public async Task<HostCapacity> GetCapacityAsync(CancellationToken ct)
    {
        var cs = (await _cim.QueryAsync(CimNames.Cimv2, "SELECT * FROM Win32_ComputerSystem", ct).ConfigureAwait(false))
            .FirstOrDefault() ?? throw new HyperVException(HyperVErrorKind.Failed, "Win32_ComputerSystem returned no instance");
        var bytes = cs.GetUInt64("TotalPhysicalMemory") ?? 0;
        var lps = cs.GetUInt64("NumberOfLogicalProcessors") ?? 0;
        return new HostCapacity(NodeName, (long)(bytes / (1024 * 1024)), (int)lps);
    }

    /// <summary>Every VM of the host in four queries: the VMs, then all memory, processor and VHD settings, joined on the
    /// VM's GUID which starts their InstanceID ("Microsoft:&lt;GUID&gt;\...").</summary>
    public async Task<IReadOnlyList<VmInfo>> ListVmsAsync(CancellationToken ct)
    {
        var vms = await _cim.QueryAsync(Ns, "SELECT * FROM Msvm_ComputerSystem WHERE Caption = 'Virtual Machine'", ct).ConfigureAwait(false);
        if (vms.Count == 0)
            return [];
        var memory = ByVm(await _cim.QueryAsync(Ns, "SELECT * FROM Msvm_MemorySettingData", ct).ConfigureAwait(false));
        var cpus = ByVm(await _cim.QueryAsync(Ns, "SELECT * FROM Msvm_ProcessorSettingData", ct).ConfigureAwait(false));
        var disks = ByVm(await _cim.QueryAsync(Ns,
            $"SELECT * FROM Msvm_StorageAllocationSettingData WHERE ResourceSubType = {Wql.Quote(VirtualHardDiskSubType)}", ct).ConfigureAwait(false));
        return vms.Select(vm =>
        {
            var id = vm.GetString("Name") ?? "";
            return ToInfo(vm, memory.GetValueOrDefault(id), cpus.GetValueOrDefault(id), disks.GetValueOrDefault(id));
        }).OrderBy(v => v.Name, StringComparer.OrdinalIgnoreCase).ToList();
    }

    public async Task<VmInfo?> GetVmAsync(string name, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        var vm = await FindVmAsync(name, ct).ConfigureAwait(false);
        if (vm is null)
            return null;
        var id = vm.GetString("Name")!;
        var memory = await SettingsOfAsync("Msvm_MemorySettingData", id, null, ct).ConfigureAwait(false);
        var cpus = await SettingsOfAsync("Msvm_ProcessorSettingData", id, null, ct).ConfigureAwait(false);
        var disks = await SettingsOfAsync("Msvm_StorageAllocationSettingData", id, VirtualHardDiskSubType, ct).ConfigureAwait(false);
        return ToInfo(vm, memory, cpus, disks);
    }

    // ------------------------------------------------------------------ disks

    /// <summary>
    /// Msvm_ImageManagementService: a differencing VHDX is CreateVirtualHardDisk with Type 4 and ParentPath (the v2
    /// namespace has no CreateDifferencingVirtualHardDisk), a copy is ConvertVirtualHardDisk of the base into a new
    /// dynamic VHDX (a full, flattened copy even when the base itself is differencing), an empty disk is
    /// CreateVirtualHardDisk with Type 3 and MaxInternalSize.
    /// </summary>
    public async Task CreateDiskAsync(string path, string? basePath, DiskKind kind, long sizeBytes, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentOutOfRangeException.ThrowIfNegative(sizeBytes);
        if (basePath is null)
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(sizeBytes);
        if (_files.Exists(path))
            throw new HyperVException(HyperVErrorKind.AlreadyExists, $"disk '{path}' already exists");
        if (basePath is not null && !_files.Exists(basePath))
            throw new HyperVException(HyperVErrorKind.NotFound, $"base image '{basePath}' does not exist");

        var service = await SingletonAsync("Msvm_ImageManagementService", ct).ConfigureAwait(false);
        if (basePath is null)
        {
            await _jobs.InvokeAsync(Ns, service.Path, "CreateVirtualHardDisk", new Dictionary<string, object?>
            {
                ["VirtualDiskSettingData"] = VhdSettings(path, VhdTypeDynamic, parentPath: null, maxInternalSize: (ulong)sizeBytes),
            }, ct).ConfigureAwait(false);
        }
        else if (kind == DiskKind.Differencing)
        {
            // No size for differencing disks: os-win notes that Windows did not resize them properly; the child has the
            // parent's virtual size.
            await _jobs.InvokeAsync(Ns, service.Path, "CreateVirtualHardDisk", new Dictionary<string, object?>
            {
                ["VirtualDiskSettingData"] = VhdSettings(path, VhdTypeDifferencing, parentPath: basePath, maxInternalSize: null),
            }, ct).ConfigureAwait(false);
        }
        else
        {
            await _jobs.InvokeAsync(Ns, service.Path, "ConvertVirtualHardDisk", new Dictionary<string, object?>
            {
                ["SourcePath"] = basePath,
                ["VirtualDiskSettingData"] = VhdSettings(path, VhdTypeDynamic, parentPath: null, maxInternalSize: null),
            }, ct).ConfigureAwait(false);
        }
    }

    /// <summary>A plain file delete (a missing file is success). A file still attached to a running VM is in use: InvalidState.</summary>
    public Task DeleteDiskAsync(string path, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ct.ThrowIfCancellationRequested();
        try
        {
            if (_files.Exists(path))
                _files.Delete(path);
            return Task.CompletedTask;
        }
        catch (IOException e)
        {
            throw new HyperVException(HyperVErrorKind.InvalidState, $"cannot delete disk '{path}' (in use?): {e.Message}", e.HResult, e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new HyperVException(HyperVErrorKind.Failed, $"cannot delete disk '{path}': {e.Message}", e.HResult, e);
        }
    }

    // ------------------------------------------------------------------ folders

    /// <summary>See <see cref="IHyperVHost.CreateFolderAsync"/>: NTFS itself makes <c>VM1</c> and <c>vm1.</c> the
    /// existing <c>vm1</c>.</summary>
    public Task<bool> CreateFolderAsync(string path, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ct.ThrowIfCancellationRequested();
        return Files(path, "create folder", () =>
        {
            if (_files.Exists(path))
                throw new HyperVException(HyperVErrorKind.AlreadyExists, $"'{path}' is a file");
            if (_files.FolderExists(path))
            {
                return _files.HoldsFiles(path)
                    ? throw new HyperVException(HyperVErrorKind.AlreadyExists, $"folder '{path}' already exists and holds files")
                    : false;
            }

            _files.CreateFolder(path);
            return true;
        });
    }

    public Task<bool> RemoveEmptyFolderAsync(string path, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ct.ThrowIfCancellationRequested();
        return Files(path, "remove folder", () =>
        {
            if (!_files.FolderExists(path))
                return true;
            if (_files.HoldsFiles(path))
                return false;
            _files.DeleteFolder(path); // empty subfolders only (Hyper-V may leave "Virtual Machines" behind)
            return true;
        });
    }

    public Task DeleteFolderAsync(string path, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ct.ThrowIfCancellationRequested();
        return Files(path, "delete folder", () =>
        {
            if (_files.FolderExists(path))
                _files.DeleteFolder(path);
            return true;
        });
    }

    private static Task<T> Files<T>(string path, string operation, Func<T> body)
    {
        try
        {
            return Task.FromResult(body());
        }
        catch (DirectoryNotFoundException e)
        {
            throw new HyperVException(HyperVErrorKind.NotFound, $"cannot {operation} '{path}': {e.Message}", e.HResult, e);
        }
        catch (IOException e)
        {
            throw new HyperVException(HyperVErrorKind.InvalidState, $"cannot {operation} '{path}' (in use?): {e.Message}", e.HResult, e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new HyperVException(HyperVErrorKind.Failed, $"cannot {operation} '{path}': {e.Message}", e.HResult, e);
        }
    }

    // ------------------------------------------------------------------ lifecycle

    /// <summary>
    /// os-win's create_vm + update_vm + create_scsi_controller + attach_drive: DefineSystem with a generation 2
    /// Msvm_VirtualSystemSettingData, ModifyResourceSettings of its memory and processor settings, then
    /// AddResourceSettings of a synthetic SCSI controller, a synthetic disk drive on it and the VHDX
    /// (Msvm_StorageAllocationSettingData.HostResource) in that drive, each from the host's "\Default" template. A failure
    /// after DefineSystem destroys the half-made VM so that a retry starts clean.
    /// </summary>
    public async Task DefineVmAsync(VmDefinition definition, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(definition);
        ArgumentException.ThrowIfNullOrWhiteSpace(definition.Name);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(definition.MemoryMb);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(definition.Vcpus);
        ArgumentException.ThrowIfNullOrWhiteSpace(definition.DiskPath);
        if (!_files.Exists(definition.DiskPath))
            throw new HyperVException(HyperVErrorKind.NotFound, $"disk '{definition.DiskPath}' does not exist");
        if (await FindVmAsync(definition.Name, ct).ConfigureAwait(false) is not null)
            throw new HyperVException(HyperVErrorKind.AlreadyExists, $"VM '{definition.Name}' already exists on {NodeName}");

        var vsms = await SingletonAsync("Msvm_VirtualSystemManagementService", ct).ConfigureAwait(false);
        var dataRoot = _options.ConfigurationRoot ?? WindowsPaths.GetDirectoryName(definition.DiskPath);
        var systemSettings = new Dictionary<string, object?>
        {
            ["ElementName"] = definition.Name,
            ["VirtualSystemSubType"] = Gen2SubType,
            ["AutomaticStartupAction"] = AutomaticStartupActionNone,
        };
        if (!string.IsNullOrEmpty(dataRoot))
        {
            foreach (var root in (string[])["ConfigurationDataRoot", "SnapshotDataRoot", "SwapFileDataRoot"])
                systemSettings[root] = dataRoot;
        }

        var defined = await _jobs.InvokeAsync(Ns, vsms.Path, "DefineSystem", new Dictionary<string, object?>
        {
            ["SystemSettings"] = new CimEmbeddedInstance("Msvm_VirtualSystemSettingData", systemSettings),
            ["ResourceSettings"] = Array.Empty<CimEmbeddedInstance>(),
        }, ct).ConfigureAwait(false);

        var vmPath = (defined["ResultingSystem"] as CimReference?)?.Path
            ?? (await FindVmAsync(definition.Name, ct).ConfigureAwait(false))?.Path
            ?? throw new HyperVException(HyperVErrorKind.Failed, $"DefineSystem of VM '{definition.Name}' returned no ResultingSystem");
        try
        {
            await ConfigureAsync(vsms.Path, vmPath, definition, ct).ConfigureAwait(false);
        }
        catch
        {
            await TryDestroyAsync(vsms.Path, vmPath).ConfigureAwait(false);
            throw;
        }
    }

    private async Task ConfigureAsync(string vsmsPath, string vmPath, VmDefinition definition, CancellationToken ct)
    {
        var vssd = (await _cim.GetAssociatedAsync(Ns, vmPath, "Msvm_SettingsDefineState", "Msvm_VirtualSystemSettingData", ct).ConfigureAwait(false))
            .FirstOrDefault() ?? throw new HyperVException(HyperVErrorKind.Failed, $"VM '{definition.Name}' has no Msvm_VirtualSystemSettingData");
        var vmId = WmiPath.Parse(vmPath).Keys.TryGetValue("Name", out var n) ? (string)n : VmIdOf(vssd);

        // Static memory: Reservation = VirtualQuantity = Limit (os-win's dynamic_memory_ratio <= 1 branch).
        var memory = (await SettingsOfAsync("Msvm_MemorySettingData", vmId, null, ct).ConfigureAwait(false)).FirstOrDefault()
            ?? throw new HyperVException(HyperVErrorKind.Failed, $"VM '{definition.Name}' has no Msvm_MemorySettingData");
        var mb = (ulong)definition.MemoryMb;
        await ModifyResourceAsync(vsmsPath, new CimEmbeddedInstance(memory.ClassName, new Dictionary<string, object?>
        {
            ["DynamicMemoryEnabled"] = false,
            ["VirtualQuantity"] = mb,
            ["Reservation"] = mb,
            ["Limit"] = mb,
        }, memory.Path), ct).ConfigureAwait(false);

        // vCPUs: Reservation = VirtualQuantity, Limit 100000 (100 %), as os-win's _set_vm_vcpus.
        var processor = (await SettingsOfAsync("Msvm_ProcessorSettingData", vmId, null, ct).ConfigureAwait(false)).FirstOrDefault()
            ?? throw new HyperVException(HyperVErrorKind.Failed, $"VM '{definition.Name}' has no Msvm_ProcessorSettingData");
        var vcpus = (ulong)definition.Vcpus;
        await ModifyResourceAsync(vsmsPath, new CimEmbeddedInstance(processor.ClassName, new Dictionary<string, object?>
        {
            ["VirtualQuantity"] = vcpus,
            ["Reservation"] = vcpus,
            ["Limit"] = 100000UL,
        }, processor.Path), ct).ConfigureAwait(false);

        var controllerTemplate = await DefaultTemplateAsync("Msvm_ResourceAllocationSettingData", ScsiControllerSubType, ct).ConfigureAwait(false);
        var controller = await AddResourceAsync(vsmsPath, vssd.Path, new CimEmbeddedInstance(controllerTemplate.ClassName,
            new Dictionary<string, object?>
            {
                ["VirtualSystemIdentifiers"] = new[] { "{" + Guid.NewGuid().ToString().ToUpperInvariant() + "}" },
            }, controllerTemplate.Path), ct).ConfigureAwait(false);

        var driveTemplate = await DefaultTemplateAsync("Msvm_ResourceAllocationSettingData", DiskDriveSubType, ct).ConfigureAwait(false);
        var drive = await AddResourceAsync(vsmsPath, vssd.Path, new CimEmbeddedInstance(driveTemplate.ClassName,
            new Dictionary<string, object?>
            {
                ["Parent"] = controller.Path,
                ["Address"] = "0",
                ["AddressOnParent"] = "0",
            }, driveTemplate.Path), ct).ConfigureAwait(false);

        var vhdTemplate = await DefaultTemplateAsync("Msvm_StorageAllocationSettingData", VirtualHardDiskSubType, ct).ConfigureAwait(false);
        await AddResourceAsync(vsmsPath, vssd.Path, new CimEmbeddedInstance(vhdTemplate.ClassName,
            new Dictionary<string, object?>
            {
                ["Parent"] = drive.Path,
                ["HostResource"] = new[] { definition.DiskPath },
            }, vhdTemplate.Path), ct).ConfigureAwait(false);
    }

    public Task StartVmAsync(string name, CancellationToken ct) => RequestStateAsync(name, RequestStateRunning, VmPowerState.Running, ct);

    /// <summary>Turns the VM off (RequestStateChange 3, as os-win's power_off): immediate, not a guest shutdown.</summary>
    public Task StopVmAsync(string name, CancellationToken ct) => RequestStateAsync(name, RequestStateOff, VmPowerState.Off, ct);

    /// <summary>DestroySystem: removes the definition, keeps the disk files.</summary>
    public async Task DestroyVmAsync(string name, CancellationToken ct)
    {
        var vm = await RequireVmAsync(name, ct).ConfigureAwait(false);
        var vsms = await SingletonAsync("Msvm_VirtualSystemManagementService", ct).ConfigureAwait(false);
        await _jobs.InvokeAsync(Ns, vsms.Path, "DestroySystem", new Dictionary<string, object?>
        {
            ["AffectedSystem"] = vm.AsReference(),
        }, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Msvm_VirtualSystemMigrationService.MigrateVirtualSystemToHost (os-win livemigrationutils): MigrationType 32768
    /// (VirtualSystem: the VM only, its storage is shared) or 32771 (VirtualSystemAndStorage). With storage, every VHD
    /// (Msvm_StorageAllocationSettingData of subtype Virtual Hard Disk) is passed in NewResourceSettingData with its
    /// HostResource in <paramref name="destinationPath"/> (same file name), and the VM's configuration roots move there
    /// too (NewSystemSettingData), as Move-VM -DestinationStoragePath does.
    /// </summary>
    public async Task MigrateToHostAsync(string name, string destinationHost, bool includeStorage, string? destinationPath, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(destinationHost);
        if (string.Equals(destinationHost, NodeName, StringComparison.OrdinalIgnoreCase))
            throw new HyperVException(HyperVErrorKind.InvalidState, $"VM '{name}' is already on {NodeName}");
        if (includeStorage && string.IsNullOrWhiteSpace(destinationPath))
            throw new HyperVException(HyperVErrorKind.InvalidState, "a migration with storage needs a destination path");
        var vm = await RequireVmAsync(name, ct).ConfigureAwait(false);
        var service = await SingletonAsync("Msvm_VirtualSystemMigrationService", ct).ConfigureAwait(false);
        var type = includeStorage ? MigrationTypeVirtualSystemAndStorage : MigrationTypeVirtualSystem;

        // os-win starts from the host's Msvm_VirtualSystemMigrationSettingData of that type; a new instance otherwise.
        var template = (await _cim.QueryAsync(Ns,
            $"SELECT * FROM Msvm_VirtualSystemMigrationSettingData WHERE MigrationType = {type.ToString(CultureInfo.InvariantCulture)}", ct)
            .ConfigureAwait(false)).FirstOrDefault();
        var parameters = new Dictionary<string, object?>
        {
            ["ComputerSystem"] = vm.AsReference(),
            ["DestinationHost"] = destinationHost,
            ["MigrationSettingData"] = new CimEmbeddedInstance("Msvm_VirtualSystemMigrationSettingData",
                new Dictionary<string, object?> { ["MigrationType"] = type }, template?.Path),
        };

        if (includeStorage)
        {
            var folder = destinationPath!;
            var vmId = vm.GetString("Name")!;
            var disks = await SettingsOfAsync("Msvm_StorageAllocationSettingData", vmId, VirtualHardDiskSubType, ct).ConfigureAwait(false);
            parameters["NewResourceSettingData"] = disks
                .Where(d => d.GetStrings("HostResource") is { Length: > 0 })
                .Select(d => new CimEmbeddedInstance(d.ClassName, new Dictionary<string, object?>
                {
                    ["HostResource"] = d.GetStrings("HostResource")!.Select(p => WindowsPaths.Combine(folder, WindowsPaths.GetFileName(p))).ToArray(),
                }, d.Path))
                .ToArray();
            var vssd = (await _cim.GetAssociatedAsync(Ns, vm.Path, "Msvm_SettingsDefineState", "Msvm_VirtualSystemSettingData", ct).ConfigureAwait(false))
                .FirstOrDefault();
            if (vssd is not null)
            {
                parameters["NewSystemSettingData"] = new CimEmbeddedInstance(vssd.ClassName, new Dictionary<string, object?>
                {
                    ["ConfigurationDataRoot"] = folder,
                    ["SnapshotDataRoot"] = folder,
                    ["SwapFileDataRoot"] = folder,
                }, vssd.Path);
            }
        }

        await _jobs.InvokeAsync(Ns, service.Path, "MigrateVirtualSystemToHost", parameters, ct, _options.MigrationTimeout).ConfigureAwait(false);
    }

    // ------------------------------------------------------------------ helpers

    /// <summary>RequestStateChange; 32775 ("invalid state for this operation") is success when the VM already is in the
    /// requested state (os-win accepts 32775 blindly; here the state is checked).</summary>
    private async Task RequestStateAsync(string name, ushort requested, VmPowerState wanted, CancellationToken ct)
    {
        var vm = await RequireVmAsync(name, ct).ConfigureAwait(false);
        var operation = $"Msvm_ComputerSystem.RequestStateChange({requested}) of VM '{name}'";
        var result = await _cim.InvokeMethodAsync(Ns, vm.Path, "RequestStateChange", new Dictionary<string, object?>
        {
            ["RequestedState"] = requested,
        }, ct).ConfigureAwait(false);
        if (result.ReturnValue == InvalidStateForOperation)
        {
            var now = await _cim.GetInstanceAsync(Ns, vm.Path, ct).ConfigureAwait(false);
            if (MapState(now.GetUInt64("EnabledState")) == wanted)
                return;
        }

        await _jobs.CompleteAsync(operation, result, ct).ConfigureAwait(false);
    }

    private async Task<CimRecord?> FindVmAsync(string name, CancellationToken ct)
    {
        var found = await _cim.QueryAsync(Ns,
            $"SELECT * FROM Msvm_ComputerSystem WHERE Caption = 'Virtual Machine' AND ElementName = {Wql.Quote(name)}", ct).ConfigureAwait(false);
        return found.Count switch
        {
            0 => null,
            1 => found[0],
            _ => throw new HyperVException(HyperVErrorKind.Failed, $"duplicate VM name '{name}' on {NodeName}"),
        };
    }

    private async Task<CimRecord> RequireVmAsync(string name, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        return await FindVmAsync(name, ct).ConfigureAwait(false)
            ?? throw new HyperVException(HyperVErrorKind.NotFound, $"VM '{name}' does not exist on {NodeName}");
    }

    /// <summary>The settings of one VM: os-win's get_element_associated_class (InstanceID LIKE 'Microsoft:&lt;GUID&gt;%').</summary>
    private Task<IReadOnlyList<CimRecord>> SettingsOfAsync(string className, string vmId, string? subType, CancellationToken ct)
    {
        var wql = $"SELECT * FROM {className} WHERE InstanceID LIKE {Wql.Quote("Microsoft:" + Wql.LikeLiteral(vmId) + "%")}";
        if (subType is not null)
            wql += $" AND ResourceSubType = {Wql.Quote(subType)}";
        return _cim.QueryAsync(Ns, wql, ct);
    }

    /// <summary>The host's template of a resource (os-win's _get_new_resource_setting_data: InstanceID LIKE '%\Default').</summary>
    private async Task<CimRecord> DefaultTemplateAsync(string className, string subType, CancellationToken ct)
    {
        var wql = $"SELECT * FROM {className} WHERE ResourceSubType = {Wql.Quote(subType)} AND InstanceID LIKE {Wql.Quote(@"%\Default")}";
        return (await _cim.QueryAsync(Ns, wql, ct).ConfigureAwait(false)).FirstOrDefault()
            ?? throw new HyperVException(HyperVErrorKind.Failed, $"the host has no default {className} of subtype '{subType}'");
    }

    private async Task<CimRecord> SingletonAsync(string className, CancellationToken ct) =>
        (await _cim.QueryAsync(Ns, $"SELECT * FROM {className}", ct).ConfigureAwait(false)).FirstOrDefault()
        ?? throw new HyperVException(HyperVErrorKind.PlatformUnsupported, $"no {className}: is the Hyper-V role installed?");

    private async Task ModifyResourceAsync(string vsmsPath, CimEmbeddedInstance settings, CancellationToken ct) =>
        await _jobs.InvokeAsync(Ns, vsmsPath, "ModifyResourceSettings", new Dictionary<string, object?>
        {
            ["ResourceSettings"] = new[] { settings },
        }, ct).ConfigureAwait(false);

    private async Task<CimReference> AddResourceAsync(string vsmsPath, string vssdPath, CimEmbeddedInstance settings, CancellationToken ct)
    {
        var result = await _jobs.InvokeAsync(Ns, vsmsPath, "AddResourceSettings", new Dictionary<string, object?>
        {
            ["AffectedConfiguration"] = new CimReference(vssdPath),
            ["ResourceSettings"] = new[] { settings },
        }, ct).ConfigureAwait(false);
        return result["ResultingResourceSettings"] switch
        {
            CimReference[] { Length: > 0 } refs => refs[0],
            CimReference single => single,
            _ => throw new HyperVException(HyperVErrorKind.Failed,
                $"AddResourceSettings of a {settings.ClassName} returned no ResultingResourceSettings"),
        };
    }

    private async Task TryDestroyAsync(string vsmsPath, string vmPath)
    {
        try
        {
            await _jobs.InvokeAsync(Ns, vsmsPath, "DestroySystem", new Dictionary<string, object?>
            {
                ["AffectedSystem"] = new CimReference(vmPath),
            }, CancellationToken.None).ConfigureAwait(false);
        }
        catch (HyperVException)
        {
            // Best effort: the original failure is the one worth reporting.
        }
    }

    private static CimEmbeddedInstance VhdSettings(string path, ushort type, string? parentPath, ulong? maxInternalSize)
    {
        var properties = new Dictionary<string, object?>
        {
            ["Type"] = type,
            ["Format"] = VhdFormatVhdx,
            ["Path"] = path,
        };
        if (parentPath is not null)
            properties["ParentPath"] = parentPath;
        if (maxInternalSize is not null)
            properties["MaxInternalSize"] = maxInternalSize.Value;
        return new CimEmbeddedInstance("Msvm_VirtualHardDiskSettingData", properties);
    }

    private static Dictionary<string, List<CimRecord>> ByVm(IReadOnlyList<CimRecord> settings)
    {
        var byVm = new Dictionary<string, List<CimRecord>>(StringComparer.OrdinalIgnoreCase);
        foreach (var s in settings)
        {
            var id = VmIdOf(s);
            if (id.Length == 0)
                continue;
            if (!byVm.TryGetValue(id, out var list))
                byVm[id] = list = [];
            list.Add(s);
        }

        return byVm;
    }

    /// <summary>"Microsoft:&lt;GUID&gt;\..." → GUID ("" for the "Microsoft:Definition\..." templates and other shapes).</summary>
    private static string VmIdOf(CimRecord settings)
    {
        var id = settings.GetString("InstanceID") ?? "";
        const string prefix = "Microsoft:";
        if (!id.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
            return "";
        var rest = id[prefix.Length..];
        var slash = rest.IndexOf('\\');
        var guid = slash < 0 ? rest : rest[..slash];
        return Guid.TryParse(guid, out _) ? guid : "";
    }

    private static VmInfo ToInfo(CimRecord vm, IReadOnlyList<CimRecord>? memory, IReadOnlyList<CimRecord>? cpus, IReadOnlyList<CimRecord>? disks)
    {
        var memoryMb = memory?.Select(m => m.GetUInt64("VirtualQuantity")).FirstOrDefault(q => q is not null) ?? 0;
        var vcpus = cpus?.Select(c => c.GetUInt64("VirtualQuantity")).FirstOrDefault(q => q is not null) ?? 0;
        var disk = disks?.Select(d => d.GetStrings("HostResource")?.FirstOrDefault()).FirstOrDefault(p => !string.IsNullOrEmpty(p));
        return new VmInfo(vm.GetString("ElementName") ?? "", MapState(vm.GetUInt64("EnabledState")), (int)memoryMb, (int)vcpus, disk);
    }

    /// <summary>
    /// Msvm_ComputerSystem.EnabledState. The v2 provider reports 2 Enabled (Running), 3 Disabled (Off), 6 Enabled but
    /// Offline (Saved), 9 Quiesce (Paused), 10 Starting, 4 Shutting Down; the Hyper-V specific values (32768 Paused,
    /// 32769 Suspended/Saved, 32770 Starting, 32773 Saving, 32774 Stopping, 32777 Resuming) are mapped too; others are Unknown.
    /// </summary>
    public static VmPowerState MapState(ulong? enabledState) => enabledState switch
    {
        2 => VmPowerState.Running,
        3 => VmPowerState.Off,
        4 or 32773 or 32774 => VmPowerState.Stopping,
        6 or 32769 => VmPowerState.Saved,
        9 or 32768 => VmPowerState.Paused,
        10 or 32770 or 32777 => VmPowerState.Starting,
        _ => VmPowerState.Unknown,
    };
}

/// <summary>Windows path pieces, right on any OS (System.IO.Path on Linux does not split on '\').</summary>
public static class WindowsPaths
{
    public static string GetDirectoryName(string path)
    {
        var i = path.TrimEnd('\\', '/').LastIndexOfAny(['\\', '/']);
        if (i <= 0)
            return "";
        // "D:\web.vhdx" → "D:\" (the root keeps its separator, as Path.GetDirectoryName on Windows).
        return i == 2 && path[1] == ':' ? path[..3] : path[..i];
    }

    public static string GetFileName(string path)
    {
        var i = path.LastIndexOfAny(['\\', '/']);
        return i < 0 ? path : path[(i + 1)..];
    }

    public static string Combine(string folder, string file) =>
        folder.Length == 0 ? file : folder.TrimEnd('\\', '/') + "\\" + file;
}
