namespace Coordinator.Cluster.Serialization;

/// <summary>
/// What <see cref="CoordinatorSerializer"/> returns for a manifest it does not know (a type written by a newer version
/// of the coordinator) instead of throwing: recovery then sees it and can stop with a clear error, where an exception
/// would fail the replay and the ledger's supervisor would retry it forever.
/// </summary>
public sealed record UnknownJournalEntry(string Manifest);

/// <summary>
/// What <see cref="CoordinatorSerializer"/> returns for a snapshot whose bytes do not deserialize (garbage, truncated
/// JSON): the ledger then recovers from the snapshot before it, since the journal keeps every event.
/// </summary>
public sealed record CorruptSnapshot(string Reason);
