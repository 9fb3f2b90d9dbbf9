namespace Coordinator.Client;

public sealed record CoordinatorClientOptions
{
    /// <summary>
    /// Bearer token: this node's agent token, or an admin token (member leave/down, drain, resume, evict, backup). Never
    /// logged. See <see cref="ReadToken"/> to take it from a file or an environment variable.
    /// </summary>
    public string? Token { get; init; }

    /// <summary>
    /// A PEM file of the CA(s) that issued the nodes' HTTPS certificates: the server's certificate must chain to one of
    /// them (the machine's root store is not used then). Null: the operating system's trust. Applies when the client
    /// makes its own HttpClient (the endpoint constructor).
    /// </summary>
    public string? CaFile { get; init; }

    /// <summary>
    /// A token from <paramref name="file"/> (its first line, trimmed) or else from the environment variable
    /// <paramref name="env"/>; null when neither is given. A missing or empty file throws (never silently anonymous), and
    /// so does, on Unix, a file that group or others may read or write.
    /// </summary>
    public static string? ReadToken(string? file, string? env = null)
    {
        if (!string.IsNullOrEmpty(file))
        {
            // As the service does with its own secret files: a token others on the host may read has leaked already.
            if (!OperatingSystem.IsWindows()
                && (File.GetUnixFileMode(file) & (UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite)) != 0)
                throw new InvalidDataException($"the token file '{file}' is readable or writable by group or others: chmod 600 '{file}'");
            var text = File.ReadAllText(file).Split('\n')[0].Trim();
            return text.Length > 0 ? text : throw new InvalidDataException($"the token file '{file}' is empty");
        }
        return env is not null && Environment.GetEnvironmentVariable(env) is { Length: > 0 } t ? t.Trim() : null;
    }

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
