namespace Coordinator.Cluster.Ledger;

// The minimal backup handler on the journal-identity branch (h-journal), for the end-to-end backup/restore test. The
// ledger refactor implements BackupLedger on its own branch: at the merge keep ONE handler (theirs) and drop this file
// and its hook in OnCommand's default branch and the _inFlightEvents counter in Flush/OnBatchPersisted.
public sealed partial class LedgerActor
{
    private bool HandleBackupMessage(object message)
    {
        if (message is not BackupLedger) return false;
        // Always a barrier write: the copy is then taken by a leader the journal has just confirmed, and its sequence
        // number is one this incarnation wrote. The state includes every event applied so far (in flight and pending);
        // the reply is released once all of them are durable, like any other reply.
        Emit([_ledger.ConfirmLeader(DateTimeOffset.UtcNow)]);
        Reply(new LedgerBackupReply(_ledger.Epoch, LastSequenceNr + _inFlightEvents + _pendingEvents.Count, DateTimeOffset.UtcNow, _ledger.ToSnapshot()));
        return true;
    }
}
