using Akka.Actor;
using Akka.Event;
using Akka.Persistence;
using Coordinator.Domain;

namespace Coordinator.Cluster.Ledger;

/// <summary>
/// Runs once on every node at start: recovers an empty persistence id of its own, so that the journal and snapshot
/// plugins are started, their connections opened and their queries compiled; and runs a small ledger through what a
/// takeover's recovery runs (snapshot and events through the serializer, FromSnapshot, Apply) in rounds spaced by
/// <see cref="RoundInterval"/>. The spacing matters: .NET promotes a method to optimised code only once it is called
/// after start-up compilation has quietened, so back-to-back rounds at start leave the takeover running unoptimised
/// code (a 19 MB snapshot: ~700 ms to deserialize instead of ~260 ms, measured). Without any of it the first ledger
/// recovery on a node pays all of that, and a failover is the moment that recovery happens.
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

    public JournalWarmup(string node) => _node = node;

    public static Props Props(string node) => Akka.Actor.Props.Create(() => new JournalWarmup(node));

    public override string PersistenceId => $"journal-warmup-{_node}";

    public ITimerScheduler Timers { get; set; } = null!;

    protected override void PreStart()
    {
        base.PreStart();
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
        Timers.StartPeriodicTimer("round", Round.Instance, RoundInterval);
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
        if (message is RecoveryCompleted)
        {
            _recovered = true;
            _log.Debug("Journal warm-up: plugins ready after {0:0} ms", System.Diagnostics.Stopwatch.GetElapsedTime(_started).TotalMilliseconds);
            StopWhenDone();
        }
    }

    protected override void OnCommand(object message)
    {
        if (message is not Round) return;
        RunRound();
        StopWhenDone();
    }

    private void StopWhenDone()
    {
        if (!_recovered || _roundsDone < Rounds) return;
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
