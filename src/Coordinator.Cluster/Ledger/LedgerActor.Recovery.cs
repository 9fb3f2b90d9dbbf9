using Akka.Event;
using Akka.Persistence;
using Coordinator.Cluster.Serialization;
using Coordinator.Domain;

namespace Coordinator.Cluster.Ledger;

/// <summary>
/// Recovering and StartingEpoch: the snapshot and the events after it, then the checks that decide what this
/// incarnation becomes (Serving after a new epoch, StandingDown, Refused, or a stop for another recovery).
/// </summary>
public sealed partial class LedgerActor
{
    private readonly RecoveryFigures _figures = new();
    private readonly CorruptSnapshots _corruptSnapshots = CorruptSnapshots.Get(Context.System);
    private LedgerRecovery? _recovery;
    private string? _refusal; // set when recovery met what this version cannot read: the incarnation ends in Refused
    private bool _abandoned;  // recovery met a corrupt snapshot: this incarnation stops, the next one skips it

    /// <summary>From the latest snapshot, or from the latest one below a snapshot this node found corrupt.</summary>
    public override Recovery Recovery => _corruptSnapshots.Recovery;

    protected override void OnRecover(object message)
    {
        if (_abandoned || (_refusal is not null && message is not RecoveryCompleted)) return;
        switch (message)
        {
            case SnapshotOffer { Snapshot: LedgerSnapshot s } offer:
                _ledger = CsvLedger.FromSnapshot(s);
                _figures.SnapshotLoaded(offer.Metadata.SequenceNr);
                _latestSnapshotSequenceNr = offer.Metadata.SequenceNr;
                break;
            case SnapshotOffer { Snapshot: CorruptSnapshot corrupt } offer:
                // A snapshot is a shortcut: the journal keeps every event, so the snapshot before it (or none) plus
                // the events after that give the same state. Recovery has begun from this one, so stop; the
                // supervisor's next incarnation loads the one before it.
                _log.Warning("The latest ledger snapshot (sequence number {0}) cannot be read ({1}); recovering again from the snapshot " +
                             "before it and the journal's events after that", offer.Metadata.SequenceNr, corrupt.Reason);
                _corruptSnapshots.Record(offer.Metadata.SequenceNr);
                _abandoned = true;
                Context.Stop(Self);
                break;
            case SnapshotOffer { Snapshot: UnknownJournalEntry unknown } offer:
                Refuse("a snapshot", unknown.Manifest, offer.Metadata.SequenceNr);
                break;
            case UnknownJournalEntry unknown:
                Refuse("an event", unknown.Manifest, LastSequenceNr);
                break;
            case LedgerEvent e:
                _ledger.Apply(e);
                _figures.EventApplied(LastSequenceNr);
                _eventsSinceSnapshot++;
                break;
            case RecoveryCompleted:
                OnRecoveryCompleted();
                break;
        }
    }

    /// <summary>
    /// Recovery met a type this version does not know. Applying what follows it would build a state the journal does
    /// not describe, and retrying cannot help: the ledger stays Refused and writes nothing (no epoch).
    /// </summary>
    private void Refuse(string what, string manifest, long sequenceNr)
    {
        _refusal = $"The ledger's journal holds {what} of type '{manifest}' at sequence number {sequenceNr} that this version of " +
                   $"the coordinator (journal format {LedgerFormat.JournalFormatVersion}) does not know: a newer version of the " +
                   "coordinator wrote it. Upgrade this node to that version, or restore a backup taken by this version into an " +
                   "empty journal (coordctl restore). The ledger serves nothing and writes nothing until then.";
    }

    private void OnRecoveryCompleted()
    {
        if (_refusal is not null)
        {
            _log.Error("{0}", _refusal); // the manifest is data, never a format string
            Become(Refused(_refusal));
            return;
        }
        if (LastSequenceNr != _figures.AppliedThrough)
        {
            // The journal holds events this state does not (skipped by a replay filter, or written while we read):
            // writing on top would fork the ledger. Stop; the supervisor recovers again after a backoff.
            _log.Error("Recovery applied events through {0} but the journal's highest sequence number is {1}; not serving from this state, recovering again",
                _figures.AppliedThrough, LastSequenceNr);
            Context.Stop(Self);
            return;
        }
        if (_writeFailures.SinceLastFailure() is { } since && since < _settings.WaitAfterWriteFailure)
        {
            // Most likely this node was a leader whose write a newer leader's events refused: it was paused or cut
            // off, was downed meanwhile, and is about to learn it. Writing a new epoch now would take the journal
            // back from the real leader (and fence it in turn), so serve nothing, then recover again.
            var wait = _settings.WaitAfterWriteFailure - since;
            _log.Warning("A ledger write on this node failed {0:0} ms ago (the journal was unavailable, or a newer leader wrote); " +
                         "serving nothing for {1:0} ms, then recovering again", since.TotalMilliseconds, wait.TotalMilliseconds);
            Become(StandingDown);
            Timers.StartSingleTimer("stand-down", StandDownOver.Instance, wait);
            return;
        }
        _recovery = _figures.Complete();
        var (gcPauseMs, fullCollections, jitMs) = _figures.ProcessCosts();
        _log.Info("Ledger recovered in {0:0} ms: snapshot at sequence number {1} loaded after {2:0} ms, then {3} event(s) replayed " +
                  "(meanwhile in this process: GC pauses {4:0} ms, {5} full collections, JIT {6:0} ms)",
            new object[]
            {
                _recovery.DurationMs, _recovery.SnapshotSequenceNr, _recovery.SnapshotLoadedMs, _recovery.EventsReplayed,
                gcPauseMs, fullCollections, jitMs,
            });
        StartIncarnation();
    }

    /// <summary>StartingEpoch: a new epoch and the configured volumes, persisted before the first command is served.</summary>
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
        _decidedThrough = LastSequenceNr + events.Count;

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
            BecomeWaitingOutPredecessor();
        });
    }

    /// <summary>
    /// WaitingOutPredecessor: the epoch is durable, but a predecessor resumed from a pause may have had a write accepted
    /// just before it (issued after this ledger was elected, confirmed before its recovery read the journal), and that
    /// write gives it a read lease of its own. Its write was issued before this epoch's, so once this ledger's lease
    /// on the epoch write has run out, so has the predecessor's: only then is anything answered (a chaos run saw the
    /// resumed leader refuse a claim from memory 0.1 s after the new one had answered).
    /// </summary>
    private void BecomeWaitingOutPredecessor()
    {
        if (!_lease.Holds(Now()))
        {
            BecomeServing();
            return;
        }
        var check = TimeSpan.FromMilliseconds(Math.Clamp(_settings.ReadLease.TotalMilliseconds / 10, 5, 50));
        Timers.StartPeriodicTimer("predecessor-lease", PredecessorLeaseCheck.Instance, check);
        Become(WaitingOutPredecessor);
    }

    private void WaitingOutPredecessor(object message)
    {
        if (message is not PredecessorLeaseCheck)
        {
            Stash.Stash();
            return;
        }
        if (_lease.Holds(Now())) return;
        Timers.Cancel("predecessor-lease");
        BecomeServing();
    }

    private sealed record PredecessorLeaseCheck
    {
        public static readonly PredecessorLeaseCheck Instance = new();
    }

    protected override void OnRecoveryFailure(Exception reason, object? message = null)
    {
        _log.Error(reason, "Ledger recovery failed; retrying with backoff");
        base.OnRecoveryFailure(reason, message);
    }
}
