using System.Runtime.CompilerServices;
using Microsoft.Data.Sqlite;

namespace Coordinator.HyperV.Simulated;

/// <summary>
/// The shared state of a simulated Windows failover cluster: one small SQLite database (WAL mode) on the storage the
/// node processes share but beside the CSV, not in it (<see cref="PathForCsv"/>: the coordinator measures the CSV
/// folder, and WSFC keeps its cluster database off the CSVs too), opened by every node process of the cluster (each
/// through its own <see cref="SimulatedHyperV"/>) and by tests that act as the cluster service or as an administrator.
/// </summary>
/// <remarks>
/// Every operation opens a (pooled) connection, runs one short transaction and closes it. Read-modify-write goes through
/// <c>BEGIN IMMEDIATE</c>, so writers from any number of processes are serialized by SQLite and every invariant is
/// re-checked inside the transaction that changes it. Times are unix milliseconds from <see cref="Time"/>.
/// Invariants: a VM is <c>clustered</c> exactly when it has a row in <c>cluster_groups</c>, and a group's owner is its
/// VM's <c>host_node</c> (during a move the group is Pending on its source until the move completes).
/// Names of nodes and VMs compare case-insensitively, like Windows.
/// WAL needs shared memory between the processes, so the database must be on a local file system shared by the
/// node processes (one machine), which is what the simulator is for.
/// </remarks>
public sealed class SimulatedClusterDatabase
{
    /// <summary>The actor recorded for owner changes written by the test hooks.</summary>
    public const string AdminActor = "admin";

    private const int SchemaVersion = 1;

    private const string Schema = """
        CREATE TABLE IF NOT EXISTS meta(
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS nodes(
            name               TEXT PRIMARY KEY COLLATE NOCASE,
            memory_mb          INTEGER NOT NULL,
            logical_processors INTEGER NOT NULL,
            last_heartbeat     INTEGER NOT NULL,
            up                 INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS vms(
            name      TEXT PRIMARY KEY COLLATE NOCASE,
            host_node TEXT NOT NULL COLLATE NOCASE,
            state     TEXT NOT NULL,
            memory_mb INTEGER NOT NULL,
            vcpus     INTEGER NOT NULL,
            disk_path TEXT,
            clustered INTEGER NOT NULL DEFAULT 0);
        CREATE INDEX IF NOT EXISTS vms_by_host ON vms(host_node);
        CREATE TABLE IF NOT EXISTS cluster_groups(
            vm         TEXT PRIMARY KEY COLLATE NOCASE,
            owner_node TEXT NOT NULL COLLATE NOCASE,
            state      TEXT NOT NULL,
            pending_until INTEGER);
        CREATE TABLE IF NOT EXISTS owner_changes(
            seq   INTEGER PRIMARY KEY AUTOINCREMENT,
            vm    TEXT NOT NULL,
            owner TEXT NOT NULL,
            state TEXT NOT NULL,
            at    INTEGER NOT NULL,
            actor TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS unreachable_hosts(
            host TEXT PRIMARY KEY COLLATE NOCASE);
        CREATE TABLE IF NOT EXISTS move_faults(
            vm        TEXT PRIMARY KEY COLLATE NOCASE,
            remaining INTEGER NOT NULL);
        """;

    private readonly string _connectionString;

