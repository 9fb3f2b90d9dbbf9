using System.Collections.Frozen;
using System.Runtime.Serialization;
using System.Text.Json;
using Akka.Actor;
using Akka.Serialization;
using Coordinator.Cluster.Ledger;
using Coordinator.Domain;

namespace Coordinator.Cluster.Serialization;

/// <summary>
/// System.Text.Json for journal events, snapshots and the messages between nodes. The manifest is the type's short
/// name, so the journal does not depend on assembly versions and a renamed CLR type keeps its old manifest here.
/// </summary>
public sealed class CoordinatorSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
{
    public const int Id = 7710;

    private static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web);

    private static readonly FrozenDictionary<string, Type> ByManifest = typeof(ICoordinatorMessage).Assembly.GetTypes()
        .Concat(typeof(LedgerEvent).Assembly.GetTypes())
        .Where(t => !t.IsAbstract && (typeof(ICoordinatorMessage).IsAssignableFrom(t) || typeof(LedgerEvent).IsAssignableFrom(t)
                                      || t == typeof(LedgerSnapshot)))
        .ToFrozenDictionary(t => t.Name);

    public override int Identifier => Id;

    // An ExpiringRequest carries a request of any type: its manifest names the inner type after this prefix.
    private const string ExpiringPrefix = "Expiring:";

    public override string Manifest(object o) =>
        o is ExpiringRequest e ? ExpiringPrefix + e.Request.GetType().Name : o.GetType().Name;

    public override byte[] ToBinary(object obj) => obj is ExpiringRequest e
        ? JsonSerializer.SerializeToUtf8Bytes(new ExpiringWire(e.Deadline, JsonSerializer.SerializeToElement(e.Request, e.Request.GetType(), Options)), Options)
        : JsonSerializer.SerializeToUtf8Bytes(obj, obj.GetType(), Options);

    public override object FromBinary(byte[] bytes, string manifest)
    {
        if (manifest.StartsWith(ExpiringPrefix, StringComparison.Ordinal))
        {
            var wire = JsonSerializer.Deserialize<ExpiringWire>(bytes, Options) ?? throw new SerializationException($"null payload for {manifest}");
            var inner = Resolve(manifest[ExpiringPrefix.Length..]);
            return new ExpiringRequest(wire.Request.Deserialize(inner, Options) as ILedgerRequest
                                       ?? throw new SerializationException($"{manifest} does not carry a ledger request"), wire.Deadline);
        }
        // A type this version does not know was written by a newer one: a marker, so recovery can refuse with a clear
        // error instead of failing (and being retried) forever.
        if (!ByManifest.TryGetValue(manifest, out var type)) return new UnknownJournalEntry(manifest);
        if (type == typeof(LedgerSnapshot))
        {
            // A snapshot is only a shortcut (the journal keeps every event): a corrupt one is skipped, not fatal.
            try
            {
                return JsonSerializer.Deserialize<LedgerSnapshot>(bytes, Options) is { Volumes: not null } snapshot
                    ? snapshot
                    : new CorruptSnapshot("the snapshot is empty (no volumes list)");
            }
            catch (Exception ex) when (ex is JsonException or NotSupportedException or ArgumentException)
            {
                return new CorruptSnapshot(ex.Message);
            }
        }
        return JsonSerializer.Deserialize(bytes, type, Options) ?? throw new SerializationException($"null payload for {manifest}");
    }

    private static Type Resolve(string manifest) =>
        ByManifest.TryGetValue(manifest, out var type) ? type : throw new SerializationException($"unknown manifest '{manifest}'");

    private sealed record ExpiringWire(DateTimeOffset Deadline, JsonElement Request);
}
