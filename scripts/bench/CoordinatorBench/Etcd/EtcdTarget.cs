using Coordinator.IntegrationTests.Harness;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using dotnet_etcd;
using Etcdserverpb;
using Grpc.Core;
using Grpc.Net.Client.Configuration;
using static CoordinatorBench.Etcd.Txn;

namespace CoordinatorBench.Etcd;

/// <summary>
/// etcd (1 or 3 members of the Debian etcd 3.4 on 127.0.0.1, default tuning: the baseline of the comparison), driven
/// with dotnet-etcd. Every operation is the equivalent of the coordinator's atomic operation as ONE etcd transaction
/// that compares the usage key's revision (optimistic concurrency, like etcd's STM) and writes the reservation and the
/// new usage together, retrying on a failed compare (counted in <see cref="Outcome.Conflicts"/>). No read precedes a
/// transaction: the usage value/revision and each reservation's value/revision come from a client-side cache (filled
/// by this client's own successful transactions) or from the failed branch of the previous transaction, which reads
/// back what the retry needs; so a conflict costs one round trip, and an operation without conflict exactly one,
/// like ours (one HTTP request). A reservation the cache does not know costs one extra (failed) transaction.
///
/// Two designs. Shared (etcd-N): one usage key per volume, every claim compares-and-swaps it (a hot key), the
/// literal translation of our one ledger. Per node (etcd-N-pernode): the volume's capacity is split into one quota
/// share per node and each node has its own usage key, which only that node's reservations compare-and-swap (what a
/// partitioned quota policy would need); endpoint i plays node hv0{i+1}, and a reservation is always resized and
/// released through the node that made it (as the workload does).
///
/// Keys: <c>/bench/csv/Volume1/usage</c> or <c>/bench/csv/Volume1/usage/hv0N</c> (used bytes),
/// <c>/bench/csv/Volume1/res/{id}</c> (a reservation's bytes), <c>/bench/img/{id}/lock</c> (the fetch lease, attached
/// to an etcd lease of 30 s) and <c>/bench/img/{id}/cached</c>.
/// </summary>
public sealed class EtcdTarget : ITarget
{
    public const string Volume = "Volume1";
    private const string CsvPrefix = "/bench/csv/" + Volume + "/";
    private const string SharedUsageKey = CsvPrefix + "usage";
    private const string ImgPrefix = "/bench/img/";
    private const long LeaseTtlSeconds = 30;

    private readonly int _members;
    private readonly string _dir;
    private readonly TimeSpan _opTimeout;
    private readonly string _etcd;
    private readonly string[] _names;
    private readonly int[] _clientPorts;
    private readonly int[] _peerPorts;
    private readonly string _clusterToken = "bench-" + Guid.NewGuid().ToString("N")[..12];
    private readonly ChildProcess?[] _procs;
    private readonly Member[] _m;
    private readonly ConcurrentDictionary<ulong, int> _memberIndex = new();
    private string _version = "3.4 (version not read yet)";
    private long _capacity = long.MaxValue;
    private readonly bool _perNode;
    // What this client last wrote or read of each reservation: (bytes, ModRevision). Saves the read before a resize
    // or release; a stale entry only fails the transaction's compare, whose failed branch returns the fresh value.
    private readonly ConcurrentDictionary<string, (long Bytes, long Rev)> _reservations = new();

    /// <param name="members">1 or 3 etcd members.</param>
    /// <param name="dir">Folder for the members' data folders, logs and the PID file (the caller deletes it).</param>
    /// <param name="opTimeout">Deadline of every single etcd call, and the bound of one operation's conflict retries.</param>
    /// <param name="etcdPath">The etcd binary.</param>
    /// <param name="perNode">One usage key (and quota share) per node instead of one per volume.</param>
    public EtcdTarget(int members, string dir, TimeSpan opTimeout, bool perNode = false, string etcdPath = "/usr/bin/etcd")
    {
        _perNode = perNode;
        if (members < 1) throw new ArgumentOutOfRangeException(nameof(members));
        _members = members;
        _dir = Directory.CreateDirectory(dir).FullName;
        _opTimeout = opTimeout;
        _etcd = etcdPath;
        _names = Enumerable.Range(1, members).Select(i => $"m{i}").ToArray();
        _clientPorts = Enumerable.Range(0, members).Select(_ => LoopbackPorts.Next()).ToArray();
        _peerPorts = Enumerable.Range(0, members).Select(_ => LoopbackPorts.Next()).ToArray();
        _procs = new ChildProcess?[members];
        // One client per member for the workload (endpoint i = member i), one more per member for failover probes and
        // status calls, so probes never queue behind workload calls on the same HTTP/2 connection; and one for watches.
        _m = Enumerable.Range(0, members).Select(i => new Member(_clientPorts[i])).ToArray();
    }

