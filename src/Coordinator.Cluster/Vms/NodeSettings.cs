namespace Coordinator.Cluster.Vms;

/// <summary>What the node actor needs: its name, where the volumes are, and the timings of its operations.</summary>
public sealed record NodeSettings(
    string NodeName,
    IReadOnlyDictionary<string, string> VolumeRoots,
    TimeSpan LedgerTimeout,
    TimeSpan MoveTimeout,
    TimeSpan OwnerSettle,
    TimeSpan ReconcileInterval,
    int DrainConcurrency,
    TimeSpan MaxClockSkew);