    /// <summary>Opens the database at <paramref name="path"/>, creating it (and its folder) and its schema if needed.</summary>
    public SimulatedClusterDatabase(string path, TimeProvider? timeProvider = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        DatabasePath = Path.GetFullPath(path);
        Time = timeProvider ?? TimeProvider.System;
        var folder = Path.GetDirectoryName(DatabasePath);
        if (!string.IsNullOrEmpty(folder))
            Directory.CreateDirectory(folder);
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = DatabasePath,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Cache = SqliteCacheMode.Private,
            Pooling = true,
            DefaultTimeout = 5,
        }.ToString();
        CreateSchema();
    }

    /// <summary>Where the cluster database of a simulated cluster whose (first) CSV is <paramref name="csvFolder"/> lives:
    /// in <c>.simcluster</c> beside that folder (<c>csv/Volume1</c> → <c>csv/.simcluster/cluster.db</c>), shared by every
    /// node process that mounts the same CSV and never counted as usage of the volume.</summary>
    public static string PathForCsv(string csvFolder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(csvFolder);
        var parent = Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(csvFolder)))
            ?? throw new ArgumentException($"'{csvFolder}' is a root: it has no folder beside it for the simulated cluster database", nameof(csvFolder));
        return Path.Combine(parent, ".simcluster", "cluster.db");
    }

    public string DatabasePath { get; }

    public TimeProvider Time { get; }

    // ------------------------------------------------------------------ reads

    public IReadOnlyList<SimulatedNode> ListNodes() =>
        Read(c => Query(c, "SELECT name, memory_mb, logical_processors, last_heartbeat, up FROM nodes ORDER BY name", ReadNode));

    public SimulatedNode? GetNode(string name) => Read(c => GetNode(c, name));

    /// <summary>All VMs of the cluster, or those whose host is <paramref name="hostNode"/>.</summary>
    public IReadOnlyList<SimulatedVm> ListVms(string? hostNode = null) => Read(c => hostNode is null
        ? Query(c, $"{VmColumns} ORDER BY name", ReadVm)
        : Query(c, $"{VmColumns} WHERE host_node = @h ORDER BY name", ReadVm, ("@h", hostNode)));

    public SimulatedVm? GetVm(string name) => Read(c => GetVm(c, name));

    /// <summary>Every group (clustered VM role) with its owner node and state.</summary>
    public IReadOnlyList<GroupOwner> ListGroups() =>
        Read(c => Query(c, "SELECT vm, owner_node, state FROM cluster_groups ORDER BY vm", ReadGroup));

    public GroupOwner? GetGroup(string vmName) => Read(c => GetGroup(c, vmName));

    /// <summary>The owner-change log after <paramref name="afterSeq"/>, in order, at most <paramref name="limit"/> rows.</summary>
    public IReadOnlyList<SimulatedOwnerChange> ReadOwnerChanges(long afterSeq = 0, int limit = 10_000) =>
        Read(c => Query(c, "SELECT seq, vm, owner, state, at, actor FROM owner_changes WHERE seq > @s ORDER BY seq LIMIT @l",
            ReadOwnerChange, ("@s", afterSeq), ("@l", limit)));

    /// <summary>The seq of the newest owner change (0 when there is none): tail after it to see only what comes next.</summary>
    public long LastOwnerChangeSeq() => Read(c => Scalar(c, "SELECT COALESCE(MAX(seq), 0) FROM owner_changes"));

    /// <summary>Tails the owner-change log after <paramref name="afterSeq"/>: yields every row in seq order, polling every
    /// <paramref name="pollInterval"/>, until cancelled. SQLite has one writer at a time and a transaction's rows become
    /// visible together, so a row with a smaller seq can never appear after one with a larger seq: no row is skipped.</summary>
    public async IAsyncEnumerable<SimulatedOwnerChange> TailOwnerChangesAsync(
        long afterSeq, TimeSpan pollInterval, [EnumeratorCancellation] CancellationToken ct = default)
    {
        const int batch = 1_000;
        var after = afterSeq;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            IReadOnlyList<SimulatedOwnerChange> rows;
            try
            {
                rows = await Task.Run(() => ReadOwnerChanges(after, batch), ct).ConfigureAwait(false);
            }
            catch (SqliteException)
            {
                rows = []; // busy beyond the timeout: try again at the next poll
            }

            foreach (var row in rows)
            {
                after = row.Seq;
                yield return row;
            }

            if (rows.Count < batch)
                await Task.Delay(pollInterval, Time, ct).ConfigureAwait(false);
        }
    }

    /// <summary>Whether <see cref="SetUnreachableHost"/> made <paramref name="host"/> unreachable.</summary>
    public bool IsUnreachableHost(string host) =>
        Read(c => Scalar(c, "SELECT COUNT(*) FROM unreachable_hosts WHERE host = @h", ("@h", host)) > 0);

    // ------------------------------------------------------------------ the cluster service

    /// <summary>A node joins (or rejoins) the cluster: it is up, with a fresh heartbeat and the given capacity. A node
    /// that rejoins after being declared down gets none of its former groups back.</summary>
    public void RegisterNode(string name, long memoryMb, int logicalProcessors) => Write(c =>
    {
        Exec(c, """
            INSERT INTO nodes(name, memory_mb, logical_processors, last_heartbeat, up) VALUES(@n, @m, @p, @t, 1)
            ON CONFLICT(name) DO UPDATE SET memory_mb = excluded.memory_mb, logical_processors = excluded.logical_processors,
                last_heartbeat = excluded.last_heartbeat, up = 1
            """, ("@n", name), ("@m", memoryMb), ("@p", logicalProcessors), ("@t", NowMs()));
        return 0;
    });

    /// <summary>Writes the node's heartbeat. It does not bring a node that was declared down back up: only
    /// <see cref="RegisterNode"/> does (a down node must rejoin). True when the node is known and up.</summary>
    public bool Heartbeat(string name) => Write(c =>
        Exec(c, "UPDATE nodes SET last_heartbeat = @t WHERE name = @n", ("@t", NowMs()), ("@n", name)) > 0
        && GetNode(c, name) is { Up: true });

    /// <summary>
    /// One pass of the cluster service's failover logic, as any node (or a test) runs it: every up node whose heartbeat
    /// is older than <paramref name="failoverAfter"/> is declared down (its VMs are off), then every group owned by a down
    /// node (and not Failed) fails over to the up node with the most free memory that fits it (ties by name): Pending
    /// on the dead node, then Online (Offline if it was offline) on the new owner, its VM Running there; Failed on the
    /// dead node when no node fits. Runs in one IMMEDIATE transaction and re-checks everything inside it, so any number
    /// of nodes may run it concurrently and each failover happens once. Also settles moves whose requester vanished
    /// (a group still Pending past its deadline, on an up node, goes back Online there, Offline if its VM was off).
    /// Returns the owner changes it wrote.
    /// </summary>
    public IReadOnlyList<SimulatedOwnerChange> RunFailoverScan(TimeSpan failoverAfter, string actor)
    {
        var cutoff = NowMs() - (long)failoverAfter.TotalMilliseconds;
        // A cheap look without the write lock first: this runs on every node at every heartbeat.
        var anything = Read(c => Scalar(c, """
            SELECT EXISTS(SELECT 1 FROM nodes WHERE up = 1 AND last_heartbeat < @c)
                OR EXISTS(SELECT 1 FROM cluster_groups g JOIN nodes n ON n.name = g.owner_node
                          WHERE n.up = 0 AND g.state <> 'Failed')
                OR EXISTS(SELECT 1 FROM cluster_groups WHERE state = 'Pending' AND pending_until < @now)
            """, ("@c", cutoff), ("@now", NowMs())));
        if (anything == 0)
            return [];

        return Write(c =>
        {
            var stale = Query(c, "SELECT name FROM nodes WHERE up = 1 AND last_heartbeat < @c ORDER BY name",
                r => r.GetString(0), ("@c", cutoff));
            foreach (var node in stale)
                MarkDown(c, node);
            var changes = FailOverGroupsOfDownNodes(c, actor);
            changes.AddRange(SettleAbandonedMoves(c, actor));
            return changes;
        });
    }

    // ------------------------------------------------------------------ test hooks

    /// <summary>The cluster service declares <paramref name="node"/> down now (whatever its heartbeat says) and fails its
    /// groups over, as in <see cref="RunFailoverScan"/>. The node stays down until it registers again.</summary>
    public IReadOnlyList<SimulatedOwnerChange> MarkNodeDown(string node) => Write(c =>
    {
        MarkDown(c, node);
        return FailOverGroupsOfDownNodes(c, AdminActor);
    });

    /// <summary>Sets the owner and state of <paramref name="vmName"/>'s group as if the cluster had done it (e.g. a
    /// failover performed while some node's service was down) and logs the owner change. The VM follows: it lives on
    /// <paramref name="node"/>, Running when the group is Online or PartialOnline, Off when Offline or Failed. A Pending
    /// state stays until changed again, or, with <paramref name="settleAfter"/>, until the cluster service settles it as a
    /// move whose requester died (back Online, or Offline if its VM is off, on <paramref name="node"/>).</summary>
    public void ForceOwner(string vmName, string node, GroupState state, TimeSpan? settleAfter = null) => Write(c =>
    {
        RequireGroup(c, vmName);
        SetOwner(c, vmName, node, state);
        if (state == GroupState.Pending && settleAfter is { } after)
            SetGroupState(c, vmName, GroupState.Pending, NowMs() + (long)after.TotalMilliseconds);
        LogChange(c, vmName, node, state, AdminActor);
        return 0;
    });

    /// <summary>
    /// "CSV trouble": <paramref name="times"/> rounds of rapid owner changes through <paramref name="nodes"/> in order,
    /// each step its own transaction (watchers see every step), with a Pending change on the current owner before each
    /// move when <paramref name="pendingBetween"/>; ends Online on the last node, the VM Running there.
    /// </summary>
    public void Bounce(string vmName, IReadOnlyList<string> nodes, int times, bool pendingBetween = true)
    {
        ArgumentNullException.ThrowIfNull(nodes);
        if (nodes.Count == 0)
            throw new ArgumentException("Bounce needs at least one node.", nameof(nodes));
        ArgumentOutOfRangeException.ThrowIfLessThan(times, 1);
        for (var round = 0; round < times; round++)
        {
            foreach (var node in nodes)
            {
                if (pendingBetween)
                {
                    Write(c =>
                    {
                        var group = RequireGroup(c, vmName);
                        SetGroupState(c, vmName, GroupState.Pending);
                        return LogChange(c, vmName, group.OwnerNode, GroupState.Pending, AdminActor);
                    });
                }

                Write(c =>
                {
                    RequireGroup(c, vmName);
                    SetOwner(c, vmName, node, GroupState.Online);
                    return LogChange(c, vmName, node, GroupState.Online, AdminActor);
                });
            }
        }
    }

    /// <summary>Makes outside migrations to <paramref name="host"/> fail (or succeed again), for every node process.</summary>
    public void SetUnreachableHost(string host, bool unreachable) => Write(c => unreachable
        ? Exec(c, "INSERT OR IGNORE INTO unreachable_hosts(host) VALUES(@h)", ("@h", host))
        : Exec(c, "DELETE FROM unreachable_hosts WHERE host = @h", ("@h", host)));

    /// <summary>The next <paramref name="count"/> role moves of <paramref name="vmName"/> fail at the end of their
    /// Pending phase: the group returns to its source and the move throws JobFailed. 0 clears.</summary>
    public void FailNextMoves(string vmName, int count = 1) => Write(c => count > 0
        ? Exec(c, "INSERT INTO move_faults(vm, remaining) VALUES(@v, @n) ON CONFLICT(vm) DO UPDATE SET remaining = excluded.remaining",
            ("@v", vmName), ("@n", count))
        : Exec(c, "DELETE FROM move_faults WHERE vm = @v", ("@v", vmName)));

    // ------------------------------------------------------------------ shared pieces (the port and the hooks)

    internal const string VmColumns = "SELECT name, host_node, state, memory_mb, vcpus, disk_path, clustered FROM vms";

    internal long NowMs() => Time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>Runs <paramref name="body"/> in a deferred (read) transaction: one consistent snapshot.</summary>
    internal T Read<T>(Func<SqliteConnection, T> body) => InTransaction("BEGIN;", body);

    /// <summary>Runs <paramref name="body"/> in a <c>BEGIN IMMEDIATE</c> transaction: the write lock is taken up front, so
    /// what the body reads cannot change before it commits. An exception rolls everything back.</summary>
    internal T Write<T>(Func<SqliteConnection, T> body) => InTransaction("BEGIN IMMEDIATE;", body);

    internal static SimulatedNode? GetNode(SqliteConnection c, string name) =>
        Query(c, "SELECT name, memory_mb, logical_processors, last_heartbeat, up FROM nodes WHERE name = @n", ReadNode, ("@n", name))
            .FirstOrDefault();

    internal static SimulatedVm? GetVm(SqliteConnection c, string name) =>
        Query(c, $"{VmColumns} WHERE name = @n", ReadVm, ("@n", name)).FirstOrDefault();

    internal static GroupOwner? GetGroup(SqliteConnection c, string vmName) =>
        Query(c, "SELECT vm, owner_node, state FROM cluster_groups WHERE vm = @v", ReadGroup, ("@v", vmName)).FirstOrDefault();

    /// <summary>The node's memory minus the memory of every VM that lives on it (whatever its state).</summary>
    internal static long FreeMemoryMb(SqliteConnection c, string node) => Scalar(c, """
        SELECT n.memory_mb - COALESCE((SELECT SUM(v.memory_mb) FROM vms v WHERE v.host_node = n.name), 0)
        FROM nodes n WHERE n.name = @n
        """, ("@n", node));

    /// <summary>Sets the group's state; a Pending state with a deadline (<paramref name="pendingUntilMs"/>) is settled by
    /// the failover scan if nobody completes it by then (the process that moves it died).</summary>
    internal static void SetGroupState(SqliteConnection c, string vmName, GroupState state, long? pendingUntilMs = null) =>
        Exec(c, "UPDATE cluster_groups SET state = @s, pending_until = @p WHERE vm = @v",
            ("@s", state.ToString()), ("@p", pendingUntilMs), ("@v", vmName));

    internal static void SetVmState(SqliteConnection c, string vmName, VmPowerState state) =>
        Exec(c, "UPDATE vms SET state = @s WHERE name = @v", ("@s", state.ToString()), ("@v", vmName));

    /// <summary>The group and its VM move to <paramref name="node"/>; the VM's power follows the group's state.</summary>
    internal static void SetOwner(SqliteConnection c, string vmName, string node, GroupState state)
    {
        Exec(c, "UPDATE cluster_groups SET owner_node = @o, state = @s, pending_until = NULL WHERE vm = @v",
            ("@o", node), ("@s", state.ToString()), ("@v", vmName));
        var power = state switch
        {
            GroupState.Online or GroupState.PartialOnline => VmPowerState.Running,
            GroupState.Offline or GroupState.Failed => VmPowerState.Off,
            _ => (VmPowerState?)null,
        };
        if (power is { } p)
            Exec(c, "UPDATE vms SET host_node = @o, state = @s WHERE name = @v", ("@o", node), ("@s", p.ToString()), ("@v", vmName));
        else
            Exec(c, "UPDATE vms SET host_node = @o WHERE name = @v", ("@o", node), ("@v", vmName));
    }

    internal SimulatedOwnerChange LogChange(SqliteConnection c, string vmName, string owner, GroupState state, string actor)
    {
        var at = NowMs();
        var seq = Scalar(c, "INSERT INTO owner_changes(vm, owner, state, at, actor) VALUES(@v, @o, @s, @t, @a) RETURNING seq",
            ("@v", vmName), ("@o", owner), ("@s", state.ToString()), ("@t", at), ("@a", actor));
        return new SimulatedOwnerChange(seq, vmName, owner, state, DateTimeOffset.FromUnixTimeMilliseconds(at), actor);
    }

    /// <summary>Consumes one injected move failure of the VM; true when there was one.</summary>
    internal static bool TakeMoveFault(SqliteConnection c, string vmName)
    {
        var remaining = Scalar(c, "SELECT COALESCE((SELECT remaining FROM move_faults WHERE vm = @v), 0)", ("@v", vmName));
        if (remaining <= 0)
            return false;
        if (remaining == 1)
            Exec(c, "DELETE FROM move_faults WHERE vm = @v", ("@v", vmName));
        else
            Exec(c, "UPDATE move_faults SET remaining = remaining - 1 WHERE vm = @v", ("@v", vmName));
        return true;
    }

    private static GroupOwner RequireGroup(SqliteConnection c, string vmName) =>
        GetGroup(c, vmName) ?? throw new HyperVException(HyperVErrorKind.NotFound, $"no cluster group for VM '{vmName}'");

    /// <summary>The node is down: nothing runs on it any more (its clustered VMs are brought back elsewhere by the
    /// failover; its unclustered VMs just stay Off there).</summary>
    private static void MarkDown(SqliteConnection c, string node)
    {
        Exec(c, "UPDATE nodes SET up = 0 WHERE name = @n", ("@n", node));
        Exec(c, "UPDATE vms SET state = 'Off' WHERE host_node = @n", ("@n", node));
    }

    private List<SimulatedOwnerChange> FailOverGroupsOfDownNodes(SqliteConnection c, string actor)
    {
        var groups = Query(c, """
            SELECT g.vm, g.owner_node, g.state, v.memory_mb FROM cluster_groups g
            JOIN nodes n ON n.name = g.owner_node
            JOIN vms v ON v.name = g.vm
            WHERE n.up = 0 AND g.state <> 'Failed'
            ORDER BY g.vm
            """, r => (Vm: r.GetString(0), Owner: r.GetString(1), State: Enum.Parse<GroupState>(r.GetString(2)), MemoryMb: r.GetInt64(3)));
        var changes = new List<SimulatedOwnerChange>();
        foreach (var group in groups)
        {
            SetGroupState(c, group.Vm, GroupState.Pending);
            changes.Add(LogChange(c, group.Vm, group.Owner, GroupState.Pending, actor));
            var target = Query(c, """
                SELECT n.name, n.memory_mb - COALESCE((SELECT SUM(v.memory_mb) FROM vms v WHERE v.host_node = n.name), 0) AS free
                FROM nodes n WHERE n.up = 1 ORDER BY free DESC, n.name ASC
                """, r => (Name: r.GetString(0), Free: r.GetInt64(1))).FirstOrDefault(n => n.Free >= group.MemoryMb);
            if (target.Name is null)
            {
                SetOwner(c, group.Vm, group.Owner, GroupState.Failed);
                changes.Add(LogChange(c, group.Vm, group.Owner, GroupState.Failed, actor));
                continue;
            }

            // WSFC moves an offline group too, but leaves it offline.
            var final = group.State == GroupState.Offline ? GroupState.Offline : GroupState.Online;
            SetOwner(c, group.Vm, target.Name, final);
            changes.Add(LogChange(c, group.Vm, target.Name, final, actor));
        }

        return changes;
    }

    private List<SimulatedOwnerChange> SettleAbandonedMoves(SqliteConnection c, string actor)
    {
        var stuck = Query(c, """
            SELECT g.vm, g.owner_node, v.state FROM cluster_groups g
            JOIN nodes n ON n.name = g.owner_node
            JOIN vms v ON v.name = g.vm
            WHERE g.state = 'Pending' AND g.pending_until < @now AND n.up = 1
            ORDER BY g.vm
            """, r => (Vm: r.GetString(0), Owner: r.GetString(1), VmState: Enum.Parse<VmPowerState>(r.GetString(2))), ("@now", NowMs()));
        var changes = new List<SimulatedOwnerChange>();
        foreach (var group in stuck)
        {
            var state = group.VmState == VmPowerState.Off ? GroupState.Offline : GroupState.Online;
            SetOwner(c, group.Vm, group.Owner, state);
            changes.Add(LogChange(c, group.Vm, group.Owner, state, actor));
        }

        return changes;
    }

    private void CreateSchema()
    {
        using var c = Open();
        // journal_mode is persistent in the file; setting it again is harmless. It cannot run inside a transaction.
        Exec(c, "PRAGMA journal_mode = WAL;");
        Write(w =>
        {
            Exec(w, Schema);
            Exec(w, "INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', @v)", ("@v", SchemaVersion.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            return 0;
        });
    }

    private SqliteConnection Open()
    {
        var c = new SqliteConnection(_connectionString);
        try
        {
            c.Open();
            Exec(c, "PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;");
            return c;
        }
        catch
        {
            c.Dispose();
            throw;
        }
    }

    private T InTransaction<T>(string begin, Func<SqliteConnection, T> body)
    {
        using var c = Open();
        Exec(c, begin);
        try
        {
            var result = body(c);
            Exec(c, "COMMIT;");
            return result;
        }
        catch
        {
            try
            {
                Exec(c, "ROLLBACK;");
            }
            catch (SqliteException)
            {
                // The transaction is already gone (SQLite rolls back by itself on some errors).
            }

            throw;
        }
    }

    internal static int Exec(SqliteConnection c, string sql, params (string Name, object? Value)[] args)
    {
        using var cmd = Command(c, sql, args);
        return cmd.ExecuteNonQuery();
    }

    internal static long Scalar(SqliteConnection c, string sql, params (string Name, object? Value)[] args)
    {
        using var cmd = Command(c, sql, args);
        return Convert.ToInt64(cmd.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
    }

    internal static List<T> Query<T>(SqliteConnection c, string sql, Func<SqliteDataReader, T> map, params (string Name, object? Value)[] args)
    {
        using var cmd = Command(c, sql, args);
        using var reader = cmd.ExecuteReader();
        var rows = new List<T>();
        while (reader.Read())
            rows.Add(map(reader));
        return rows;
    }

    private static SqliteCommand Command(SqliteConnection c, string sql, (string Name, object? Value)[] args)
    {
        var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        foreach (var (name, value) in args)
            cmd.Parameters.AddWithValue(name, value ?? DBNull.Value);
        return cmd;
    }

    private static SimulatedNode ReadNode(SqliteDataReader r) => new(
        r.GetString(0), r.GetInt64(1), r.GetInt32(2), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(3)), r.GetInt64(4) != 0);

    private static SimulatedVm ReadVm(SqliteDataReader r) => new(
        r.GetString(0), r.GetString(1), Enum.Parse<VmPowerState>(r.GetString(2)), r.GetInt32(3), r.GetInt32(4),
        r.IsDBNull(5) ? null : r.GetString(5), r.GetInt64(6) != 0);

    private static GroupOwner ReadGroup(SqliteDataReader r) =>
        new(r.GetString(0), r.GetString(1), Enum.Parse<GroupState>(r.GetString(2)));

    private static SimulatedOwnerChange ReadOwnerChange(SqliteDataReader r) => new(
        r.GetInt64(0), r.GetString(1), r.GetString(2), Enum.Parse<GroupState>(r.GetString(3)),
        DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(4)), r.GetString(5));
}
