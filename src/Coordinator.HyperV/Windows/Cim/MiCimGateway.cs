using System.Collections;
using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using Microsoft.Management.Infrastructure;
using Microsoft.Management.Infrastructure.Serialization;

namespace Coordinator.HyperV.Windows;

/// <summary>
/// <see cref="ICimGateway"/> over Microsoft.Management.Infrastructure (a local <c>CimSession.Create(null)</c>). Only
/// ever constructed on Windows (<see cref="WindowsBackend"/>): on Linux the package loads but has no libmi to open a
/// session with.
/// </summary>
/// <remarks>
/// <para>References: MI has no __PATH, so a reference is written as a WMI path built from the instance's key properties
/// (<see cref="WmiPath"/>) and read back into a key-only instance of the class (the class schema, cached, gives the key
/// types). That is what the provider needs for GetInstance, InvokeMethod and REF parameters.</para>
/// <para>Embedded instances: the Hyper-V API takes them as strings (os-win passes <c>GetText_(1)</c>, CIM-DTD 2.0 XML).
/// The package has <see cref="CimSerializer"/>: <c>CimSerializer.Create()</c> is its default "MI_XML" format, the DMTF
/// CIM-XML INSTANCE element that the provider parses, which comes out as UTF-16 on Windows (decoded by
/// <see cref="DecodeSerialized"/>). A <see cref="CimEmbeddedInstance"/> based on an existing instance is that instance
/// fetched, cloned and changed; a new one is <c>new CimInstance(CimClass)</c> of the class schema (os-win's
/// <c>Class.new()</c>), so every value gets the declared CIM type.</para>
/// <para>Parameter types come from the method's declaration in the class schema when there is one, else from the .NET
/// type of the value.</para>
/// </remarks>
public sealed class MiCimGateway : ICimGateway, IDisposable
{
    private readonly CimSession _session;
    private readonly ConcurrentDictionary<(string Ns, string Class), CimClass?> _classes = new();

    /// <param name="computerName">Null for the local host.</param>
    public MiCimGateway(string? computerName = null)
    {
        _session = Run("CimSession.Create", () => CimSession.Create(computerName));
    }

    public void Dispose()
    {
        foreach (var c in _classes.Values)
            c?.Dispose();
        _session.Dispose();
    }

    public Task<IReadOnlyList<CimRecord>> QueryAsync(string ns, string wql, CancellationToken ct) => Task.Run(() =>
        Run($"query '{wql}' in {ns}", () =>
        {
            var list = new List<CimRecord>();
            foreach (var instance in _session.QueryInstances(ns, "WQL", wql))
            {
                using (instance)
                    list.Add(ToRecord(ns, instance));
            }

            return (IReadOnlyList<CimRecord>)list;
        }), ct);

    public Task<CimRecord> GetInstanceAsync(string ns, string path, CancellationToken ct) => Task.Run(() =>
        Run($"get {path}", () =>
        {
            using var key = KeyInstance(ns, path);
            using var instance = _session.GetInstance(ns, key);
            return ToRecord(ns, instance);
        }), ct);

    public Task<IReadOnlyList<CimRecord>> GetAssociatedAsync(
        string ns, string sourcePath, string? associationClass, string? resultClass, CancellationToken ct) => Task.Run(() =>
        Run($"associators of {sourcePath}", () =>
        {
            using var key = KeyInstance(ns, sourcePath);
            var list = new List<CimRecord>();
            foreach (var instance in _session.EnumerateAssociatedInstances(ns, key, associationClass, resultClass, null, null))
            {
                using (instance)
                    list.Add(ToRecord(ns, instance));
            }

            return (IReadOnlyList<CimRecord>)list;
        }), ct);

    public Task<CimMethodResult> InvokeMethodAsync(
        string ns, string instancePath, string method, IReadOnlyDictionary<string, object?> parameters, CancellationToken ct) =>
        Task.Run(() => Run($"{WmiPath.ClassOf(instancePath)}.{method}", () =>
        {
            using var key = KeyInstance(ns, instancePath);
            using var inParams = Parameters(ns, key.CimSystemProperties.ClassName, method, parameters);
            using var result = _session.InvokeMethod(ns, key, method, inParams);
            return ToResult(ns, result);
        }), ct);

