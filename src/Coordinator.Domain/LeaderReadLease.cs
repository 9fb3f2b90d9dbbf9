namespace Coordinator.Domain;

/// <summary>A reading of both clocks: the monotonic one (immune to clock steps) and the wall clock.</summary>
/// <param name="Monotonic">Elapsed time on a monotonic clock (Stopwatch).</param>
/// <param name="Wall">The wall clock: it still advances across a paused virtual machine, where some monotonic clocks stop.</param>
public readonly record struct ClockReading(TimeSpan Monotonic, DateTimeOffset Wall);

/// <summary>
/// When the ledger may answer from memory without writing: a read, a refusal (409) or an unchanged PUT.
/// <para>
/// A write the journal accepted proves that no newer leader had written before it: the newer leader's first event
/// takes the same sequence number and the journal's unique index refuses one of the two. A newer leader is elected
/// only after this one fell silent and was downed (failure detection + the Split Brain Resolver's stable-after +
/// down-removal-margin), so for a while after a write was <em>issued</em> no newer leader can have answered anything.
/// That while is the lease (Raft's leader lease, etcd's lease-based reads); it must stay shorter than the quickest
/// takeover. Past it the ledger persists a <see cref="LeaderConfirmed"/> barrier and answers only once it is durable:
/// a leader that was paused (SIGSTOP, a frozen VM, a long GC) and resumed after a takeover fails that write instead
/// of answering from stale memory.
/// </para>
/// <para>
/// The lease runs from when the confirmed write was issued (its commit came at or after that), and elapsed time is the
/// larger of the monotonic and the wall-clock readings: a clock stepped back cannot extend it, and a monotonic clock
/// that stood still across a VM pause is overruled by the wall clock the host resynchronises.
/// </para>
/// </summary>
public sealed class LeaderReadLease(TimeSpan length)
{
    private ClockReading? _from;

    public TimeSpan Length { get; } = length >= TimeSpan.Zero
        ? length
        : throw new ArgumentOutOfRangeException(nameof(length), length, "a lease cannot be negative");

    /// <summary>A write issued at <paramref name="issuedAt"/> is durable; the lease now runs from then (never moves back).</summary>
    public void Confirmed(ClockReading issuedAt)
    {
        if (_from is not { } from || issuedAt.Monotonic > from.Monotonic) _from = issuedAt;
    }

    /// <summary>Whether an answer without a write may be given now; false before any write was confirmed.</summary>
    public bool Holds(ClockReading now)
    {
        if (_from is not { } from) return false;
        var elapsed = Max(now.Monotonic - from.Monotonic, now.Wall - from.Wall);
        return elapsed <= Length;
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
}
