using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Coordinator.HyperV.Windows;

/// <summary>
/// <see cref="IClusApi"/> over clusapi.dll. Compiled everywhere, only ever called on Windows (<see cref="WindowsBackend"/>
/// checks first). Signatures as clusapi.h (and os-win's winapi/libs/clusapi.py); handles are SafeHandles, so a handle
/// still in use by a call is not closed under it.
/// </summary>
public sealed class NativeClusApi : IClusApi
{
    private const string Lib = "clusapi.dll";
    private const uint MaxPath = 260;
    private static readonly IntPtr InvalidHandleValue = new(-1);

    public ClusterHandle OpenCluster(string? clusterName = null)
    {
        var h = Native.OpenCluster(clusterName);
        return h.IsInvalid ? throw LastError("OpenCluster", h) : new Cluster(h);
    }

    public GroupHandle OpenClusterGroup(ClusterHandle cluster, string groupName)
    {
        var h = Native.OpenClusterGroup(Safe(cluster), groupName);
        return h.IsInvalid ? throw LastError($"OpenClusterGroup({groupName})", h) : new Group(h);
    }

    public NodeHandle OpenClusterNode(ClusterHandle cluster, string nodeName)
    {
        var h = Native.OpenClusterNode(Safe(cluster), nodeName);
        return h.IsInvalid ? throw LastError($"OpenClusterNode({nodeName})", h) : new Node(h);
    }

    public uint MoveClusterGroupEx(GroupHandle group, NodeHandle? destination, uint flags, byte[]? propertyList)
    {
        var size = (uint)(propertyList?.Length ?? 0);
        return destination is null
            ? Native.MoveClusterGroupEx(Safe(group), IntPtr.Zero, flags, propertyList, size)
            : Native.MoveClusterGroupEx(Safe(group), Safe(destination), flags, propertyList, size);
    }

    public uint CancelClusterGroupOperation(GroupHandle group) => Native.CancelClusterGroupOperation(Safe(group), 0);

    public ClusterGroupStateInfo GetClusterGroupState(GroupHandle group)
    {
        var size = MaxPath;
        while (true)
        {
            var buffer = new char[size];
            var length = size;
            var state = Native.GetClusterGroupState(Safe(group), buffer, ref length);
            if (state != (int)ClusterGroupStateCode.Unknown)
                return new ClusterGroupStateInfo((ClusterGroupStateCode)state, Text(buffer));
            var error = (uint)Marshal.GetLastPInvokeError();
            if (error == ClusApiConstants.ErrorMoreData && length + 1 > size)
            {
                size = length + 1;
                continue;
            }

            throw ClusErrors.ToException("GetClusterGroupState", error);
        }
    }

    public byte[] ClusterGroupControl(GroupHandle group, uint controlCode)
    {
        var size = 1024u;
        while (true)
        {
            var buffer = new byte[size];
            var rc = Native.ClusterGroupControl(Safe(group), IntPtr.Zero, controlCode, IntPtr.Zero, 0, buffer, size, out var returned);
            if (rc == ClusApiConstants.ErrorSuccess)
                return buffer.AsSpan(0, (int)Math.Min(returned, size)).ToArray();
            if (rc == ClusApiConstants.ErrorMoreData && returned > size)
            {
                size = returned;
                continue;
            }

            throw ClusErrors.ToException($"ClusterGroupControl(0x{controlCode:X})", rc);
        }
    }

