using System.Buffers.Binary;
using System.Text;

namespace Coordinator.HyperV.Windows;

/// <summary>
/// Cluster property lists (CLUSPROP_LIST), the binary format of MoveClusterGroupEx's input and of the
/// GET_*_PROPERTIES control codes' output: a DWORD count, then per property a CLUSPROP_PROPERTY_NAME value (syntax
/// CLUSPROP_SYNTAX_NAME, byte length of the NUL-terminated UTF-16 name, the name), its value(s) (syntax, byte length,
/// data), and a CLUSPROP_SYNTAX_ENDMARK DWORD. Every value's data is padded with zeros to a DWORD boundary; lengths
/// count the data without the padding. Little-endian throughout.
/// </summary>
public static class ClusPropList
{
    public const uint SyntaxEndmark = 0;
    public const uint SyntaxName = 0x00040003; // CLUSPROP_TYPE_NAME << 16 | CLUSPROP_FORMAT_SZ
    public const uint SyntaxListValueDword = 0x00010002; // CLUSPROP_TYPE_LIST_VALUE << 16 | CLUSPROP_FORMAT_DWORD
    public const uint SyntaxListValueSz = 0x00010003;
    public const uint SyntaxListValueULargeInteger = 0x00010006;

    public readonly record struct Value(uint Syntax, byte[] Data);

    /// <summary>
    /// The property list os-win's live_migrate_vm passes to MoveClusterGroupEx: the VM_RESDLL_CONTEXT (4 live migration,
    /// 1 save = quick migration) as a DWORD for both resource types of a VM role, "Virtual Machine" and
    /// "Virtual Machine Configuration".
    /// </summary>
    public static byte[] ForVmMove(ClusterMoveKind kind)
    {
        var context = kind == ClusterMoveKind.Live ? ClusApiConstants.VmResdllContextLiveMigration : ClusApiConstants.VmResdllContextSave;
        return Build(
            (ClusApiConstants.ResourceTypeVm, SyntaxListValueDword, Dword(context)),
            (ClusApiConstants.ResourceTypeVmConfig, SyntaxListValueDword, Dword(context)));
    }

    public static byte[] Dword(uint value)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        return b;
    }

    public static byte[] ULargeInteger(ulong value)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        return b;
    }

    public static byte[] Build(params (string Name, uint Syntax, byte[] Data)[] entries)
    {
        using var ms = new MemoryStream();
        WriteUInt32(ms, (uint)entries.Length);
        foreach (var (name, syntax, data) in entries)
        {
            var nameBytes = Encoding.Unicode.GetBytes(name + "\0");
            WriteValue(ms, SyntaxName, nameBytes);
            WriteValue(ms, syntax, data);
            WriteUInt32(ms, SyntaxEndmark);
        }

        return ms.ToArray();
    }

    /// <summary>Every property of a list with its first value (a property can carry several values before its endmark).</summary>
    public static IReadOnlyDictionary<string, Value> Parse(ReadOnlySpan<byte> list)
    {
        var result = new Dictionary<string, Value>(StringComparer.OrdinalIgnoreCase);
        if (list.Length < 4)
            return result;
        var count = BinaryPrimitives.ReadUInt32LittleEndian(list);
        var pos = 4;
        for (var i = 0; i < count; i++)
        {
            var (nameSyntax, nameData) = ReadValue(list, ref pos);
            if (nameSyntax != SyntaxName)
                throw new FormatException($"property {i}: expected a name (syntax 0x{SyntaxName:X8}), got 0x{nameSyntax:X8}");
            var name = Encoding.Unicode.GetString(nameData).TrimEnd('\0');
            Value? first = null;
            while (true)
            {
                var syntax = ReadUInt32(list, pos);
                if (syntax == SyntaxEndmark)
                {
                    pos += 4;
                    break;
                }

                var (valueSyntax, data) = ReadValue(list, ref pos);
                first ??= new Value(valueSyntax, data);
            }

            if (first is { } v)
                result[name] = v;
        }

        return result;
    }

    public static uint? GetDword(IReadOnlyDictionary<string, Value> list, string name) =>
        list.TryGetValue(name, out var v) && v.Data.Length >= 4 ? BinaryPrimitives.ReadUInt32LittleEndian(v.Data) : null;

    public static ulong? GetULargeInteger(IReadOnlyDictionary<string, Value> list, string name) => list.TryGetValue(name, out var v)
        ? v.Data.Length >= 8 ? BinaryPrimitives.ReadUInt64LittleEndian(v.Data) : v.Data.Length >= 4 ? BinaryPrimitives.ReadUInt32LittleEndian(v.Data) : null
        : null;

    private static int Align(int n) => (n + 3) & ~3;

    private static void WriteValue(Stream s, uint syntax, byte[] data)
    {
        WriteUInt32(s, syntax);
        WriteUInt32(s, (uint)data.Length);
        s.Write(data);
        for (var i = data.Length; i < Align(data.Length); i++)
            s.WriteByte(0);
    }

    private static void WriteUInt32(Stream s, uint v)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, v);
        s.Write(b);
    }

    private static uint ReadUInt32(ReadOnlySpan<byte> list, int pos)
    {
        if (pos + 4 > list.Length)
            throw new FormatException($"property list truncated at {pos}");
        return BinaryPrimitives.ReadUInt32LittleEndian(list[pos..]);
    }

    private static (uint Syntax, byte[] Data) ReadValue(ReadOnlySpan<byte> list, ref int pos)
    {
        var syntax = ReadUInt32(list, pos);
        var length = (int)ReadUInt32(list, pos + 4);
        pos += 8;
        if (length < 0 || pos + length > list.Length)
            throw new FormatException($"property list value of {length} bytes at {pos} runs past the end ({list.Length})");
        var data = list.Slice(pos, length).ToArray();
        pos += Align(length);
        return (syntax, data);
    }
}
