using Akka.Actor;
using Akka.Event;
using Akka.Persistence;
using Coordinator.Domain;

namespace Coordinator.Cluster.Ledger;

/// <summary>
/// Runs once on every node at start, so that a takeover's recovery finds the journal warm:
/// <list type="number">
/// <item>recovers a persistence id of its own, then writes an event, a snapshot of a sample ledger and another event
/// to it, and starts a second instance that recovers them: the plugins are started, their connections opened, and the
/// write path, the snapshot load and the replay of rows compiled (the first recovery that reads rows costs ~200 ms
/// more than later ones, measured with the SQLite journal; the first write as much). The second instance then deletes
/// all but the latest event and snapshot, so this id stays a few rows;</item>
/// <item>runs the sample ledger through what a takeover runs (snapshot and events through the serializer,
/// FromSnapshot) in <see cref="Rounds"/> rounds spaced by <see cref="RoundInterval"/>. The spacing matters: .NET
/// optimises a method only once it is called after start-up compilation has quietened, so back-to-back rounds at start
/// leave the takeover running unoptimised code (a 19 MB snapshot: ~700 ms to deserialize instead of ~260 ms).</item>
/// </list>
/// </summary>
public sealed class JournalWarmup : UntypedPersistentActor, IWithTimers
{
    /// <summary>Rounds of the recovery path, and the pause between them (about 6 s in all, a few ms of work each).</summary>
    public const int Rounds = 12;
    public static readonly TimeSpan RoundInterval = TimeSpan.FromMilliseconds(500);

    private sealed class Round
    {
        public static readonly Round Instance = new();
    }

    private readonly string _node;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly long _started = System.Diagnostics.Stopwatch.GetTimestamp();
    private CsvLedger _sample = new();
    private readonly List<LedgerEvent> _sampleEvents = [];
    private int _roundsDone;
    private bool _recovered;
    private readonly bool _reader;
    private bool _written;  // the rows are written and the reader has finished with them (or writing failed)
    private readonly int _rounds;
    private readonly TimeSpan _roundInterval;

    public JournalWarmup(string node, bool reader, int rounds, TimeSpan roundInterval)
    {
        _node = node;
        _reader = reader;
        _rounds = rounds;
        _roundInterval = roundInterval;
    }

    public static Props Props(string node) => Props(node, Rounds, RoundInterval);

    /// <summary>With other rounds (tests).</summary>
    public static Props Props(string node, int rounds, TimeSpan roundInterval) =>
        Akka.Actor.Props.Create(() => new JournalWarmup(node, false, rounds, roundInterval));

    private static Props ReaderProps(string node) =>
        Akka.Actor.Props.Create(() => new JournalWarmup(node, true, 0, TimeSpan.Zero));

    public override string PersistenceId => $"journal-warmup-{_node}";

    public ITimerScheduler Timers { get; set; } = null!;

    protected override void PreStart()
    {
        base.PreStart();
        if (_reader) return; // only recovers what the first instance wrote
        // A ledger shaped like a real one: reservations on a volume, cached images, the events that made them.
        var now = DateTimeOffset.UtcNow;
        foreach (var e in _sample.Configure("warmup", "/warmup", 1L << 40, 0)) Keep(e);
        for (var i = 0; i < 2000; i++)
            foreach (var e in _sample.Reserve(new ReserveRequest("warmup", $"warmup-{i}", _node, 1 << 20), now).Events) Keep(e);
        for (var i = 0; i < 200; i++)
        {
            var grant = _sample.AcquireImage($"warmup-image-{i}", _node, 1 << 20, "warmup", "_base", TimeSpan.FromSeconds(30), now);
            foreach (var e in grant.Events) Keep(e);
            if (grant.Outcome.Lease is { } lease)
                foreach (var e in _sample.CompleteLease(lease.ImageId, lease.LeaseId, lease.FencingToken, 1 << 20, "d41d8cd98f00b204e9800998ecf8427e", now).Events) Keep(e);
        }
        RunRound();
        if (_roundsDone < _rounds) Timers.StartPeriodicTimer("round", Round.Instance, _roundInterval);
    }

    private void Keep(LedgerEvent e)
    {
        _sample.Apply(e);
        _sampleEvents.Add(e);
    }

