namespace Coordinator.Client;

public sealed record CoordinatorClientOptions
{
    /// <summary>Bearer token for the admin routes (member leave/down, drain, resume). Never logged.</summary>
    public string? Token { get; init; }

    /// <summary>
    /// How long an idempotent call keeps retrying across a leader change (503, refused connections, attempt timeouts)
    /// before it gives up with <see cref="CoordinatorUnavailableException"/>. No new attempt starts after it; an attempt
    /// in flight is bounded by <see cref="AttemptTimeout"/>.
    /// </summary>
    public TimeSpan RetryBudget { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Cap on a server's Retry-After and on the exponential back-off between attempts.</summary>
    public TimeSpan MaxRetryDelay { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>First back-off delay when the answer names no Retry-After (exponential with jitter after that).</summary>
    public TimeSpan BaseRetryDelay { get; init; } = TimeSpan.FromMilliseconds(200);

    /// <summary>
    /// Time one attempt may take (a long poll adds its waitMs on top). Keep it above the service's ask-timeout +
    /// max-clock-skew (5.5 s by default): an attempt given up after that has either taken effect or never will, so
    /// its retry cannot be undone by it.
    /// </summary>
    public TimeSpan AttemptTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Time one attempt of a slow operation may take: spawn, migrate, destroy, ensure, rescan.</summary>
    public TimeSpan OperationTimeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Called before each retry (for logging): the attempt number, the delay, and why.</summary>
    public Action<RetryNotice>? OnRetry { get; init; }
}

/// <summary>Why a call is being retried: <see cref="Status"/> 503, or an exception (refused connection, timeout).</summary>
public sealed record RetryNotice(string Method, string Path, int Attempt, TimeSpan Delay, int? Status, Exception? Exception);
