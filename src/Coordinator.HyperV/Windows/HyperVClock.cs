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

/// <summary>The file operations the host does itself (existence checks, deleting a VHDX): File.* on the host, a fake in tests.</summary>
public interface IHostFiles
{
    bool Exists(string path);

    void Delete(string path);
}

public sealed class LocalHostFiles : IHostFiles
{
    public static LocalHostFiles Instance { get; } = new();

    public bool Exists(string path) => File.Exists(path);

    public void Delete(string path) => File.Delete(path);
}
