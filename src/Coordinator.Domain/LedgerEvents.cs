using System.Text.Json.Serialization;

namespace Coordinator.Domain;

/// <summary>
/// Everything that changes the ledger. Events are facts: applying them never fails and never decides anything,
/// so replaying the journal rebuilds exactly the state that was acknowledged.
/// </summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "$type")]
[JsonDerivedType(typeof(LeaderEpochStarted), "epoch-started")]
[JsonDerivedType(typeof(LeaderConfirmed), "leader-confirmed")]
[JsonDerivedType(typeof(VolumeConfigured), "volume-configured")]
[JsonDerivedType(typeof(ReservationPlaced), "reservation-placed")]
[JsonDerivedType(typeof(ReservationReleased), "reservation-released")]
[JsonDerivedType(typeof(VolumeMeasured), "volume-measured")]
[JsonDerivedType(typeof(ImageLeaseGranted), "image-lease-granted")]
[JsonDerivedType(typeof(ImageLeaseRenewed), "image-lease-renewed")]
[JsonDerivedType(typeof(ImageLeaseEnded), "image-lease-ended")]
[JsonDerivedType(typeof(ImageCached), "image-cached")]
[JsonDerivedType(typeof(ImageUsed), "image-used")]
[JsonDerivedType(typeof(ImageEvicted), "image-evicted")]
[JsonDerivedType(typeof(NodeCapacityReported), "node-capacity-reported")]
[JsonDerivedType(typeof(NodeDrainChanged), "node-drain-changed")]
[JsonDerivedType(typeof(VmPlaced), "vm-placed")]
[JsonDerivedType(typeof(VmPhaseChanged), "vm-phase-changed")]
[JsonDerivedType(typeof(VmMoved), "vm-moved")]
[JsonDerivedType(typeof(VmRemoved), "vm-removed")]
public abstract record LedgerEvent;

/// <summary>A new incarnation of the singleton took over; replies carry its epoch so clients can tell a new leader.</summary>
public sealed record LeaderEpochStarted(long Epoch, string Node, DateTimeOffset At) : LedgerEvent;

/// <summary>
/// A barrier: the leader of this epoch wrote to the journal, so no newer leader had written before it. Written only
/// before an answer that needs no write (a read, a refusal, an unchanged PUT) once the leader's last write is older
/// than its read lease; a stale leader's barrier collides with the newer leader's sequence numbers and fails.
/// It changes nothing in the ledger.
/// </summary>
public sealed record LeaderConfirmed(long Epoch, DateTimeOffset At) : LedgerEvent;

/// <summary>A volume's capacity or headroom as configured on the node that hosts the singleton.</summary>
public sealed record VolumeConfigured(string Volume, string Path, long CapacityBytes, long HeadroomBytes) : LedgerEvent;

/// <summary>A reservation created, resized or re-homed (same key, new content).</summary>
public sealed record ReservationPlaced(
    string Volume, string ConsumerId, string Node, long Bytes, string? Path, string? ImageId, DateTimeOffset At) : LedgerEvent;

public sealed record ReservationReleased(string Volume, string ConsumerId, DateTimeOffset At) : LedgerEvent;

/// <summary>
/// A scan of the volume: bytes used on it in all, and under each reservation's directory. Persisted so that
/// replay decides from the same numbers the live ledger decided from.
/// </summary>
public sealed record VolumeMeasured(
    string Volume, long UsedBytes, IReadOnlyDictionary<string, long> ConsumerUsage, DateTimeOffset At) : LedgerEvent;