    public IReadOnlyList<ClusterEnumEntry> ClusterEnum(ClusterHandle cluster, uint objectType)
    {
        using var e = Native.ClusterOpenEnumEx(Safe(cluster), objectType, IntPtr.Zero);
        if (e.IsInvalid)
            throw LastError("ClusterOpenEnumEx", e);
        var count = Native.ClusterGetEnumCountEx(e);
        var list = new List<ClusterEnumEntry>((int)count);
        for (var i = 0u; i < count; i++)
        {
            uint size = 0;
            var rc = Native.ClusterEnumEx(e, i, IntPtr.Zero, ref size);
            if (rc != ClusApiConstants.ErrorSuccess && rc != ClusApiConstants.ErrorMoreData)
                throw ClusErrors.ToException("ClusterEnumEx", rc);
            // The item's strings point into the same buffer: it must not move, hence unmanaged memory.
            var buffer = Marshal.AllocHGlobal((int)size);
            try
            {
                rc = Native.ClusterEnumEx(e, i, buffer, ref size);
                if (rc != ClusApiConstants.ErrorSuccess)
                    throw ClusErrors.ToException("ClusterEnumEx", rc);
                var item = Marshal.PtrToStructure<ClusterEnumItem>(buffer);
                list.Add(new ClusterEnumEntry(Marshal.PtrToStringUni(item.lpszId) ?? "", Marshal.PtrToStringUni(item.lpszName) ?? ""));
            }
            finally
            {
                Marshal.FreeHGlobal(buffer);
            }
        }

        return list;
    }

    public NotifyPortHandle CreateClusterNotifyPortV2(ClusterHandle cluster, IReadOnlyList<NotifyFilter> filters)
    {
        ArgumentOutOfRangeException.ThrowIfZero(filters.Count);
        // One call per distinct key (a port reports the key a filter was added with), the first creating the port.
        SafeNotifyPortHandle? port = null;
        foreach (var byKey in filters.GroupBy(f => f.Key))
        {
            var native = byKey.Select(f => new NotifyFilterAndType { dwObjectType = f.ObjectType, FilterFlags = (long)f.FilterFlags }).ToArray();
            if (port is null)
            {
                port = Native.CreateClusterNotifyPortV2(InvalidHandleValue, Safe(cluster), native, (uint)native.Length, byKey.Key);
                if (port.IsInvalid)
                    throw LastError("CreateClusterNotifyPortV2", port);
            }
            else
            {
                var added = false;
                port.DangerousAddRef(ref added);
                try
                {
                    using var same = Native.CreateClusterNotifyPortV2(port.DangerousGetHandle(), Safe(cluster), native, (uint)native.Length, byKey.Key);
                    var error = Marshal.GetLastPInvokeError();
                    var failed = same.IsInvalid;
                    // On success the same port comes back: this wrapper must not close it.
                    same.SetHandleAsInvalid();
                    if (failed)
                        throw ClusErrors.ToException("CreateClusterNotifyPortV2", (uint)error);
                }
                finally
                {
                    if (added)
                        port.DangerousRelease();
                }
            }
        }

        return new Port(port!);
    }

    public ClusterNotification? GetClusterNotifyV2(NotifyPortHandle port, uint timeoutMilliseconds)
    {
        uint bufferSize = 4096, idSize = MaxPath, parentSize = MaxPath, nameSize = MaxPath, typeSize = MaxPath;
        for (var attempt = 0; attempt < 2; attempt++)
        {
            var buffer = new byte[bufferSize];
            char[] id = new char[idSize], parent = new char[parentSize], name = new char[nameSize], type = new char[typeSize];
            var rc = Native.GetClusterNotifyV2(Safe(port), out var key, out var filter, buffer, ref bufferSize,
                id, ref idSize, parent, ref parentSize, name, ref nameSize, type, ref typeSize, timeoutMilliseconds);
            switch (rc)
            {
                case ClusApiConstants.ErrorSuccess:
                    return new ClusterNotification(filter.dwObjectType, (ulong)filter.FilterFlags, Text(name), Text(id), Text(parent), Text(type),
                        buffer.AsSpan(0, (int)Math.Min(bufferSize, (uint)buffer.Length)).ToArray(), key);
                case ClusApiConstants.WaitTimeout:
                    return null;
                case ClusApiConstants.ErrorMoreData:
                    // The sizes now hold what is needed (os-win retries the same way); the notification is still queued.
                    bufferSize = Math.Max(bufferSize, (uint)buffer.Length);
                    idSize = Math.Max(idSize + 1, MaxPath);
                    parentSize = Math.Max(parentSize + 1, MaxPath);
                    nameSize = Math.Max(nameSize + 1, MaxPath);
                    typeSize = Math.Max(typeSize + 1, MaxPath);
                    continue;
                default:
                    throw ClusErrors.ToException("GetClusterNotifyV2", rc);
            }
        }

        throw ClusErrors.ToException("GetClusterNotifyV2", ClusApiConstants.ErrorMoreData);
    }

