using System.Collections.Concurrent;

namespace Coordinator.IntegrationTests.Chaos;

public enum OpKind { Put, Delete, Grant, Renew, Complete, Abort }

/// <summary>
/// One client operation as the client saw it: when it was first sent, when a definite answer came back (after any
/// retries across leader changes), and that answer. Retries reuse the same request, which is idempotent.
/// </summary>
public sealed record OpRecord(
    int Client, OpKind Kind, string Key, long Bytes, long Token, TimeSpan Start, TimeSpan End, int Status, long Epoch, int Attempts);

/// <summary>Everything that happened in a run: operations and injected faults, with timestamps from one clock.</summary>
public sealed class History
{
    public ConcurrentQueue<OpRecord> Ops { get; } = new();
    public ConcurrentQueue<(TimeSpan At, string Fault)> Faults { get; } = new();
    public ConcurrentQueue<TimeSpan> Unanswered { get; } = new();
    public int Attempts;

    public void Add(OpRecord op) => Ops.Enqueue(op);

    public void Fault(TimeSpan at, string what) => Faults.Enqueue((at, what));
}