    /// <summary>What a takeover does with a snapshot and the events after it, on a sample ledger.</summary>
    private void RunRound()
    {
        var serialization = Context.System.Serialization;
        var snapshot = _sample.ToSnapshot();
        var serializer = serialization.FindSerializerFor(snapshot);
        var back = (LedgerSnapshot)serialization.Deserialize(serializer.ToBinary(snapshot), serializer.Identifier,
            Akka.Serialization.Serialization.ManifestFor(serializer, snapshot));
        var replayed = CsvLedger.FromSnapshot(back);
        foreach (var e in _sampleEvents.Take(500))
        {
            var s = serialization.FindSerializerFor(e);
            serialization.Deserialize(s.ToBinary(e), s.Identifier, Akka.Serialization.Serialization.ManifestFor(s, e));
        }
        _sample = replayed;
        _roundsDone++;
    }

    protected override void OnRecover(object message)
    {
        if (message is not RecoveryCompleted) return;
        _recovered = true;
        if (_reader)
        {
            // Keep the latest event and snapshot only.
            TrimEvents();
            DeleteSnapshots(new SnapshotSelectionCriteria(LastSequenceNr - 2)); // the latest is at LastSequenceNr - 1
            _log.Debug("Journal warm-up: rows read back after {0:0} ms", System.Diagnostics.Stopwatch.GetElapsedTime(_started).TotalMilliseconds);
            return; // stops once both deletions have answered
        }
        _log.Debug("Journal warm-up: plugins ready after {0:0} ms", System.Diagnostics.Stopwatch.GetElapsedTime(_started).TotalMilliseconds);
        // An event, a snapshot after it, an event after the snapshot: what a ledger recovery reads.
        Persist(_sampleEvents[0], _ => SaveSnapshot(_sample.ToSnapshot()));
    }

    private int _deletionsAnswered;
    private int _deleteRetries;

    private void TrimEvents() => DeleteMessages(LastSequenceNr - 1);

    private sealed class RetryDelete
    {
        public static readonly RetryDelete Instance = new();
    }

    protected override void OnCommand(object message)
    {
        switch (message)
        {
            case DeleteMessagesFailure mf when _deleteRetries++ < 3:
                // Seen with SQLite right after the same id's rows were written ("no such table"); a retry succeeds.
                _log.Debug("Journal warm-up: trimming rows failed ({0}); retrying", mf.Cause.Message);
                Timers.StartSingleTimer("retry-delete", RetryDelete.Instance, TimeSpan.FromMilliseconds(100));
                return;
            case RetryDelete:
                TrimEvents();
                return;
            case DeleteMessagesSuccess or DeleteSnapshotsSuccess:
            case DeleteMessagesFailure or DeleteSnapshotsFailure:
                if (message is DeleteMessagesFailure mf2) _log.Warning("Journal warm-up: rows not trimmed: {0}", mf2.Cause.Message);
                if (message is DeleteSnapshotsFailure sf) _log.Warning("Journal warm-up: snapshots not trimmed: {0}", sf.Cause.Message);
                if (++_deletionsAnswered == 2) Context.Stop(Self);
                return;
            case Round when _roundsDone < _rounds:
                RunRound();
                break;
            case SaveSnapshotSuccess:
                Persist(_sampleEvents[^1], _ =>
                {
                    Context.Watch(Context.ActorOf(ReaderProps(_node), "reader"));
                });
                break;
            case Terminated:
                _written = true; // the reader has read the rows back and trimmed them
                break;
            case SaveSnapshotFailure f:
                _log.Warning("Journal warm-up: snapshot not saved: {0}", f.Cause.Message);
                _written = true;
                break;
        }
        StopWhenDone();
    }

    protected override void OnPersistFailure(Exception cause, object @event, long sequenceNr)
    {
        // Not fatal (the actor stops): the ledger's own writes report and retry journal failures.
        _log.Warning("Journal warm-up: event not written: {0}", cause.Message);
    }

    private void StopWhenDone()
    {
        if (!_recovered || !_written || _roundsDone < _rounds) return;
        Timers.CancelAll();
        _log.Debug("Journal warm-up done in {0:0} ms", System.Diagnostics.Stopwatch.GetElapsedTime(_started).TotalMilliseconds);
        Context.Stop(Self);
    }

    protected override void OnRecoveryFailure(Exception reason, object? message = null)
    {
        // Not fatal: the ledger's own recovery reports and retries journal failures.
        _log.Warning("Journal warm-up failed: {0}", reason.Message);
        base.OnRecoveryFailure(reason, message);
    }
}
