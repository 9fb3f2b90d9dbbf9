using System.Globalization;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;

namespace CoordinatorBench.Etcd;

/// <summary>Small builders for etcd transactions (compares and request ops) and value codecs.</summary>
internal static class Txn
{
    public static ByteString B(string s) => ByteString.CopyFromUtf8(s);

    public static ByteString B(long v) => ByteString.CopyFromUtf8(v.ToString(CultureInfo.InvariantCulture));

    public static long ParseLong(ByteString value) => long.Parse(value.ToStringUtf8(), NumberStyles.Integer, CultureInfo.InvariantCulture);

    /// <summary>ModRevision(key) == rev (0: the key does not exist).</summary>
    public static Compare ModEq(string key, long rev) => new()
    {
        Key = B(key),
        Target = Compare.Types.CompareTarget.Mod,
        Result = Compare.Types.CompareResult.Equal,
        ModRevision = rev,
    };

    /// <summary>CreateRevision(key) == rev (0: the key does not exist).</summary>
    public static Compare CreateEq(string key, long rev) => new()
    {
        Key = B(key),
        Target = Compare.Types.CompareTarget.Create,
        Result = Compare.Types.CompareResult.Equal,
        CreateRevision = rev,
    };

    public static RequestOp Put(string key, ByteString value, long lease = 0) =>
        new() { RequestPut = new PutRequest { Key = B(key), Value = value, Lease = lease } };

    public static RequestOp Put(string key, long value) => Put(key, B(value));

    public static RequestOp Range(string key) => new() { RequestRange = new RangeRequest { Key = B(key) } };

    public static RequestOp Delete(string key) => new() { RequestDeleteRange = new DeleteRangeRequest { Key = B(key) } };

    /// <summary>The single key-value of the i-th (Range) response of a failed transaction, or null when absent.</summary>
    public static Mvccpb.KeyValue? RangeKv(TxnResponse r, int i)
    {
        var kvs = r.Responses[i].ResponseRange?.Kvs;
        return kvs is { Count: > 0 } ? kvs[0] : null;
    }

    /// <summary>
    /// gRPC outcomes without a definite answer (member down, no leader, deadline, "request timed out", too many
    /// requests): the caller may retry. Anything else (InvalidArgument, FailedPrecondition...) is a bug.
    /// </summary>
    public static bool IsUnavailable(StatusCode code) => code is StatusCode.Unavailable or StatusCode.DeadlineExceeded
        or StatusCode.Cancelled or StatusCode.ResourceExhausted or StatusCode.Aborted;
}
