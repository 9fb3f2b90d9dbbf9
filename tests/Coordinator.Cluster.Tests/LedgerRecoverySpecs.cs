using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Akka.Actor;
using Akka.Configuration;
using Akka.Event;
using Akka.Persistence;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Ledger;
using Coordinator.Cluster.Serialization;
using Coordinator.Domain;
using Xunit.Abstractions;

namespace Coordinator.Cluster.Tests;

/// <summary>
/// Recovery from journals it cannot fully read, on real journal files: an event type written by a newer version
/// stops the ledger in Refused (one clear error, no writes, no restart loop); a corrupt latest snapshot falls back to
/// the one before it (two are kept) plus the events after it. And the online backup: the state at one sequence number,
/// equal to what replaying the journal up to that number gives.
/// </summary>
public abstract class LedgerRecoverySpecs : IDisposable
{
    private static readonly long GiB = ByteSize.GiB;
    private const string Ledger = LedgerActor.PersistenceIdValue;
    private readonly ITestOutputHelper _output;
    private readonly List<ActorSystem> _systems = [];
    private readonly string _volumeDir = Path.Combine(Path.GetTempPath(), "coord-vol-" + Guid.NewGuid().ToString("N"));
    private readonly Lazy<IJournalTarget> _journal;
    private IJournalTarget Journal => _journal.Value;

    protected virtual string? Unavailable => null;

    protected LedgerRecoverySpecs(ITestOutputHelper output, Func<IJournalTarget> journal)
    {
        _output = output;
        Directory.CreateDirectory(_volumeDir);
        _journal = new Lazy<IJournalTarget>(() => { Prerequisite.Require(Unavailable); return journal(); });
    }

    private LedgerSettings Settings(int snapshotEvery = 1000) => new(
        "hv-test", [new ResolvedVolume("Volume1", _volumeDir, 500 * GiB, 0, false)],
        QuotaPolicy.Shared, _ => 1.0, snapshotEvery, TimeSpan.FromHours(1), LedgerActorSpecs.Images());

    private ActorSystem NewSystem(ConcurrentQueue<LogEvent>? log = null)
    {
        Prerequisite.Require(Unavailable);
        var config = ConfigurationFactory.ParseString("""
                akka.actor.provider = cluster
                akka.remote.dot-netty.tcp { hostname = 127.0.0.1, port = 0 }
                akka.loglevel = WARNING
                """)
            .WithFallback(PersistenceHocon.For(Journal.Provider, Journal.ConnectionString))
            .WithFallback(CoordinatorHocon.Serialization);
        var system = ActorSystem.Create("recovery-spec", config);
        _systems.Add(system);
        if (log is not null)
            system.EventStream.Subscribe(system.ActorOf(Props.Create(() => new LogCollector(log))), typeof(LogEvent));
        return system;
    }

    private static Task<T> Ask<T>(IActorRef ledger, object r) => ledger.Ask<T>(r, TimeSpan.FromSeconds(20));

    /// <summary>Asks until answered: an incarnation that stops during recovery loses what was sent to it.</summary>
    private static async Task<T> AskUntilAnswered<T>(IActorRef ledger, object r)
    {
        for (var attempt = 1; ; attempt++)
        {
            try { return await ledger.Ask<T>(r, TimeSpan.FromSeconds(2)); }
            catch (AskTimeoutException) when (attempt < 10) { }
        }
    }

    private static ReserveCommand Reserve(string consumer, long bytes) => new(new ReserveRequest("Volume1", consumer, "hv1", bytes));

    private Task<long> HighestSequenceNr() =>
        Journal.ScalarAsync("SELECT MAX(sequence_number) FROM journal WHERE persistence_id = @pid", ("@pid", Ledger));

    private Task<long> SnapshotCount() =>
        Journal.ScalarAsync("SELECT COUNT(*) FROM snapshot WHERE persistence_id = @pid", ("@pid", Ledger));

    private Task<long> LatestSnapshot() =>
        Journal.ScalarAsync("SELECT MAX(sequence_number) FROM snapshot WHERE persistence_id = @pid", ("@pid", Ledger));

