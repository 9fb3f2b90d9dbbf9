using System.Diagnostics;

namespace Coordinator.Cluster.Ledger;

/// <summary>
/// How one incarnation's recovery went: which snapshot, how many events, how long, and where the time went besides
/// I/O (GC pauses, JIT). Reported by /v1/leader (recovery time bounds failover time) and logged once.
/// </summary>
internal sealed class RecoveryFigures
{
    private readonly long _started = Stopwatch.GetTimestamp();
    private readonly TimeSpan _gcPauseAtStart = GC.GetTotalPauseDuration();
    private readonly int _gen2AtStart = GC.CollectionCount(2);
    private readonly TimeSpan _jitAtStart = System.Runtime.JitInfo.GetCompilationTime();
    private double _snapshotLoadedMs;

    /// <summary>Sequence number of the snapshot recovery started from (0: none).</summary>
    public long SnapshotSequenceNr { get; private set; }

    public long EventsReplayed { get; private set; }

    /// <summary>Sequence number of the last event (or snapshot) applied.</summary>
    public long AppliedThrough { get; private set; }

    public void SnapshotLoaded(long sequenceNr)
    {
        SnapshotSequenceNr = sequenceNr;
        AppliedThrough = sequenceNr;
        _snapshotLoadedMs = Stopwatch.GetElapsedTime(_started).TotalMilliseconds;
    }

    public void EventApplied(long sequenceNr)
    {
        AppliedThrough = sequenceNr;
        EventsReplayed++;
    }

    public LedgerRecovery Complete() =>
        new(SnapshotSequenceNr, EventsReplayed, Stopwatch.GetElapsedTime(_started).TotalMilliseconds, _snapshotLoadedMs);

    /// <summary>The arguments of the recovery log line: GC pauses (ms), full collections, JIT (ms) since recovery began.</summary>
    public (double GcPauseMs, int FullCollections, double JitMs) ProcessCosts() => (
        (GC.GetTotalPauseDuration() - _gcPauseAtStart).TotalMilliseconds,
        GC.CollectionCount(2) - _gen2AtStart,
        (System.Runtime.JitInfo.GetCompilationTime() - _jitAtStart).TotalMilliseconds);
}
