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

    public override string Manifest(object o) => o.GetType().Name;

    public override byte[] ToBinary(object obj) => JsonSerializer.SerializeToUtf8Bytes(obj, obj.GetType(), Options);

    public override object FromBinary(byte[] bytes, string manifest) =>
        ByManifest.TryGetValue(manifest, out var type)
            ? JsonSerializer.Deserialize(bytes, type, Options) ?? throw new SerializationException($"null payload for {manifest}")
            : throw new SerializationException($"unknown manifest '{manifest}'");
}
