using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using Akka.Pattern;
using Akka.Persistence;
using Coordinator.Cluster.Configuration;
using Coordinator.Domain;

namespace Coordinator.Cluster.Ledger;

/// <summary>What the ledger needs from configuration; capacities are already resolved (no I/O in the actor).</summary>
public sealed record LedgerSettings(
    string NodeName,
    IReadOnlyList<ResolvedVolume> Volumes,
    QuotaPolicy QuotaPolicy,
    Func<string, double> WeightOf,
    int SnapshotEvery,
    TimeSpan RescanInterval,
    ImageCacheSettings Images)
{
    /// <summary>How long after its last confirmed write the ledger answers from memory (see <see cref="LeaderReadLease"/>).</summary>
    public TimeSpan ReadLease { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>After a failed write, how long a new incarnation on this node waits before it serves.</summary>
    public TimeSpan WaitAfterWriteFailure { get; init; } = TimeSpan.FromSeconds(5);

    public static LedgerSettings From(CoordinatorSettings s) => new(
        s.NodeName,
        s.Volumes.Select(v => new ResolvedVolume(v.Name, v.Path,
            v.CapacityBytes ?? VolumeMeasurer.FileSystemCapacity(v.Path), v.HeadroomBytes, v.CapacityBytes is null)).ToList(),
        s.QuotaPolicy, s.WeightOf, s.SnapshotEvery, s.RescanInterval, s.Images)
    {
        ReadLease = s.ReadLease,
        WaitAfterWriteFailure = s.WaitAfterWriteFailure,
    };
}

public sealed record ResolvedVolume(string Name, string Path, long CapacityBytes, long HeadroomBytes, bool UseFileSystemTotals);

/// <summary>
/// The cluster singleton that owns CSV accounting. It wraps <see cref="CsvLedger"/> and adds what the domain type must
/// not know: persistence, batching, membership and scanning.
/// <para>
/// Batching: a command is decided against the state that already includes every earlier decision, its events are
/// applied at once and queued; while one write is in flight, everything that arrives goes into the next single write.
/// A reply is released only after the write holding every event it reflects has been persisted, so nothing is
/// acknowledged that a crash could undo. If a write fails the actor stops and its supervisor restarts it from the
/// journal: the unpersisted decisions vanish together with their unsent replies.
/// </para>
/// </summary>
public sealed partial class LedgerActor : UntypedPersistentActor, IWithTimers
{
    public const string PersistenceIdValue = "csv-ledger";

    private readonly LedgerSettings _settings;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);

    private CsvLedger _ledger = new();

    private readonly List<LedgerEvent> _pendingEvents = [];
    private List<(IActorRef To, object Reply)> _pendingReplies = [];
    private List<(IActorRef To, object Reply)>? _inFlightReplies; // null: no write in flight
    private int _inFlightEvents; // events of the write in flight (LastSequenceNr counts only confirmed ones)
    private long _eventsSinceSnapshot;
    private long _expiredDropped;
    private long _appliedThrough; // sequence number of the last event (or snapshot) applied during recovery

    // The stale-leader guard: answers without a write come from memory only within the lease of the last confirmed
    // write, else behind a barrier write; after a failed write on this node a new incarnation first stands down.
    private readonly LeaderReadLease _lease;
    private readonly LedgerWriteFailures _writeFailures = LedgerWriteFailures.Get(Context.System);
    private bool _standingDown;
    private bool _stopping; // StopLedger received: answer nothing new, stop once the write in flight is confirmed
    private long _barriers;

    // Recovery figures of this incarnation, reported by /v1/leader (recovery time bounds failover time).
    private readonly long _recoveryStarted = System.Diagnostics.Stopwatch.GetTimestamp();
    // Where recovery time goes besides I/O: GC pauses and JIT compilation (logged with the recovery figures).
    private readonly TimeSpan _gcPauseAtStart = GC.GetTotalPauseDuration();
    private readonly int _gen2AtStart = GC.CollectionCount(2);
    private readonly TimeSpan _jitAtStart = System.Runtime.JitInfo.GetCompilationTime();
    private long _snapshotSequenceNr;
    private long _eventsReplayed;
    private double _snapshotLoadedMs;
    private LedgerRecovery? _recovery;

    // Membership: Akka address -> Hyper-V node name, for members that are Up.
    private readonly Dictionary<Address, string> _liveNodes = new();

    // Scans in progress, per volume, with the requesters waiting for their result.
    private readonly Dictionary<string, List<IActorRef>> _scans = new(StringComparer.Ordinal);

    public LedgerActor(LedgerSettings settings)
    {
        _settings = settings;
        _lease = new LeaderReadLease(settings.ReadLease);
    }

    private static ClockReading Now() => new(System.Diagnostics.Stopwatch.GetElapsedTime(0), DateTimeOffset.UtcNow);

    public static Props Props(LedgerSettings settings) => Akka.Actor.Props.Create(() => new LedgerActor(settings));

    /// <summary>
    /// Props for the singleton: the ledger under a backoff supervisor, so that a ledger stopped by a journal failure
    /// comes back (and recovers) once the database answers again; meanwhile requests time out into 503s.
    /// </summary>
    public static Props SupervisedProps(LedgerSettings settings) =>
        BackoffSupervisor.Props(Backoff.OnStop(Props(settings), "ledger",
                TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(5), 0.2, -1)
            // At a hand-over the singleton gets StopLedger: the ledger stops once flushed, and its supervisor with it.
            .WithFinalStopMessage(m => m is StopLedger));

    public override string PersistenceId => PersistenceIdValue;

    public ITimerScheduler Timers { get; set; } = null!;

    protected override void PreStart()
    {
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
            typeof(ClusterEvent.IMemberEvent));
        base.PreStart();
    }

    protected override void PostStop()
    {
        _cluster.Unsubscribe(Self);
        base.PostStop();
    }

    // ---------------------------------------------------------------- recovery

    protected override void OnRecover(object message)
    {
        switch (message)
        {
            case SnapshotOffer { Snapshot: LedgerSnapshot s } offer:
                _ledger = CsvLedger.FromSnapshot(s);
                _snapshotSequenceNr = offer.Metadata.SequenceNr;
                _appliedThrough = offer.Metadata.SequenceNr;
                _snapshotLoadedMs = System.Diagnostics.Stopwatch.GetElapsedTime(_recoveryStarted).TotalMilliseconds;
                break;
            case LedgerEvent e:
                _ledger.Apply(e);
                _appliedThrough = LastSequenceNr;
                _eventsSinceSnapshot++;
                _eventsReplayed++;
                break;
            case RecoveryCompleted when LastSequenceNr != _appliedThrough:
                // The journal holds events this state does not (skipped by a replay filter, or written while we
                // read): writing on top would fork the ledger. Stop; the supervisor recovers again after a backoff.
                _log.Error("Recovery applied events through {0} but the journal's highest sequence number is {1}; not serving from this state, recovering again",
                    _appliedThrough, LastSequenceNr);
                Context.Stop(Self);
                break;
            case RecoveryCompleted when _writeFailures.SinceLastFailure() is { } since && since < _settings.WaitAfterWriteFailure:
            {
                // Most likely this node was a leader whose write a newer leader's events refused: it was paused or cut
                // off, was downed meanwhile, and is about to learn it. Writing a new epoch now would take the journal
                // back from the real leader (and fence it in turn), so serve nothing, then recover again.
                var wait = _settings.WaitAfterWriteFailure - since;
                _log.Warning("A ledger write on this node failed {0:0} ms ago (the journal was unavailable, or a newer leader wrote); " +
                             "serving nothing for {1:0} ms, then recovering again", since.TotalMilliseconds, wait.TotalMilliseconds);
                _standingDown = true;
                Timers.StartSingleTimer("stand-down", StandDownOver.Instance, wait);
                break;
            }
            case RecoveryCompleted:
                _recovery = new LedgerRecovery(_snapshotSequenceNr, _eventsReplayed,
                    System.Diagnostics.Stopwatch.GetElapsedTime(_recoveryStarted).TotalMilliseconds, _snapshotLoadedMs);
                _log.Info("Ledger recovered in {0:0} ms: snapshot at sequence number {1} loaded after {2:0} ms, then {3} event(s) replayed " +
                          "(meanwhile in this process: GC pauses {4:0} ms, {5} full collections, JIT {6:0} ms)",
                    new object[]
                    {
                        _recovery.DurationMs, _snapshotSequenceNr, _snapshotLoadedMs, _eventsReplayed,
                        (GC.GetTotalPauseDuration() - _gcPauseAtStart).TotalMilliseconds, GC.CollectionCount(2) - _gen2AtStart,
                        (System.Runtime.JitInfo.GetCompilationTime() - _jitAtStart).TotalMilliseconds,
                    });
                StartIncarnation();
                break;
        }
    }

    /// <summary>A new epoch and the configured volumes, persisted before the first command is served.</summary>
    private void StartIncarnation()
    {
        var now = DateTimeOffset.UtcNow;
        var events = new List<LedgerEvent> { _ledger.NextEpoch(_settings.NodeName, now) };
        foreach (var v in _settings.Volumes)
            events.AddRange(_ledger.Configure(v.Name, v.Path, v.CapacityBytes, v.HeadroomBytes));
        // Holders kept fetching while no leader answered their renewals: their leases start a fresh TTL.
        events.AddRange(_ledger.RefreshLeases(_settings.Images.LeaseTtl, now));
        foreach (var e in events) _ledger.Apply(e);
        _eventsSinceSnapshot += events.Count;

        // Persist (not PersistAsync): Akka stashes commands until the epoch is durable.
        var remaining = events.Count;
        var issuedAt = Now();
        PersistAll(events, _ =>
        {
            if (--remaining > 0) return;
            _lease.Confirmed(issuedAt);
            _log.Info("Ledger epoch {0} started on {1} with {2} volume(s)", _ledger.Epoch, _settings.NodeName,
                _ledger.VolumeNames.Count());
            Timers.StartPeriodicTimer("rescan", RescanTick.Instance, TimeSpan.FromMilliseconds(100), _settings.RescanInterval);
            Timers.StartPeriodicTimer("lease-sweep", LeaseSweepTick.Instance, _settings.Images.SweepInterval);
            Timers.StartPeriodicTimer("eviction", EvictionTick.Instance, _settings.Images.EvictionInterval);
        });
    }

    // ---------------------------------------------------------------- commands

    protected override void OnCommand(object message)
    {
        if (_standingDown)
        {
            // Requests go unanswered: their nodes answer 503 at the deadline and clients retry.
            if (message is StandDownOver or StopLedger) Context.Stop(Self);
            return;
        }
        if (message is StopLedger || _stopping)
        {
            // Handing over: new requests go unanswered (503, then the client retries at the next leader).
            _stopping = true;
            if (_inFlightReplies is null && _pendingEvents.Count == 0) Context.Stop(Self);
            return;
        }
        if (message is ExpiringRequest expiring)
        {
            var late = DateTimeOffset.UtcNow - expiring.Deadline;
            if (late > TimeSpan.Zero)
            {
                DropExpired(expiring.Request, late);
                return;
            }
            message = expiring.Request;
        }
        switch (message)
        {
            case ReserveCommand c:
            {
                var d = _ledger.Reserve(c.Request, DateTimeOffset.UtcNow);
                Emit(d.Events);
                Reply(new ReserveReply(_ledger.Epoch, d.Outcome));
                break;
            }
            case ReleaseCommand c:
            {
                var d = _ledger.Release(c.Volume, c.ConsumerId, DateTimeOffset.UtcNow);
                Emit(d.Events);
                Reply(new ReleaseReply(_ledger.Epoch, d.Outcome));
                break;
            }
            case GetVolumes:
                Reply(new VolumesReply(_ledger.Epoch, _ledger.Views()));
                break;
            case GetReservations q:
                Reply(new ReservationsReply(_ledger.Epoch, q.Volume, _ledger.HasVolume(q.Volume), _ledger.Reservations(q.Volume)));
                break;
            case GetQuotas q:
            {
                var live = _liveNodes.Values.Distinct().ToDictionary(n => n, _settings.WeightOf);
                var quotas = _ledger.Quotas(q.Volume, _settings.QuotaPolicy, live);
                if (quotas is not null && q.Node is not null)
                    quotas = quotas.Where(x => x.Node == q.Node).DefaultIfEmpty(new NodeQuota(q.Node, false, 0, 0, 0)).ToList();
                Reply(new QuotasReply(_ledger.Epoch, q.Volume, _settings.QuotaPolicy, quotas));
                break;
            }
            case GetLeader:
                // Who leads, not ledger state: no barrier, so health probes (/readyz) add no writes to an idle journal.
                ReplyTo(Sender, fenced: false, new LeaderReply(_ledger.Epoch, _settings.NodeName, _cluster.SelfAddress.ToString(),
                    _ledger.EpochStartedAt ?? DateTimeOffset.UtcNow, _recovery));
                break;
            case RescanVolume r:
                if (!_ledger.HasVolume(r.Volume)) Reply(new VolumeReply(_ledger.Epoch, null, $"unknown volume '{r.Volume}'"));
                else StartScan(r.Volume, Sender);
                break;
            case RescanTick:
                foreach (var v in _ledger.VolumeNames.ToList()) StartScan(v, null);
                break;
            case ScanCompleted s:
                OnScanCompleted(s);
                break;
            case ClusterEvent.MemberUp up:
                TrackMember(up.Member);
                break;
            case ClusterEvent.MemberWeaklyUp wu:
                TrackMember(wu.Member);
                break;
            case ClusterEvent.IMemberEvent gone and (ClusterEvent.MemberRemoved or ClusterEvent.MemberExited or ClusterEvent.MemberLeft or ClusterEvent.MemberDowned):
                _liveNodes.Remove(gone.Member.Address);
                if (NodeNameOf(gone.Member) is { } goneName && !_liveNodes.ContainsValue(goneName))
                    EndLeasesOfRemovedNode(goneName);
                break;
            case ClusterEvent.IMemberEvent:
                break;
            case SaveSnapshotSuccess ok:
                // Older snapshots are no longer needed; the journal keeps every event for audit.
                DeleteSnapshots(new SnapshotSelectionCriteria(ok.Metadata.SequenceNr - 1));
                break;
            case SaveSnapshotFailure f:
                _log.Warning("Snapshot failed (recovery stays correct, only slower): {0}", f.Cause.Message);
                break;
            case DeleteSnapshotsSuccess or DeleteSnapshotsFailure:
                break;
            default:
                if (!HandleImageMessage(message) && !HandleVmMessage(message) && !HandleBackupMessage(message)) Unhandled(message);
                break;
        }
        if (_feedWatchers.Count > 0 && (_pendingEvents.Count > 0 || message is LeaseSweepTick)) ServeFeedWatchers(DateTimeOffset.UtcNow);
        if (_inFlightReplies is null && _pendingEvents.Count > 0) Flush();
    }

    /// <summary>
    /// A request that arrives after its deadline is answered 503 by its node, and by then its client may have
    /// retried and written again: serving it now could undo that later write, so it is dropped unanswered.
    /// </summary>
    private void DropExpired(ILedgerRequest request, TimeSpan late)
    {
        if (_expiredDropped++ % 100 == 0)
            _log.Info("Dropped {0} that arrived {1:0} ms after its deadline (its node answers it 503); {2} dropped in this incarnation",
                request.GetType().Name, late.TotalMilliseconds, _expiredDropped);
    }

    private void TrackMember(Member m)
    {
        if (NodeNameOf(m) is { } name) _liveNodes[m.Address] = name;
    }

    private static string? NodeNameOf(Member m) =>
        m.Roles.FirstOrDefault(r => r.StartsWith(CoordinatorSettings.NodeRolePrefix, StringComparison.Ordinal))
            ?[CoordinatorSettings.NodeRolePrefix.Length..];

    // ---------------------------------------------------------------- batching

    private void Emit(IReadOnlyList<LedgerEvent> events)
    {
        foreach (var e in events)
        {
            _ledger.Apply(e);
            _pendingEvents.Add(e);
        }
    }

    /// <summary>
    /// Sends a reply once every event it reflects is durable (at once when nothing is outstanding). A reply that needs
    /// no write of its own goes at once only within the read lease; past it, behind a barrier write that a newer
    /// leader's events would refuse (see <see cref="LeaderReadLease"/>).
    /// </summary>
    private void Reply(object reply) => ReplyTo(Sender, reply);

    private void ReplyTo(IActorRef to, object reply) => ReplyTo(to, fenced: !to.Equals(Self), reply);

    private void ReplyTo(IActorRef to, bool fenced, object reply)
    {
        if (fenced && _pendingEvents.Count == 0 && !_lease.Holds(Now())) EmitBarrier();
        if (_pendingEvents.Count > 0) _pendingReplies.Add((to, reply));
        else if (_inFlightReplies is not null) _inFlightReplies.Add((to, reply));
        else to.Tell(reply, Self);
    }

    private void EmitBarrier()
    {
        Emit([_ledger.ConfirmLeader(DateTimeOffset.UtcNow)]);
        if (++_barriers % 1000 == 1)
            _log.Debug("Read lease expired: barrier write {0} of this incarnation before answering from memory", _barriers);
    }

    private void Flush()
    {
        var events = _pendingEvents.ToArray();
        var issuedAt = Now();
        _pendingEvents.Clear();
        _inFlightReplies = _pendingReplies;
        _inFlightEvents = events.Length;
        _pendingReplies = [];
        // One atomic write for the whole batch; the deferred handler runs after the journal has answered it. Replies
        // are released only if the journal confirmed every event: the journal answers a deferral even after a failed
        // write (Akka normally stops us first), and a ledger whose write a newer ledger refused must never acknowledge.
        var confirmed = 0;
        PersistAllAsync(events, _ => confirmed++);
        DeferAsync(events.Length, count =>
        {
            if (confirmed == count) OnBatchPersisted(count, issuedAt);
            else
            {
                _writeFailures.Record();
                _log.Error("Journal confirmed {0} of {1} event(s) of a batch; its replies are withheld and the ledger restarts from its journal",
                    confirmed, count);
                Context.Stop(Self);
            }
        });
    }

    private void OnBatchPersisted(int count, ClockReading issuedAt)
    {
        _lease.Confirmed(issuedAt);
        var replies = _inFlightReplies!;
        _inFlightReplies = null;
        _inFlightEvents = 0;
        foreach (var (to, reply) in replies) to.Tell(reply, Self);

        _eventsSinceSnapshot += count;
        // At least snapshot-every events apart, and an eighth of the ledger's entries: a snapshot costs time in
        // proportion to the entries, so this keeps it a constant cost per write, and recovery replays at most that many.
        if (_eventsSinceSnapshot >= Math.Max(_settings.SnapshotEvery, _ledger.EntryCount / 8) && _pendingEvents.Count == 0)
        {
            // Only when no decision is outstanding: a snapshot must never contain unpersisted state.
            SaveSnapshot(_ledger.ToSnapshot());
            _eventsSinceSnapshot = 0;
        }
        if (_pendingEvents.Count > 0) Flush();
        else if (_stopping) Context.Stop(Self);
    }

    protected override void OnPersistRejected(Exception cause, object @event, long sequenceNr)
    {
        // The journal refused the batch (serialization, constraint): the in-memory state is ahead of the journal,
        // so rebuild it from the journal rather than answer from it.
        _log.Error(cause, "Journal rejected event {0} at {1}; restarting the ledger from its journal", @event.GetType().Name, sequenceNr);
        _writeFailures.Record();
        Context.Stop(Self);
    }

    protected override void OnPersistFailure(Exception cause, object @event, long sequenceNr)
    {
        // Also what a stale leader sees: a newer leader's events already hold this sequence number.
        _log.Error(cause, "Journal write failed at {0} (the journal is unavailable, or a newer leader wrote); the ledger stops and recovers from the journal", sequenceNr);
        _writeFailures.Record();
        base.OnPersistFailure(cause, @event, sequenceNr);
    }

    protected override void OnRecoveryFailure(Exception reason, object? message = null)
    {
        _log.Error(reason, "Ledger recovery failed; retrying with backoff");
        base.OnRecoveryFailure(reason, message);
    }

    // ---------------------------------------------------------------- scanning

    private void StartScan(string volume, IActorRef? requester)
    {
        if (_scans.TryGetValue(volume, out var waiters))
        {
            if (requester is not null) waiters.Add(requester);
            return;
        }
        _scans[volume] = requester is null ? [] : [requester];
        var settings = _settings.Volumes.FirstOrDefault(v => v.Name == volume);
        var root = _ledger.View(volume)!.Path;
        var fsTotals = settings?.UseFileSystemTotals ?? false;
        var dirs = _ledger.MeasuredDirectories(volume);
        // The walk runs on the thread pool; its result comes back as a message.
        Task.Run(() => VolumeMeasurer.Measure(root, fsTotals, dirs)).PipeTo(Self,
            success: u => new ScanCompleted(volume, u, null),
            failure: ex => new ScanCompleted(volume, null, ex.GetBaseException().Message));
    }

    private void OnScanCompleted(ScanCompleted s)
    {
        _scans.Remove(s.Volume, out var waiters);
        if (s.Usage is null)
            _log.Warning("Scan of {0} failed: {1}", s.Volume, s.Error);
        else
            Emit(_ledger.Measure(s.Volume, s.Usage.UsedBytes, s.Usage.ConsumerUsage, DateTimeOffset.UtcNow));
        foreach (var w in waiters ?? [])
            ReplyTo(w, new VolumeReply(_ledger.Epoch, _ledger.View(s.Volume), s.Error));
    }

    private sealed record StandDownOver
    {
        public static readonly StandDownOver Instance = new();
    }

    private sealed record RescanTick
    {
        public static readonly RescanTick Instance = new();
    }

    private sealed record ScanCompleted(string Volume, VolumeUsage? Usage, string? Error);
}
