using System.Runtime.Serialization;
using System.Text;
using Akka.Actor;
using Akka.Configuration;
using Akka.Persistence;
using Akka.Serialization;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Ledger;
using Coordinator.Cluster.Serialization;
using Coordinator.Domain;

namespace Coordinator.Cluster.Tests.Serialization;

/// <summary>A type no serializer of the coordinator's knows: counts how often something builds it.</summary>
public sealed class Canary
{
    public static int Built;
    public string? Note { get; set; }
    public Canary() => Interlocked.Increment(ref Built);
}

/// <summary>
/// What a member accepts on the wire: the coordinator's own types and Akka's (cluster, singleton, persistence, remote)
/// round-trip through their own serializers; bytes for Akka's Newtonsoft JSON slot (identifier 1) or remote deployment
/// (identifier 3) are refused without building the type they name; nothing of ours falls back to System.Object.
/// </summary>
public sealed class WireSerializationSpecs : IDisposable
{
    private static readonly Config Cluster = ConfigurationFactory.ParseString("""
        akka.loglevel = WARNING
        akka.actor.provider = cluster
        akka.remote.dot-netty.tcp { hostname = "127.0.0.1", port = 0 }
        """);

    // Persistence's own serializers are bound by its default config, which the service's Akka.Hosting adds.
    private readonly ActorSystem _system = ActorSystem.Create("wire-spec", Cluster.WithFallback(CoordinatorHocon.Serialization)
        .WithFallback(Akka.Persistence.Persistence.DefaultConfig()));

    private Akka.Serialization.Serialization S => _system.Serialization;

    private object RoundTrip(object message)
    {
        var serializer = S.FindSerializerFor(message);
        Assert.IsNotType<RefuseReflectionJson>(serializer);
        var bytes = serializer.ToBinary(message);
        var manifest = Akka.Serialization.Serialization.ManifestFor(serializer, message);
        return S.Deserialize(bytes, serializer.Identifier, manifest);
    }

    private static string CanaryJson => $$"""{"$type":"{{typeof(Canary).AssemblyQualifiedName}}","Note":"built"}""";

    [Fact]
    public void The_coordinators_messages_events_and_snapshots_round_trip()
    {
        var at = DateTimeOffset.Parse("2026-01-01T00:00:00Z");
        object[] messages =
        [
            new ReserveCommand(new ReserveRequest("Volume1", "vm-1", "hv01", 1 << 30)),
            new ExpiringRequest(new ReleaseCommand("Volume1", "vm-1"), at),
            new LeaderReply(3, "hv01", "akka.ssl.tcp://coordinator@10.0.0.1:4053", at),
            new LedgerRefused("upgrade"),
            new ReservationReleased("Volume1", "vm-1", at),
            new LeaderEpochStarted(4, "hv02", at),
            new LedgerSnapshot(4, "hv02", at, []),
        ];
        foreach (var m in messages)
        {
            Assert.IsType<CoordinatorSerializer>(S.FindSerializerFor(m));
            var back = RoundTrip(m);
            Assert.Equal(m.GetType(), back.GetType());
            if (m is not LedgerSnapshot) Assert.Equal(m, back); // a snapshot's lists compare by reference
        }
    }

    [Fact]
    public void Every_concrete_message_event_and_snapshot_type_has_the_coordinators_serializer()
    {
        var types = typeof(ICoordinatorMessage).Assembly.GetTypes().Concat(typeof(LedgerEvent).Assembly.GetTypes())
            .Where(t => !t.IsAbstract && !t.IsInterface
                        && (typeof(ICoordinatorMessage).IsAssignableFrom(t) || typeof(LedgerEvent).IsAssignableFrom(t) || t == typeof(LedgerSnapshot)))
            .ToList();
        Assert.True(types.Count > 40, $"only {types.Count} types found");
        foreach (var t in types) Assert.IsType<CoordinatorSerializer>(S.FindSerializerForType(t));
    }

