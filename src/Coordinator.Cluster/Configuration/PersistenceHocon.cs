using Akka.Configuration;
using Akka.Persistence.Sql;

namespace Coordinator.Cluster.Configuration;

/// <summary>
/// The Akka.Persistence.Sql journal and snapshot store for a provider. One place builds it, so the service and the
/// actor tests run the ledger on exactly the same plugin configuration.
/// </summary>
public static class PersistenceHocon
{
    /// <summary>linq2db provider names: "SQLite.MS" is the Microsoft.Data.Sqlite provider.</summary>
    public static string ProviderName(JournalProvider p) => p switch
    {
        JournalProvider.Sqlite => "SQLite.MS",
        JournalProvider.PostgreSql => "PostgreSQL.15",
        _ => throw new ArgumentOutOfRangeException(nameof(p)),
    };

    public static Config For(JournalProvider provider, string connectionString)
    {
        var conn = Quote(connectionString);
        var name = ProviderName(provider);
        var hocon = $$"""
            akka.persistence {
              journal {
                plugin = "akka.persistence.journal.sql"
                sql {
                  connection-string = {{conn}}
                  provider-name = "{{name}}"
                  auto-initialize = on
                  # After a database outage the ledger should be back within seconds, not Akka's default 30 s.
                  circuit-breaker { max-failures = 5, call-timeout = 10s, reset-timeout = 2s }
                  # Recovery reads the events after the snapshot in round trips of this many (default 1000): a
                  # takeover replays up to an eighth of the ledger's entries, so fewer round trips shorten failover.
                  replay-batch-size = 10000
                  # No replay filter. Its default (repair-by-discard-old) drops events of a writer it takes for an old
                  # one: after a stale leader resumed, two ledgers took turns at the journal (each write refused by the
                  # unique (persistence_id, sequence_number) index unless its writer had every event before it), and
                  # the filter discarded the other node's events 1957-1960 during a recovery while the recovered
                  # sequence number still counted them; that ledger then wrote on top of a state missing four events
                  # (a double grant, found by the chaos suite). The index already makes the journal one linear history.
                  replay-filter.mode = off
                }
              }
              snapshot-store {
                plugin = "akka.persistence.snapshot-store.sql"
                sql {
                  connection-string = {{conn}}
                  provider-name = "{{name}}"
                  auto-initialize = on
                  circuit-breaker { max-failures = 5, call-timeout = 10s, reset-timeout = 2s }
                }
              }
            }
            """;
        return ConfigurationFactory.ParseString(hocon).WithFallback(SqlPersistence.DefaultConfiguration);
    }

    private static string Quote(string s) => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";
}
