using System.Text.Json;
using Coordinator.Domain;

namespace Coordinator.Domain.Tests;

/// <summary>
/// Drives a <see cref="CsvLedger"/> the way the ledger actor does: decide, then apply the returned events one by one.
/// Every applied event is kept in <see cref="Journal"/> so tests can replay it.
/// </summary>
public sealed class LedgerDriver
{
    public static readonly DateTimeOffset T0 = new(2025, 1, 1, 0, 0, 0, TimeSpan.Zero);

    public const long GiB = ByteSize.GiB;

    /// <summary>The options the cluster serializer uses for journal events and snapshots.</summary>
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private int _tick;
    private TimeSpan _skew;

    public CsvLedger Ledger { get; } = new();

    public List<LedgerEvent> Journal { get; } = [];

    public DateTimeOffset Now => T0.AddSeconds(_tick) + _skew;

    private DateTimeOffset Tick()
    {
        ++_tick;
        return Now;
    }

    /// <summary>Moves the clock forward (every decision also moves it by one second).</summary>
    public void Advance(TimeSpan by) => _skew += by;

    public void Apply(IReadOnlyList<LedgerEvent> events)
    {
        foreach (var e in events)
        {
            Ledger.Apply(e);
            Journal.Add(e);
        }
    }

    public IReadOnlyList<LedgerEvent> Configure(string volume, string path, long capacity, long headroom = 0)
    {
        var events = Ledger.Configure(volume, path, capacity, headroom);
        Apply(events);
        return events;
    }

    public Decision<ReserveOutcome> Reserve(ReserveRequest request)
    {
        var d = Ledger.Reserve(request, Tick());
        Apply(d.Events);
        return d;
    }

    public Decision<ReserveOutcome> Reserve(string volume, string consumer, string node, long bytes, string? path = null, string? image = null) =>
        Reserve(new ReserveRequest(volume, consumer, node, bytes, path, image));

    public Decision<ReleaseOutcome> Release(string volume, string consumer)
    {
        var d = Ledger.Release(volume, consumer, Tick());
        Apply(d.Events);
        return d;
    }

    public IReadOnlyList<LedgerEvent> Measure(string volume, long used, IReadOnlyDictionary<string, long>? usage = null)
    {
        var events = Ledger.Measure(volume, used, usage ?? new Dictionary<string, long>(), Tick());
        Apply(events);
        return events;
    }

    public LeaderEpochStarted NextEpoch(string node)
    {
        var e = Ledger.NextEpoch(node, Tick());
        Apply([e]);
        return e;
    }

    // ---------------------------------------------------------------- image leases

    /// <summary>The lease TTL the image helpers use unless told otherwise.</summary>
    public static readonly TimeSpan Ttl = TimeSpan.FromMinutes(1);

    public const string CacheFolder = "images";

    public Decision<LeaseOutcome> Acquire(string image, string node, long bytes, string volume, TimeSpan? ttl = null, string folder = CacheFolder)
    {
        var d = Ledger.AcquireImage(image, node, bytes, volume, folder, ttl ?? Ttl, Tick());
        Apply(d.Events);
        return d;
    }

    public Decision<LeaseActionOutcome> Renew(string image, string leaseId, long token, TimeSpan? ttl = null)
    {
        var d = Ledger.RenewLease(image, leaseId, token, ttl ?? Ttl, Tick());
        Apply(d.Events);
        return d;
    }

    public Decision<LeaseActionOutcome> Renew(ImageLease lease, TimeSpan? ttl = null) => Renew(lease.ImageId, lease.LeaseId, lease.FencingToken, ttl);

    public Decision<LeaseActionOutcome> Complete(string image, string leaseId, long token, long bytes, string checksum = "abc123")
    {
        var d = Ledger.CompleteLease(image, leaseId, token, bytes, checksum, Tick());
        Apply(d.Events);
        return d;
    }

    public Decision<LeaseActionOutcome> Complete(ImageLease lease, long bytes, string checksum = "abc123") =>
        Complete(lease.ImageId, lease.LeaseId, lease.FencingToken, bytes, checksum);

    public Decision<LeaseActionOutcome> Abort(string image, string leaseId, long token)
    {
        var d = Ledger.AbortLease(image, leaseId, token, Tick());
        Apply(d.Events);
        return d;
    }

    public Decision<LeaseActionOutcome> Abort(ImageLease lease) => Abort(lease.ImageId, lease.LeaseId, lease.FencingToken);

    public IReadOnlyList<LedgerEvent> ExpireLeases()
    {
        var events = Ledger.ExpireLeases(Tick());
        Apply(events);
        return events;
    }

    public IReadOnlyList<LedgerEvent> EndLeasesOf(string node)
    {
        var events = Ledger.EndLeasesOf(node, Tick());
        Apply(events);
        return events;
    }

    public IReadOnlyList<LedgerEvent> RefreshLeases(TimeSpan? ttl = null)
    {
        var events = Ledger.RefreshLeases(ttl ?? Ttl, Tick());
        Apply(events);
        return events;
    }

    public Decision<CachedImage?> Evict(string image, TimeSpan maxAge)
    {
        var d = Ledger.Evict(image, maxAge, Tick());
        Apply(d.Events);
        return d;
    }

    /// <summary>Grants a lease (asserting it was granted) and returns it.</summary>
    public ImageLease Grant(string image, string node, long bytes, string volume, TimeSpan? ttl = null)
    {
        var d = Acquire(image, node, bytes, volume, ttl);
        Assert.True(d.Outcome.Status == LeaseStatus.Granted, $"expected a grant of {image} to {node}, got {d.Outcome}");
        return d.Outcome.Lease!;
    }

    /// <summary>Grants a lease and completes it at <paramref name="realBytes"/> (default: the granted size).</summary>
    public CachedImage Cache(string image, string node, long bytes, string volume, long? realBytes = null)
    {
        var lease = Grant(image, node, bytes, volume);
        var d = Complete(lease, realBytes ?? bytes);
        Assert.Equal(LeaseActionStatus.Done, d.Outcome.Status);
        return d.Outcome.Cached!;
    }

    public VolumeView View(string volume) => Ledger.View(volume) ?? throw new InvalidOperationException($"no volume {volume}");

    public long Free(string volume) => View(volume).FreeBytes;

    /// <summary>The whole observable state: the snapshot plus the derived views (running totals are not in the snapshot).</summary>
    public static string StateOf(CsvLedger ledger) =>
        JsonSerializer.Serialize(ledger.ToSnapshot(), Json) + "\n" + JsonSerializer.Serialize(ledger.Views(), Json);

    /// <summary>Round-trips a value through JSON as the cluster serializer does (by concrete type).</summary>
    public static T RoundTrip<T>(T value) where T : notnull =>
        (T)JsonSerializer.Deserialize(JsonSerializer.SerializeToUtf8Bytes(value, value.GetType(), Json), value.GetType(), Json)!;
}
