using Akka.Configuration;
using Akka.Persistence.Sql;
using Npgsql;

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

    /// <summary>
    /// The journal's connection string from <c>coordinator.persistence</c>: <c>connection-string</c> (empty for sqlite:
    /// <c>data-dir/ledger.db</c>), with <c>password</c> (or <c>password-file</c>, <c>password-env</c>, read by
    /// <see cref="SecretReader"/>) merged in by Npgsql's builder, so the HOCON need not hold the password. Errors never
    /// quote the connection string: it may hold a password.
    /// </summary>
    public static string ConnectionString(Config coordinator, JournalProvider provider, string dataDir)
    {
        var conn = coordinator.GetString("persistence.connection-string", "");
        var password = SecretReader.Read(coordinator, "persistence.password");
        if (string.IsNullOrWhiteSpace(conn))
        {
            if (provider != JournalProvider.Sqlite)
                throw new ConfigurationException("coordinator.persistence.connection-string is required for postgresql");
            conn = $"Data Source={Path.Combine(dataDir, "ledger.db")}";
        }
        if (password is null) return conn;
        if (provider != JournalProvider.PostgreSql)
            throw new ConfigurationException("coordinator.persistence.password applies to postgresql only (sqlite has no password)");
        NpgsqlConnectionStringBuilder builder;
        try { builder = new NpgsqlConnectionStringBuilder(conn); }
        catch (ArgumentException)
        {
            // Not e.Message: it may quote the connection string.
            throw new ConfigurationException("coordinator.persistence.connection-string is not a valid PostgreSQL connection string");
        }
        if (!string.IsNullOrEmpty(builder.Password))
            throw new ConfigurationException(
                "coordinator.persistence.connection-string holds a password and coordinator.persistence.password(-file/-env) sets one too: keep only the latter");
        builder.Password = password;
        return builder.ConnectionString;
    }

    public static Config For(JournalProvider provider, string connectionString)
    {
        var conn = Quote(connectionString);
        var name = ProviderName(provider);
        var hocon = $$"""
            # The configuration holds the journal's password (and the coordinator's tokens): Akka must never print it.
            # This layer sits above the site file, so a site file cannot turn it on.
            akka.log-config-on-start = off
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
