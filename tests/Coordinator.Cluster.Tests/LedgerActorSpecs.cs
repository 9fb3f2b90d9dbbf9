using Akka.Actor;
using Akka.Configuration;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Ledger;
using Coordinator.Domain;
using Xunit.Abstractions;

namespace Coordinator.Cluster.Tests;

/// <summary>
/// The ledger singleton's actor on a real journal: what it acknowledges survives the ActorSystem, each incarnation
/// gets a new epoch, concurrent claims never overcommit, and snapshots recover the same state.
/// The same specs run on SQLite (always) and PostgreSQL (when a server is given).
/// </summary>
public abstract class LedgerActorSpecs : IDisposable
{
    private static readonly long GiB = ByteSize.GiB;
    private readonly ITestOutputHelper _output;
    private readonly List<ActorSystem> _systems = [];
    private readonly string _volumeDir = Path.Combine(Path.GetTempPath(), "coord-vol-" + Guid.NewGuid().ToString("N"));
    private readonly Lazy<IJournalTarget> _journal;
    protected IJournalTarget Journal => _journal.Value;

    /// <summary>Why this journal cannot be tested here, or null; every spec skips (visibly) when it is set.</summary>
    protected virtual string? Unavailable => null;

    protected LedgerActorSpecs(ITestOutputHelper output, Func<IJournalTarget> journal)
    {
        _output = output;
        Directory.CreateDirectory(_volumeDir);
        _journal = new Lazy<IJournalTarget>(() => { Prerequisite.Require(Unavailable); return journal(); });
    }

    private LedgerSettings Settings(int snapshotEvery = 1000, long capacity = 500L << 30) => new(
        "hv-test", [new ResolvedVolume("Volume1", _volumeDir, capacity, 0, false)],
        QuotaPolicy.Shared, _ => 1.0, snapshotEvery, TimeSpan.FromHours(1), Images());

    internal static ImageCacheSettings Images(TimeSpan? ttl = null, TimeSpan? evictAfter = null) => new(
        "Volume1", "_base", ttl ?? TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(100), evictAfter ?? TimeSpan.FromDays(7),
        TimeSpan.FromHours(1), "", "", TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(5), TimeSpan.FromMinutes(30));

    /// <summary>A whole new ActorSystem on the same journal: nothing survives in memory between incarnations.</summary>
    private (ActorSystem System, IActorRef Ledger) StartIncarnation(LedgerSettings settings, string name = "ledger")
    {
        Prerequisite.Require(Unavailable);
        var config = ConfigurationFactory.ParseString("""
                akka.actor.provider = cluster
                akka.remote.dot-netty.tcp { hostname = 127.0.0.1, port = 0 }
                akka.loglevel = WARNING
                """)
            .WithFallback(PersistenceHocon.For(Journal.Provider, Journal.ConnectionString))
            .WithFallback(CoordinatorHocon.Serialization);
        var system = ActorSystem.Create("ledger-spec", config);
        _systems.Add(system);
        return (system, system.ActorOf(LedgerActor.Props(settings), name));
    }

