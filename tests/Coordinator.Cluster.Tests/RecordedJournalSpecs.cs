using System.Text.Json;
using System.Text.Json.Nodes;
using Akka.Actor;
using Akka.Configuration;
using Akka.Persistence;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Ledger;
using Coordinator.Domain;
using Microsoft.Data.Sqlite;

namespace Coordinator.Cluster.Tests;

/// <summary>
/// A journal recorded by the coordinator at main b249e5f (two node processes, every kind of event but ImageUsed: claims,
/// resizes, releases, scans, image leases granted/renewed/completed/aborted/evicted and one left open, VMs spawned,
/// moved, drained back, destroyed and arrived, two epochs, a snapshot at 80 and events after it). Whatever the ledger's
/// code becomes, replaying this journal must give the state that code gave, kept in the .state.json beside it: the
/// persistence id, the event type names and the snapshot shape are a contract with every journal in the field.
/// Re-record the expected state only on purpose: COORDINATOR_RECORD_FIXTURE=1.
/// </summary>
public sealed class RecordedJournalSpecs : IDisposable
{
    private const string Fixture = "ledger-main-b249e5f";
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    private readonly string _dir = Path.Combine(Path.GetTempPath(), "coord-recorded-" + Guid.NewGuid().ToString("N"));
    private readonly List<ActorSystem> _systems = [];

    public RecordedJournalSpecs()
    {
        Directory.CreateDirectory(_dir);
        File.Copy(FixturePath(Fixture + ".db"), Path.Combine(_dir, "ledger.db"));
    }

    private static string FixturePath(string file) => Path.Combine(AppContext.BaseDirectory, "Fixtures", file);

    private string ConnectionString => $"Data Source={Path.Combine(_dir, "ledger.db")}";

    private ActorSystem NewSystem()
    {
        var config = ConfigurationFactory.ParseString("""
                akka.actor.provider = cluster
                akka.remote.dot-netty.tcp { hostname = 127.0.0.1, port = 0 }
                akka.loglevel = WARNING
                """)
            .WithFallback(PersistenceHocon.For(JournalProvider.Sqlite, ConnectionString))
            .WithFallback(CoordinatorHocon.Serialization);
        var system = ActorSystem.Create("recorded-journal", config);
        _systems.Add(system);
        return system;
    }

    /// <summary>Recovers the ledger's persistence id read-only: from its latest snapshot, or from the events alone.</summary>
    private async Task<(JsonNode State, long SequenceNr)> Replay(bool fromSnapshot)
    {
        var system = NewSystem();
        var done = new TaskCompletionSource<(LedgerSnapshot, long)>(TaskCreationOptions.RunContinuationsAsynchronously);
        system.ActorOf(Props.Create(() => new ReplayingReader(fromSnapshot, done)));
        var (snapshot, seq) = await done.Task.WaitAsync(TimeSpan.FromSeconds(30));
        return (JsonSerializer.SerializeToNode(snapshot, Json)!, seq);
    }

    [Fact]
    public async Task Replaying_the_recorded_journal_gives_the_recorded_state()
    {
        var (fromSnapshot, seq) = await Replay(fromSnapshot: true);
        var (fromEvents, seq2) = await Replay(fromSnapshot: false);
        Assert.Equal(82, seq);
        Assert.Equal(seq, seq2);
        Assert.True(JsonNode.DeepEquals(fromSnapshot, fromEvents),
            "the snapshot plus the events after it and the events alone give different states");

        var expectedFile = FixturePath(Fixture + ".state.json");
        if (Environment.GetEnvironmentVariable("COORDINATOR_RECORD_FIXTURE") == "1")
        {
            // Written next to the source, not the build output: the test project's Fixtures folder.
            var source = Path.Combine(FindTestProjectDir(), "Fixtures", Fixture + ".state.json");
            await File.WriteAllTextAsync(source, fromEvents.ToJsonString(Json) + "\n");
            return;
        }
        var expected = JsonNode.Parse(await File.ReadAllTextAsync(expectedFile))!;
        Assert.True(JsonNode.DeepEquals(expected, fromEvents),
            $"replayed state differs from {Fixture}.state.json:\n{fromEvents.ToJsonString(Json)}");
    }