    /// <summary>The state the journal describes up to <paramref name="toSequenceNr"/>, from its events alone.</summary>
    private async Task<(JsonNode State, long SequenceNr)> ReplayEvents(long toSequenceNr = long.MaxValue)
    {
        var system = NewSystem();
        var done = new TaskCompletionSource<(LedgerSnapshot, long)>(TaskCreationOptions.RunContinuationsAsynchronously);
        system.ActorOf(Props.Create(() => new EventReader(toSequenceNr, done)));
        var (snapshot, seq) = await done.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await system.Terminate();
        return (JsonSerializer.SerializeToNode(snapshot, JsonOptions)!, seq);
    }

    private static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web);

    private static JsonNode Json(LedgerSnapshot s) => JsonSerializer.SerializeToNode(s, JsonOptions)!;

    /// <summary>Twenty-odd claims, a release and a resize, with a snapshot every five events; then the system stops.</summary>
    private async Task<IReadOnlyList<Reservation>> FillWithSnapshots(LedgerSettings settings)
    {
        var system = NewSystem();
        var ledger = system.ActorOf(LedgerActor.Props(settings), "ledger");
        for (var i = 0; i < 23; i++)
            await Ask<ReserveReply>(ledger, Reserve($"vm{i}", (i + 1) * GiB));
        await Ask<ReleaseReply>(ledger, new ReleaseCommand("Volume1", "vm3"));
        await Ask<ReserveReply>(ledger, Reserve("vm5", GiB)); // a resize
        var before = await Ask<ReservationsReply>(ledger, new GetReservations("Volume1"));
        // Saves and deletions of snapshots are asynchronous (slower on PostgreSQL): stop only once they settled, at
        // most two snapshots and the same ones at three reads in a row.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        var (seen, same) = ("", 0);
        while (DateTime.UtcNow < deadline)
        {
            await Task.Delay(300);
            var count = await SnapshotCount();
            var now = $"{count}/{await LatestSnapshot()}";
            same = now == seen ? same + 1 : 0;
            seen = now;
            if (same >= 2 && count <= 2) break;
        }
        _output.WriteLine($"snapshots (count/latest) when the system stopped: {seen}");
        await system.Terminate();
        return before.Reservations;
    }

    [SkippableFact]
    public async Task An_event_type_from_a_newer_version_stops_recovery_in_Refused_without_writes_or_retries()
    {
        var system1 = NewSystem();
        var ledger1 = system1.ActorOf(LedgerActor.Props(Settings()), "ledger");
        await Ask<ReserveReply>(ledger1, Reserve("vm1", GiB));
        await system1.Terminate();

        // A newer coordinator appended an event this version has never heard of.
        var unknownAt = await HighestSequenceNr() + 1;
        await Journal.ExecuteAsync(
            "INSERT INTO journal (created, deleted, persistence_id, sequence_number, message, manifest, identifier, writer_uuid) " +
            "VALUES (@created, @deleted, @pid, @seq, @message, @manifest, @identifier, @writer)",
            ("@created", DateTime.UtcNow.Ticks), ("@deleted", false), ("@pid", Ledger), ("@seq", unknownAt),
            ("@message", Encoding.UTF8.GetBytes("""{"volume":"Volume1","shards":4}""")), ("@manifest", "VolumeSharded"),
            ("@identifier", CoordinatorSerializer.Id), ("@writer", Guid.NewGuid().ToString()));

        var log = new ConcurrentQueue<LogEvent>();
        var system2 = NewSystem(log);
        var ledger2 = system2.ActorOf(LedgerActor.SupervisedProps(Settings()), "ledger");
        var refused = await Ask<LedgerRefused>(ledger2, GetVolumes.Instance);
        _output.WriteLine(refused.Reason);
        Assert.Contains("'VolumeSharded'", refused.Reason);
        Assert.Contains($"sequence number {unknownAt}", refused.Reason);
        Assert.Contains("newer version", refused.Reason);
        Assert.Contains("Upgrade this node", refused.Reason);
        Assert.Contains("restore a backup", refused.Reason);
        // Every request gets the same answer, writes included, and through a deadline too.
        Assert.Equal(refused, await Ask<LedgerRefused>(ledger2, Reserve("vm2", GiB)));
        Assert.Equal(refused, await ledger2.AskWithDeadline<LedgerRefused>(GetLeader.Instance, TimeSpan.FromSeconds(20), TimeSpan.Zero));

        // No loop: over a few seconds one error, no recovery retried, and nothing written (no epoch).
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.Equal(refused, await Ask<LedgerRefused>(ledger2, new GetReservations("Volume1")));
        var errors = log.OfType<Error>().Select(e => e.Message?.ToString() ?? "").ToList();
        foreach (var e in errors) _output.WriteLine("error: " + e);
        Assert.Single(errors, e => e.Contains("VolumeSharded"));
        Assert.DoesNotContain(errors, e => e.Contains("recovery failed", StringComparison.OrdinalIgnoreCase));
        Assert.Equal(unknownAt, await HighestSequenceNr());
    }

    [SkippableFact]
    public async Task A_snapshot_type_from_a_newer_version_also_ends_in_Refused()
    {
        await FillWithSnapshots(Settings(snapshotEvery: 5));
        var latest = await LatestSnapshot();
        await Journal.ExecuteAsync("UPDATE snapshot SET manifest = @manifest WHERE persistence_id = @pid AND sequence_number = @seq",
            ("@manifest", "LedgerSnapshotV2"), ("@pid", Ledger), ("@seq", latest));
        var highest = await HighestSequenceNr();

        var system = NewSystem();
        var ledger = system.ActorOf(LedgerActor.SupervisedProps(Settings(snapshotEvery: 5)), "ledger");
        var refused = await Ask<LedgerRefused>(ledger, new GetReservations("Volume1"));
        Assert.Contains("a snapshot of type 'LedgerSnapshotV2'", refused.Reason);
        Assert.Contains($"sequence number {latest}", refused.Reason);
        await Task.Delay(1000);
        Assert.Equal(refused, await Ask<LedgerRefused>(ledger, Reserve("vm-new", GiB)));
        Assert.Equal(highest, await HighestSequenceNr());
    }

    [SkippableFact]
    public async Task The_ledger_keeps_the_snapshot_before_the_latest()
    {
        await FillWithSnapshots(Settings(snapshotEvery: 5));
        Assert.Equal(2, await SnapshotCount());
    }

    [SkippableTheory]
    [InlineData("garbage")]
    [InlineData("truncated")]
    public async Task A_corrupt_latest_snapshot_falls_back_to_the_one_before_and_the_events_after_it(string damage)
    {
        var settings = Settings(snapshotEvery: 5);
        var before = await FillWithSnapshots(settings);
        var latest = await LatestSnapshot();
        var previous = await Journal.ScalarAsync("SELECT MAX(sequence_number) FROM snapshot WHERE persistence_id = @pid AND sequence_number < @seq",
            ("@pid", Ledger), ("@seq", latest));
        Assert.True(previous > 0, "two snapshots were taken");
        var payload = await Journal.BytesAsync("SELECT snapshot FROM snapshot WHERE persistence_id = @pid AND sequence_number = @seq",
            ("@pid", Ledger), ("@seq", latest));
        var damaged = damage == "garbage" ? [0xde, 0xad, 0xbe, 0xef, 0x00, 0xff] : payload[..(payload.Length / 2)];
        Assert.Equal(1, await Journal.ExecuteAsync("UPDATE snapshot SET snapshot = @payload WHERE persistence_id = @pid AND sequence_number = @seq",
            ("@payload", damaged), ("@pid", Ledger), ("@seq", latest)));

        var log = new ConcurrentQueue<LogEvent>();
        var system = NewSystem(log);
        var ledger = system.ActorOf(LedgerActor.SupervisedProps(settings), "ledger");
        var after = await AskUntilAnswered<ReservationsReply>(ledger, new GetReservations("Volume1"));
        Assert.Equal(before.OrderBy(r => r.ConsumerId), after.Reservations.OrderBy(r => r.ConsumerId));
        Assert.Equal(2, after.Epoch); // the incarnation that met the corrupt snapshot wrote nothing
        var leader = await Ask<LeaderReply>(ledger, GetLeader.Instance);
        Assert.Equal(previous, leader.Recovery!.SnapshotSequenceNr); // the snapshot before the corrupt one, not the events alone
        Assert.Contains(log.OfType<Warning>(), w => w.Message?.ToString()?.Contains($"sequence number {latest}") == true);

        // Exactly the journal's state, whole: the recovered ledger's state at a sequence number (a backup) equals the
        // journal's events replayed to that number.
        var backup = await Ask<LedgerBackupReply>(ledger, BackupLedger.Instance);
        await system.Terminate();
        var (replayed, _) = await ReplayEvents(backup.SequenceNr);
        Assert.True(JsonNode.DeepEquals(replayed, Json(backup.Snapshot)),
            $"recovered state differs from the journal's:\n{Json(backup.Snapshot)}\n{replayed}");
    }

    [SkippableFact]
    public async Task A_backup_taken_while_writes_are_in_flight_is_the_journal_state_at_its_sequence_number()
    {
        var system = NewSystem();
        var ledger = system.ActorOf(LedgerActor.Props(Settings()), "ledger");
        await Ask<ReserveReply>(ledger, Reserve("warm-up", GiB));
        var firstWave = Enumerable.Range(0, 100).Select(i => Ask<ReserveReply>(ledger, Reserve($"vm{i:000}", GiB))).ToList();
        var backupTask = Ask<LedgerBackupReply>(ledger, BackupLedger.Instance);
        var secondWave = Enumerable.Range(100, 50).Select(i => Ask<ReserveReply>(ledger, Reserve($"vm{i:000}", GiB))).ToList();
        var backup = await backupTask;
        await Task.WhenAll(firstWave.Concat(secondWave));
        await system.Terminate();

        // Every claim sent before the backup is in it (they reached the ledger first); the ones after are not.
        var consumers = backup.Snapshot.Volumes.Single().Reservations.Select(r => r.ConsumerId).ToHashSet();
        Assert.Contains("warm-up", consumers);
        Assert.All(Enumerable.Range(0, 100), i => Assert.Contains($"vm{i:000}", consumers));
        Assert.DoesNotContain("vm149", consumers);
        Assert.Equal(1, backup.Epoch);

        var (replayed, replayedTo) = await ReplayEvents(backup.SequenceNr);
        Assert.Equal(backup.SequenceNr, replayedTo);
        Assert.True(JsonNode.DeepEquals(replayed, Json(backup.Snapshot)),
            $"backup at {backup.SequenceNr} differs from the journal replayed to it:\n{Json(backup.Snapshot)}\n{replayed}");
        Assert.True(await HighestSequenceNr() > backup.SequenceNr, "writes followed the backup");
    }

    public void Dispose()
    {
        foreach (var s in _systems) s.Terminate().Wait(TimeSpan.FromSeconds(10));
        if (_journal.IsValueCreated) Journal.Dispose();
        try { Directory.Delete(_volumeDir, true); } catch (IOException) { }
        GC.SuppressFinalize(this);
    }

    private sealed class LogCollector : ReceiveActor
    {
        public LogCollector(ConcurrentQueue<LogEvent> log) => Receive<LogEvent>(log.Enqueue);
    }

    /// <summary>Replays the ledger's events (no snapshot) up to a sequence number and never writes; gives the state and the last event's number.</summary>
    private sealed class EventReader(long toSequenceNr, TaskCompletionSource<(LedgerSnapshot, long)> done) : UntypedPersistentActor
    {
        private readonly CsvLedger _ledger = new();
        private long _appliedThrough;

        public override string PersistenceId => LedgerActor.PersistenceIdValue;

        public override Recovery Recovery => new(SnapshotSelectionCriteria.None, toSequenceNr);

        protected override void OnRecover(object message)
        {
            switch (message)
            {
                case LedgerEvent e:
                    _ledger.Apply(e);
                    _appliedThrough = LastSequenceNr; // the event's own number during replay
                    break;
                case RecoveryCompleted:
                    done.TrySetResult((_ledger.ToSnapshot(), _appliedThrough));
                    break;
            }
        }

        protected override void OnCommand(object message) { }

        protected override void OnRecoveryFailure(Exception reason, object? message = null)
        {
            done.TrySetException(reason);
            base.OnRecoveryFailure(reason, message);
        }
    }
}

public sealed class SqliteLedgerRecoverySpecs(ITestOutputHelper output) : LedgerRecoverySpecs(output, () => new SqliteJournal());

public sealed class PostgresLedgerRecoverySpecs(ITestOutputHelper output) : LedgerRecoverySpecs(output, () => new PostgresJournal())
{
    protected override string? Unavailable => PostgresJournal.ServerConnectionString is null
        ? $"{PostgresJournal.EnvironmentVariable} is not set: the PostgreSQL journal specs need a server (.ci/run starts one)"
        : null;
}
