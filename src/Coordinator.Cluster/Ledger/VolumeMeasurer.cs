namespace Coordinator.Cluster.Ledger;

/// <summary>A volume's measured usage: bytes in all, and under each reservation's directory.</summary>
public sealed record VolumeUsage(long UsedBytes, IReadOnlyDictionary<string, long> ConsumerUsage);

/// <summary>
/// Measures a CSV. Runs on the thread pool, never on the singleton's mailbox thread. When the capacity comes from
/// the file system the volume's used bytes are the file system's own figure (total - available); when a capacity is
/// configured (a folder standing in for a CSV, or a share of one) they are the sum of the files under the folder.
/// </summary>
public static class VolumeMeasurer
{
    private static readonly EnumerationOptions Walk = new()
    {
        RecurseSubdirectories = true,
        IgnoreInaccessible = true,
        AttributesToSkip = FileAttributes.ReparsePoint,
    };

    public static VolumeUsage Measure(string root, bool useFileSystemTotals, IReadOnlyDictionary<string, string> consumerDirectories)
    {
        Directory.CreateDirectory(root);
        long used;
        if (useFileSystemTotals)
        {
            var drive = new DriveInfo(root);
            used = drive.TotalSize - drive.AvailableFreeSpace;
        }
        else used = SumFiles(root);

        var usage = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (consumer, relative) in consumerDirectories)
        {
            var dir = Path.Combine(root, relative.Replace('/', Path.DirectorySeparatorChar));
            usage[consumer] = Directory.Exists(dir) ? SumFiles(dir) : 0;
        }
        return new VolumeUsage(used, usage);
    }

    public static long FileSystemCapacity(string root)
    {
        Directory.CreateDirectory(root);
        return new DriveInfo(root).TotalSize;
    }

    private static long SumFiles(string dir)
    {
        long sum = 0;
        foreach (var f in new DirectoryInfo(dir).EnumerateFiles("*", Walk))
        {
            try { sum += f.Length; }
            catch (FileNotFoundException) { /* deleted while we walked */ }
        }
        return sum;
    }
}