    public Task<CimMethodResult> InvokeStaticMethodAsync(
        string ns, string className, string method, IReadOnlyDictionary<string, object?> parameters, CancellationToken ct) =>
        Task.Run(() => Run($"{className}.{method}", () =>
        {
            using var inParams = Parameters(ns, className, method, parameters);
            using var result = _session.InvokeMethod(ns, className, method, inParams);
            return ToResult(ns, result);
        }), ct);

    public Task ModifyInstanceAsync(string ns, string path, IReadOnlyDictionary<string, object?> properties, CancellationToken ct) =>
        Task.Run(() => Run($"modify {path}", () =>
        {
            using var key = KeyInstance(ns, path);
            using var instance = _session.GetInstance(ns, key);
            Assign(ns, instance, properties);
            using var _ = _session.ModifyInstance(ns, instance);
            return 0;
        }), ct);

    // ------------------------------------------------------------------ conversions out

    private CimRecord ToRecord(string ns, CimInstance instance)
    {
        var properties = new Dictionary<string, object?>(StringComparer.OrdinalIgnoreCase);
        foreach (var p in instance.CimInstanceProperties)
            properties[p.Name] = FromCim(ns, p.Value, p.CimType);
        return new CimRecord(instance.CimSystemProperties.ClassName, PathOf(ns, instance, isReference: false), properties);
    }

    private Windows.CimMethodResult ToResult(string ns, Microsoft.Management.Infrastructure.CimMethodResult result)
    {
        var outs = new Dictionary<string, object?>(StringComparer.OrdinalIgnoreCase);
        foreach (var p in result.OutParameters)
            outs[p.Name] = FromCim(ns, p.Value, p.CimType);
        var rv = result.ReturnValue?.Value is { } v ? Convert.ToUInt32(v, CultureInfo.InvariantCulture) : 0u;
        return new Windows.CimMethodResult(rv, outs);
    }

    private object? FromCim(string ns, object? value, CimType type) => value switch
    {
        null => null,
        CimInstance i when type == CimType.Reference => new CimReference(PathOf(ns, i, isReference: true)),
        CimInstance i => ToRecord(ns, i),
        CimInstance[] a when type == CimType.ReferenceArray => a.Select(i => new CimReference(PathOf(ns, i, isReference: true))).ToArray(),
        CimInstance[] a => a.Select(i => ToRecord(ns, i)).ToArray(),
        _ => value,
    };

    /// <summary>The WMI path of an instance from its key properties (flagged Key on the instance, or declared Key by its
    /// class); a reference with no flags is key-only by construction, so all its properties are keys.</summary>
    private string PathOf(string ns, CimInstance instance, bool isReference)
    {
        var sys = instance.CimSystemProperties;
        var instanceNs = string.IsNullOrEmpty(sys.Namespace) ? ns : sys.Namespace;
        var keys = instance.CimInstanceProperties.Where(p => (p.Flags & CimFlags.Key) != 0 && p.Value is not null).ToList();
        if (keys.Count == 0 && Class(instanceNs, sys.ClassName) is { } cls)
        {
            var declared = cls.CimClassProperties.Where(d => (d.Flags & CimFlags.Key) != 0).Select(d => d.Name)
                .ToHashSet(StringComparer.OrdinalIgnoreCase);
            keys = instance.CimInstanceProperties.Where(p => declared.Contains(p.Name) && p.Value is not null).ToList();
        }

        if (keys.Count == 0 && isReference)
            keys = instance.CimInstanceProperties.Where(p => p.Value is not null).ToList();
        if (keys.Count == 0 && !string.IsNullOrEmpty(sys.Path))
            return sys.Path;
        return WmiPath.Format(sys.ServerName, instanceNs, sys.ClassName,
            keys.Select(k => new KeyValuePair<string, object?>(k.Name, k.Value)));
    }

    // ------------------------------------------------------------------ conversions in

