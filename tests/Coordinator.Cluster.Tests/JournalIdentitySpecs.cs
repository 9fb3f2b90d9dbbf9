using System.IO.Compression;
using System.Text;
using System.Text.Json.Nodes;
using Akka.Actor;
using Akka.Configuration;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Journal;
using Coordinator.Cluster.Ledger;
using Coordinator.Domain;

namespace Coordinator.Cluster.Tests;

/// <summary>
/// The journal's identity row on real databases: written once, the same id for every node that starts on the journal
/// (concurrent first starts included), a newer format refused; and the backup file and the offline restore, read back by
/// a real ledger: the snapshot at the backup's sequence number recovers with LastSequenceNr = that number, the next
/// event follows it, the epoch grows.
/// </summary>
public abstract class JournalIdentitySpecs : IDisposable
{
    private readonly Lazy<IJournalTarget> _journal;
    private readonly List<ActorSystem> _systems = [];
    private readonly string _volumeDir = Path.Combine(Path.GetTempPath(), "coord-vol-" + Guid.NewGuid().ToString("N"));
    private IJournalTarget Journal => _journal.Value;

    protected virtual string? Unavailable => null;

    protected JournalIdentitySpecs(Func<IJournalTarget> journal)
    {
        _journal = new Lazy<IJournalTarget>(() =>
        {
            Prerequisite.Require(Unavailable);
            return journal();
        });
        Directory.CreateDirectory(_volumeDir);
    }

    [SkippableFact]
    public async Task The_first_start_writes_an_id_and_every_later_start_reads_the_same_one()
    {
        Assert.Null(await JournalIdentityStore.ReadAsync(Journal.Provider, Journal.ConnectionString));
        var first = await JournalIdentityStore.EnsureAsync(Journal.Provider, Journal.ConnectionString);
        Assert.NotEqual(Guid.Empty, first.ClusterId);
        Assert.Equal(JournalIdentityStore.SupportedFormatVersion, first.FormatVersion);
        for (var i = 0; i < 3; i++)
            Assert.Equal(first.ClusterId, (await JournalIdentityStore.EnsureAsync(Journal.Provider, Journal.ConnectionString)).ClusterId);
        Assert.Equal(first.ClusterId, (await JournalIdentityStore.ReadAsync(Journal.Provider, Journal.ConnectionString))!.ClusterId);
    }

    [SkippableFact]
    public async Task Nodes_starting_at_once_on_an_empty_journal_agree_on_one_id()
    {
        _ = Journal;
        using var go = new ManualResetEventSlim();
        // Threads, not tasks: every "node" opens its own connection and races for the row at the same instant.
        var ids = new Guid[12];
        var errors = new Exception?[ids.Length];
        var threads = Enumerable.Range(0, ids.Length).Select(i => new Thread(() =>
        {
            go.Wait();
            try { ids[i] = JournalIdentityStore.EnsureAsync(Journal.Provider, Journal.ConnectionString).GetAwaiter().GetResult().ClusterId; }
            catch (Exception e) { errors[i] = e; } // a node that failed to start: reported below, not a crashed test host
        })).ToList();
        threads.ForEach(t => t.Start());
        go.Set();
        threads.ForEach(t => t.Join());
        Assert.All(errors, Assert.Null);
        Assert.Single(ids.Distinct());
        Assert.NotEqual(Guid.Empty, ids[0]);
    }

    [SkippableFact]
    public async Task A_journal_of_a_newer_format_is_refused_with_a_clear_error()
    {
        var id = Guid.NewGuid();
        await JournalIdentityStore.InsertIfAbsentThenReadAsync(Journal.Provider, Journal.ConnectionString, id,
            JournalIdentityStore.SupportedFormatVersion + 1);
        var e = await Assert.ThrowsAsync<JournalIdentityException>(() => JournalIdentityStore.EnsureAsync(Journal.Provider, Journal.ConnectionString));
        Assert.Contains($"format version {JournalIdentityStore.SupportedFormatVersion + 1}", e.Message);
        Assert.Contains("newer", e.Message);
        Assert.Contains(id.ToString(), e.Message);
        // Refusing wrote nothing: the row is as the newer coordinator left it.
        Assert.Equal(JournalIdentityStore.SupportedFormatVersion + 1, (await JournalIdentityStore.ReadAsync(Journal.Provider, Journal.ConnectionString))!.FormatVersion);
    }

