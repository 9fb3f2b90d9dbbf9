namespace Coordinator.HyperV.Windows;

/// <summary>The time source of the polling loops (WMI jobs, cluster moves): real on a host, instant in tests.</summary>
public interface IHyperVClock
{
    DateTimeOffset UtcNow { get; }

    Task Delay(TimeSpan delay, CancellationToken ct);
}

public sealed class SystemHyperVClock : IHyperVClock
{
    public static SystemHyperVClock Instance { get; } = new();

    public DateTimeOffset UtcNow => DateTimeOffset.UtcNow;

    public Task Delay(TimeSpan delay, CancellationToken ct) => Task.Delay(delay, ct);
}

/// <summary>The file operations the host does itself (existence checks, deleting a VHDX, a VM's folder): File.* and
/// Directory.* on the host (NTFS applies its own name rules), a fake in tests.</summary>
public interface IHostFiles
{
    /// <summary>Whether a file (not a folder) has this path.</summary>
    bool Exists(string path);

    void Delete(string path);

    bool FolderExists(string path);

    /// <summary>Creates the folder and its parents (an existing one is fine).</summary>
    void CreateFolder(string path);

    /// <summary>Whether the folder, or any folder under it, holds a file.</summary>
    bool HoldsFiles(string folder);

    /// <summary>Deletes the folder and everything under it.</summary>
    void DeleteFolder(string path);
}

public sealed class LocalHostFiles : IHostFiles
{
    public static LocalHostFiles Instance { get; } = new();

    private static readonly EnumerationOptions Everything = new() { RecurseSubdirectories = true, AttributesToSkip = 0 };

    public bool Exists(string path) => File.Exists(path);

    public void Delete(string path) => File.Delete(path);

    public bool FolderExists(string path) => Directory.Exists(path);

    public void CreateFolder(string path) => Directory.CreateDirectory(path);

    public bool HoldsFiles(string folder) => Directory.EnumerateFiles(folder, "*", Everything).Any();

    public void DeleteFolder(string path) => Directory.Delete(path, recursive: true);
}
