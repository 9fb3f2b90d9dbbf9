using Akka.Actor;
using Akka.Configuration;
using Akka.Persistence;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Ledger;
using Coordinator.Domain;

namespace Coordinator.Cluster.Journal;

/// <summary>Restore refused before anything was written (the journal is not empty), or failed while writing.</summary>
public sealed class RestoreRefusedException(string message) : Exception(message);

/// <summary>What a restore wrote and then read back through Akka.Persistence, as the ledger will.</summary>
public sealed record RestoreResult(Guid ClusterId, long SequenceNr, long Epoch, long RecoveredSnapshotSequenceNr, long RecoveredLastSequenceNr);

/// <summary>
/// Offline restore of a backup into an EMPTY journal (as etcdctl snapshot restore: no node may run on it). It writes
/// the backup's state as the ledger's snapshot at the backup's sequence number, through Akka.Persistence.Sql's own
/// snapshot store (a short-lived ActorSystem with the service's plugin configuration, so the row is exactly what the
/// ledger writes and reads), recovers the ledger's persistence id to check that Akka answers that snapshot and that
/// sequence number, and writes the journal's identity row with the backup's cluster id last. The next start of the
/// ledger loads the snapshot, finds LastSequenceNr = the backup's (its RecoveryCompleted check), writes its next
/// event at that number + 1 and starts the next epoch.
/// </summary>
public static class LedgerRestore
{
    public static async Task<RestoreResult> RestoreAsync(JournalProvider provider, string connectionString, LedgerBackup backup,
        TimeSpan timeout, CancellationToken ct = default)
    {
        // Refuse anything but an empty journal: a restore never merges into, nor replaces, a history.
        if (await JournalIdentityStore.ReadAsync(provider, connectionString, ct) is { } present)
            throw new RestoreRefusedException(
                $"the journal is not empty: it already belongs to cluster {present.ClusterId} (written {present.CreatedAt:u}). " +
                "Restore only into an empty journal: stop every node, then move the SQLite file away or drop the PostgreSQL database's tables");
        var (journalRows, snapshotRows) = await JournalIdentityStore.CountRowsAsync(provider, connectionString, ct);
        if (journalRows + snapshotRows > 0)
            throw new RestoreRefusedException(
                $"the journal is not empty: it holds {journalRows} event row(s) and {snapshotRows} snapshot row(s). " +
                "Restore only into an empty journal: stop every node, then move the SQLite file away or drop the PostgreSQL database's tables");

        var config = ConfigurationFactory.ParseString("""
                akka.loglevel = WARNING
                akka.stdout-loglevel = WARNING
                akka.actor.provider = local
                """)
            .WithFallback(PersistenceHocon.For(provider, connectionString))
            .WithFallback(CoordinatorHocon.Serialization);
        using var system = ActorSystem.Create("coordctl-restore", config);
        try
        {
            var store = Persistence.Instance.Apply(system).SnapshotStoreFor(null);
            var metadata = new SnapshotMetadata(LedgerActor.PersistenceIdValue, backup.SequenceNr, backup.TakenAt.UtcDateTime);
            var saved = await store.Ask<object>(new SaveSnapshot(metadata, backup.Snapshot), timeout, ct);
            if (saved is SaveSnapshotFailure failure)
                throw new RestoreRefusedException($"the snapshot store refused the backup's snapshot: {failure.Cause.Message}");

            // Read it back as the ledger will: Akka's recovery of the ledger's persistence id.
            var recovered = new TaskCompletionSource<RecoveryCheck.Recovered>(TaskCreationOptions.RunContinuationsAsynchronously);
            system.ActorOf(Props.Create(() => new RecoveryCheck(recovered)), "recovery-check");
            var result = await recovered.Task.WaitAsync(timeout, ct);
            if (result.Error is not null)
                throw new RestoreRefusedException($"the restored snapshot did not recover: {result.Error}");
            if (result.SnapshotSequenceNr != backup.SequenceNr || result.LastSequenceNr != backup.SequenceNr || result.Epoch != backup.Epoch)
                throw new RestoreRefusedException(
                    $"the restored journal recovers to sequence number {result.LastSequenceNr} (snapshot at {result.SnapshotSequenceNr}, " +
                    $"epoch {result.Epoch}), not the backup's {backup.SequenceNr} (epoch {backup.Epoch})");

            var identity = await JournalIdentityStore.InsertIfAbsentThenReadAsync(provider, connectionString, backup.ClusterId,
                JournalIdentityStore.SupportedFormatVersion, ct);
            if (identity.ClusterId != backup.ClusterId)
                throw new RestoreRefusedException(
                    $"a node started on the journal during the restore (it now belongs to cluster {identity.ClusterId}): stop every node and restore again into an empty journal");
            return new RestoreResult(backup.ClusterId, backup.SequenceNr, backup.Epoch, result.SnapshotSequenceNr, result.LastSequenceNr);
        }
        finally
        {
            await system.Terminate();
        }
    }

    /// <summary>Recovers the ledger's persistence id and reports what Akka offered; writes nothing.</summary>
    private sealed class RecoveryCheck(TaskCompletionSource<RecoveryCheck.Recovered> done) : UntypedPersistentActor
    {
        public sealed record Recovered(long SnapshotSequenceNr, long LastSequenceNr, long Epoch, string? Error);

        private long _snapshotSeq;
        private long _epoch = -1;
        private long _events;

        public override string PersistenceId => LedgerActor.PersistenceIdValue;

        protected override void OnRecover(object message)
        {
            switch (message)
            {
                case SnapshotOffer { Snapshot: LedgerSnapshot s } offer:
                    _snapshotSeq = offer.Metadata.SequenceNr;
                    _epoch = CsvLedger.FromSnapshot(s).Epoch;
                    break;
                case LedgerEvent:
                    _events++;
                    break;
                case RecoveryCompleted:
                    done.TrySetResult(new Recovered(_snapshotSeq, LastSequenceNr, _epoch,
                        _events > 0 ? $"{_events} event(s) after the snapshot in a journal that was empty" : null));
                    Context.Stop(Self);
                    break;
            }
        }

        protected override void OnCommand(object message) { }

        protected override void OnRecoveryFailure(Exception reason, object? message = null)
        {
            done.TrySetResult(new Recovered(_snapshotSeq, LastSequenceNr, _epoch, reason.Message));
            base.OnRecoveryFailure(reason, message);
        }
    }
}
