using Akka.Actor;

namespace Coordinator.Cluster.Ledger;

/// <summary>
/// When this node's ledger last failed to write, kept per ActorSystem so that it outlives the ledger actor: a write
/// fails when the journal is down, or when a newer leader's events already hold the sequence numbers (this node is a
/// stale leader that has not yet learned it was downed). The next incarnation waits before it serves, which gives a
/// stale node time to learn and exit instead of recovering and taking the journal back from the real leader.
/// </summary>
public sealed class LedgerWriteFailures : IExtension
{
    private long _lastFailureTimestamp; // Stopwatch timestamp; 0 = never

    public static LedgerWriteFailures Get(ActorSystem system) => system.WithExtension<LedgerWriteFailures, Provider>();

    public void Record() => Interlocked.Exchange(ref _lastFailureTimestamp, System.Diagnostics.Stopwatch.GetTimestamp());

    /// <summary>Time since the last failed write, or null if none failed in this process.</summary>
    public TimeSpan? SinceLastFailure()
    {
        var at = Interlocked.Read(ref _lastFailureTimestamp);
        return at == 0 ? null : System.Diagnostics.Stopwatch.GetElapsedTime(at);
    }

    private sealed class Provider : ExtensionIdProvider<LedgerWriteFailures>
    {
        public override LedgerWriteFailures CreateExtension(ExtendedActorSystem system) => new();
    }
}
