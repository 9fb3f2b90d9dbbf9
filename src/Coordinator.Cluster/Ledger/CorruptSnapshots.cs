using Akka.Actor;
using Akka.Persistence;

namespace Coordinator.Cluster.Ledger;

/// <summary>
/// The lowest snapshot found corrupt by this node's ledger, kept per ActorSystem so that it outlives the incarnation
/// that found it: the next incarnation recovers from the snapshot before it (and the events after that) instead of
/// loading the corrupt one again. Forgotten once a newer snapshot has been saved.
/// </summary>
public sealed class CorruptSnapshots : IExtension
{
    private long _lowestCorrupt; // 0 = none known

    public static CorruptSnapshots Get(ActorSystem system) => system.WithExtension<CorruptSnapshots, Provider>();

    public void Record(long sequenceNr)
    {
        long seen;
        do
        {
            seen = Interlocked.Read(ref _lowestCorrupt);
            if (seen != 0 && seen <= sequenceNr) return;
        } while (Interlocked.CompareExchange(ref _lowestCorrupt, sequenceNr, seen) != seen);
    }

    /// <summary>A snapshot at <paramref name="sequenceNr"/> was saved: newer than any corrupt one, so it is the one to load.</summary>
    public void SnapshotSaved(long sequenceNr)
    {
        var seen = Interlocked.Read(ref _lowestCorrupt);
        if (seen != 0 && sequenceNr > seen) Interlocked.CompareExchange(ref _lowestCorrupt, 0, seen);
    }

    /// <summary>How the ledger recovers: from the latest snapshot, or from the latest one below every corrupt one.</summary>
    public Recovery Recovery => Interlocked.Read(ref _lowestCorrupt) is var corrupt and > 0
        ? new Recovery(new SnapshotSelectionCriteria(corrupt - 1))
        : Recovery.Default;

    private sealed class Provider : ExtensionIdProvider<CorruptSnapshots>
    {
        public override CorruptSnapshots CreateExtension(ExtendedActorSystem system) => new();
    }
}