    [SkippableFact]
    public async Task A_backup_restored_into_an_empty_journal_recovers_at_its_sequence_number_and_the_ledger_goes_on_from_there()
    {
        _ = Journal;
        // A ledger with history: reservations, then a backup taken online.
        var source = new SqliteJournal();
        try
        {
            var (sys1, ledger1) = StartLedger(source);
            for (var i = 0; i < 5; i++)
                await ledger1.Ask<ReserveReply>(new ReserveCommand(new ReserveRequest("Volume1", $"vm{i}", "hv1", ByteSize.GiB)), TimeSpan.FromSeconds(20));
            await ledger1.Ask<ReleaseReply>(new ReleaseCommand("Volume1", "vm4"), TimeSpan.FromSeconds(20));
            var backup = await ledger1.Ask<LedgerBackupReply>(BackupLedger.Instance, TimeSpan.FromSeconds(20));
            await sys1.Terminate();
            Assert.Equal(1, backup.Epoch);
            // Epoch + volume configuration (2 events), 5 reservations, 1 release (+ a scan's measurement when the first
            // rescan landed before the backup): the sequence number of the last of them. No barrier: the backup came
            // within the read lease of the last write.
            var n = backup.SequenceNr;
            Assert.InRange(n, 8, 9);
            Assert.Equal(4, backup.Snapshot.Volumes.Single().Reservations.Count);

            var clusterId = Guid.NewGuid();
            var file = LedgerBackupFile.Read(LedgerBackupFile.Write(clusterId, backup));
            Assert.Equal((clusterId, n, 1L, 4), (file.ClusterId, file.SequenceNr, file.Epoch, file.Entries));

            var restored = await LedgerRestore.RestoreAsync(Journal.Provider, Journal.ConnectionString, file, TimeSpan.FromSeconds(30));
            Assert.Equal((n, n), (restored.RecoveredSnapshotSequenceNr, restored.RecoveredLastSequenceNr));
            Assert.Equal(clusterId, (await JournalIdentityStore.EnsureAsync(Journal.Provider, Journal.ConnectionString)).ClusterId);

            // The ledger on the restored journal: recovers (its RecoveryCompleted check passes), next epoch, same state.
            var (sys2, ledger2) = StartLedger(Journal);
            var list = await ledger2.Ask<ReservationsReply>(new GetReservations("Volume1"), TimeSpan.FromSeconds(20));
            Assert.Equal(["vm0", "vm1", "vm2", "vm3"], list.Reservations.Select(r => r.ConsumerId).Order());
            Assert.Equal(2, list.Epoch);
            var leader = await ledger2.Ask<LeaderReply>(GetLeader.Instance, TimeSpan.FromSeconds(20));
            Assert.Equal(n, leader.Recovery!.SnapshotSequenceNr);
            var created = await ledger2.Ask<ReserveReply>(new ReserveCommand(new ReserveRequest("Volume1", "vm9", "hv1", ByteSize.GiB)), TimeSpan.FromSeconds(20));
            Assert.Equal(ReserveStatus.Created, created.Outcome.Status);
            await sys2.Terminate();

            // The events after the restore follow the backup's sequence number: epoch 2 at n + 1, vm9 after it (and the
            // journal's unique index would refuse a write at a number it already holds).
            var (_, ledger3) = StartLedger(Journal);
            var again = await ledger3.Ask<ReservationsReply>(new GetReservations("Volume1"), TimeSpan.FromSeconds(20));
            Assert.Equal(5, again.Reservations.Count);
            Assert.Equal(3, again.Epoch);
            var leader3 = await ledger3.Ask<LeaderReply>(GetLeader.Instance, TimeSpan.FromSeconds(20));
            Assert.Equal(n, leader3.Recovery!.SnapshotSequenceNr);
            // Epoch 2 and vm9, and the first scan's measurement when it landed first (its timer fires while the
            // ledger waits out a predecessor's read lease, so it usually does).
            Assert.InRange(leader3.Recovery.EventsReplayed, 2, 3);
        }
        finally
        {
            foreach (var s in _systems) s.Terminate().Wait(TimeSpan.FromSeconds(10));
            source.Dispose();
        }
    }

