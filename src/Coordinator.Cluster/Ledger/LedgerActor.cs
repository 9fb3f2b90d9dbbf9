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

    /// <summary>The clocks the read lease is measured on; null: the Stopwatch and the wall clock (specs move it by hand).</summary>
    public Func<ClockReading>? LeaseClock { get; init; }

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
/// Its life, one behaviour at a time: <b>Recovering</b> (snapshot and events; Akka holds commands back), then
/// <b>StartingEpoch</b> (the new epoch is persisted before anything is served), then <b>WaitingOutPredecessor</b> (one
/// read lease, so that a resumed predecessor's lease has run out), then <b>Serving</b>; from there
/// <b>HandingOver</b> (StopLedger: answer nothing new, stop once the write in flight is confirmed). Instead of serving,
/// recovery may end in <b>StandingDown</b> (a write on this node failed moments ago: serve nothing, then recover again)
/// or <b>Refused</b> (the journal holds a type this version does not know: answer every request with the reason,
/// write nothing, never retry).
/// </para>
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

    // Group commit: the next batch and the batch in flight, with the replies each holds back.
    private readonly ReplyBatch _batch = new();
    private long _decidedThrough; // journal sequence number of the last event applied to _ledger (written or not)
    private long _eventsSinceSnapshot;
    private long _expiredDropped;
    // The newest snapshot known to be readable and the one before it (0: none): both are kept, older ones deleted.
    private long _latestSnapshotSequenceNr;
    private long _previousSnapshotSequenceNr;

    // The stale-leader guard: answers without a write come from memory only within the lease of the last confirmed
    // write, else behind a barrier write; after a failed write on this node a new incarnation first stands down.
    private readonly LeaderReadLease _lease;
    private readonly LedgerWriteFailures _writeFailures = LedgerWriteFailures.Get(Context.System);
    private long _barriers;

    // What the ledger does once its last write is confirmed and nothing is pending: nothing while serving, stop while
    // handing over. Both delegates are made once, so the hot path allocates nothing for this.
    private readonly Action _keepServing = static () => { };
    private readonly Action _stopSelf;
    private Action _whenDrained;

    // Membership: Akka address -> Hyper-V node name, for members that are Up.
    private readonly Dictionary<Address, string> _liveNodes = new();

    // Scans in progress, per volume, with the requesters waiting for their result.
    private readonly Dictionary<string, List<IActorRef>> _scans = new(StringComparer.Ordinal);

    public LedgerActor(LedgerSettings settings)
    {
        _settings = settings;
        _lease = new LeaderReadLease(settings.ReadLease);
        _stopSelf = () => Context.Stop(Self);
        _whenDrained = _keepServing;
    }

    private ClockReading Now() => _settings.LeaseClock?.Invoke() ?? new(System.Diagnostics.Stopwatch.GetElapsedTime(0), DateTimeOffset.UtcNow);

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

    // ---------------------------------------------------------------- behaviours

    /// <summary>
    /// Recovering and StartingEpoch: Akka.Persistence holds every command back until recovery is done and the epoch's
    /// Persist is confirmed, so nothing is expected here; should anything arrive, it waits for Serving.
    /// </summary>
    protected override void OnCommand(object message) => Stash.Stash();

    /// <summary>The epoch is durable: serve, starting with whatever waited.</summary>
    private void BecomeServing()
    {
        Become(Serving);
        Stash.UnstashAll();
    }

    private void Serving(object message)
    {
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
                var d = _ledger.Reserve(c.Request, DateTimeOffset.UtcNow, c.Caller);
                Emit(d.Events);
                Reply(new ReserveReply(_ledger.Epoch, d.Outcome));
                break;
            }
            case ReleaseCommand c:
            {
                var d = _ledger.Release(c.Volume, c.ConsumerId, DateTimeOffset.UtcNow, c.Caller);
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
            case BackupLedger:
                // The state with every decision so far, named by the sequence number of the last event it reflects;
                // released like any reply, once that event is durable.
                Reply(new LedgerBackupReply(_ledger.Epoch, _decidedThrough, DateTimeOffset.UtcNow, _ledger.ToSnapshot()));
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
                OnSnapshotSaved(ok.Metadata.SequenceNr);
                break;
            case SaveSnapshotFailure f:
                _log.Warning("Snapshot failed (recovery stays correct, only slower): {0}", f.Cause.Message);
                break;
            case DeleteSnapshotsFailure df:
                _log.Warning("Deleting snapshots up to sequence number {0} failed (they stay; the next snapshot retries): {1}",
                    df.Criteria.MaxSequenceNr, df.Cause.Message);
                break;
            case DeleteSnapshotsSuccess:
                break;
            case StopLedger:
                StartHandOver();
                return;
            default:
                if (!HandleImageMessage(message) && !HandleVmMessage(message)) Unhandled(message);
                break;
        }
        if (_feedWatchers.Count > 0 && (_batch.HasPending || message is LeaseSweepTick)) ServeFeedWatchers(DateTimeOffset.UtcNow);
        if (!_batch.InFlight && _batch.HasPending) Flush();
    }

    /// <summary>
    /// StopLedger, the singleton's termination message at a hand-over: everything decided so far is written and
    /// answered, then the ledger stops, so no write of this ledger can land after the next one has read the journal.
    /// </summary>
    private void StartHandOver()
    {
        if (_batch.IsIdle)
        {
            Context.Stop(Self);
            return;
        }
        _whenDrained = _stopSelf;
        Become(HandingOver);
    }

    /// <summary>New requests go unanswered (503, then the client retries at the next leader).</summary>
    private void HandingOver(object message)
    {
    }

    /// <summary>Requests go unanswered: their nodes answer 503 at the deadline and clients retry.</summary>
    private void StandingDown(object message)
    {
        if (message is StandDownOver or StopLedger) Context.Stop(Self);
    }

    /// <summary>
    /// A factory for the Refused behaviour: every request is answered with the reason recovery stopped, nothing is
    /// written, and the ledger stays so (no restart loop) until this node is upgraded or the journal restored.
    /// </summary>
    private UntypedReceive Refused(string reason)
    {
        var refusal = new LedgerRefused(reason);
        return message =>
        {
            switch (message)
            {
                case ILedgerRequest or ExpiringRequest:
                    Sender.Tell(refusal, Self);
                    break;
                case StopLedger:
                    Context.Stop(Self);
                    break;
            }
        };
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
            _batch.AddEvent(e);
            _decidedThrough++;
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
        if (fenced && !_batch.HasPending && !_lease.Holds(Now())) EmitBarrier();
        if (!_batch.TryHold(to, reply)) to.Tell(reply, Self);
    }

    private void EmitBarrier()
    {
        Emit([_ledger.ConfirmLeader(DateTimeOffset.UtcNow)]);
        if (++_barriers % 1000 == 1)
            _log.Debug("Read lease expired: barrier write {0} of this incarnation before answering from memory", _barriers);
    }

    private void Flush()
    {
        var events = _batch.StartWrite();
        var issuedAt = Now();
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
        _batch.Release(Self);

        _eventsSinceSnapshot += count;
        // At least snapshot-every events apart, and an eighth of the ledger's entries: a snapshot costs time in
        // proportion to the entries, so this keeps it a constant cost per write, and recovery replays at most that many.
        if (_eventsSinceSnapshot >= Math.Max(_settings.SnapshotEvery, _ledger.EntryCount / 8) && !_batch.HasPending)
        {
            // Only when no decision is outstanding: a snapshot must never contain unpersisted state.
            SaveSnapshot(_ledger.ToSnapshot());
            _eventsSinceSnapshot = 0;
        }
        if (_batch.HasPending) Flush();
        else _whenDrained();
    }

    /// <summary>
    /// Keeps the snapshot before the new one (should the new one turn out unreadable, recovery falls back to it) and
    /// deletes the older ones; the journal keeps every event for audit.
    /// </summary>
    private void OnSnapshotSaved(long sequenceNr)
    {
        // Saves may be confirmed out of order: keep the two highest seen.
        if (sequenceNr > _latestSnapshotSequenceNr)
            (_previousSnapshotSequenceNr, _latestSnapshotSequenceNr) = (_latestSnapshotSequenceNr, sequenceNr);
        else if (sequenceNr > _previousSnapshotSequenceNr)
            _previousSnapshotSequenceNr = sequenceNr;
        if (_previousSnapshotSequenceNr > 0)
            DeleteSnapshots(new SnapshotSelectionCriteria(_previousSnapshotSequenceNr - 1));
        _corruptSnapshots.SnapshotSaved(sequenceNr);
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

    private sealed record StandDownOver
    {
        public static readonly StandDownOver Instance = new();
    }
}