    private static string Text(char[] buffer)
    {
        var end = Array.IndexOf(buffer, '\0');
        return new string(buffer, 0, end < 0 ? buffer.Length : end);
    }

    private static HyperVException LastError(string operation, SafeHandle invalid)
    {
        var error = (uint)Marshal.GetLastPInvokeError();
        invalid.SetHandleAsInvalid();
        invalid.Dispose();
        return ClusErrors.ToException(operation, error);
    }

    private static SafeClusterHandle Safe(ClusterHandle h) => ((Cluster)h).Handle;

    private static SafeGroupHandle Safe(GroupHandle h) => ((Group)h).Handle;

    private static SafeNodeHandle Safe(NodeHandle h) => ((Node)h).Handle;

    private static SafeNotifyPortHandle Safe(NotifyPortHandle h) => ((Port)h).Handle;

    private sealed class Cluster(SafeClusterHandle handle) : ClusterHandle
    {
        public SafeClusterHandle Handle { get; } = handle;

        protected override void Close() => Handle.Dispose();
    }

    private sealed class Group(SafeGroupHandle handle) : GroupHandle
    {
        public SafeGroupHandle Handle { get; } = handle;

        protected override void Close() => Handle.Dispose();
    }

    private sealed class Node(SafeNodeHandle handle) : NodeHandle
    {
        public SafeNodeHandle Handle { get; } = handle;

        protected override void Close() => Handle.Dispose();
    }

    private sealed class Port(SafeNotifyPortHandle handle) : NotifyPortHandle
    {
        public SafeNotifyPortHandle Handle { get; } = handle;

        protected override void Close() => Handle.Dispose();
    }

    internal sealed class SafeClusterHandle() : SafeHandleZeroOrMinusOneIsInvalid(true)
    {
        protected override bool ReleaseHandle() => Native.CloseCluster(handle);
    }

    internal sealed class SafeGroupHandle() : SafeHandleZeroOrMinusOneIsInvalid(true)
    {
        protected override bool ReleaseHandle() => Native.CloseClusterGroup(handle);
    }

    internal sealed class SafeNodeHandle() : SafeHandleZeroOrMinusOneIsInvalid(true)
    {
        protected override bool ReleaseHandle() => Native.CloseClusterNode(handle);
    }

    internal sealed class SafeNotifyPortHandle() : SafeHandleZeroOrMinusOneIsInvalid(true)
    {
        protected override bool ReleaseHandle() => Native.CloseClusterNotifyPort(handle);
    }

    internal sealed class SafeClusterEnumHandle() : SafeHandleZeroOrMinusOneIsInvalid(true)
    {
        protected override bool ReleaseHandle() => Native.ClusterCloseEnumEx(handle) == 0;
    }

    /// <summary>NOTIFY_FILTER_AND_TYPE: a DWORD then a LONGLONG (8-aligned: 16 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NotifyFilterAndType
    {
        public uint dwObjectType;
        public long FilterFlags;
    }

    /// <summary>CLUSTER_ENUM_ITEM.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct ClusterEnumItem
    {
        public uint dwVersion;
        public uint dwType;
        public uint cbId;
        public IntPtr lpszId;
        public uint cbName;
        public IntPtr lpszName;
    }

