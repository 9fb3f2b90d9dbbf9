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

    public CsvLedger Ledger { get; } = new();

    public List<LedgerEvent> Journal { get; } = [];

    public DateTimeOffset Now => T0.AddSeconds(_tick);

    private DateTimeOffset Tick() => T0.AddSeconds(++_tick);

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

    public VolumeView View(string volume) => Ledger.View(volume) ?? throw new InvalidOperationException($"no volume {volume}");

    public long Free(string volume) => View(volume).FreeBytes;

    /// <summary>The whole observable state: the snapshot plus the derived views (running totals are not in the snapshot).</summary>
    public static string StateOf(CsvLedger ledger) =>
        JsonSerializer.Serialize(ledger.ToSnapshot(), Json) + "\n" + JsonSerializer.Serialize(ledger.Views(), Json);

    /// <summary>Round-trips a value through JSON as the cluster serializer does (by concrete type).</summary>
    public static T RoundTrip<T>(T value) where T : notnull =>
        (T)JsonSerializer.Deserialize(JsonSerializer.SerializeToUtf8Bytes(value, value.GetType(), Json), value.GetType(), Json)!;
}
