using System.Data.Common;
using Coordinator.Cluster.Configuration;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace Coordinator.Cluster.Journal;

/// <summary>What the journal database says it is: the cluster it belongs to and the format its rows are written in.</summary>
public sealed record JournalIdentity(Guid ClusterId, int FormatVersion, DateTimeOffset CreatedAt);

/// <summary>The journal cannot be used by this node (a newer format, or no answer); the message says what to do.</summary>
public sealed class JournalIdentityException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The identity row of a journal database: a table <c>coordinator_identity</c> beside Akka.Persistence.Sql's own
/// tables, with one row written once, at the cluster's first start. Every node reads it before its ActorSystem starts,
/// so that a node configured with another journal (a per-node SQLite file, another cluster's database) is refused at
/// join instead of silently starting the ledger from another history (see <see cref="JournalIdentityGuard"/>).
/// <para>
/// Written as INSERT ... ON CONFLICT DO NOTHING followed by a SELECT: nodes that start at once on an empty journal all
/// try to insert their own new id, the database keeps the first, and every node reads back that one.
/// </para>
/// </summary>
public static class JournalIdentityStore
{
    /// <summary>The journal format this code writes and reads. A journal of a newer format is refused at start.</summary>
    public const int SupportedFormatVersion = 1;

    public const string TableName = "coordinator_identity";

    /// <summary>
    /// Reads the identity, writing it first if the journal has none (a new cluster, or a journal restored without one).
    /// Refuses a journal whose format is newer than <see cref="SupportedFormatVersion"/>.
    /// </summary>
    public static async Task<JournalIdentity> EnsureAsync(JournalProvider provider, string connectionString,
        CancellationToken ct = default)
    {
        var identity = await InsertIfAbsentThenReadAsync(provider, connectionString, Guid.NewGuid(), SupportedFormatVersion, ct);
        CheckFormat(identity);
        return identity;
    }

    /// <summary>
    /// Writes the given identity if the journal has none (restore: the backup's cluster id) and answers what the journal
    /// holds afterwards, which differs from <paramref name="clusterId"/> when an identity was already there.
    /// </summary>
    public static Task<JournalIdentity> InsertIfAbsentThenReadAsync(JournalProvider provider, string connectionString,
        Guid clusterId, int formatVersion, CancellationToken ct = default) =>
        WithConnectionAsync(provider, connectionString, async conn =>
        {
            await CreateTableAsync(conn, ct);
            await using (var insert = conn.CreateCommand())
            {
                insert.CommandText = $"INSERT INTO {TableName} (id, cluster_id, format_version, created_at) " +
                                     "VALUES (1, @cluster_id, @format_version, @created_at) ON CONFLICT (id) DO NOTHING";
                AddParameter(insert, "cluster_id", clusterId.ToString("D"));
                AddParameter(insert, "format_version", formatVersion);
                AddParameter(insert, "created_at", DateTimeOffset.UtcNow.ToString("O"));
                await insert.ExecuteNonQueryAsync(ct);
            }
            return await ReadRowAsync(conn, ct) ?? throw new JournalIdentityException(
                $"the journal's {TableName} table has no row right after one was written");
        }, ct);

    /// <summary>The identity, or null when the journal has none (no table, or no row). Writes nothing.</summary>
    public static Task<JournalIdentity?> ReadAsync(JournalProvider provider, string connectionString, CancellationToken ct = default) =>
        WithConnectionAsync(provider, connectionString, async conn =>
            await TableExistsAsync(provider, conn, TableName, ct) ? await ReadRowAsync(conn, ct) : null, ct);

    /// <summary>A journal whose format is newer than this code's stops the node before anything reads its rows.</summary>
    public static void CheckFormat(JournalIdentity identity)
    {
        if (identity.FormatVersion > SupportedFormatVersion)
            throw new JournalIdentityException(
                $"the journal (cluster {identity.ClusterId}) is in format version {identity.FormatVersion}, newer than the " +
                $"{SupportedFormatVersion} this coordinator supports: it was written by a newer coordinator. Run that version " +
                "(a downgrade cannot read it), or point coordinator.persistence.connection-string at another journal.");
        if (identity.FormatVersion < 1)
            throw new JournalIdentityException($"the journal's format version {identity.FormatVersion} is not a format this coordinator knows");
    }

