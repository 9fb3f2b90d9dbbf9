using System.Collections.Concurrent;

namespace Coordinator.IntegrationTests.Chaos;

public enum OpKind { Put, Delete, Grant, Renew, Complete, Abort }

/// <summary>
/// One client operation as the client saw it: when it was first sent, when a definite answer came back (after any
/// retries across leader changes), and that answer. Retries reuse the same request, which is idempotent. Trail names
/// each attempt's node and outcome ("hv01:timeout hv03:201"), for reading a violation.
/// </summary>
public sealed record OpRecord(
    int Client, OpKind Kind, string Key, long Bytes, long Token, TimeSpan Start, TimeSpan End, int Status, long Epoch, int Attempts,
    string Trail = "")
{
    public override string ToString() =>
        $"{Start.TotalSeconds,8:0.000}-{End.TotalSeconds,8:0.000} c{Client} {Kind} {Key} {Bytes} token={Token} -> {Status} epoch={Epoch} [{Trail}]";
}

/// <summary>Everything that happened in a run: operations and injected faults, with timestamps from one clock.</summary>
public sealed class History
{
    public ConcurrentQueue<OpRecord> Ops { get; } = new();
    public ConcurrentQueue<(TimeSpan At, string Fault)> Faults { get; } = new();
    public ConcurrentQueue<TimeSpan> Unanswered { get; } = new();
    public int Attempts;

    public void Add(OpRecord op) => Ops.Enqueue(op);

    public void Fault(TimeSpan at, string what) => Faults.Enqueue((at, what));

    /// <summary>Writes faults and operations, in time order, one per line (kept for reading a failed run).</summary>
    public void WriteTo(string path)
    {
        var lines = Faults.Select(f => (f.At, $"{f.At.TotalSeconds,8:0.000} FAULT {f.Fault}"))
            .Concat(Ops.Select(o => (At: o.Start, o.ToString())))
            .OrderBy(l => l.Item1).Select(l => l.Item2);
        File.WriteAllLines(path, lines);
    }
}