    public string Name => $"etcd-{_members}{(_perNode ? "-pernode" : "")}";

    public string Describe =>
        $"etcd {_version} ({_etcd}), {_members} member{(_members == 1 ? "" : "s")} on 127.0.0.1, " +
        $"{(_perNode ? $"usage key per node ({_members} quota shares)" : "one usage key per volume")}, default tuning " +
        $"(heartbeat 100 ms, election 1000 ms), fsync on (default), client ports {string.Join(",", _clientPorts)}, " +
        $"peer ports {string.Join(",", _peerPorts)}, data {_dir}";

    public int Endpoints => _members;

    public string DataDir => _dir;

    public IReadOnlyList<ChildProcess?> Processes => _procs;

    // ------------------------------------------------------------ processes

    public async Task StartAsync(CancellationToken ct)
    {
        for (var i = 0; i < _members; i++) _procs[i] = Launch(i, "new");
        await WaitHealthyAsync(TimeSpan.FromSeconds(60), ct);
    }

    private ChildProcess Launch(int i, string clusterState)
    {
        var cluster = string.Join(",", Enumerable.Range(0, _members).Select(k => $"{_names[k]}=http://127.0.0.1:{_peerPorts[k]}"));
        var client = $"http://127.0.0.1:{_clientPorts[i]}";
        var peer = $"http://127.0.0.1:{_peerPorts[i]}";
        // Default tuning on purpose (heartbeat 100 ms, election 1000 ms, snapshot count, fsync): the comparison baseline.
        // With an existing data dir etcd ignores the --initial-* flags; "existing" says so for a restart anyway.
        string[] args =
        [
            "--name", _names[i],
            "--data-dir", Path.Combine(_dir, _names[i]),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", cluster,
            "--initial-cluster-token", _clusterToken,
            "--initial-cluster-state", clusterState,
            "--logger", "zap",
            "--log-outputs", "stderr",
        ];
        return ChildProcess.Start($"etcd-{_names[i]}", _etcd, args, _dir);
    }