    [Fact]
    public void Akkas_own_cluster_singleton_persistence_and_remote_messages_keep_their_serializers()
    {
        // Every message type of Akka's cluster and cluster tools is bound to Akka's serializer for it, not the refusal.
        foreach (var (asm, marker) in new[]
                 {
                     (typeof(Akka.Cluster.Cluster).Assembly, typeof(Akka.Cluster.IClusterMessage)),
                     (typeof(Akka.Cluster.Tools.Singleton.ClusterSingletonManager).Assembly, typeof(Akka.Cluster.Tools.Singleton.IClusterSingletonMessage)),
                 })
        {
            var bound = asm.GetTypes().Where(t => !t.IsAbstract && marker.IsAssignableFrom(t)).ToList();
            Assert.NotEmpty(bound);
            var refused = bound.Where(t => S.FindSerializerForType(t) is RefuseReflectionJson).Select(t => t.FullName).ToList();
            Assert.True(refused.Count == 0, "bound to the refusal: " + string.Join(", ", refused));
        }

        // A journal entry carrying one of our events (what the SQL journal and a hand-over store and read).
        var persistent = new Persistent(new ReservationReleased("Volume1", "vm-1", DateTimeOffset.UnixEpoch), 7, "csv-ledger");
        var back = Assert.IsType<Persistent>(RoundTrip(persistent));
        Assert.Equal(persistent.Payload, back.Payload);
        Assert.Equal(7, back.SequenceNr);

        // Remote basics: an Identify with a string id (the island detector's) and its answer, an actor reference, an address.
        var probe = _system.ActorOf(Props.Empty, "probe");
        Assert.Equal("akka.ssl.tcp://coordinator@10.0.0.1:4053", Assert.IsType<Identify>(RoundTrip(new Identify("akka.ssl.tcp://coordinator@10.0.0.1:4053"))).MessageId);
        Assert.Equal(probe.Path, Assert.IsType<ActorIdentity>(RoundTrip(new ActorIdentity("id", probe))).Subject!.Path);
        Assert.Equal("hello", RoundTrip("hello"));
        Assert.Equal(42L, RoundTrip(42L));
    }

    [Fact]
    public void Bytes_for_the_json_slot_naming_any_type_are_refused_without_building_it()
    {
        var before = Canary.Built;
        var e = Assert.Throws<SerializationException>(() =>
            S.Deserialize(Encoding.UTF8.GetBytes(CanaryJson), RefuseReflectionJson.Id, typeof(Canary).AssemblyQualifiedName!));
        Assert.Contains("accepts from members only its own message types and Akka's", e.Message);
        Assert.Equal(before, Canary.Built);
        Assert.IsType<RefuseReflectionJson>(S.FindSerializerForType(typeof(object)));
    }

    [Fact]
    public void Without_the_coordinators_configuration_the_same_bytes_do_build_the_type()
    {
        // The control: Akka's stock configuration deserializes whatever the peer names (what the refusal removes).
        using var stock = ActorSystem.Create("stock-spec", Cluster);
        var before = Canary.Built;
        var built = stock.Serialization.Deserialize(Encoding.UTF8.GetBytes(CanaryJson), 1, typeof(Canary).AssemblyQualifiedName!);
        Assert.IsType<Canary>(built);
        Assert.True(Canary.Built > before);
        stock.Terminate().Wait(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void Remote_deployment_is_refused()
    {
        var e = Assert.Throws<SerializationException>(() => S.Deserialize([1, 2, 3], RefuseRemoteDeployment.Id, ""));
        Assert.Contains("remote deployment", e.Message);
    }

    [Fact]
    public void A_type_without_a_binding_is_refused_when_sent_with_a_clear_message()
    {
        var e = Assert.Throws<SerializationException>(() => S.FindSerializerFor(new Canary()).ToBinary(new Canary()));
        Assert.Contains($"{typeof(Canary).FullName} has no serializer binding", e.Message);
        // The island detector once sent an Address as an Identify id: that is refused now, hence the string id.
        Assert.Throws<SerializationException>(() => RoundTrip(new Identify(new Address("akka.tcp", "coordinator", "h", 1))));
    }

    public void Dispose() => _system.Terminate().Wait(TimeSpan.FromSeconds(10));
}