    /// <summary>Moves the spec's lease clock on until the ledger serves (it first waits out a predecessor's lease).</summary>
    private static async Task AdvanceUntilServing(IActorRef ledger, ManualClock clock)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            clock.Advance(TimeSpan.FromMinutes(1) + TimeSpan.FromMilliseconds(1));
            try
            {
                await ledger.Ask<LeaderReply>(GetLeader.Instance, TimeSpan.FromSeconds(1));
                return;
            }
            catch (AskTimeoutException) when (DateTime.UtcNow < deadline) { }
        }
    }

    private static async Task StopAsync(ActorSystem system) => await system.Terminate();

    // Generous: 200 concurrent claims on a loaded machine once needed more than 20 s; a lost answer still fails.
    private static Task<T> Ask<T>(IActorRef ledger, ILedgerRequest r) => ledger.Ask<T>(r, TimeSpan.FromSeconds(60));

    private static ReserveCommand Reserve(string consumer, long bytes, string node = "hv1") =>
        new(new ReserveRequest("Volume1", consumer, node, bytes));

    [SkippableFact]
    public async Task Acknowledged_state_survives_a_restart_and_the_epoch_grows()
    {
        var (sys1, ledger1) = StartIncarnation(Settings());
        var r1 = await Ask<ReserveReply>(ledger1, Reserve("vm1", 200 * GiB));
        var r2 = await Ask<ReserveReply>(ledger1, Reserve("vm2", 200 * GiB));
        var refused = await Ask<ReserveReply>(ledger1, Reserve("vm3", 200 * GiB, "hv2"));
        var released = await Ask<ReleaseReply>(ledger1, new ReleaseCommand("Volume1", "vm2"));
        var r4 = await Ask<ReserveReply>(ledger1, Reserve("vm4", 50 * GiB, "hv2"));
        Assert.Equal(1, r1.Epoch);
        Assert.Equal([ReserveStatus.Created, ReserveStatus.Created, ReserveStatus.InsufficientSpace, ReserveStatus.Created],
            new[] { r1, r2, refused, r4 }.Select(r => r.Outcome.Status));
        Assert.Equal(ReleaseStatus.Released, released.Outcome.Status);
        await StopAsync(sys1);

        var (_, ledger2) = StartIncarnation(Settings());
        var volumes = await Ask<VolumesReply>(ledger2, GetVolumes.Instance);
        Assert.Equal(2, volumes.Epoch);
        var v = Assert.Single(volumes.Volumes);
        Assert.Equal(250 * GiB, v.ReservedBytes);
        Assert.Equal(250 * GiB, v.FreeBytes);
        var list = await Ask<ReservationsReply>(ledger2, new GetReservations("Volume1"));
        Assert.Equal(["vm1", "vm4"], list.Reservations.Select(r => r.ConsumerId).Order());

        // The same PUT after the restart is still idempotent.
        var again = await Ask<ReserveReply>(ledger2, Reserve("vm1", 200 * GiB));
        Assert.Equal(ReserveStatus.Unchanged, again.Outcome.Status);
        Assert.Equal(r1.Outcome.Reservation!.CreatedAt, again.Outcome.Reservation!.CreatedAt);
        var leader = await Ask<LeaderReply>(ledger2, GetLeader.Instance);
        Assert.Equal(2, leader.Epoch);
        Assert.Equal("hv-test", leader.Node);
    }

    [SkippableFact]
    public async Task Concurrent_claims_never_overcommit_and_all_are_durable()
    {
        var (sys1, ledger) = StartIncarnation(Settings(capacity: 50 * GiB));
        // 200 claims of 1 GiB fired at once: they arrive while writes are in flight and are batched.
        var replies = await Task.WhenAll(Enumerable.Range(0, 200)
            .Select(i => Ask<ReserveReply>(ledger, Reserve($"vm{i:000}", GiB, $"hv{i % 3}"))));
        var created = replies.Where(r => r.Outcome.Status == ReserveStatus.Created).Select(r => r.Outcome.Reservation!.ConsumerId).ToHashSet();
        Assert.Equal(50, created.Count);
        Assert.Equal(150, replies.Count(r => r.Outcome.Status == ReserveStatus.InsufficientSpace));
        _output.WriteLine($"200 concurrent claims: {created.Count} created, the rest refused");
        await StopAsync(sys1);

        var (_, ledger2) = StartIncarnation(Settings(capacity: 50 * GiB));
        var list = await Ask<ReservationsReply>(ledger2, new GetReservations("Volume1"));
        Assert.Equal(created.Order(), list.Reservations.Select(r => r.ConsumerId).Order());
        var v = (await Ask<VolumesReply>(ledger2, GetVolumes.Instance)).Volumes.Single();
        Assert.Equal(0, v.FreeBytes);
    }

    /// <summary>
    /// The state comes back from the snapshot, not from the events: once the system stopped, every event before the
    /// latest snapshot is deleted from the journal. Replaying events alone would now lose most claims; the ledger must
    /// load the snapshot and replay only the events after it (its recovery figures say which and how many).
    /// </summary>
    [SkippableFact]
    public async Task Recovery_from_a_snapshot_gives_the_same_state()
    {
        var settings = Settings(snapshotEvery: 5);
        var (sys1, ledger) = StartIncarnation(settings);
        for (var i = 0; i < 23; i++)
            await Ask<ReserveReply>(ledger, Reserve($"vm{i}", (i + 1) * GiB));
        await Ask<ReleaseReply>(ledger, new ReleaseCommand("Volume1", "vm3"));
        await Ask<ReserveReply>(ledger, Reserve("vm5", 1 * GiB)); // a resize
        var before = await Ask<ReservationsReply>(ledger, new GetReservations("Volume1"));
        // Snapshots are saved asynchronously: stop once the latest one is the same at three reads in a row.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        var (seen, same) = (-1L, 0);
        while (same < 2)
        {
            Assert.True(DateTime.UtcNow < deadline, $"the snapshots did not settle within 30 s (latest {seen})");
            await Task.Delay(200);
            var now = await LatestSnapshot();
            same = now == seen && now > 0 ? same + 1 : 0;
            seen = now;
        }
        await StopAsync(sys1);

        var snapshotAt = await LatestSnapshot();
        var highest = await HighestSequenceNr();
        Assert.True(snapshotAt >= 20, $"snapshots every five events over 25 writes: the latest is at {snapshotAt}");
        var deleted = await Journal.ExecuteAsync("DELETE FROM journal WHERE persistence_id = @pid AND sequence_number < @seq",
            ("@pid", LedgerActor.PersistenceIdValue), ("@seq", snapshotAt));
        Assert.Equal(snapshotAt - 1, deleted);

        var (_, ledger2) = StartIncarnation(settings);
        var after = await Ask<ReservationsReply>(ledger2, new GetReservations("Volume1"));
        Assert.Equal(2, after.Epoch);
        Assert.Equal(before.Reservations.OrderBy(r => r.ConsumerId), after.Reservations.OrderBy(r => r.ConsumerId));
        var recovery = (await Ask<LeaderReply>(ledger2, GetLeader.Instance)).Recovery!;
        Assert.Equal(snapshotAt, recovery.SnapshotSequenceNr);
        Assert.Equal(highest - snapshotAt, recovery.EventsReplayed);
    }

    private static string ReservationsOf(IEnumerable<string> consumers) => string.Join(",", consumers.Order());

    /// <summary>Both lease clocks, standing still until the spec moves them.</summary>
    private sealed class ManualClock
    {
        private static readonly DateTimeOffset Start = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        private long _ticks;

        public ClockReading Read()
        {
            var elapsed = TimeSpan.FromTicks(Interlocked.Read(ref _ticks));
            return new ClockReading(elapsed, Start + elapsed);
        }

        public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);
    }

    private Task<long> HighestSequenceNr() =>
        Journal.ScalarAsync("SELECT MAX(sequence_number) FROM journal WHERE persistence_id = @pid", ("@pid", LedgerActor.PersistenceIdValue));

    private Task<long> LatestSnapshot() =>
        Journal.ScalarAsync("SELECT MAX(sequence_number) FROM snapshot WHERE persistence_id = @pid", ("@pid", LedgerActor.PersistenceIdValue));

    [SkippableFact]
    public async Task Rescan_measures_the_volume_and_counts_unowned_files()
    {
        var (_, ledger) = StartIncarnation(Settings(capacity: 100 * ByteSize.MiB));
        await Ask<ReserveReply>(ledger, new ReserveCommand(new ReserveRequest("Volume1", "vm1", "hv1", 10 * ByteSize.MiB, "instances/vm1")));
        Directory.CreateDirectory(Path.Combine(_volumeDir, "instances", "vm1"));
        await File.WriteAllBytesAsync(Path.Combine(_volumeDir, "instances", "vm1", "root.vhdx"), new byte[30 * ByteSize.MiB]);
        await File.WriteAllBytesAsync(Path.Combine(_volumeDir, "stray.iso"), new byte[5 * ByteSize.MiB]);

        var scanned = await Ask<VolumeReply>(ledger, new RescanVolume("Volume1"));
        Assert.Null(scanned.Error);
        // free = 100 - max(10 claimed, 30 measured) - 5 unowned
        Assert.Equal(65 * ByteSize.MiB, scanned.Volume!.FreeBytes);
        Assert.Equal(35 * ByteSize.MiB, scanned.Volume.UsedBytes);
        Assert.Equal(5 * ByteSize.MiB, scanned.Volume.UnownedBytes);
        var unknown = await Ask<VolumeReply>(ledger, new RescanVolume("nope"));
        Assert.Null(unknown.Volume);
    }

    [SkippableFact]
    public async Task A_request_that_reaches_the_ledger_after_its_deadline_is_dropped_and_changes_nothing()
    {
        var (system, ledger) = StartIncarnation(Settings());
        Assert.Equal(ReserveStatus.Created, (await Ask<ReserveReply>(ledger, Reserve("vm1", 8 * GiB))).Outcome.Status);

        // The client's first attempt (shrink vm1 to 1 GiB) was held up; its node answered 503; the client retried and
        // then released vm1. The first attempt arriving now must not resurrect vm1.
        Assert.Equal(ReleaseStatus.Released, (await Ask<ReleaseReply>(ledger, new ReleaseCommand("Volume1", "vm1"))).Outcome.Status);
        var stale = new ExpiringRequest(Reserve("vm1", GiB), DateTimeOffset.UtcNow - TimeSpan.FromMilliseconds(1));
        await Assert.ThrowsAsync<AskTimeoutException>(() => ledger.Ask<ReserveReply>(stale, TimeSpan.FromMilliseconds(500)));

        // One in time is served as usual; through the wire format too (the serializer carries the inner request).
        var onTime = await ledger.AskWithDeadline<ReserveReply>(Reserve("vm2", GiB), TimeSpan.FromSeconds(20), TimeSpan.Zero);
        Assert.Equal(ReserveStatus.Created, onTime.Outcome.Status);
        var serializer = system.Serialization.FindSerializerFor(stale);
        var manifest = Akka.Serialization.Serialization.ManifestFor(serializer, stale);
        var back = Assert.IsType<ExpiringRequest>(system.Serialization.Deserialize(serializer.ToBinary(stale), serializer.Identifier, manifest));
        Assert.Equal(stale, back);

        var list = await Ask<ReservationsReply>(ledger, new GetReservations("Volume1"));
        Assert.Equal(["vm2"], list.Reservations.Select(r => r.ConsumerId));
    }

    /// <summary>
    /// The classic stale leader on a real journal: the old ledger stays alive in its ActorSystem (as in a process
    /// that was paused, downed and resumed) while a newer ledger takes over and writes. Past its read lease the old
    /// one must not answer from memory (an unchanged PUT, a read): its barrier write collides with the newer leader's
    /// sequence numbers and it stops unanswered. A new incarnation on that node stands down first.
    /// </summary>
    [SkippableFact]
    public async Task A_stale_leader_answers_nothing_from_memory_after_a_newer_leader_wrote()
    {
        // The wait must outlast the steps between the stale ledger's failed barrier and the restarted incarnation's
        // question below with room to spare on a loaded CI machine (2 s once left 8 ms).
        // The lease runs on a clock the spec moves: it stands still (the lease holds) until the "pause" is over.
        var clock = new ManualClock();
        var settings = Settings() with { ReadLease = TimeSpan.FromMinutes(1), WaitAfterWriteFailure = TimeSpan.FromSeconds(15), LeaseClock = clock.Read };
        var (sys1, stale) = StartIncarnation(settings);
        // A new ledger serves only once one lease has passed since its epoch was written (a predecessor's lease has
        // run out by then): move the clock past it.
        await AdvanceUntilServing(stale, clock);
        Assert.Equal(ReserveStatus.Created, (await Ask<ReserveReply>(stale, Reserve("vm1", 8 * GiB))).Outcome.Status);
        // Its first volume scan (a timer, 100 ms after recovery) is recorded before the "pause": a paused process
        // writes nothing, and a scan landing after the newer ledger read the journal would race its first write.
        // Scanning now records it; the timer's scan then finds nothing changed and writes nothing.
        Assert.Null((await Ask<VolumeReply>(stale, new RescanVolume("Volume1"))).Error);
        // Within its lease the leader answers from memory: nothing is written for it.
        var written = await HighestSequenceNr();
        Assert.Equal(ReserveStatus.Unchanged, (await Ask<ReserveReply>(stale, Reserve("vm1", 8 * GiB))).Outcome.Status);
        Assert.Equal(ReservationsOf(["vm1"]), ReservationsOf((await Ask<ReservationsReply>(stale, new GetReservations("Volume1"))).Reservations.Select(r => r.ConsumerId)));
        Assert.Equal(written, await HighestSequenceNr());

        // The newer ledger starts while the stale one's lease still holds: it must answer nothing until that lease has
        // run out, then it serves.
        var (_, leader) = StartIncarnation(settings, "ledger-new");
        var release = leader.Ask<ReleaseReply>(new ReleaseCommand("Volume1", "vm1"), TimeSpan.FromSeconds(60));
        // Once its epoch is in the journal it has recovered; from then on it waits only for the lease. (A read of the
        // SQLite file while the new ActorSystem's journal initialises may fail once with "no such table": read again.)
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        long highest = written;
        while (highest == written && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
            try { highest = await HighestSequenceNr(); }
            catch (System.Data.Common.DbException e) { _output.WriteLine($"journal read failed, reading again: {e.Message}"); }
        }
        Assert.True(highest > written, "the newer ledger wrote its epoch");
        await Task.Delay(1000);
        Assert.False(release.IsCompleted, "the newer ledger answered while the stale one's read lease still held");
        clock.Advance(TimeSpan.FromMinutes(1) + TimeSpan.FromMilliseconds(1)); // past the stale one's lease: it was "paused" meanwhile
        Assert.Equal(ReleaseStatus.Released, (await release).Outcome.Status);

        // From stale memory these would be "Unchanged" and a list holding vm1: neither may be answered at all.
        var terminated = stale.WatchAsync();
        var unchanged = stale.Ask<ReserveReply>(Reserve("vm1", 8 * GiB), TimeSpan.FromSeconds(1.5));
        var listed = stale.Ask<ReservationsReply>(new GetReservations("Volume1"), TimeSpan.FromSeconds(1.5));
        await Assert.ThrowsAsync<AskTimeoutException>(() => unchanged);
        await Assert.ThrowsAsync<AskTimeoutException>(() => listed);
        Assert.True(await terminated.WaitAsync(TimeSpan.FromSeconds(5)), "the stale ledger stops after its barrier failed");

        // The real leader was not disturbed.
        Assert.Equal(ReserveStatus.Created, (await Ask<ReserveReply>(leader, Reserve("vm2", GiB))).Outcome.Status);

        // A new incarnation on the stale node (its supervisor's restart) stands down instead of taking the journal back,
        // then stops for the next restart; the real leader keeps writing meanwhile.
        var restarted = sys1.ActorOf(LedgerActor.Props(settings), "ledger-restarted");
        var restartedStopped = restarted.WatchAsync();
        await Assert.ThrowsAsync<AskTimeoutException>(() => restarted.Ask<LeaderReply>(GetLeader.Instance, TimeSpan.FromSeconds(1)));
        Assert.Equal(ReserveStatus.Created, (await Ask<ReserveReply>(leader, Reserve("vm3", GiB))).Outcome.Status);
        Assert.True(await restartedStopped.WaitAsync(TimeSpan.FromSeconds(60)), "the standing-down incarnation stops after its wait");

        // Past the wait an incarnation serves again, from the whole journal.
        var later = sys1.ActorOf(LedgerActor.Props(settings), "ledger-later");
        await AdvanceUntilServing(later, clock); // its own wait for a predecessor's lease
        var list = await Ask<ReservationsReply>(later, new GetReservations("Volume1"));
        Assert.Equal(["vm2", "vm3"], list.Reservations.Select(r => r.ConsumerId).Order());
        Assert.Equal(3, list.Epoch);
    }

    /// <summary>
    /// A hand-over (the singleton's termination message): everything decided before it is written and answered, and
    /// only then does the ledger stop, so no write of the old ledger can land after the next one has read the journal.
    /// </summary>
    [SkippableFact]
    public async Task At_a_hand_over_the_ledger_stops_only_after_its_writes_are_confirmed_and_answered()
    {
        var (sys1, ledger) = StartIncarnation(Settings());
        await Ask<ReserveReply>(ledger, Reserve("warm-up", GiB));
        var stopped = ledger.WatchAsync();
        var claims = Enumerable.Range(0, 50).Select(i => Ask<ReserveReply>(ledger, Reserve($"vm{i}", GiB))).ToList();
        ledger.Tell(StopLedger.Instance);
        var late = ledger.Ask<ReserveReply>(Reserve("too-late", GiB), TimeSpan.FromSeconds(2));

        var replies = await Task.WhenAll(claims);
        Assert.All(replies, r => Assert.Equal(ReserveStatus.Created, r.Outcome.Status));
        Assert.True(await stopped.WaitAsync(TimeSpan.FromSeconds(10)));
        await Assert.ThrowsAnyAsync<Exception>(() => late); // after the hand-over began: unanswered (timeout or dead letter)
        await StopAsync(sys1);

        var (_, next) = StartIncarnation(Settings());
        var list = await Ask<ReservationsReply>(next, new GetReservations("Volume1"));
        Assert.Equal(51, list.Reservations.Count);
        Assert.DoesNotContain(list.Reservations, r => r.ConsumerId == "too-late");
    }

    public void Dispose()
    {
        foreach (var s in _systems) s.Terminate().Wait(TimeSpan.FromSeconds(10));
        if (_journal.IsValueCreated) Journal.Dispose();
        try { Directory.Delete(_volumeDir, true); } catch (IOException) { }
        GC.SuppressFinalize(this);
    }
}

public sealed class SqliteLedgerActorSpecs(ITestOutputHelper output) : LedgerActorSpecs(output, () => new SqliteJournal());

public sealed class PostgresLedgerActorSpecs(ITestOutputHelper output) : LedgerActorSpecs(output, () => new PostgresJournal())
{
    protected override string? Unavailable => PostgresJournal.ServerConnectionString is null
        ? $"{PostgresJournal.EnvironmentVariable} is not set: the PostgreSQL journal specs need a server (.ci/run starts one)"
        : null;
}
