using System.Data.Common;
using Coordinator.Cluster.Configuration;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace Coordinator.Cluster.Tests;

/// <summary>A fresh, empty journal database for one test.</summary>
public interface IJournalTarget : IDisposable
{
    JournalProvider Provider { get; }
    string ConnectionString { get; }

    /// <summary>An open connection to the journal database, for specs that read or damage its tables directly.</summary>
    DbConnection Open();
}

public static class JournalTargetSql
{
    public static async Task<int> ExecuteAsync(this IJournalTarget journal, string sql, params (string Name, object Value)[] parameters)
    {
        await using var conn = journal.Open();
        await using var cmd = Command(conn, sql, parameters);
        return await cmd.ExecuteNonQueryAsync();
    }

    public static async Task<long> ScalarAsync(this IJournalTarget journal, string sql, params (string Name, object Value)[] parameters)
    {
        await using var conn = journal.Open();
        await using var cmd = Command(conn, sql, parameters);
        return await cmd.ExecuteScalarAsync() is { } v and not DBNull ? Convert.ToInt64(v) : 0;
    }

    public static async Task<byte[]> BytesAsync(this IJournalTarget journal, string sql, params (string Name, object Value)[] parameters)
    {
        await using var conn = journal.Open();
        await using var cmd = Command(conn, sql, parameters);
        return (byte[])(await cmd.ExecuteScalarAsync())!;
    }

    private static DbCommand Command(DbConnection conn, string sql, (string Name, object Value)[] parameters)
    {
        var cmd = conn.CreateCommand();
        cmd.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            var p = cmd.CreateParameter();
            p.ParameterName = name;
            p.Value = value;
            cmd.Parameters.Add(p);
        }
        return cmd;
    }
}

public sealed class SqliteJournal : IJournalTarget
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "coord-ledger-" + Guid.NewGuid().ToString("N"));

    public SqliteJournal() => Directory.CreateDirectory(_dir);

    public JournalProvider Provider => JournalProvider.Sqlite;
    public string ConnectionString => $"Data Source={Path.Combine(_dir, "ledger.db")}";
    public string Directory_ => _dir;

    public DbConnection Open()
    {
        var conn = new SqliteConnection(ConnectionString);
        conn.Open();
        return conn;
    }

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }
}

/// <summary>
/// A new database on the PostgreSQL server named by COORDINATOR_TEST_POSTGRES (a connection string to a database the
/// user may create databases from). .ci/run starts a throwaway server and sets it; without it these tests are skipped (they fail instead under COORDINATOR_TEST_REQUIRE_ALL=1).
/// </summary>
public sealed class PostgresJournal : IJournalTarget
{
    public const string EnvironmentVariable = "COORDINATOR_TEST_POSTGRES";

    private readonly string _admin;
    private readonly string _database = "ledger_" + Guid.NewGuid().ToString("N")[..12];

    public static string? ServerConnectionString => Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } s ? s : null;

    public PostgresJournal()
    {
        _admin = ServerConnectionString ?? throw new InvalidOperationException($"{EnvironmentVariable} is not set");
        using var conn = new NpgsqlConnection(_admin);
        conn.Open();
        using var cmd = new NpgsqlCommand($"CREATE DATABASE {_database}", conn);
        cmd.ExecuteNonQuery();
        ConnectionString = new NpgsqlConnectionStringBuilder(_admin) { Database = _database }.ConnectionString;
    }

    public JournalProvider Provider => JournalProvider.PostgreSql;
    public string ConnectionString { get; }

    public DbConnection Open()
    {
        var conn = new NpgsqlConnection(ConnectionString);
        conn.Open();
        return conn;
    }

    public void Dispose()
    {
        NpgsqlConnection.ClearAllPools();
        using var conn = new NpgsqlConnection(_admin);
        conn.Open();
        using var cmd = new NpgsqlCommand($"DROP DATABASE IF EXISTS {_database} WITH (FORCE)", conn);
        cmd.ExecuteNonQuery();
    }
}
