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
