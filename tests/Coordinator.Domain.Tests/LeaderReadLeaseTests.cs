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
    /// Worked out by hand, lease 500 ms: the confirmed writes as (monotonic ms, wall ms), in the order confirmed, a
    /// reading of both clocks, and whether an answer from memory is allowed then.
    /// </summary>
    public static TheoryData<string, (double Mono, double Wall)[], double, double, bool> Cases => new()
    {
        { "nothing confirmed", [], 0, 0, false },
        { "at the issue itself", [(1000, 1000)], 1000, 1000, true },
        { "exactly the lease later", [(1000, 1000)], 1500, 1500, true },
        { "a millisecond past the lease", [(1000, 1000)], 1501, 1501, false },
        { "wall clock past, monotonic within (VM pause)", [(1000, 1000)], 1200, 1600, false },
        { "monotonic past, wall within (wall stepped back a little)", [(1000, 1000)], 1600, 1200, false },
        { "wall stepped back far, monotonic within", [(1000, 1000)], 1400, 500, true },
        { "both within, not on the same amount", [(1000, 1000)], 1499, 1100, true },
        { "second write renews", [(1000, 1000), (2000, 2000)], 2400, 2400, true },
        { "second write's lease also ends", [(1000, 1000), (2000, 2000)], 2501, 2501, false },
        { "older write confirmed late does not move it back", [(2000, 2000), (1000, 1000)], 2400, 2400, true },
        { "older write confirmed late does not extend it either", [(2000, 2000), (1000, 1000)], 2600, 2600, false },
        { "newest on the monotonic clock counts, its wall reading too", [(1000, 5000), (2000, 1000)], 2300, 1400, true },
        { "newest's wall reading past the lease", [(1000, 5000), (2000, 1000)], 2300, 1600, false },
        { "twelve seconds paused (SIGSTOP)", [(1000, 1000)], 13_000, 13_000, false },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Hand_worked_cases(string why, (double Mono, double Wall)[] confirmed, double nowMono, double nowWall, bool holds)
    {
        var lease = new LeaderReadLease(Lease);
        foreach (var (mono, wall) in confirmed) lease.Confirmed(At(mono, wall));
        Assert.True(lease.Holds(At(nowMono, nowWall)) == holds, $"{why}: expected Holds = {holds}");
    }

    /// <summary>
    /// Safety, the rule the stale-leader argument needs (necessary, not the implementation's rule): whenever the
    /// lease holds, some confirmed write was issued no longer than the lease before the reading on both clocks.
    /// </summary>
    [Property(MaxTest = 500)]
    public Property Holds_only_within_the_lease_of_some_confirmed_write_on_both_clocks() =>
        Prop.ForAll(Steps().ToArbitrary(), Reading().ToArbitrary(), (steps, now) =>
        {
            var lease = new LeaderReadLease(Lease);
            foreach (var s in steps) lease.Confirmed(s);
            return !lease.Holds(now)
                   || steps.Any(c => now.Monotonic - c.Monotonic <= Lease && now.Wall - c.Wall <= Lease);
        });

    /// <summary>Time only wears a lease out: if it holds at a reading, it holds at every reading earlier on both clocks.</summary>
    [Property(MaxTest = 500)]
    public Property Holding_at_a_reading_means_holding_at_every_earlier_one() =>
        Prop.ForAll(Steps().ToArbitrary(), Reading().ToArbitrary(), Gen.Choose(0, 3000).Zip(Gen.Choose(0, 3000)).ToArbitrary(),
            (steps, now, back) =>
            {
                var lease = new LeaderReadLease(Lease);
                foreach (var s in steps) lease.Confirmed(s);
                var earlier = new ClockReading(now.Monotonic - TimeSpan.FromMilliseconds(back.Item1), now.Wall.AddMilliseconds(-back.Item2));
                return !lease.Holds(now) || lease.Holds(earlier);
            });

    /// <summary>A longer lease never answers from memory less often than a shorter one, given the same writes.</summary>
    [Property(MaxTest = 500)]
    public Property A_longer_lease_holds_whenever_a_shorter_one_does() =>
        Prop.ForAll(Steps().ToArbitrary(), Reading().ToArbitrary(), Gen.Choose(0, 1000).Zip(Gen.Choose(0, 1000)).ToArbitrary(),
            (steps, now, lengths) =>
            {
                var (shortMs, longMs) = (Math.Min(lengths.Item1, lengths.Item2), Math.Max(lengths.Item1, lengths.Item2));
                var shorter = new LeaderReadLease(TimeSpan.FromMilliseconds(shortMs));
                var longer = new LeaderReadLease(TimeSpan.FromMilliseconds(longMs));
                foreach (var s in steps) { shorter.Confirmed(s); longer.Confirmed(s); }
                return !shorter.Holds(now) || longer.Holds(now);
            });

    /// <summary>Liveness: right at the issue of a write newer (monotonic) than every other confirmed one, the lease holds.</summary>
    [Property(MaxTest = 500)]
    public Property The_lease_holds_at_the_issue_of_the_newest_confirmed_write() =>
        Prop.ForAll(Steps().ToArbitrary(), Reading().ToArbitrary(), (steps, newest) =>
        {
            var lease = new LeaderReadLease(Lease);
            foreach (var s in steps) lease.Confirmed(s);
            var latest = new ClockReading(TimeSpan.FromMilliseconds(10_000) + newest.Monotonic, newest.Wall); // after every generated one
            lease.Confirmed(latest);
            return lease.Holds(latest);
        });

    private static Gen<ClockReading> Reading() =>
        Gen.Choose(0, 5000).Zip(Gen.Choose(-2000, 2000))
            .Select(t => new ClockReading(TimeSpan.FromMilliseconds(t.Item1), T0.AddMilliseconds(t.Item1 + t.Item2)));

    private static Gen<ClockReading[]> Steps() => Reading().ArrayOf();
}
