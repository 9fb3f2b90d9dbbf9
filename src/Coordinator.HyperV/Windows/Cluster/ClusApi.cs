namespace Coordinator.HyperV.Windows;

/// <summary>
/// The one seam between the Windows back-end and clusapi.dll, for what WMI does badly: moving groups (WMI's
/// MoveToNewNodeParams left groups stuck Pending on Windows Server 2016) and owner/state notifications (WMI
/// __InstanceModificationEvent owner changes were missed under load); os-win moved both to clusapi for these reasons.
/// Handles are opaque and closed by disposing them. Failures throw <see cref="HyperVException"/> with the Win32 code
/// (<see cref="ClusErrors"/>), except where a method returns the code because callers branch on it.
/// </summary>
public interface IClusApi
{
    /// <summary>OpenCluster(null): the cluster of the local node.</summary>
    ClusterHandle OpenCluster(string? clusterName = null);

    GroupHandle OpenClusterGroup(ClusterHandle cluster, string groupName);

    NodeHandle OpenClusterNode(ClusterHandle cluster, string nodeName);

    /// <summary>MoveClusterGroupEx; returns its Win32 code: 0 done, 997 (ERROR_IO_PENDING) under way, others errors.</summary>
    uint MoveClusterGroupEx(GroupHandle group, NodeHandle? destination, uint flags, byte[]? propertyList);

    /// <summary>CancelClusterGroupOperation; returns its Win32 code: 0 cancelled, 997 cancelling, 5023 nothing to cancel.</summary>
    uint CancelClusterGroupOperation(GroupHandle group);

    /// <summary>GetClusterGroupState: the state (CLUSTER_GROUP_STATE) and the owner node's name.</summary>
    ClusterGroupStateInfo GetClusterGroupState(GroupHandle group);

    /// <summary>ClusterGroupControl with no input: the output buffer (a property list for the GET_*_PROPERTIES codes).</summary>
    byte[] ClusterGroupControl(GroupHandle group, uint controlCode);

    /// <summary>ClusterOpenEnumEx/ClusterEnumEx: the objects of one CLUSTER_ENUM type (ids and names).</summary>
    IReadOnlyList<ClusterEnumEntry> ClusterEnum(ClusterHandle cluster, uint objectType);

    /// <summary>CreateClusterNotifyPortV2 with these filters (the keys are the filters' <see cref="NotifyFilter.Key"/>).</summary>
    NotifyPortHandle CreateClusterNotifyPortV2(ClusterHandle cluster, IReadOnlyList<NotifyFilter> filters);

    /// <summary>GetClusterNotifyV2: the next notification, or null after <paramref name="timeoutMilliseconds"/> without
    /// one (WAIT_TIMEOUT).</summary>
    ClusterNotification? GetClusterNotifyV2(NotifyPortHandle port, uint timeoutMilliseconds);
}

/// <summary>A clusapi handle; disposing closes it (CloseCluster, CloseClusterGroup, ...), once.</summary>
public abstract class ClusApiHandle : IDisposable
{
    private int _closed;

    public bool IsClosed => Volatile.Read(ref _closed) != 0;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _closed, 1) == 0)
            Close();
        GC.SuppressFinalize(this);
    }

    protected abstract void Close();
}

public abstract class ClusterHandle : ClusApiHandle;

public abstract class GroupHandle : ClusApiHandle;

public abstract class NodeHandle : ClusApiHandle;

public abstract class NotifyPortHandle : ClusApiHandle;

public readonly record struct ClusterGroupStateInfo(ClusterGroupStateCode State, string OwnerNode);

/// <summary>CLUSTER_GROUP_STATE.</summary>
public enum ClusterGroupStateCode
{
    Unknown = -1,
    Online = 0,
    Offline = 1,
    Failed = 2,
    PartialOnline = 3,
    Pending = 4,
}

public sealed record ClusterEnumEntry(string Id, string Name);

/// <summary>NOTIFY_FILTER_AND_TYPE (plus the notification key the port reports back).</summary>
public readonly record struct NotifyFilter(uint ObjectType, ulong FilterFlags, nuint Key = 0);

/// <summary>What GetClusterNotifyV2 returned: the filter that matched, the object's name/id/parent id/type name and the
/// event buffer (a DWORD state for GROUP_STATE_V2, a property list for GROUP_COMMON_PROPERTY_V2, ...).</summary>
public sealed record ClusterNotification(
    uint ObjectType,
    ulong FilterFlags,
    string ObjectName,
    string ObjectId,
    string ParentId,
    string ObjectTypeName,
    byte[] Buffer,
    nuint Key = 0);

/// <summary>clusapi.h / resapi.h constants (values as os-win's winapi constants and the Windows SDK).</summary>
public static class ClusApiConstants
{
    public const uint ErrorSuccess = 0;
    public const uint ErrorInvalidHandle = 6;
    public const uint ErrorMoreData = 234;
    public const uint WaitTimeout = 258;
    public const uint ErrorIoPending = 997;
    public const uint ErrorInvalidState = 5023;

    // MoveClusterGroupEx flags.
    public const uint MoveReturnToSourceNodeOnError = 0x2;
    public const uint MoveQueueEnabled = 0x4;
    public const uint MoveHighPriorityStart = 0x8;

    // CLUSTER_OBJECT_TYPE and CLUSTER_CHANGE_GROUP_V2.
    public const uint ObjectTypeGroup = 2;
    public const ulong GroupCommonPropertyV2 = 0x2;
    public const ulong GroupStateV2 = 0x8;
    public const ulong GroupOwnerNodeV2 = 0x10;

    public const uint EnumNode = 0x1;
    public const uint EnumGroup = 0x8;

    public const uint CtlGroupGetRoCommonProperties = 0x3000055;
    public const uint GroupTypeVirtualMachine = 111;
    public const ulong StatusWaitingInQueueForMove = 0x4;

    public const string GroupTypeProperty = "GroupType";
    public const string StatusInformationProperty = "StatusInformation";

    // Resource type names keyed in MoveClusterGroupEx's property list, with a VM_RESDLL_CONTEXT DWORD.
    public const string ResourceTypeVm = "Virtual Machine";
    public const string ResourceTypeVmConfig = "Virtual Machine Configuration";
    public const uint VmResdllContextSave = 1;
    public const uint VmResdllContextLiveMigration = 4;
}

/// <summary>Win32/cluster error codes → <see cref="HyperVException"/>.</summary>
public static class ClusErrors
{
    /// <summary>os-win's CLUSTER_NOT_FOUND_ERROR_CODES (+ ERROR_NOT_FOUND).</summary>
    private static readonly HashSet<uint> NotFound =
    [
        1168, 5002, 5007, 5013, 5032, 5042, 5043, 5045, 5047, 5078, 5080, 5086, 5891, 5894,
    ];

    public static bool IsNotFound(uint code) => NotFound.Contains(code);

    public static HyperVException ToException(string operation, uint code)
    {
        var kind = code switch
        {
            _ when IsNotFound(code) => HyperVErrorKind.NotFound,
            183 or 5010 => HyperVErrorKind.AlreadyExists, // ERROR_ALREADY_EXISTS, ERROR_OBJECT_ALREADY_EXISTS
            ClusApiConstants.ErrorInvalidState => HyperVErrorKind.InvalidState,
            1460 or ClusApiConstants.WaitTimeout => HyperVErrorKind.Timeout,
            8 or 14 => HyperVErrorKind.InsufficientResources, // not enough memory / storage
            _ => HyperVErrorKind.Failed,
        };
        return new HyperVException(kind, $"{operation} failed with Win32 error {code}", code);
    }
}