    /// <summary>A key-only instance for a path: the class schema's instance with the keys set (their declared types).</summary>
    private CimInstance KeyInstance(string ns, string path)
    {
        var parsed = WmiPath.Parse(path);
        var instanceNs = parsed.Namespace ?? ns;
        var cls = Class(instanceNs, parsed.ClassName);
        if (cls is not null)
        {
            var instance = new CimInstance(cls);
            foreach (var (name, value) in parsed.Keys)
            {
                var p = instance.CimInstanceProperties[name]
                    ?? throw new HyperVException(HyperVErrorKind.Failed, $"{parsed.ClassName} has no key property {name}");
                p.Value = ConvertTo(instanceNs, value, p.CimType);
            }

            return instance;
        }

        var loose = new CimInstance(parsed.ClassName, instanceNs);
        foreach (var (name, value) in parsed.Keys)
            loose.CimInstanceProperties.Add(CimProperty.Create(name, value, TypeOf(value), CimFlags.Key));
        return loose;
    }

    private CimMethodParametersCollection Parameters(string ns, string className, string method, IReadOnlyDictionary<string, object?> parameters)
    {
        CimMethodDeclaration? declaration = null;
        try
        {
            declaration = Class(ns, className)?.CimClassMethods[method];
        }
        catch (CimException)
        {
        }

        var collection = new CimMethodParametersCollection();
        foreach (var (name, value) in parameters)
        {
            if (value is null)
                continue;
            CimType type;
            try
            {
                type = declaration?.Parameters[name]?.CimType ?? TypeOf(value);
            }
            catch (CimException)
            {
                type = TypeOf(value);
            }

            collection.Add(CimMethodParameter.Create(name, ConvertTo(ns, value, type), type, CimFlags.In));
        }

        return collection;
    }

    private void Assign(string ns, CimInstance instance, IReadOnlyDictionary<string, object?> properties)
    {
        foreach (var (name, value) in properties)
        {
            var p = instance.CimInstanceProperties[name];
            if (p is null)
            {
                var type = value is null ? CimType.String : TypeOf(value);
                instance.CimInstanceProperties.Add(CimProperty.Create(name, value is null ? null : ConvertTo(ns, value, type), type, CimFlags.Property));
                continue;
            }

            p.Value = value is null ? null : ConvertTo(ns, value, p.CimType);
        }
    }

    private object? ConvertTo(string ns, object value, CimType type)
    {
        switch (value)
        {
            case CimReference r:
                return KeyInstance(ns, r.Path);
            case CimReference[] refs:
                return refs.Select(r => KeyInstance(ns, r.Path)).ToArray();
            case CimEmbeddedInstance e when type == CimType.Instance:
                return Build(ns, e);
            case CimEmbeddedInstance e:
                return SerializeEmbedded(ns, e);
            case CimEmbeddedInstance[] es when type == CimType.InstanceArray:
                return es.Select(e => Build(ns, e)).ToArray();
            case CimEmbeddedInstance[] es:
                return es.Select(e => SerializeEmbedded(ns, e)).ToArray();
        }

        var clr = ClrType(type);
        if (clr is null || clr.IsInstanceOfType(value))
            return value;
        if (clr.IsArray && value is IEnumerable items and not string)
        {
            var element = clr.GetElementType()!;
            var source = items.Cast<object?>().ToList();
            var array = Array.CreateInstance(element, source.Count);
            for (var i = 0; i < source.Count; i++)
                array.SetValue(source[i] is null ? null : Convert.ChangeType(source[i], element, CultureInfo.InvariantCulture), i);
            return array;
        }

        return Convert.ChangeType(value, clr, CultureInfo.InvariantCulture);
    }

    private string SerializeEmbedded(string ns, CimEmbeddedInstance embedded)
    {
        using var instance = Build(ns, embedded);
        using var serializer = CimSerializer.Create();
        return DecodeSerialized(serializer.Serialize(instance, InstanceSerializationOptions.None));
    }

    /// <summary>The instance an embedded one stands for: its base fetched and cloned, or a new instance of the class.</summary>
    private CimInstance Build(string ns, CimEmbeddedInstance embedded)
    {
        CimInstance instance;
        if (embedded.BasedOn is { } basePath)
        {
            using var key = KeyInstance(ns, basePath);
            using var fetched = _session.GetInstance(WmiPath.Parse(basePath).Namespace ?? ns, key);
            instance = new CimInstance(fetched);
        }
        else
        {
            instance = Class(ns, embedded.ClassName) is { } cls ? new CimInstance(cls) : new CimInstance(embedded.ClassName, ns);
        }

        Assign(ns, instance, embedded.Properties);
        return instance;
    }

