using System.Collections.Concurrent;

namespace Coordinator.IntegrationTests.Chaos;

/// <summary>Evict is POST /v1/images/evict (key "*"): it may remove any cached image; the answer names those it removed.</summary>
public enum OpKind { Put, Delete, Grant, Renew, Complete, Abort, Evict }

/// <summary>
/// One client operation as the client saw it: when it was first sent, when a definite answer came back (after any
/// retries across leader changes), and that answer. Retries reuse the same request, which is idempotent. Epoch is the
/// answer's X-Coordinator-Epoch header (0: no answer). Trail names each attempt's node and outcome
/// ("hv01:timeout hv03:201"), for reading a violation. ValidUntil (grants and renewals) is the lease's expiresAt on the
/// run's clock; Evicted (evictions) names the images the answer says were evicted.
/// </summary>
public sealed record OpRecord(
    int Client, OpKind Kind, string Key, long Bytes, long Token, TimeSpan Start, TimeSpan End, int Status, long Epoch, int Attempts,
    string Trail = "", TimeSpan? ValidUntil = null, IReadOnlyList<string>? Evicted = null)
{
    public override string ToString() =>
        $"{Start.TotalSeconds,8:0.000}-{End.TotalSeconds,8:0.000} c{Client} {Kind} {Key} {Bytes} token={Token} -> {Status} epoch={Epoch}" +
        (ValidUntil is { } v ? $" valid-until={v.TotalSeconds:0.000}" : "") +
        (Evicted is { Count: > 0 } e ? $" evicted={string.Join(',', e)}" : "") + $" [{Trail}]";
}

/// <summary>The ledger's state after the run: every reservation of the cache volume (image claims included), the image
/// cache, and the live leases (image id to fencing token).</summary>
public sealed record FinalState(IReadOnlyDictionary<string, long> Reservations, IReadOnlyDictionary<string, long> Images,
    IReadOnlyDictionary<string, long> Leases)
{
    public static FinalState Of(IReadOnlyDictionary<string, long> reservations) =>
        new(reservations, new Dictionary<string, long>(), new Dictionary<string, long>());
}

/// <summary>Everything that happened in a run: operations, injected faults and client failures, on one clock.</summary>
public sealed class History
{
    public ConcurrentQueue<OpRecord> Ops { get; } = new();
    public ConcurrentQueue<(TimeSpan At, string Fault)> Faults { get; } = new();
    public ConcurrentQueue<string> Failures { get; } = new();
    public int Attempts;

    public void Add(OpRecord op) => Ops.Enqueue(op);

    public void Fault(TimeSpan at, string what) => Faults.Enqueue((at, what));

    /// <summary>Writes failures, then faults and operations in time order, one per line (kept for reading a failed run).</summary>
    public void WriteTo(string path, IEnumerable<string>? header = null)
    {
        var lines = (header ?? []).Concat(Failures.Select(f => "FAILURE " + f))
            .Concat(Faults.Select(f => (f.At, $"{f.At.TotalSeconds,8:0.000} FAULT {f.Fault}"))
                .Concat(Ops.Select(o => (At: o.Start, o.ToString())))
                .OrderBy(l => l.Item1).Select(l => l.Item2));
        File.WriteAllLines(path, lines);
    }
}
