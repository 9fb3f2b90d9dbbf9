namespace Coordinator.HyperV.Windows;

/// <summary>
/// Maps the status of a failed CIM operation to a <see cref="HyperVException"/>. Pure (no MI types) so the mapping is
/// tested everywhere; <see cref="MiCimGateway"/> feeds it CimException.NativeErrorCode and the WBEM/Win32 HRESULT it
/// finds in the error instance.
/// </summary>
public static class CimErrors
{
    // MI_Result values (Microsoft.Management.Infrastructure.NativeErrorCode).
    public const int MiAccessDenied = 2;
    public const int MiInvalidNamespace = 3;
    public const int MiInvalidParameter = 4;
    public const int MiInvalidClass = 5;
    public const int MiNotFound = 6;
    public const int MiNotSupported = 7;
    public const int MiAlreadyExists = 11;
    public const int MiMethodNotAvailable = 16;
    public const int MiMethodNotFound = 17;

    // WBEM HRESULTs (as WMI reports them through DCOM or the MSFT_WmiError instance).
    public const uint WbemENotFound = 0x80041002;
    public const uint WbemEAccessDenied = 0x80041003;
    public const uint WbemEInvalidParameter = 0x80041008;
    public const uint WbemEInvalidNamespace = 0x8004100E;
    public const uint WbemEInvalidClass = 0x80041010;
    public const uint WbemEAlreadyExists = 0x80041019;

    /// <summary>
    /// The exception for a failed operation. <paramref name="nativeErrorCode"/> is MI's code (null when unknown),
    /// <paramref name="hresult"/> the WBEM or Win32 HRESULT when one is known (it wins: it is the more precise one).
    /// </summary>
    public static HyperVException Map(string operation, int? nativeErrorCode, uint? hresult, string message, Exception? inner = null)
    {
        var kind = hresult switch
        {
            WbemENotFound => HyperVErrorKind.NotFound,
            WbemEInvalidNamespace or WbemEInvalidClass => HyperVErrorKind.PlatformUnsupported,
            WbemEAlreadyExists => HyperVErrorKind.AlreadyExists,
            { } h when IsWin32(h, out var win32) => Win32Kind(win32),
            _ => (HyperVErrorKind?)null,
        } ?? nativeErrorCode switch
        {
            MiNotFound => HyperVErrorKind.NotFound,
            MiInvalidNamespace or MiInvalidClass => HyperVErrorKind.PlatformUnsupported,
            MiAlreadyExists => HyperVErrorKind.AlreadyExists,
            _ => HyperVErrorKind.Failed,
        };
        long? code = hresult is { } h32 ? h32 : nativeErrorCode;
        var codeText = hresult is { } hr ? $" (0x{hr:X8})" : nativeErrorCode is { } nc ? $" (MI {nc})" : "";
        return new HyperVException(kind, $"{operation}: {message}{codeText}", code, inner);
    }

    /// <summary>HRESULT_FROM_WIN32 codes (0x8007xxxx), which the MSCluster provider returns.</summary>
    private static bool IsWin32(uint hresult, out int win32)
    {
        win32 = (int)(hresult & 0xFFFF);
        return (hresult & 0xFFFF0000) == 0x80070000;
    }

    private static HyperVErrorKind? Win32Kind(int win32) => win32 switch
    {
        2 or 3 or 1168 => HyperVErrorKind.NotFound, // file / path / element not found
        _ when ClusErrors.IsNotFound((uint)win32) => HyperVErrorKind.NotFound,
        183 or 5010 => HyperVErrorKind.AlreadyExists, // ERROR_ALREADY_EXISTS, ERROR_OBJECT_ALREADY_EXISTS
        5023 => HyperVErrorKind.InvalidState, // ERROR_INVALID_STATE
        1460 => HyperVErrorKind.Timeout, // ERROR_TIMEOUT
        _ => null,
    };
}
