using Coordinator.Domain;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;

namespace Coordinator.Domain.Tests;

public class LeaderReadLeaseTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 27, 12, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Lease = TimeSpan.FromMilliseconds(500);

    private static ClockReading At(double ms, double? wallMs = null) =>
        new(TimeSpan.FromMilliseconds(ms), T0.AddMilliseconds(wallMs ?? ms));

    [Fact]
    public void Nothing_is_answered_from_memory_before_a_write_was_confirmed()
    {
        var lease = new LeaderReadLease(Lease);
        Assert.False(lease.Holds(At(0)));
    }

    [Fact]
    public void The_lease_runs_from_the_issue_of_the_confirmed_write_not_from_its_confirmation()
    {
        var lease = new LeaderReadLease(Lease);
        lease.Confirmed(At(1000)); // issued at 1000 ms, confirmed whenever: the commit is at or after 1000 ms
        Assert.True(lease.Holds(At(1000)));
        Assert.True(lease.Holds(At(1500)));
        Assert.False(lease.Holds(At(1501)));
    }

    [Fact]
    public void A_resumed_process_finds_its_lease_expired()
    {
        var lease = new LeaderReadLease(Lease);
        lease.Confirmed(At(1000));
        Assert.False(lease.Holds(At(13_000))); // SIGSTOP for 12 s
    }

    [Fact]
    public void A_monotonic_clock_that_stood_still_across_a_VM_pause_is_overruled_by_the_wall_clock()
    {
        var lease = new LeaderReadLease(Lease);
        lease.Confirmed(At(1000));
        Assert.False(lease.Holds(At(1010, wallMs: 13_000)));
    }

    [Fact]
    public void A_wall_clock_stepped_back_does_not_extend_the_lease()
    {
        var lease = new LeaderReadLease(Lease);
        lease.Confirmed(At(1000));
        Assert.False(lease.Holds(At(2000, wallMs: 0)));
    }

    [Fact]
    public void A_late_confirmation_of_an_older_write_does_not_move_the_lease_back()
    {
        var lease = new LeaderReadLease(Lease);
        lease.Confirmed(At(2000));
        lease.Confirmed(At(1000));
        Assert.True(lease.Holds(At(2400)));
    }

    [Fact]
    public void A_zero_lease_means_a_barrier_before_every_answer_and_a_negative_one_is_refused()
    {
        var lease = new LeaderReadLease(TimeSpan.Zero);
        lease.Confirmed(At(1000));
        Assert.False(lease.Holds(At(1000.001)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LeaderReadLease(TimeSpan.FromMilliseconds(-1)));
    }

    /// <summary>
    /// Whatever order writes are confirmed in and however the clocks move, the lease holds at a moment only if some
    /// confirmed write was issued no longer than the lease before it on both clocks: the rule the stale-leader
    /// argument needs.
    /// </summary>
    [Property(MaxTest = 500)]
    public Property Holds_only_within_the_lease_of_some_confirmed_write_on_both_clocks() =>
        Prop.ForAll(Steps().ToArbitrary(), steps =>
        {
            var lease = new LeaderReadLease(Lease);
            var confirmed = new List<ClockReading>();
            foreach (var (confirm, reading) in steps)
            {
                if (confirm)
                {
                    lease.Confirmed(reading);
                    confirmed.Add(reading);
                    continue;
                }
                // The newest write on the monotonic clock is the one the lease runs from.
                var newest = confirmed.Count == 0 ? (ClockReading?)null : confirmed.MaxBy(c => c.Monotonic);
                var expected = newest is { } n
                               && reading.Monotonic - n.Monotonic <= Lease
                               && reading.Wall - n.Wall <= Lease;
                if (lease.Holds(reading) != expected) return false;
            }
            return true;
        });

    private static Gen<(bool Confirm, ClockReading Reading)[]> Steps() =>
        Gen.Choose(0, 5000).Zip(Gen.Choose(-2000, 2000)).Zip(Gen.Elements(true, false))
            .Select(t => (t.Item2, new ClockReading(TimeSpan.FromMilliseconds(t.Item1.Item1), T0.AddMilliseconds(t.Item1.Item1 + t.Item1.Item2))))
            .ArrayOf();
}