    private static class Native
    {
        [DllImport(Lib, CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        public static extern SafeClusterHandle OpenCluster(string? lpszClusterName);

        [DllImport(Lib, ExactSpelling = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool CloseCluster(IntPtr hCluster);

        [DllImport(Lib, CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        public static extern SafeGroupHandle OpenClusterGroup(SafeClusterHandle hCluster, string lpszGroupName);

        [DllImport(Lib, ExactSpelling = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool CloseClusterGroup(IntPtr hGroup);

        [DllImport(Lib, CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        public static extern SafeNodeHandle OpenClusterNode(SafeClusterHandle hCluster, string lpszNodeName);

        [DllImport(Lib, ExactSpelling = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool CloseClusterNode(IntPtr hNode);

        [DllImport(Lib, ExactSpelling = true)]
        public static extern uint MoveClusterGroupEx(SafeGroupHandle hGroup, SafeNodeHandle hDestinationNode, uint dwMoveFlags, byte[]? lpInBuffer, uint cbInBufferSize);

        [DllImport(Lib, ExactSpelling = true)]
        public static extern uint MoveClusterGroupEx(SafeGroupHandle hGroup, IntPtr hDestinationNode, uint dwMoveFlags, byte[]? lpInBuffer, uint cbInBufferSize);

        [DllImport(Lib, ExactSpelling = true)]
        public static extern uint CancelClusterGroupOperation(SafeGroupHandle hGroup, uint dwCancelFlags);

        [DllImport(Lib, CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        public static extern int GetClusterGroupState(SafeGroupHandle hGroup, [Out] char[] lpszNodeName, ref uint lpcchNodeName);

        [DllImport(Lib, ExactSpelling = true)]
        public static extern uint ClusterGroupControl(
            SafeGroupHandle hGroup, IntPtr hHostNode, uint dwControlCode, IntPtr lpInBuffer, uint nInBufferSize,
            [Out] byte[] lpOutBuffer, uint nOutBufferSize, out uint lpBytesReturned);

        [DllImport(Lib, ExactSpelling = true, SetLastError = true)]
        public static extern SafeClusterEnumHandle ClusterOpenEnumEx(SafeClusterHandle hCluster, uint dwType, IntPtr pOptions);

        [DllImport(Lib, ExactSpelling = true)]
        public static extern uint ClusterGetEnumCountEx(SafeClusterEnumHandle hClusterEnum);

        [DllImport(Lib, ExactSpelling = true)]
        public static extern uint ClusterEnumEx(SafeClusterEnumHandle hClusterEnum, uint dwIndex, IntPtr pItem, ref uint cbItem);

        [DllImport(Lib, ExactSpelling = true)]
        public static extern uint ClusterCloseEnumEx(IntPtr hClusterEnum);

        [DllImport(Lib, ExactSpelling = true, SetLastError = true)]
        public static extern SafeNotifyPortHandle CreateClusterNotifyPortV2(
            IntPtr hChange, SafeClusterHandle hCluster, [In] NotifyFilterAndType[] filters, uint dwFilterCount, nuint dwNotifyKey);

        [DllImport(Lib, ExactSpelling = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool CloseClusterNotifyPort(IntPtr hChange);

        [DllImport(Lib, CharSet = CharSet.Unicode, ExactSpelling = true)]
        public static extern uint GetClusterNotifyV2(
            SafeNotifyPortHandle hChange, out nuint lpdwNotifyKey, out NotifyFilterAndType pFilterAndType,
            [Out] byte[] buffer, ref uint lpbBufferSize,
            [Out] char[] lpszObjectId, ref uint lpcchObjectId,
            [Out] char[] lpszParentId, ref uint lpcchParentId,
            [Out] char[] lpszName, ref uint lpcchName,
            [Out] char[] lpszType, ref uint lpcchType,
            uint dwMilliseconds);
    }
}
