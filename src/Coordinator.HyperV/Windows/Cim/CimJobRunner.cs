namespace Coordinator.HyperV.Windows;

/// <summary>How <see cref="CimJobRunner"/> polls.</summary>
public sealed record CimJobOptions
{
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(200);

    /// <summary>Overall limit of one job (a define, a disk creation, a state change).</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(30);
}

/// <summary>
/// The Hyper-V method/job protocol, in one place (os-win's jobutils): a method returns 0 when it is done, 4096 when it
/// started a job (its Job out parameter references an Msvm_ConcreteJob), anything else is an error. A job is polled
/// until it reaches a final state: Completed (7) or Completed with warnings (32768) with ErrorCode 0 are success;
/// Terminated (8), Killed (9), Exception (10), or any ErrorCode other than 0, is JobFailed.
/// </summary>
public sealed class CimJobRunner(ICimGateway cim, CimJobOptions? options = null, IHyperVClock? clock = null)
{
    public const uint Completed = 0;
    public const uint JobStarted = 4096;

    public const ushort JobStateNew = 2;
    public const ushort JobStateStarting = 3;
    public const ushort JobStateRunning = 4;
    public const ushort JobStateCompleted = 7;
    public const ushort JobStateTerminated = 8;
    public const ushort JobStateKilled = 9;
    public const ushort JobStateException = 10;
    public const ushort JobStateCompletedWithWarnings = 32768;

    /// <summary>Msvm_ConcreteJob.RequestStateChange value that kills a job (os-win's _KILL_JOB_STATE_CHANGE_REQUEST).</summary>
    public const ushort KillJobRequest = 5;

    private readonly CimJobOptions _options = options ?? new CimJobOptions();
    private readonly IHyperVClock _clock = clock ?? SystemHyperVClock.Instance;

    public CimJobOptions Options => _options;

    /// <summary>Invokes <paramref name="method"/> on the instance at <paramref name="path"/> and completes its job.
    /// <paramref name="alsoSuccess"/> lists return values that mean success too (32775 for a state change the VM already
    /// is in is decided by the caller, which knows the state).</summary>
    public async Task<CimMethodResult> InvokeAsync(
        string ns, string path, string method, IReadOnlyDictionary<string, object?> parameters, CancellationToken ct,
        TimeSpan? timeout = null)
    {
        var result = await cim.InvokeMethodAsync(ns, path, method, parameters, ct).ConfigureAwait(false);
        await CompleteAsync($"{WmiPath.ClassOf(path)}.{method}", result, ct, timeout).ConfigureAwait(false);
        return result;
    }

    /// <summary>Applies the protocol to a result already in hand: 0 returns, 4096 waits for the job, others throw.</summary>
    public async Task CompleteAsync(string operation, CimMethodResult result, CancellationToken ct, TimeSpan? timeout = null)
    {
        switch (result.ReturnValue)
        {
            case Completed:
                return;
            case JobStarted:
                var job = result.Job
                    ?? throw new HyperVException(HyperVErrorKind.Failed, $"{operation} started a job (4096) but returned no Job reference", JobStarted);
                await WaitAsync(operation, job, ct, timeout).ConfigureAwait(false);
                return;
            default:
                throw ReturnValueError(operation, result.ReturnValue);
        }
    }

