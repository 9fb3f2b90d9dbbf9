namespace Coordinator.HyperV.Windows;

/// <summary>
/// The one seam between the Windows back-end and CIM/WMI. Everything above it (the Hyper-V and cluster mappings, the
/// job protocol) works on these plain records, so it is unit-tested on any OS against recorded shapes; only
/// <see cref="MiCimGateway"/> touches Microsoft.Management.Infrastructure.
/// </summary>
/// <remarks>
/// Values travel as WMI returns them through MI: uint16 as <see cref="ushort"/>, uint32 as <see cref="uint"/>, uint64 as
/// <see cref="ulong"/>, string[] as <see cref="string"/>[], references as <see cref="CimReference"/>, embedded instances
/// in properties as <see cref="CimRecord"/>. Method parameters use the same .NET types (the gateway derives the CIM type
/// from them), plus <see cref="CimEmbeddedInstance"/> for the "string containing an embedded instance" parameters of the
/// Hyper-V API. Errors surface as <see cref="HyperVException"/> (WBEM_E_NOT_FOUND and MI's NotFound → NotFound, ...).
/// </remarks>
public interface ICimGateway
{
    /// <summary>A WQL query (the dialect is always "WQL").</summary>
    Task<IReadOnlyList<CimRecord>> QueryAsync(string ns, string wql, CancellationToken ct);

    /// <summary>The instance at <paramref name="path"/>; NotFound when it does not exist.</summary>
    Task<CimRecord> GetInstanceAsync(string ns, string path, CancellationToken ct);

    /// <summary>ASSOCIATORS OF the instance at <paramref name="sourcePath"/>, optionally narrowed to one association class
    /// and/or one result class (e.g. Msvm_ComputerSystem → Msvm_VirtualSystemSettingData via Msvm_SettingsDefineState).</summary>
    Task<IReadOnlyList<CimRecord>> GetAssociatedAsync(
        string ns, string sourcePath, string? associationClass, string? resultClass, CancellationToken ct);

    /// <summary>Invokes an instance method. Null parameter values are not sent.</summary>
    Task<CimMethodResult> InvokeMethodAsync(
        string ns, string instancePath, string method, IReadOnlyDictionary<string, object?> parameters, CancellationToken ct);

    /// <summary>Invokes a static (class) method.</summary>
    Task<CimMethodResult> InvokeStaticMethodAsync(
        string ns, string className, string method, IReadOnlyDictionary<string, object?> parameters, CancellationToken ct);

    /// <summary>Writes <paramref name="properties"/> into the instance at <paramref name="path"/> (a PutInstance of the
    /// changed properties; values are converted to the properties' CIM types).</summary>
    Task ModifyInstanceAsync(string ns, string path, IReadOnlyDictionary<string, object?> properties, CancellationToken ct);
}

/// <summary>An instance as the gateway returns it: its class, its WMI object path (key properties only, see
/// <see cref="WmiPath"/>) and its properties by name (case-insensitive, as in WMI).</summary>
public sealed record CimRecord(string ClassName, string Path, IReadOnlyDictionary<string, object?> Properties)
{
    public object? this[string property] => Properties.TryGetValue(property, out var v) ? v : null;

    public string? GetString(string property) => this[property] as string;

    /// <summary>The property as an unsigned integer whatever its integral CIM type (null when absent or null).</summary>
    public ulong? GetUInt64(string property) => this[property] switch
    {
        null => null,
        byte b => b,
        ushort s => s,
        uint u => u,
        ulong l => l,
        sbyte sb => unchecked((ulong)sb),
        short s => unchecked((ulong)s),
        int i => unchecked((ulong)i),
        long l => unchecked((ulong)l),
        string s when ulong.TryParse(s, out var p) => p,
        var other => throw new HyperVException(HyperVErrorKind.Failed,
            $"{ClassName}.{property} is a {other.GetType().Name}, not an integer"),
    };

    public string[]? GetStrings(string property) => this[property] switch
    {
        null => null,
        string[] a => a,
        string s => [s],
        var other => throw new HyperVException(HyperVErrorKind.Failed,
            $"{ClassName}.{property} is a {other.GetType().Name}, not a string array"),
    };

    public CimReference AsReference() => new(Path);
}

/// <summary>A REF value (a method's Job / ResultingSystem, a REF parameter): the WMI object path of the instance.</summary>
public readonly record struct CimReference(string Path)
{
    public override string ToString() => Path;
}

/// <summary>
/// An embedded instance to pass where the Hyper-V API takes "a string containing an embedded instance"
/// (DefineSystem's SystemSettings, Add/ModifyResourceSettings' ResourceSettings[], MigrationSettingData, ...).
/// With <see cref="BasedOn"/> it is that existing instance (a "\Default" template or the VM's current memory settings,
/// as os-win does) with <see cref="Properties"/> changed; without it a new instance of <see cref="ClassName"/> (as
/// os-win's <c>Class.new()</c>) with only these properties set. The gateway serializes it (see <see cref="MiCimGateway"/>).
/// </summary>
public sealed record CimEmbeddedInstance(string ClassName, IReadOnlyDictionary<string, object?> Properties, string? BasedOn = null)
{
    public object? this[string property] => Properties.TryGetValue(property, out var v) ? v : null;
}

/// <summary>A method's result: its return value (0 when the method returns void, as the MSCluster ones do) and its out
/// parameters (Job, ResultingSystem, ResultingResourceSettings, ...).</summary>
public sealed record CimMethodResult(uint ReturnValue, IReadOnlyDictionary<string, object?> OutParameters)
{
    public static CimMethodResult Void { get; } = new(0, new Dictionary<string, object?>());

    public object? this[string parameter] => OutParameters.TryGetValue(parameter, out var v) ? v : null;

    public CimReference? Job => this["Job"] as CimReference?;
}

/// <summary>Namespaces, classes and well-known values of the Hyper-V v2 and MSCluster WMI providers.</summary>
public static class CimNames
{
    public const string Virtualization = "root/virtualization/v2";
    public const string Cimv2 = "root/cimv2";
    public const string Cluster = "root/MSCluster";
}
