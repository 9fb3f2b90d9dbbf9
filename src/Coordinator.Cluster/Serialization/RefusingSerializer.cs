using System.Runtime.Serialization;
using Akka.Actor;
using Akka.Configuration;
using Akka.Serialization;

namespace Coordinator.Cluster.Serialization;

/// <summary>
/// Sits in the slot of a serializer that would build whatever type a message names: a peer chooses the deserializer
/// by its identifier, so unbinding such a serializer is not enough; it must not be there. Refuses both ways: a type
/// that reaches it has no serializer of its own (a bug to fix by binding it), and bytes that name it come from a peer
/// that is not a coordinator of this version. A string-manifest serializer: Akka hands it the manifest as text and
/// never resolves it to a type first.
/// </summary>
public abstract class RefusingSerializer(ExtendedActorSystem system, string replaces) : SerializerWithStringManifest(system)
{
    public override string Manifest(object o) => throw Refuse(o);

    public override byte[] ToBinary(object obj) => throw Refuse(obj);

    private SerializationException Refuse(object? obj) =>
        new(
            $"{obj?.GetType().FullName ?? "null"} has no serializer binding: between members the coordinator sends only its own " +
            $"message types and Akka's (the {replaces} serializer is disabled: it would let a peer name any type to build)");

    public override object FromBinary(byte[] bytes, string manifest) =>
        throw new SerializationException(
            $"refused a message for serializer {Identifier} ({replaces}, disabled): the coordinator accepts from members only its own " +
            $"message types and Akka's; the type it names ({Shorten(manifest)}) was neither loaded nor built");

    private static string Shorten(string? manifest) =>
        string.IsNullOrEmpty(manifest) ? "none" : manifest.Length <= 200 ? manifest : manifest[..200] + "...";
}

/// <summary>In place of Akka's Newtonsoft JSON serializer (identifier 1, bound to System.Object): it deserializes any
/// type named in the manifest.</summary>
public sealed class RefuseReflectionJson(ExtendedActorSystem system) : RefusingSerializer(system, "Newtonsoft JSON")
{
    public const int Id = 1;
    public override int Identifier => Id;

    // Akka passes the slot's serialization-settings (Newtonsoft's, for json) when there are any.
    public RefuseReflectionJson(ExtendedActorSystem system, Config _) : this(system) { }
}

/// <summary>In place of Akka's DaemonMsgCreate serializer (identifier 3): remote deployment would let a peer create an
/// actor of any type on this node; the coordinator never deploys remotely.</summary>
public sealed class RefuseRemoteDeployment(ExtendedActorSystem system) : RefusingSerializer(system, "remote deployment")
{
    public const int Id = 3;
    public override int Identifier => Id;

    public RefuseRemoteDeployment(ExtendedActorSystem system, Config _) : this(system) { }
}
