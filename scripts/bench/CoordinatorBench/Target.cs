namespace CoordinatorBench;

/// <summary>How one operation ended, from the client's point of view.</summary>
public enum OutcomeKind
{
    /// <summary>Acknowledged: durable on the system under test.</summary>
    Ok,
    /// <summary>A definite refusal by the system's rules (no space, already exists...): nothing changed.</summary>
    Refused,
    /// <summary>No definite answer (503, timeout, connection refused, no leader): the caller may retry.</summary>
    Unavailable,
    /// <summary>Anything else (a bug in the bench or the target): counted and reported, never hidden.</summary>
    Error,
    /// <summary>Set by the driver only: still no definite answer when the operation's budget (10 s) ran out.</summary>
    GivenUp,
}

/// <summary>
/// The result of one logical operation. <see cref="Conflicts"/> counts the optimistic-concurrency retries the client
/// made inside it (etcd: failed transaction compares; ours: always 0, the singleton serialises).
/// <see cref="Granted"/> is set by lease operations when this caller was the one granted the lease.
/// </summary>
public readonly record struct Outcome(OutcomeKind Kind, int Conflicts = 0, bool Granted = false, string? Detail = null)
{
    public static readonly Outcome Ok = new(OutcomeKind.Ok);
    public static Outcome Unavailable(string? detail = null) => new(OutcomeKind.Unavailable, Detail: detail);
    public static Outcome Refused(string? detail = null) => new(OutcomeKind.Refused, Detail: detail);
    public static Outcome Error(string detail) => new(OutcomeKind.Error, Detail: detail);
}

/// <summary>
/// A system under test, behind the operations of the workload. Every operation is the *equivalent atomic operation*
/// on that system: on ours an HTTP call to the node's API; on etcd a transaction that compares the volume's usage
/// revision and writes the reservation and the new usage together (retrying on conflict), as issue 7 asks.
///
/// Endpoints are numbered 0..Endpoints-1; a worker w always uses endpoint w % Endpoints, so load is spread over all
/// nodes/members. All methods are thread-safe and never throw for an outcome of the target (they return it).
/// </summary>
public interface ITarget : IAsyncDisposable
{
    /// <summary>Short label for tables, e.g. "ours-3", "etcd-1", "etcd-3".</summary>
    string Name { get; }

    /// <summary>One line saying what runs: versions, members, data folder.</summary>
    string Describe { get; }

    int Endpoints { get; }

    /// <summary>Start the processes (if this target owns them) and wait until writes are accepted.</summary>
    Task StartAsync(CancellationToken ct);

    /// <summary>Set up what the workload needs (the volume's usage key on etcd; nothing on ours).</summary>
    Task PrepareAsync(long capacityBytes, CancellationToken ct);

    /// <summary>Claim <paramref name="bytes"/> for a new consumer id (reservation PUT of a new consumer).</summary>
    Task<Outcome> ReserveAsync(int endpoint, string consumerId, long bytes);

    /// <summary>Change an existing reservation to <paramref name="bytes"/> (resize).</summary>
    Task<Outcome> ResizeAsync(int endpoint, string consumerId, long bytes);

    /// <summary>Release an existing reservation.</summary>
    Task<Outcome> ReleaseAsync(int endpoint, string consumerId);

    /// <summary>A linearizable read of what a node may still claim (quota GET; etcd: read the usage key).</summary>
    Task<Outcome> ReadQuotaAsync(int endpoint, string node);

    /// <summary>Take the fetch lease of a new image (granted, its size claimed) and complete it (cached).</summary>
    Task<Outcome> LeaseGrantAndCompleteAsync(int endpoint, string imageId, long sizeBytes);

    /// <summary>
    /// Many callers, one image: acquire its lease; the one granted completes it at once, every other one waits
    /// (no busy polling: long poll / watch) until the image is cached. Ok when this caller has the image cached;
    /// Outcome.Granted tells whether this caller was the fetcher.
    /// </summary>
    Task<Outcome> AcquireOrWaitAsync(int endpoint, string imageId, long sizeBytes, TimeSpan wait);

    // ------------------------------------------------------------ failover

    /// <summary>The endpoint whose process is the current leader (ours: host of the singleton; etcd: raft leader).</summary>
    Task<int> LeaderEndpointAsync(CancellationToken ct);

    /// <summary>SIGKILL the process behind <paramref name="endpoint"/>.</summary>
    void Kill(int endpoint);

    /// <summary>Start the killed process again (same name, data, ports) and wait until the whole group is healthy.</summary>
    Task RestartAsync(int endpoint, CancellationToken ct);

    /// <summary>One write used as a failover probe; should give up after <paramref name="timeout"/>.</summary>
    Task<Outcome> ProbeWriteAsync(int endpoint, string key, TimeSpan timeout);

    /// <summary>Resident set size of each process, in bytes (0 where unknown).</summary>
    IReadOnlyList<long> RssBytes();
}
