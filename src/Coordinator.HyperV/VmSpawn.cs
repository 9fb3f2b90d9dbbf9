namespace Coordinator.HyperV;

/// <summary>What a spawn makes on its host: the VM's folder, its disk (from <see cref="BasePath"/> when set) and the VM.</summary>
public sealed record VmSpawnPlan(string Name, int MemoryMb, int Vcpus, string Folder, string DiskPath, string? BasePath, long DiskBytes);

/// <summary>Something a spawn created, in the order it was created.</summary>
public enum SpawnStep
{
    FolderCreated,
    DiskCreated,
    VmDefined,
    RoleAdded,
    VmStarted,
}

/// <summary>One undo step that failed: what it was meant to undo, and why it could not.</summary>
public sealed record UndoFailure(SpawnStep Step, Exception Error);

/// <summary>
/// The host's half of spawning a VM: folder, disk, definition, cluster role, start. Each step is recorded only once it
/// has created something, so that <see cref="UndoAsync"/> reverses exactly what this spawn created and nothing that was
/// there before it: a folder that was already there (empty) is kept, a disk or folder that already exists fails the
/// step without being touched, and the folder this spawn created is removed only while it holds no files.
/// </summary>
public sealed class VmSpawn(IHyperVHost host, IFailoverCluster cluster, VmSpawnPlan plan)
{
    private readonly List<SpawnStep> _created = [];

    public VmSpawnPlan Plan { get; } = plan;

    /// <summary>What this spawn created so far, in order (what <see cref="UndoAsync"/> would undo, backwards).</summary>
    public IReadOnlyList<SpawnStep> Created => _created;

    /// <summary>Whether the VM's folder was there before this spawn (then it is not this spawn's to remove).</summary>
    public bool FolderWasThere { get; private set; }

    /// <summary>Runs the steps in order; the first failure is thrown as it came, with the steps before it recorded.</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        if (await host.CreateFolderAsync(Plan.Folder, ct).ConfigureAwait(false))
            _created.Add(SpawnStep.FolderCreated);
        else
            FolderWasThere = true;
        await host.CreateDiskAsync(Plan.DiskPath, Plan.BasePath, DiskKind.Differencing, Plan.DiskBytes, ct).ConfigureAwait(false);
        _created.Add(SpawnStep.DiskCreated);
        await host.DefineVmAsync(new VmDefinition(Plan.Name, Plan.MemoryMb, Plan.Vcpus, Plan.DiskPath), ct).ConfigureAwait(false);
        _created.Add(SpawnStep.VmDefined);
        await cluster.AddVmRoleAsync(Plan.Name, ct).ConfigureAwait(false);
        _created.Add(SpawnStep.RoleAdded);
        await host.StartVmAsync(Plan.Name, ct).ConfigureAwait(false);
        _created.Add(SpawnStep.VmStarted);
    }

    /// <summary>
    /// Undoes what this spawn created, last first, each step once (a second call does nothing). A step that finds its
    /// thing gone already (NotFound) counts as done; other failures are returned and the later steps still run, except
    /// that the folder is then removed only if it holds no files (it never is otherwise). Never throws.
    /// </summary>
    public async Task<IReadOnlyList<UndoFailure>> UndoAsync()
    {
        var failures = new List<UndoFailure>();
        for (var i = _created.Count - 1; i >= 0; i--)
        {
            var step = _created[i];
            try
            {
                await UndoAsync(step).ConfigureAwait(false);
            }
            catch (HyperVException e) when (e.Kind == HyperVErrorKind.NotFound)
            {
                // already gone
            }
            catch (Exception e)
            {
                failures.Add(new UndoFailure(step, e));
            }
        }

        _created.Clear();
        return failures;
    }

    private async Task UndoAsync(SpawnStep step)
    {
        var none = CancellationToken.None; // an undo is not abandoned half way
        switch (step)
        {
            case SpawnStep.VmStarted:
                await host.StopVmAsync(Plan.Name, none).ConfigureAwait(false);
                break;
            case SpawnStep.RoleAdded:
                await cluster.RemoveVmRoleAsync(Plan.Name, none).ConfigureAwait(false);
                break;
            case SpawnStep.VmDefined:
                await host.DestroyVmAsync(Plan.Name, none).ConfigureAwait(false);
                break;
            case SpawnStep.DiskCreated:
                await host.DeleteDiskAsync(Plan.DiskPath, none).ConfigureAwait(false);
                break;
            case SpawnStep.FolderCreated:
                if (!await host.RemoveEmptyFolderAsync(Plan.Folder, none).ConfigureAwait(false))
                    throw new HyperVException(HyperVErrorKind.InvalidState,
                        $"folder '{Plan.Folder}' was kept: it still holds files, which may not be this spawn's");
                break;
        }
    }
}
