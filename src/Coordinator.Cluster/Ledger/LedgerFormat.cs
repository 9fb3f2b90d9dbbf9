namespace Coordinator.Cluster.Ledger;

/// <summary>What this version of the coordinator can read of a journal.</summary>
public static class LedgerFormat
{
    /// <summary>
    /// The journal format this code writes and reads. The event type names (manifests) and the snapshot shape are part
    /// of it; a journal marked with a higher number was written by a newer version. An event or snapshot type this
    /// version does not know stops recovery in <see cref="LedgerRefused"/> either way.
    /// </summary>
    public const int JournalFormatVersion = 1;
}
