using Coordinator.Domain;

namespace Coordinator.Cluster.Ledger;

/// <summary>
/// Asks the ledger for an online, consistent copy of its state: the state at exactly one sequence number of the
/// journal, released only once every event it reflects is durable (as any other reply).
/// </summary>
public sealed record BackupLedger : ILedgerRequest
{
    public static readonly BackupLedger Instance = new();
}

/// <summary>
/// The ledger's state at <paramref name="SequenceNr"/> (the journal's sequence number of the last event it reflects),
/// taken by the incarnation of <paramref name="Epoch"/>. The cluster id and the checksum are added by whoever writes
/// the backup file.
/// </summary>
public sealed record LedgerBackupReply(long Epoch, long SequenceNr, DateTimeOffset TakenAt, LedgerSnapshot Snapshot) : ICoordinatorMessage;