    /// <summary>Polls the job until it is final; see the class summary for what succeeds.</summary>
    public async Task<CimRecord> WaitAsync(string operation, CimReference job, CancellationToken ct, TimeSpan? timeout = null)
    {
        var limit = timeout ?? _options.Timeout;
        var deadline = _clock.UtcNow + limit;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            CimRecord record;
            try
            {
                record = await cim.GetInstanceAsync(CimNames.Virtualization, job.Path, ct).ConfigureAwait(false);
            }
            catch (HyperVException e) when (e.Kind == HyperVErrorKind.NotFound)
            {
                // Jobs stay a while after they end (TimeBeforeRemoval); one that is gone cannot tell how it ended.
                throw new HyperVException(HyperVErrorKind.JobFailed, $"{operation}: its job {job.Path} vanished before it was seen to end", e.Code, e);
            }

            var state = (ushort)(record.GetUInt64("JobState") ?? 0);
            if (IsFinal(state))
            {
                var errorCode = record.GetUInt64("ErrorCode") ?? 0;
                if (state is JobStateCompleted or JobStateCompletedWithWarnings && errorCode == 0)
                    return record; // Completed with warnings is success, as in os-win (the warnings are in the event log).
                var description = record.GetString("ErrorDescription");
                var summary = record.GetString("ErrorSummaryDescription");
                var details = string.Join("; ", new[] { description, summary }.Where(s => !string.IsNullOrWhiteSpace(s)).Distinct());
                throw new HyperVException(HyperVErrorKind.JobFailed,
                    $"{operation} failed: job {StateName(state)}, error {errorCode}" + (details.Length > 0 ? $": {details}" : ""),
                    (long)errorCode);
            }

            if (_clock.UtcNow >= deadline)
            {
                await TryKillAsync(job).ConfigureAwait(false);
                throw new HyperVException(HyperVErrorKind.Timeout, $"{operation}: its job did not end within {limit} (last state {StateName(state)})");
            }

            await _clock.Delay(_options.PollInterval, ct).ConfigureAwait(false);
        }
    }

    public static bool IsFinal(ushort jobState) =>
        jobState is JobStateCompleted or JobStateTerminated or JobStateKilled or JobStateException or JobStateCompletedWithWarnings;

    /// <summary>The exception for a method's return value that is neither 0 nor 4096 (codes of
    /// Msvm_VirtualSystemManagementService and friends).</summary>
    public static HyperVException ReturnValueError(string operation, uint code)
    {
        var (kind, text) = code switch
        {
            1 => (HyperVErrorKind.Failed, "not supported"),
            2 => (HyperVErrorKind.Failed, "failed"),
            3 => (HyperVErrorKind.Timeout, "timeout"),
            4 => (HyperVErrorKind.Failed, "invalid parameter"),
            5 => (HyperVErrorKind.InvalidState, "invalid state"),
            32768 => (HyperVErrorKind.Failed, "failed"),
            32769 => (HyperVErrorKind.Failed, "access denied"),
            32770 => (HyperVErrorKind.Failed, "not supported"),
            32771 => (HyperVErrorKind.Failed, "status is unknown"),
            32772 => (HyperVErrorKind.Timeout, "timeout"),
            32773 => (HyperVErrorKind.Failed, "invalid parameter"),
            32774 => (HyperVErrorKind.InvalidState, "system is in use"),
            32775 => (HyperVErrorKind.InvalidState, "invalid state for this operation"),
            32776 => (HyperVErrorKind.Failed, "incorrect data type"),
            32777 => (HyperVErrorKind.Failed, "system is not available"),
            32778 => (HyperVErrorKind.InsufficientResources, "out of memory"),
            32779 => (HyperVErrorKind.NotFound, "file not found"),
            _ => (HyperVErrorKind.Failed, "unknown return value"),
        };
        return new HyperVException(kind, $"{operation} returned {code} ({text})", code);
    }

    private static string StateName(ushort state) => state switch
    {
        JobStateNew => "New",
        JobStateStarting => "Starting",
        JobStateRunning => "Running",
        5 => "Suspended",
        6 => "Shutting Down",
        JobStateCompleted => "Completed",
        JobStateTerminated => "Terminated",
        JobStateKilled => "Killed",
        JobStateException => "Exception",
        JobStateCompletedWithWarnings => "Completed with warnings",
        _ => state.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    private async Task TryKillAsync(CimReference job)
    {
        try
        {
            await cim.InvokeMethodAsync(CimNames.Virtualization, job.Path, "RequestStateChange",
                new Dictionary<string, object?> { ["RequestedState"] = KillJobRequest }, CancellationToken.None).ConfigureAwait(false);
        }
        catch (HyperVException)
        {
            // Best effort: the job may have ended meanwhile, or not be cancellable.
        }
    }
}