    [Fact]
    public async Task The_ledger_actor_recovers_the_recorded_journal_and_serves_it_in_a_new_epoch()
    {
        var expected = JsonNode.Parse(await File.ReadAllTextAsync(FixturePath(Fixture + ".state.json")))!;
        var system = NewSystem();
        var volumeDir = Path.Combine(_dir, "Volume1");
        Directory.CreateDirectory(volumeDir);
        var settings = new LedgerSettings("hv-replay",
            [new ResolvedVolume("Volume1", "/tmp/fixrec/cluster/csv/Volume1", 536870912000, 0, false)],
            QuotaPolicy.Shared, _ => 1.0, 1000, TimeSpan.FromHours(1), LedgerActorSpecs.Images());
        var ledger = system.ActorOf(LedgerActor.Props(settings), "ledger");
        var volumes = await ledger.Ask<VolumesReply>(GetVolumes.Instance, TimeSpan.FromSeconds(30));
        Assert.Equal(expected["epoch"]!.GetValue<long>() + 1, volumes.Epoch);
        var reservations = await ledger.Ask<ReservationsReply>(new GetReservations("Volume1"), TimeSpan.FromSeconds(30));
        var expectedConsumers = expected["volumes"]![0]!["reservations"]!.AsArray()
            .Select(r => r!["consumerId"]!.GetValue<string>()).Order(StringComparer.Ordinal);
        Assert.Equal(expectedConsumers, reservations.Reservations.Select(r => r.ConsumerId).Order(StringComparer.Ordinal));
        var expectedClaimed = expected["volumes"]![0]!["reservations"]!.AsArray().Sum(r => r!["bytes"]!.GetValue<long>());
        Assert.Equal(expectedClaimed, volumes.Volumes.Single().ReservedBytes);
    }

    /// <summary>
    /// The recorded journal's only snapshot (at 80) made unreadable: with no snapshot before it, the ledger recovers
    /// from the events alone and serves the recorded state.
    /// </summary>
    [Fact]
    public async Task A_corrupt_only_snapshot_of_the_recorded_journal_falls_back_to_its_events()
    {
        await using (var conn = new SqliteConnection(ConnectionString))
        {
            conn.Open();
            var cmd = conn.CreateCommand();
            cmd.CommandText = "UPDATE snapshot SET snapshot = substr(snapshot, 1, 100) WHERE persistence_id = 'csv-ledger'";
            Assert.Equal(1, await cmd.ExecuteNonQueryAsync());
        }
        var expected = JsonNode.Parse(await File.ReadAllTextAsync(FixturePath(Fixture + ".state.json")))!;
        var system = NewSystem();
        var settings = new LedgerSettings("hv-replay",
            [new ResolvedVolume("Volume1", "/tmp/fixrec/cluster/csv/Volume1", 536870912000, 0, false)],
            QuotaPolicy.Shared, _ => 1.0, 1000, TimeSpan.FromHours(1), LedgerActorSpecs.Images());
        var ledger = system.ActorOf(LedgerActor.SupervisedProps(settings), "ledger");
        LeaderReply? leader = null;
        for (var attempt = 0; leader is null && attempt < 10; attempt++)
            try { leader = await ledger.Ask<LeaderReply>(GetLeader.Instance, TimeSpan.FromSeconds(2)); }
            catch (AskTimeoutException) { } // the incarnation that met the corrupt snapshot stopped
        Assert.NotNull(leader);
        Assert.Equal(0, leader.Recovery!.SnapshotSequenceNr);
        Assert.Equal(82, leader.Recovery.EventsReplayed);
        Assert.Equal(expected["epoch"]!.GetValue<long>() + 1, leader.Epoch);
        var reservations = await ledger.Ask<ReservationsReply>(new GetReservations("Volume1"), TimeSpan.FromSeconds(30));
        var expectedConsumers = expected["volumes"]![0]!["reservations"]!.AsArray()
            .Select(r => r!["consumerId"]!.GetValue<string>()).Order(StringComparer.Ordinal);
        Assert.Equal(expectedConsumers, reservations.Reservations.Select(r => r.ConsumerId).Order(StringComparer.Ordinal));
    }

    private static string FindTestProjectDir()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Coordinator.Cluster.Tests.csproj"))) return d.FullName;
        throw new DirectoryNotFoundException("Coordinator.Cluster.Tests.csproj not found above " + AppContext.BaseDirectory);
    }

    public void Dispose()
    {
        foreach (var s in _systems) s.Terminate().Wait(TimeSpan.FromSeconds(10));
        SqliteConnection.ClearAllPools();
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    /// <summary>Reads the ledger's persistence id and never writes to it (no command is ever persisted).</summary>
    private sealed class ReplayingReader(bool fromSnapshot, TaskCompletionSource<(LedgerSnapshot, long)> done) : UntypedPersistentActor
    {
        private CsvLedger _ledger = new();

        public override string PersistenceId => LedgerActor.PersistenceIdValue;

        public override Recovery Recovery => fromSnapshot ? Recovery.Default : new Recovery(SnapshotSelectionCriteria.None);

        protected override void OnRecover(object message)
        {
            switch (message)
            {
                case SnapshotOffer { Snapshot: LedgerSnapshot s }:
                    _ledger = CsvLedger.FromSnapshot(s);
                    break;
                case LedgerEvent e:
                    _ledger.Apply(e);
                    break;
                case RecoveryCompleted:
                    done.TrySetResult((_ledger.ToSnapshot(), LastSequenceNr));
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
