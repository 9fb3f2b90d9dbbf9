using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;

namespace Coordinator.HyperV.Simulated;

/// <summary>
/// The simulator's VHDX files. They are sparse files, not real VHDX: an empty disk is a file of the disk's size with
/// no data (a hole); a differencing disk is a small header naming its parent, extended (sparse) to its virtual size; a
/// copy is a hole-preserving copy of the base. Sparse files need Linux (or another system whose file systems make
/// holes of <see cref="FileStream.SetLength"/>): on NTFS without FSCTL_SET_SPARSE the space would be allocated.
/// </summary>
public static class SimulatedDisks
{
    /// <summary>The first line of a simulated differencing disk.</summary>
    public const string DifferencingMagic = "SIMULATED-VHDX-DIFFERENCING";

    private const int HeaderProbeBytes = 64 * 1024;

    private sealed record DifferencingHeader(string Parent, long VirtualSize, DateTimeOffset Created);

    /// <summary>An empty disk: a file of <paramref name="sizeBytes"/> that is all hole.</summary>
    public static void CreateEmpty(string path, long sizeBytes)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        WriteEmpty(stream, sizeBytes);
    }

    internal static void WriteEmpty(FileStream stream, long sizeBytes) => stream.SetLength(sizeBytes);

    /// <summary>A differencing disk whose parent is <paramref name="parentPath"/>: a header line naming the parent (full
    /// path), then a JSON line, then a hole up to the virtual size (the parent's, or <paramref name="sizeBytes"/> if
    /// larger).</summary>
    public static void CreateDifferencing(string path, string parentPath, long sizeBytes)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        WriteDifferencing(stream, parentPath, sizeBytes);
    }

    internal static void WriteDifferencing(FileStream stream, string parentPath, long sizeBytes)
    {
        var parent = Path.GetFullPath(parentPath);
        var virtualSize = Math.Max(new FileInfo(parent).Length, sizeBytes);
        var json = JsonSerializer.Serialize(new DifferencingHeader(parent, virtualSize, DateTimeOffset.UtcNow));
        var header = Encoding.UTF8.GetBytes($"{DifferencingMagic}\n{json}\n");
        stream.Write(header);
        stream.SetLength(Math.Max(virtualSize, header.Length));
    }

    /// <summary>The full path of a simulated differencing disk's parent, or null when the file is not one.</summary>
    public static string? ReadParentPath(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        var buffer = new byte[(int)Math.Min(HeaderProbeBytes, stream.Length)];
        stream.ReadExactly(buffer);
        var text = Encoding.UTF8.GetString(buffer);
        var lines = text.Split('\n', 3);
        if (lines.Length < 3 || lines[0] != DifferencingMagic)
            return null;
        try
        {
            return JsonSerializer.Deserialize<DifferencingHeader>(lines[1])?.Parent;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>A copy of <paramref name="source"/> that keeps its holes (File.Copy writes them out as zeros). Data ranges
    /// are found with SEEK_DATA/SEEK_HOLE on Linux; zero blocks inside them are skipped too. Extended (sparse) to
    /// <paramref name="minimumLength"/> when the source is shorter.</summary>
    public static void SparseCopy(string source, string destination, long minimumLength = 0)
    {
        using var output = new FileStream(destination, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        WriteSparseCopy(source, output, minimumLength);
    }

    internal static void WriteSparseCopy(string source, FileStream output, long minimumLength)
    {
        using var input = File.OpenHandle(source, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
        var length = RandomAccess.GetLength(input);
        var buffer = new byte[1024 * 1024];
        var position = 0L;
        while (position < length)
        {
            var dataStart = NextData(input, position, length);
            if (dataStart >= length)
                break;
            var dataEnd = NextHole(input, dataStart, length);
            for (var offset = dataStart; offset < dataEnd;)
            {
                var wanted = (int)Math.Min(buffer.Length, dataEnd - offset);
                var read = RandomAccess.Read(input, buffer.AsSpan(0, wanted), offset);
                if (read == 0)
                    break;
                var chunk = buffer.AsSpan(0, read);
                if (chunk.ContainsAnyExcept((byte)0))
                {
                    output.Position = offset;
                    output.Write(chunk);
                }

                offset += read;
            }

            position = dataEnd;
        }

        output.SetLength(Math.Max(length, minimumLength));
    }

    private const int SeekData = 3; // Linux values
    private const int SeekHole = 4;

    [DllImport("libc", EntryPoint = "lseek", SetLastError = true)]
    private static extern long LinuxSeek(int fd, long offset, int whence);

    /// <summary>The first offset at or after <paramref name="from"/> that holds data (the length when none does).</summary>
    private static long NextData(SafeFileHandle handle, long from, long length)
    {
        if (!OperatingSystem.IsLinux())
            return from;
        var r = Seek(handle, from, SeekData);
        return r switch
        {
            null => from,       // not supported here: treat everything as data
            < 0 => length,      // ENXIO: no data after from
            _ => r.Value,
        };
    }

    /// <summary>The end of the data range that starts at <paramref name="from"/>.</summary>
    private static long NextHole(SafeFileHandle handle, long from, long length)
    {
        if (!OperatingSystem.IsLinux())
            return length;
        var r = Seek(handle, from, SeekHole);
        return r is { } h && h >= from ? Math.Min(h, length) : length;
    }

    /// <summary>lseek on the handle: the offset, -1 for ENXIO, null when the call is not usable.</summary>
    private static long? Seek(SafeFileHandle handle, long offset, int whence)
    {
        try
        {
            var fd = (int)handle.DangerousGetHandle();
            var r = LinuxSeek(fd, offset, whence);
            if (r >= 0)
                return r;
            const int enxio = 6;
            return Marshal.GetLastPInvokeError() == enxio ? -1 : null;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
    }
}