    /// <summary>Serializer output to text: UTF-16 LE (what MI produces on Windows) or UTF-8, with or without a BOM.</summary>
    public static string DecodeSerialized(byte[] bytes)
    {
        if (bytes.Length >= 2 && bytes[0] == 0xFF && bytes[1] == 0xFE)
            return Encoding.Unicode.GetString(bytes, 2, bytes.Length - 2).TrimEnd('\0');
        if (bytes.Length >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF)
            return Encoding.UTF8.GetString(bytes, 3, bytes.Length - 3).TrimEnd('\0');
        var utf16 = bytes.Length >= 2 && bytes.Length % 2 == 0 && bytes[1] == 0 && bytes[0] != 0;
        return (utf16 ? Encoding.Unicode.GetString(bytes) : Encoding.UTF8.GetString(bytes)).TrimEnd('\0');
    }

    private CimClass? Class(string ns, string className) => _classes.GetOrAdd((ns.ToUpperInvariant(), className.ToUpperInvariant()), _ =>
    {
        try
        {
            return _session.GetClass(ns, className);
        }
        catch (CimException)
        {
            return null;
        }
    });

    private static CimType TypeOf(object value) => value switch
    {
        string => CimType.String,
        string[] => CimType.StringArray,
        bool => CimType.Boolean,
        bool[] => CimType.BooleanArray,
        byte => CimType.UInt8,
        byte[] => CimType.UInt8Array,
        sbyte => CimType.SInt8,
        ushort => CimType.UInt16,
        ushort[] => CimType.UInt16Array,
        short => CimType.SInt16,
        uint => CimType.UInt32,
        uint[] => CimType.UInt32Array,
        int => CimType.SInt32,
        int[] => CimType.SInt32Array,
        ulong => CimType.UInt64,
        ulong[] => CimType.UInt64Array,
        long => CimType.SInt64,
        long[] => CimType.SInt64Array,
        float => CimType.Real32,
        double => CimType.Real64,
        char => CimType.Char16,
        DateTime or TimeSpan => CimType.DateTime,
        CimReference => CimType.Reference,
        CimReference[] => CimType.ReferenceArray,
        CimEmbeddedInstance => CimType.String,
        CimEmbeddedInstance[] => CimType.StringArray,
        _ => CimType.Unknown,
    };

    private static Type? ClrType(CimType type) => type switch
    {
        CimType.Boolean => typeof(bool),
        CimType.UInt8 => typeof(byte),
        CimType.SInt8 => typeof(sbyte),
        CimType.UInt16 => typeof(ushort),
        CimType.SInt16 => typeof(short),
        CimType.UInt32 => typeof(uint),
        CimType.SInt32 => typeof(int),
        CimType.UInt64 => typeof(ulong),
        CimType.SInt64 => typeof(long),
        CimType.Real32 => typeof(float),
        CimType.Real64 => typeof(double),
        CimType.Char16 => typeof(char),
        CimType.String => typeof(string),
        CimType.BooleanArray => typeof(bool[]),
        CimType.UInt8Array => typeof(byte[]),
        CimType.UInt16Array => typeof(ushort[]),
        CimType.UInt32Array => typeof(uint[]),
        CimType.SInt32Array => typeof(int[]),
        CimType.UInt64Array => typeof(ulong[]),
        CimType.SInt64Array => typeof(long[]),
        CimType.StringArray => typeof(string[]),
        _ => null,
    };

    /// <summary>CimException → HyperVException (WBEM_E_NOT_FOUND / NotFound → NotFound, see <see cref="CimErrors"/>).</summary>
    private static T Run<T>(string operation, Func<T> action)
    {
        try
        {
            return action();
        }
        catch (CimException e)
        {
            throw CimErrors.Map(operation, (int)e.NativeErrorCode, HResultOf(e), e.Message, e);
        }
    }

    /// <summary>The WBEM/Win32 HRESULT of the MSFT_WmiError instance WMI attaches to its errors (error_Code).</summary>
    private static uint? HResultOf(CimException e)
    {
        try
        {
            var value = e.ErrorData?.CimInstanceProperties["error_Code"]?.Value;
            return value is null ? null : Convert.ToUInt32(value, CultureInfo.InvariantCulture);
        }
        catch (Exception ex) when (ex is CimException or InvalidCastException or FormatException or OverflowException)
        {
            return null;
        }
    }
}
