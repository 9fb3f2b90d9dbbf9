using Akka.Actor;
using Akka.Event;
using Akka.Persistence;
using Coordinator.Domain;

namespace Coordinator.Cluster.Ledger;

/// <summary>
/// Runs once on every node at start: recovers an empty persistence id of its own, so that the journal and snapshot
/// plugins are started, their connections opened and their queries compiled, and round-trips a small ledger snapshot
/// through the serializer. Without it the first ledger recovery on a node pays all of that (about 1.5 s measured by
/// scripts/bench.sh), and a failover is the moment that recovery happens.
/// </summary>
public sealed class JournalWarmup : UntypedPersistentActor
{
    private readonly string _node;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly long _started = System.Diagnostics.Stopwatch.GetTimestamp();

    public JournalWarmup(string node) => _node = node;

    public static Props Props(string node) => Akka.Actor.Props.Create(() => new JournalWarmup(node));

    public override string PersistenceId => $"journal-warmup-{_node}";

    protected override void PreStart()
    {
        base.PreStart();
        // A few round trips of a ledger with some thousand entries through the serializer and FromSnapshot: enough
        // calls and loop iterations for the JIT to optimise the code a takeover's recovery runs over a large snapshot.
        var ledger = new CsvLedger();
        var now = DateTimeOffset.UtcNow;
        foreach (var e in ledger.Configure("warmup", "/warmup", 1L << 40, 0)) ledger.Apply(e);
        for (var i = 0; i < 2000; i++)
            foreach (var e in ledger.Reserve(new ReserveRequest("warmup", $"warmup-{i}", _node, 1 << 20), now).Events) ledger.Apply(e);
        var serialization = Context.System.Serialization;
        for (var round = 0; round < 3; round++)
        {
            var snapshot = ledger.ToSnapshot();
            var serializer = serialization.FindSerializerFor(snapshot);
            var bytes = serializer.ToBinary(snapshot);
            var back = (LedgerSnapshot)serialization.Deserialize(bytes, serializer.Identifier,
                Akka.Serialization.Serialization.ManifestFor(serializer, snapshot));
            ledger = CsvLedger.FromSnapshot(back);
        }
    }

    protected override void OnRecover(object message)
    {
        if (message is RecoveryCompleted)
        {
            _log.Debug("Journal warm-up done in {0:0} ms", System.Diagnostics.Stopwatch.GetElapsedTime(_started).TotalMilliseconds);
            Context.Stop(Self);
        }
    }

    protected override void OnCommand(object message)
    {
    }

    protected override void OnRecoveryFailure(Exception reason, object? message = null)
    {
        // Not fatal: the ledger's own recovery reports and retries journal failures.
        _log.Warning("Journal warm-up failed: {0}", reason.Message);
        base.OnRecoveryFailure(reason, message);
    }
}
