using Akka.Actor;
using Akka.Configuration;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Ledger;
using Microsoft.Data.Sqlite;

namespace Coordinator.Cluster.Tests;

/// <summary>
/// The journal warm-up writes rows of its own at every node start and reads them back; it must leave the journal as it
/// found it but for the latest event and snapshot (a node restarted a thousand times keeps two rows), and finish.
/// </summary>
public sealed class JournalWarmupSpecs : Akka.TestKit.Xunit2.TestKit
{
    private static readonly SqliteJournal Journal = new();

    public JournalWarmupSpecs() : base(ConfigurationFactory.ParseString("akka.loglevel = WARNING")
        .WithFallback(PersistenceHocon.For(Journal.Provider, Journal.ConnectionString))
        .WithFallback(CoordinatorHocon.Serialization), "warmup-spec")
    {
    }

    [Fact]
    public void Every_start_writes_and_reads_back_rows_and_leaves_only_the_latest_event_and_snapshot()
    {
        for (var start = 1; start <= 3; start++)
        {
            var warmup = Sys.ActorOf(JournalWarmup.Props("hvT", rounds: 2, TimeSpan.FromMilliseconds(50)), $"warmup-{start}");
            Watch(warmup);
            ExpectTerminated(warmup, TimeSpan.FromSeconds(30));

            // Not pooled: the plugin must never be handed a connection this test opened.
            using var db = new SqliteConnection(Journal.ConnectionString + ";Pooling=False");
            db.Open();
            long Scalar(string sql)
            {
                using var c = db.CreateCommand();
                c.CommandText = sql;
                return Convert.ToInt64(c.ExecuteScalar());
            }
            // Two events per start: an event, a snapshot after it, another event.
            Assert.Equal(2L * start, Scalar("SELECT MAX(sequence_number) FROM journal WHERE persistence_id = 'journal-warmup-hvT'"));
            Assert.Equal(1L, Scalar("SELECT COUNT(*) FROM journal WHERE persistence_id = 'journal-warmup-hvT' AND deleted = 0"));
            Assert.Equal(1L, Scalar("SELECT COUNT(*) FROM snapshot WHERE persistence_id = 'journal-warmup-hvT'"));
            Assert.Equal(2L * start - 1, Scalar("SELECT sequence_number FROM snapshot WHERE persistence_id = 'journal-warmup-hvT'"));
        }
    }

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing) Journal.Dispose();
    }
}
