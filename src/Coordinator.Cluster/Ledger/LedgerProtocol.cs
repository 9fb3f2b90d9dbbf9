using Akka.Actor;
using Coordinator.Domain;

namespace Coordinator.Cluster.Ledger;

/// <summary>Marker for every message that crosses the wire to or from the ledger singleton (bound to our serializer).</summary>
public interface ICoordinatorMessage;

/// <summary>Commands and queries the ledger singleton answers. Every reply carries the epoch of the incarnation that answered.</summary>
public interface ILedgerRequest : ICoordinatorMessage;

/// <summary>
/// A request the ledger serves only if it reaches the ledger before <paramref name="Deadline"/>. The asker answers 503
/// only after the deadline plus the allowed clock skew, so a request held up in a paused process, a proxy's buffer or a
/// re-established association can never take effect after its client, told 503, has retried elsewhere and moved on to
/// its next write (which a late stale write would silently undo).
/// </summary>
public sealed record ExpiringRequest(ILedgerRequest Request, DateTimeOffset Deadline) : ICoordinatorMessage;

public static class LedgerAsk
{
    /// <summary>
    /// Asks the ledger with a deadline of now + <paramref name="timeout"/>, and gives up (AskTimeoutException) only
    /// once the ledger's clock, at most <paramref name="maxClockSkew"/> apart from ours, is also past it.
    /// </summary>
    public static Task<T> AskWithDeadline<T>(this ICanTell ledger, ILedgerRequest request, TimeSpan timeout, TimeSpan maxClockSkew,
        CancellationToken ct = default) =>
        ledger.Ask<T>(new ExpiringRequest(request, DateTimeOffset.UtcNow + timeout), timeout + maxClockSkew, ct);
}

/// <summary>Caller: the node the request acts for (null: an administrator); see VolumeBook.Reserve.</summary>
public sealed record ReserveCommand(ReserveRequest Request, string? Caller = null) : ILedgerRequest;

public sealed record ReleaseCommand(string Volume, string ConsumerId, string? Caller = null) : ILedgerRequest;

public sealed record GetVolumes : ILedgerRequest
{
    public static readonly GetVolumes Instance = new();
}

public sealed record GetReservations(string Volume) : ILedgerRequest;

public sealed record GetQuotas(string Volume, string? Node) : ILedgerRequest;

/// <summary>Measure a volume now; the reply follows the scan (and the persisting of its result).</summary>
public sealed record RescanVolume(string Volume) : ILedgerRequest;

public sealed record GetLeader : ILedgerRequest
{
    public static readonly GetLeader Instance = new();
}

public sealed record ReserveReply(long Epoch, ReserveOutcome Outcome) : ICoordinatorMessage;

public sealed record ReleaseReply(long Epoch, ReleaseOutcome Outcome) : ICoordinatorMessage;

public sealed record VolumesReply(long Epoch, IReadOnlyList<VolumeView> Volumes) : ICoordinatorMessage;

/// <summary>Reply to <see cref="RescanVolume"/>; Volume is null for an unknown volume, Error set when the scan failed.</summary>
public sealed record VolumeReply(long Epoch, VolumeView? Volume, string? Error) : ICoordinatorMessage;

public sealed record ReservationsReply(long Epoch, string Volume, bool VolumeKnown, IReadOnlyList<Reservation> Reservations) : ICoordinatorMessage;

public sealed record QuotasReply(long Epoch, string Volume, QuotaPolicy Policy, IReadOnlyList<NodeQuota>? Quotas) : ICoordinatorMessage;

public sealed record LeaderReply(long Epoch, string Node, string Address, DateTimeOffset Since, LedgerRecovery? Recovery = null) : ICoordinatorMessage;

/// <summary>How this incarnation of the ledger recovered: from which snapshot, how many events replayed, how long.</summary>
public sealed record LedgerRecovery(long SnapshotSequenceNr, long EventsReplayed, double DurationMs, double SnapshotLoadedMs);

/// <summary>
/// The singleton's termination message at a hand-over (instead of PoisonPill): the ledger stops only once its write in
/// flight is confirmed, so that write cannot land after the next leader has read the journal and take the sequence
/// number of that leader's first event.
/// </summary>
public sealed record StopLedger
{
    public static readonly StopLedger Instance = new();
}

/// <summary>
/// The answer to every request of a ledger whose recovery stopped on what this version cannot read (an event or
/// snapshot type written by a newer version). It writes nothing and does not retry; the service answers 503 with
/// <paramref name="Reason"/>, which says what to do (upgrade this node, or restore a backup).
/// </summary>
public sealed record LedgerRefused(string Reason) : ICoordinatorMessage;