    /// <summary>
    /// Every member answers Status, all name the same leader, a write through every member succeeds and so does a
    /// linearizable read through every workload client.
    /// </summary>
    private async Task WaitHealthyAsync(TimeSpan timeout, CancellationToken ct)
    {
        var sw = Stopwatch.StartNew();
        var last = "";
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            foreach (var p in _procs)
                if (p is { HasExited: true })
                    throw new InvalidOperationException($"{p.Name} exited during start; log:\n{p.LogTail()}");
            try
            {
                var statuses = await Task.WhenAll(_m.Select(m =>
                    m.Probe.StatusAsync(new StatusRequest(), deadline: Deadline(TimeSpan.FromSeconds(2)), cancellationToken: ct)));
                for (var i = 0; i < _members; i++) _memberIndex[statuses[i].Header.MemberId] = i;
                if (statuses.All(s => s.Leader != 0) && statuses.Select(s => s.Leader).Distinct().Count() == 1)
                {
                    _version = statuses[0].Version;
                    await Task.WhenAll(_m.Select((m, i) =>
                        m.Probe.PutAsync(new PutRequest { Key = B($"/bench/health/{_names[i]}"), Value = B(sw.ElapsedMilliseconds) },
                            deadline: Deadline(TimeSpan.FromSeconds(2)), cancellationToken: ct)));
                    // The workload clients too (after a restart their channel may still be in reconnect backoff).
                    await Task.WhenAll(_m.Select((m, i) =>
                        m.Kv.GetAsync(new RangeRequest { Key = B(UsageKey(i)) }, deadline: Deadline(TimeSpan.FromSeconds(2)), cancellationToken: ct)));
                    return;
                }
                last = "leaders " + string.Join(",", statuses.Select(s => s.Leader.ToString("x", System.Globalization.CultureInfo.InvariantCulture)));
            }
            catch (RpcException e) { last = $"{e.StatusCode}: {e.Status.Detail}"; }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested) { last = "deadline exceeded"; } // dotnet-etcd throws OCE on a deadline
            if (sw.Elapsed > timeout)
                throw new TimeoutException($"{Name} not healthy after {timeout} ({last}); log of {_procs[0]?.Name}:\n{_procs[0]?.LogTail()}");
            await Task.Delay(100, ct);
        }
    }

    public void Kill(int endpoint)
    {
        // Close this member's watch stream first: dotnet-etcd prints "Watch stream connection lost" to stdout when a
        // live stream breaks, which would pollute the bench's output; a cancelled one goes quietly.
        _m[endpoint].DropWatcher();
        _procs[endpoint]?.Kill();
    }

    public async Task RestartAsync(int endpoint, CancellationToken ct)
    {
        _procs[endpoint]?.Dispose();
        _procs[endpoint] = Launch(endpoint, "existing");
        await WaitHealthyAsync(TimeSpan.FromSeconds(60), ct);
    }

    public async Task<int> LeaderEndpointAsync(CancellationToken ct)
    {
        for (var attempt = 0; attempt < 100; attempt++)
        {
            for (var i = 0; i < _members; i++)
            {
                if (_procs[i] is null or { HasExited: true }) continue;
                try
                {
                    var s = await _m[i].Probe.StatusAsync(new StatusRequest(), deadline: Deadline(TimeSpan.FromSeconds(2)), cancellationToken: ct);
                    _memberIndex[s.Header.MemberId] = i;
                    if (s.Leader != 0 && _memberIndex.TryGetValue(s.Leader, out var k) && _procs[k] is { HasExited: false }) return k;
                }
                catch (RpcException) { }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested) { }
            }
            await Task.Delay(200, ct);
        }
        throw new InvalidOperationException($"{Name}: no member names a live leader");
    }

    public async Task<Outcome> ProbeWriteAsync(int endpoint, string key, TimeSpan timeout)
    {
        try
        {
            await _m[endpoint].Probe.PutAsync(new PutRequest { Key = B($"/bench/probe/{key}"), Value = B(1) }, deadline: Deadline(timeout));
            return Outcome.Ok;
        }
        catch (RpcException e) { return Outcome.Unavailable($"{e.StatusCode}: {e.Status.Detail}"); }
        catch (OperationCanceledException) { return Outcome.Unavailable("deadline exceeded"); } // dotnet-etcd throws OCE on a deadline
    }

    public IReadOnlyList<long> RssBytes() => _procs.Select(p => p?.RssBytes() ?? 0).ToList();

    public ValueTask DisposeAsync()
    {
        foreach (var m in _m) m.Dispose();
        foreach (var p in _procs) p?.Stop(TimeSpan.FromSeconds(10));
        foreach (var p in _procs) p?.Dispose();
        return ValueTask.CompletedTask;
    }

    // ------------------------------------------------------------ workload

    public async Task PrepareAsync(long capacityBytes, CancellationToken ct)
    {
        _capacity = capacityBytes;
        // A fresh volume: no reservations, no images (one transaction), then usage 0 (etcd refuses a put inside a
        // deleted range in the same transaction).
        var clear = new TxnRequest();
        clear.Success.Add(new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = B(CsvPrefix), RangeEnd = B(PrefixEnd(CsvPrefix)) } });
        clear.Success.Add(new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = B(ImgPrefix), RangeEnd = B(PrefixEnd(ImgPrefix)) } });
        await _m[0].Kv.TransactionAsync(clear, deadline: Deadline(TimeSpan.FromSeconds(30)), cancellationToken: ct);
        _reservations.Clear();
        for (var i = 0; i < _members; i++)
        {
            if (i > 0 && !_perNode) { _m[i].Reset(0, _m[0].Rev); continue; }
            var r = await _m[0].Kv.PutAsync(new PutRequest { Key = B(UsageKey(i)), Value = B(0) }, deadline: Deadline(TimeSpan.FromSeconds(30)), cancellationToken: ct);
            _m[i].Reset(0, r.Header.Revision);
        }
    }

    public Task<Outcome> ReserveAsync(int endpoint, string consumerId, long bytes) => Guard("reserve", async () =>
    {
        var m = _m[endpoint];
        var (key, usageKey, capacity) = (ResKey(consumerId), UsageKey(endpoint), Capacity);
        var (used, rev) = await UsageAsync(m, usageKey);
        var conflicts = 0;
        var start = Stopwatch.GetTimestamp();
        while (true)
        {
            // Over capacity by the cached usage: the same compares with an empty Then, so a refusal is only given
            // against the current usage (a stale cache fails the compare and retries with the fresh value).
            var fits = used + bytes <= capacity;
            var txn = new TxnRequest();
            txn.Compare.Add(ModEq(usageKey, rev));
            txn.Compare.Add(CreateEq(key, 0));
            if (fits)
            {
                txn.Success.Add(Put(key, bytes));
                txn.Success.Add(Put(usageKey, used + bytes));
            }
            txn.Failure.Add(Range(usageKey));
            txn.Failure.Add(Range(key));
            var r = await m.Kv.TransactionAsync(txn, deadline: Deadline());
            if (r.Succeeded)
            {
                if (!fits) return new Outcome(OutcomeKind.Refused, conflicts, Detail: "insufficient space");
                m.Observe(used + bytes, r.Header.Revision);
                _reservations[key] = (bytes, r.Header.Revision);
                return new Outcome(OutcomeKind.Ok, conflicts);
            }
            (used, rev) = ObserveUsage(m, r, 0);
            if (RangeKv(r, 1) is { } existing) // a retry of an acknowledged reservation, or a clash of ids
            {
                _reservations[key] = (ParseLong(existing.Value), existing.ModRevision);
                return ParseLong(existing.Value) == bytes
                    ? new Outcome(OutcomeKind.Ok, conflicts)
                    : new Outcome(OutcomeKind.Refused, conflicts, Detail: "exists with another size");
            }
            if (GiveUp(++conflicts, start) is { } u) return u;
        }
    });

    /// <summary>
    /// Resize without a read first: the reservation's size and revision from the cache (0 when unknown: the compare
    /// "ModRevision == 0" then succeeds only if it is absent, and otherwise fails and reads it back), the usage from
    /// the member's cache; one transaction compares both and writes both.
    /// </summary>
    public Task<Outcome> ResizeAsync(int endpoint, string consumerId, long bytes) => Guard("resize", async () =>
    {
        var m = _m[endpoint];
        var (key, usageKey, capacity) = (ResKey(consumerId), UsageKey(endpoint), Capacity);
        var (used, rev) = await UsageAsync(m, usageKey);
        var (old, resRev) = _reservations.TryGetValue(key, out var known) ? known : (0, 0);
        var conflicts = 0;
        var start = Stopwatch.GetTimestamp();
        while (true)
        {
            var delta = bytes - old;
            var fits = delta <= 0 || used + delta <= capacity;
            var txn = new TxnRequest();
            txn.Compare.Add(ModEq(key, resRev));
            if (resRev != 0 && delta != 0)
            {
                txn.Compare.Add(ModEq(usageKey, rev));
                if (fits)
                {
                    txn.Success.Add(Put(key, bytes));
                    txn.Success.Add(Put(usageKey, used + delta));
                }
            }
            txn.Failure.Add(Range(usageKey));
            txn.Failure.Add(Range(key));
            var r = await m.Kv.TransactionAsync(txn, deadline: Deadline());
            if (r.Succeeded)
            {
                if (resRev == 0) return new Outcome(OutcomeKind.Refused, conflicts, Detail: "absent");
                if (delta == 0) return new Outcome(OutcomeKind.Ok, conflicts); // unchanged at this revision: nothing to write
                if (!fits) return new Outcome(OutcomeKind.Refused, conflicts, Detail: "insufficient space");
                m.Observe(used + delta, r.Header.Revision);
                _reservations[key] = (bytes, r.Header.Revision);
                return new Outcome(OutcomeKind.Ok, conflicts);
            }
            (used, rev) = ObserveUsage(m, r, 0);
            if (RangeKv(r, 1) is not { } res)
            {
                _reservations.TryRemove(key, out _);
                return new Outcome(OutcomeKind.Refused, conflicts, Detail: "absent");
            }
            (old, resRev) = (ParseLong(res.Value), res.ModRevision);
            _reservations[key] = (old, resRev);
            if (GiveUp(++conflicts, start) is { } u) return u;
        }
    });

    /// <summary>Release without a read first, like <see cref="ResizeAsync"/>: one transaction when the cache is right.</summary>
    public Task<Outcome> ReleaseAsync(int endpoint, string consumerId) => Guard("release", async () =>
    {
        var m = _m[endpoint];
        var (key, usageKey) = (ResKey(consumerId), UsageKey(endpoint));
        var (used, rev) = await UsageAsync(m, usageKey);
        var (held, resRev) = _reservations.TryGetValue(key, out var known) ? known : (0, 0);
        var conflicts = 0;
        var start = Stopwatch.GetTimestamp();
        while (true)
        {
            var txn = new TxnRequest();
            txn.Compare.Add(ModEq(key, resRev));
            if (resRev != 0)
            {
                txn.Compare.Add(ModEq(usageKey, rev));
                txn.Success.Add(Delete(key));
                txn.Success.Add(Put(usageKey, used - held));
            }
            txn.Failure.Add(Range(usageKey));
            txn.Failure.Add(Range(key));
            var r = await m.Kv.TransactionAsync(txn, deadline: Deadline());
            if (r.Succeeded)
            {
                // Absent (the compare "ModRevision == 0" held): nothing to release. Ours answers 404, the same kind here.
                if (resRev == 0) return new Outcome(OutcomeKind.Refused, conflicts, Detail: "absent");
                m.Observe(used - held, r.Header.Revision);
                _reservations.TryRemove(key, out _);
                return new Outcome(OutcomeKind.Ok, conflicts);
            }
            (used, rev) = ObserveUsage(m, r, 0);
            if (RangeKv(r, 1) is not { } res)
            {
                _reservations.TryRemove(key, out _);
                return new Outcome(OutcomeKind.Refused, conflicts, Detail: "absent");
            }
            (held, resRev) = (ParseLong(res.Value), res.ModRevision);
            _reservations[key] = (held, resRev);
            if (GiveUp(++conflicts, start) is { } u) return u;
        }
    });

    public Task<Outcome> ReadQuotaAsync(int endpoint, string node) => Guard("quota", async () =>
    {
        var m = _m[endpoint];
        var r = await m.Kv.GetAsync(new RangeRequest { Key = B(UsageKey(endpoint)), Serializable = false }, deadline: Deadline());
        if (r.Kvs.Count > 0) m.Observe(ParseLong(r.Kvs[0].Value), r.Kvs[0].ModRevision);
        return Outcome.Ok;
    });

    public Task<Outcome> LeaseGrantAndCompleteAsync(int endpoint, string imageId, long sizeBytes) => Guard("lease", async () =>
    {
        var g = await TryGrantAsync(endpoint, imageId, sizeBytes);
        return g.State switch
        {
            GrantState.Granted => await CompleteAsync(endpoint, imageId, sizeBytes, g.Token, g.Conflicts),
            GrantState.Cached => new Outcome(OutcomeKind.Ok, g.Conflicts), // already cached (a retry after a lost answer)
            GrantState.Pending => new Outcome(OutcomeKind.Refused, g.Conflicts, Detail: "pending"),
            GrantState.NoSpace => new Outcome(OutcomeKind.Refused, g.Conflicts, Detail: "insufficient space"),
            _ => g.Outcome,
        };
    });

    public Task<Outcome> AcquireOrWaitAsync(int endpoint, string imageId, long sizeBytes, TimeSpan wait) => Guard("acquire", async () =>
    {
        var until = Stopwatch.GetTimestamp() + (long)(wait.TotalSeconds * Stopwatch.Frequency);
        var conflicts = 0;
        while (true)
        {
            var g = await TryGrantAsync(endpoint, imageId, sizeBytes);
            conflicts += g.Conflicts;
            switch (g.State)
            {
                case GrantState.Granted:
                    return await CompleteAsync(endpoint, imageId, sizeBytes, g.Token, conflicts);
                case GrantState.Cached:
                    return new Outcome(OutcomeKind.Ok, conflicts);
                case GrantState.NoSpace:
                    return new Outcome(OutcomeKind.Refused, conflicts, Detail: "insufficient space");
                case GrantState.Pending:
                    var left = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), until);
                    if (left <= TimeSpan.Zero) return new Outcome(OutcomeKind.Unavailable, conflicts, Detail: "wait timed out");
                    switch (await WaitImageAsync(_m[endpoint], imageId, g.Revision + 1, left))
                    {
                        case WaitResult.Cached: return new Outcome(OutcomeKind.Ok, conflicts);
                        case WaitResult.Freed: continue; // the holder's lease expired without completing: try to take it
                        case WaitResult.TimedOut: return new Outcome(OutcomeKind.Unavailable, conflicts, Detail: "wait timed out");
                        default: return new Outcome(OutcomeKind.Error, conflicts, Detail: "watch cancelled by etcd");
                    }
                default:
                    return g.Outcome;
            }
        }
    });

    private enum GrantState { Granted, Cached, Pending, NoSpace, GaveUp }

    private readonly record struct Grant(GrantState State, long Token, long Revision, int Conflicts, Outcome Outcome = default);

    /// <summary>
    /// An etcd lease of 30 s, then one transaction: if neither the lock nor the cached marker exists and the usage is
    /// unchanged, put the lock (attached to the lease, value = node) and claim the size. The fencing token is the lock
    /// key's CreateRevision (etcd's idiom), which is the transaction's header revision.
    /// </summary>
    private async Task<Grant> TryGrantAsync(int endpoint, string imageId, long size)
    {
        var m = _m[endpoint];
        var (lockKey, cachedKey) = (ImgKey(imageId, "lock"), ImgKey(imageId, "cached"));
        var lease = await m.Kv.LeaseGrantAsync(new LeaseGrantRequest { TTL = LeaseTtlSeconds }, deadline: Deadline());
        var (usageKey, capacity) = (UsageKey(endpoint), Capacity);
        var (used, rev) = await UsageAsync(m, usageKey);
        var conflicts = 0;
        var start = Stopwatch.GetTimestamp();
        while (true)
        {
            var fits = used + size <= capacity;
            var txn = new TxnRequest();
            txn.Compare.Add(CreateEq(lockKey, 0));
            txn.Compare.Add(CreateEq(cachedKey, 0));
            txn.Compare.Add(ModEq(usageKey, rev));
            if (fits)
            {
                txn.Success.Add(Put(lockKey, B($"hv{endpoint + 1:00}"), lease.ID));
                txn.Success.Add(Put(usageKey, used + size));
            }
            txn.Failure.Add(Range(usageKey));
            txn.Failure.Add(Range(lockKey));
            txn.Failure.Add(Range(cachedKey));
            var r = await m.Kv.TransactionAsync(txn, deadline: Deadline());
            if (r.Succeeded)
            {
                if (!fits) return new Grant(GrantState.NoSpace, 0, r.Header.Revision, conflicts);
                m.Observe(used + size, r.Header.Revision);
                return new Grant(GrantState.Granted, r.Header.Revision, r.Header.Revision, conflicts);
            }
            (used, rev) = ObserveUsage(m, r, 0);
            // The unused etcd lease is left to expire (30 s).
            if (RangeKv(r, 2) is not null) return new Grant(GrantState.Cached, 0, r.Header.Revision, conflicts);
            if (RangeKv(r, 1) is not null) return new Grant(GrantState.Pending, 0, r.Header.Revision, conflicts);
            if (GiveUp(++conflicts, start) is { } u) return new Grant(GrantState.GaveUp, 0, 0, conflicts, u);
        }
    }

    /// <summary>
    /// Complete a granted fetch: if the lock still has the fencing token as CreateRevision, mark the image cached and
    /// delete the lock (one transaction). The etcd lease is not revoked: it has no key left and expires.
    /// </summary>
    private async Task<Outcome> CompleteAsync(int endpoint, string imageId, long size, long token, int conflicts)
    {
        var (lockKey, cachedKey) = (ImgKey(imageId, "lock"), ImgKey(imageId, "cached"));
        var txn = new TxnRequest();
        txn.Compare.Add(CreateEq(lockKey, token));
        txn.Success.Add(Put(cachedKey, B($"{size} sha512:x")));
        txn.Success.Add(Delete(lockKey));
        var r = await _m[endpoint].Kv.TransactionAsync(txn, deadline: Deadline());
        return r.Succeeded
            ? new Outcome(OutcomeKind.Ok, conflicts, Granted: true)
            : new Outcome(OutcomeKind.Error, conflicts, Detail: $"complete: the lock no longer has fencing token {token}");
    }

    private enum WaitResult { Cached, Freed, TimedOut, Cancelled }

    /// <summary>
    /// Waits, without polling, for the image to be cached: an etcd watch on the image's keys from
    /// <paramref name="fromRevision"/> (the revision right after the transaction that saw the lock held, so nothing
    /// is missed). A PUT of the cached marker ends the wait; a DELETE of the lock without it (the holder's lease
    /// expired) means the lease is free again.
    /// </summary>
    private static async Task<WaitResult> WaitImageAsync(Member m, string imageId, long fromRevision, TimeSpan left)
    {
        var until = Stopwatch.GetTimestamp() + (long)(left.TotalSeconds * Stopwatch.Frequency);
        var prefix = ImgPrefix + imageId + "/";
        var cachedKey = B(ImgKey(imageId, "cached"));
        var lockKey = B(ImgKey(imageId, "lock"));
        var done = new TaskCompletionSource<WaitResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        Action<WatchResponse> onResponse = r =>
        {
            if (r.Canceled)
            {
                done.TrySetResult(WaitResult.Cancelled);
                return;
            }
            var freed = false;
            foreach (var e in r.Events)
            {
                if (e.Type == Mvccpb.Event.Types.EventType.Put && e.Kv.Key == cachedKey)
                {
                    done.TrySetResult(WaitResult.Cached);
                    return;
                }
                if (e.Type == Mvccpb.Event.Types.EventType.Delete && e.Kv.Key == lockKey) freed = true;
            }
            if (freed) done.TrySetResult(WaitResult.Freed);
        };
        var request = new WatchRequest
        {
            CreateRequest = new WatchCreateRequest { Key = B(prefix), RangeEnd = B(PrefixEnd(prefix)), StartRevision = fromRevision },
        };
        // No deadline or token here: dotnet-etcd multiplexes all watches of a client on one stream, created with the
        // first caller's deadline/token, so those would end every later watch too. The wait is bounded below instead.
        var watcher = m.Watcher();
        var create = watcher.WatchAsync(request, onResponse);
        long? watchId = null;
        try
        {
            watchId = await create.WaitAsync(Remaining(until));
            return await done.Task.WaitAsync(Remaining(until));
        }
        catch (TimeoutException)
        {
            return WaitResult.TimedOut;
        }
        finally
        {
            if (watchId is { } id) Cancel(watcher, id);
            else _ = create.ContinueWith(t =>
            {
                if (t.IsCompletedSuccessfully) Cancel(watcher, t.Result);
                else _ = t.Exception; // observed
            }, TaskScheduler.Default);
        }

        static void Cancel(EtcdClient watcher, long id)
        {
            try { watcher.CancelWatch(id); }
            catch (ObjectDisposedException) { } // the member was killed meanwhile (DropWatcher)
        }
    }

    // ------------------------------------------------------------ helpers

    private static string ResKey(string id) => CsvPrefix + "res/" + id;

    /// <summary>The usage key endpoint <paramref name="endpoint"/>'s claims compare-and-swap: the volume's, or its node's.</summary>
    private string UsageKey(int endpoint) => _perNode ? $"{CsvPrefix}usage/hv{endpoint + 1:00}" : SharedUsageKey;

    /// <summary>What one usage key may reach: the volume's capacity, or a node's equal share of it.</summary>
    private long Capacity => _perNode ? _capacity / _members : _capacity;

    private static string ImgKey(string imageId, string leaf) => ImgPrefix + imageId + "/" + leaf;

    private static string PrefixEnd(string prefix) => prefix[..^1] + (char)(prefix[^1] + 1);

    private DateTime Deadline() => DateTime.UtcNow + _opTimeout;

    private static DateTime Deadline(TimeSpan t) => DateTime.UtcNow + t;

    private static TimeSpan Remaining(long until)
    {
        var left = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), until);
        return left > TimeSpan.Zero ? left : TimeSpan.Zero;
    }

    /// <summary>Conflict retries are bounded by the operation timeout (then: no definite answer, the caller may retry).</summary>
    private Outcome? GiveUp(int conflicts, long start) =>
        Stopwatch.GetElapsedTime(start) > _opTimeout
            ? new Outcome(OutcomeKind.Unavailable, conflicts, Detail: $"gave up after {conflicts} conflicts")
            : null;

    /// <summary>The member's cached (used, modRevision) of the usage key; the first call reads it (linearizable).</summary>
    private async Task<(long Used, long Rev)> UsageAsync(Member m, string usageKey)
    {
        if (m.TryGet(out var used, out var rev)) return (used, rev);
        var r = await m.Kv.GetAsync(new RangeRequest { Key = B(usageKey) }, deadline: Deadline());
        if (r.Kvs.Count == 0) return (0, 0); // not prepared: ModRevision 0 compares as "absent"
        m.Observe(ParseLong(r.Kvs[0].Value), r.Kvs[0].ModRevision);
        return (ParseLong(r.Kvs[0].Value), r.Kvs[0].ModRevision);
    }

    /// <summary>The usage key from the i-th response (a Range) of a failed transaction, into the member's cache.</summary>
    private static (long Used, long Rev) ObserveUsage(Member m, TxnResponse r, int i)
    {
        if (RangeKv(r, i) is not { } kv) return (0, 0);
        var (used, rev) = (ParseLong(kv.Value), kv.ModRevision);
        m.Observe(used, rev);
        return (used, rev);
    }

    /// <summary>Outcomes of etcd (gRPC status codes) as results; never throws.</summary>
    private static async Task<Outcome> Guard(string what, Func<Task<Outcome>> op)
    {
        try
        {
            return await op();
        }
        catch (RpcException e) when (IsUnavailable(e.StatusCode))
        {
            return Outcome.Unavailable($"{e.StatusCode}: {e.Status.Detail}");
        }
        catch (RpcException e)
        {
            return Outcome.Error($"{what}: {e.StatusCode}: {e.Status.Detail}");
        }
        catch (OperationCanceledException)
        {
            return Outcome.Unavailable("deadline exceeded"); // dotnet-etcd throws OCE when a call's deadline passes
        }
        catch (Exception e) when (e is FormatException or InvalidOperationException or ObjectDisposedException or HttpRequestException)
        {
            return Outcome.Error($"{what}: {e.GetType().Name}: {e.Message}");
        }
    }

    private static EtcdClient NewClient(int port) =>
        new($"http://127.0.0.1:{port}", configureChannelOptions: o =>
        {
            // No transparent gRPC retries (dotnet-etcd's default retries Unavailable up to 5 times with 1 s backoff):
            // one call is one attempt, and the driver retries operations without a definite answer the same way for
            // every target. Reconnect quickly to a restarted member.
            o.ServiceConfig = new ServiceConfig { LoadBalancingConfigs = { new RoundRobinConfig() } };
            o.InitialReconnectBackoff = TimeSpan.FromMilliseconds(100);
            o.MaxReconnectBackoff = TimeSpan.FromSeconds(1);
        });


    /// <summary>The clients of one member and the cached (used, modRevision) of the usage key, shared by its workers.</summary>
    private sealed class Member(int port) : IDisposable
    {
        private readonly Lock _gate = new();
        private long _used, _rev;
        private bool _known;
        private EtcdClient? _watcher;

        /// <summary>The workload's client (transactions, reads).</summary>
        public EtcdClient Kv { get; } = NewClient(port);

        /// <summary>Failover probes, status and health checks.</summary>
        public EtcdClient Probe { get; } = NewClient(port);

        /// <summary>The client whose single multiplexed stream carries this member's watches (created on first use).</summary>
        public EtcdClient Watcher()
        {
            lock (_gate) return _watcher ??= NewClient(port);
        }

        public void DropWatcher()
        {
            EtcdClient? w;
            lock (_gate) (w, _watcher) = (_watcher, null);
            try { w?.Dispose(); } catch (ObjectDisposedException) { }
        }

        public bool TryGet(out long used, out long rev)
        {
            lock (_gate)
            {
                (used, rev) = (_used, _rev);
                return _known;
            }
        }

        /// <summary>Keeps the newest value seen (by ModRevision).</summary>
        public void Observe(long used, long rev)
        {
            lock (_gate)
            {
                if (_known && rev <= _rev) return;
                (_used, _rev, _known) = (used, rev, true);
            }
        }

        public long Rev
        {
            get { lock (_gate) return _rev; }
        }

        public void Reset(long used, long rev)
        {
            lock (_gate) (_used, _rev, _known) = (used, rev, true);
        }

        public void Dispose()
        {
            DropWatcher();
            try { Kv.Dispose(); } catch (ObjectDisposedException) { }
            try { Probe.Dispose(); } catch (ObjectDisposedException) { }
        }
    }
}