    /// <summary>Rows in Akka.Persistence.Sql's journal and snapshot tables (0 when the tables do not exist yet).</summary>
    public static Task<(long JournalRows, long SnapshotRows)> CountRowsAsync(JournalProvider provider, string connectionString,
        CancellationToken ct = default) =>
        WithConnectionAsync(provider, connectionString, async conn =>
        {
            async Task<long> Count(string table)
            {
                if (!await TableExistsAsync(provider, conn, table, ct)) return 0;
                await using var cmd = conn.CreateCommand();
                cmd.CommandText = $"SELECT COUNT(*) FROM {table}";
                return Convert.ToInt64(await cmd.ExecuteScalarAsync(ct));
            }
            return (await Count("journal"), await Count("snapshot"));
        }, ct);

    private static async Task CreateTableAsync(DbConnection conn, CancellationToken ct)
    {
        // id is always 1: the table can hold one row only, so concurrent first starts cannot both win.
        var sql = $"CREATE TABLE IF NOT EXISTS {TableName} (id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1), " +
                  "cluster_id TEXT NOT NULL, format_version INTEGER NOT NULL, created_at TEXT NOT NULL)";
        try
        {
            await using var cmd = conn.CreateCommand();
            cmd.CommandText = sql;
            await cmd.ExecuteNonQueryAsync(ct);
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.UniqueViolation or PostgresErrorCodes.DuplicateTable
                                              or PostgresErrorCodes.DuplicateObject)
        {
            // PostgreSQL's CREATE TABLE IF NOT EXISTS is not atomic against itself: two nodes creating the table at the
            // same instant collide on its catalog rows (pg_type: 42710, or 23505): the loser fails once the winner has
            // committed, so the table exists now, which is all we need.
        }
    }

    private static async Task<JournalIdentity?> ReadRowAsync(DbConnection conn, CancellationToken ct)
    {
        await using var cmd = conn.CreateCommand();
        cmd.CommandText = $"SELECT cluster_id, format_version, created_at FROM {TableName} WHERE id = 1";
        await using var reader = await cmd.ExecuteReaderAsync(ct);
        if (!await reader.ReadAsync(ct)) return null;
        var idText = reader.GetString(0);
        if (!Guid.TryParse(idText, out var id))
            throw new JournalIdentityException($"the journal's cluster id '{idText}' in {TableName} is not a GUID");
        var version = Convert.ToInt32(reader.GetValue(1));
        var created = DateTimeOffset.TryParse(reader.GetString(2), out var c) ? c : DateTimeOffset.MinValue;
        return new JournalIdentity(id, version, created);
    }

    private static async Task<bool> TableExistsAsync(JournalProvider provider, DbConnection conn, string table, CancellationToken ct)
    {
        await using var cmd = conn.CreateCommand();
        cmd.CommandText = provider == JournalProvider.Sqlite
            ? "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = @name"
            : "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = @name";
        AddParameter(cmd, "name", table);
        return Convert.ToInt64(await cmd.ExecuteScalarAsync(ct)) > 0;
    }

    private static void AddParameter(DbCommand cmd, string name, object value)
    {
        var p = cmd.CreateParameter();
        p.ParameterName = "@" + name;
        p.Value = value;
        cmd.Parameters.Add(p);
    }

    private static async Task<T> WithConnectionAsync<T>(JournalProvider provider, string connectionString,
        Func<DbConnection, Task<T>> use, CancellationToken ct)
    {
        await using DbConnection conn = provider switch
        {
            // Not pooled: this connection is opened once before the ActorSystem starts (and by coordctl restore); a
            // pooled SQLite connection would keep the file open (and locked on Windows) after we are done.
            JournalProvider.Sqlite => new SqliteConnection(new SqliteConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString),
            JournalProvider.PostgreSql => new NpgsqlConnection(connectionString),
            _ => throw new ArgumentOutOfRangeException(nameof(provider)),
        };
        await conn.OpenAsync(ct);
        if (conn is SqliteConnection)
        {
            // Several node processes may open one SQLite file at once: wait for the other's lock instead of failing.
            await using var pragma = conn.CreateCommand();
            pragma.CommandText = "PRAGMA busy_timeout = 30000";
            await pragma.ExecuteNonQueryAsync(ct);
        }
        return await use(conn);
    }
}