    [SkippableFact]
    public async Task A_backup_taken_under_concurrent_writes_is_exactly_the_journal_replayed_to_its_sequence_number()
    {
        var (sys, ledger) = StartLedger(Journal);
        await ledger.Ask<VolumesReply>(GetVolumes.Instance, TimeSpan.FromSeconds(20));
        // Claims arrive while writes are in flight; the backup lands among them (some events confirmed, some in
        // flight, some pending): its sequence number must count all three.
        var claims = Enumerable.Range(0, 300).Select(i =>
            ledger.Ask<ReserveReply>(new ReserveCommand(new ReserveRequest("Volume1", $"c{i:000}", "hv1", ByteSize.MiB)), TimeSpan.FromSeconds(30))).ToList();
        var backupTask = ledger.Ask<LedgerBackupReply>(BackupLedger.Instance, TimeSpan.FromSeconds(30));
        claims.AddRange(Enumerable.Range(300, 300).Select(i =>
            ledger.Ask<ReserveReply>(new ReserveCommand(new ReserveRequest("Volume1", $"c{i:000}", "hv1", ByteSize.MiB)), TimeSpan.FromSeconds(30))));
        await Task.WhenAll(claims);
        var backup = await backupTask;
        var inBackup = backup.Snapshot.Volumes.Single().Reservations.Count;
        Assert.InRange(inBackup, 1, 599); // taken in the middle, not before or after every claim

        // The journal's events 1..N, replayed through Akka's recovery, give exactly the backup's state, and there is an
        // event at N (the last one the backup reflects: a claim decided before the backup was asked for).
        var replayed = new TaskCompletionSource<(LedgerSnapshot State, LedgerEvent? Last, long LastSequenceNr)>();
        sys.ActorOf(Props.Create(() => new ReplayTo(backup.SequenceNr, replayed)), "replay");
        var (expected, last, lastSeq) = await replayed.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(backup.SequenceNr, lastSeq);
        Assert.NotNull(last);
        var json = new System.Text.Json.JsonSerializerOptions(System.Text.Json.JsonSerializerDefaults.Web);
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(expected, json), System.Text.Json.JsonSerializer.Serialize(backup.Snapshot, json));
    }

    /// <summary>Recovers the ledger's persistence id up to a sequence number (no snapshot) and answers the state.</summary>
    private sealed class ReplayTo(long toSequenceNr, TaskCompletionSource<(LedgerSnapshot, LedgerEvent?, long)> done)
        : Akka.Persistence.UntypedPersistentActor
    {
        private readonly CsvLedger _ledger = new();
        private LedgerEvent? _last;
        private long _lastSeq; // of the last event replayed (after recovery LastSequenceNr is the journal's highest)

        public override string PersistenceId => LedgerActor.PersistenceIdValue;

        public override Akka.Persistence.Recovery Recovery => new(Akka.Persistence.SnapshotSelectionCriteria.None, toSequenceNr);

        protected override void OnRecover(object message)
        {
            if (message is LedgerEvent e)
            {
                _ledger.Apply(e);
                _last = e;
                _lastSeq = LastSequenceNr;
            }
            else if (message is Akka.Persistence.RecoveryCompleted)
            {
                done.TrySetResult((_ledger.ToSnapshot(), _last, _lastSeq));
                Context.Stop(Self);
            }
        }

        protected override void OnCommand(object message) { }
    }

    [SkippableFact]
    public async Task Restore_refuses_a_journal_that_is_not_empty_and_writes_nothing()
    {
        var backup = SampleBackup(out _);
        await JournalIdentityStore.EnsureAsync(Journal.Provider, Journal.ConnectionString);
        var e = await Assert.ThrowsAsync<RestoreRefusedException>(() =>
            LedgerRestore.RestoreAsync(Journal.Provider, Journal.ConnectionString, backup, TimeSpan.FromSeconds(30)));
        Assert.Contains("not empty", e.Message);
        Assert.Equal((0L, 0L), await JournalIdentityStore.CountRowsAsync(Journal.Provider, Journal.ConnectionString));
    }

    [Fact]
    public void A_backup_file_whose_content_changed_fails_its_checksum()
    {
        var file = SampleFileBytes();
        var doc = JsonNode.Parse(Gunzip(file))!.AsObject();
        var reservation = doc["snapshot"]!["volumes"]![0]!["reservations"]![0]!;
        reservation["bytes"] = reservation["bytes"]!.GetValue<long>() + 1;
        var e = Assert.Throws<BackupFileException>(() => LedgerBackupFile.Read(Encoding.UTF8.GetBytes(doc.ToJsonString())));
        Assert.Equal(BackupFileProblem.ChecksumMismatch, e.Problem);

        // Unchanged content read back whether compressed or not, whitespace aside.
        var plain = JsonNode.Parse(Gunzip(file))!.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
        Assert.Equal(LedgerBackupFile.Read(file).Checksum, LedgerBackupFile.Read(Encoding.UTF8.GetBytes(plain)).Checksum);

        var other = JsonNode.Parse(Gunzip(file))!.AsObject();
        other["format"] = "etcd-snapshot";
        Assert.Equal(BackupFileProblem.UnknownFormat,
            Assert.Throws<BackupFileException>(() => LedgerBackupFile.Read(Encoding.UTF8.GetBytes(other.ToJsonString()))).Problem);
        var newer = JsonNode.Parse(Gunzip(file))!.AsObject();
        newer["formatVersion"] = LedgerBackupFile.FormatVersion + 1;
        Assert.Equal(BackupFileProblem.UnknownFormat,
            Assert.Throws<BackupFileException>(() => LedgerBackupFile.Read(Encoding.UTF8.GetBytes(newer.ToJsonString()))).Problem);
        Assert.Equal(BackupFileProblem.Malformed,
            Assert.Throws<BackupFileException>(() => LedgerBackupFile.Read("not json"u8.ToArray())).Problem);
    }

    private static byte[] SampleFileBytes()
    {
        var ledger = new CsvLedger();
        var now = DateTimeOffset.UtcNow;
        foreach (var e in new LedgerEvent[] { ledger.NextEpoch("hv1", now) }.Concat(ledger.Configure("Volume1", "/csv/Volume1", 100 * ByteSize.GiB, 0)))
            ledger.Apply(e);
        foreach (var e in ledger.Reserve(new ReserveRequest("Volume1", "vm1", "hv1", ByteSize.GiB), now).Events) ledger.Apply(e);
        return LedgerBackupFile.Write(Guid.NewGuid(), new LedgerBackupReply(ledger.Epoch, 3, now, ledger.ToSnapshot()));
    }

    private static LedgerBackup SampleBackup(out byte[] bytes)
    {
        bytes = SampleFileBytes();
        return LedgerBackupFile.Read(bytes);
    }

    private static byte[] Gunzip(byte[] bytes)
    {
        using var gz = new GZipStream(new MemoryStream(bytes), CompressionMode.Decompress);
        using var ms = new MemoryStream();
        gz.CopyTo(ms);
        return ms.ToArray();
    }

    private (ActorSystem, IActorRef) StartLedger(IJournalTarget journal)
    {
        var config = ConfigurationFactory.ParseString("""
                akka.actor.provider = cluster
                akka.remote.dot-netty.tcp { hostname = 127.0.0.1, port = 0 }
                akka.loglevel = WARNING
                """)
            .WithFallback(PersistenceHocon.For(journal.Provider, journal.ConnectionString))
            .WithFallback(CoordinatorHocon.Serialization);
        var system = ActorSystem.Create("journal-identity-spec", config);
        _systems.Add(system);
        var settings = new LedgerSettings("hv-test", [new ResolvedVolume("Volume1", _volumeDir, 500L << 30, 0, false)],
            QuotaPolicy.Shared, _ => 1.0, 1000, TimeSpan.FromHours(1), LedgerActorSpecs.Images());
        return (system, system.ActorOf(LedgerActor.Props(settings), "ledger"));
    }

    public void Dispose()
    {
        foreach (var s in _systems) s.Terminate().Wait(TimeSpan.FromSeconds(10));
        if (_journal.IsValueCreated) Journal.Dispose();
        try { Directory.Delete(_volumeDir, true); } catch (IOException) { }
        GC.SuppressFinalize(this);
    }
}

public sealed class SqliteJournalIdentitySpecs() : JournalIdentitySpecs(() => new SqliteJournal());

public sealed class PostgresJournalIdentitySpecs() : JournalIdentitySpecs(() => new PostgresJournal())
{
    protected override string? Unavailable => PostgresJournal.ServerConnectionString is null
        ? $"{PostgresJournal.EnvironmentVariable} is not set: the PostgreSQL journal specs need a server (.ci/run starts one)"
        : null;
}
