using System.Runtime.Serialization;
using System.Text;
using Akka.Actor;
using Akka.Configuration;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Serialization;
using Coordinator.Domain;

namespace Coordinator.Cluster.Tests;

/// <summary>
/// What the serializer makes of bytes it cannot read: a type it does not know becomes a marker (recovery refuses with a
/// clear error instead of retrying), a snapshot that does not parse becomes a marker (recovery falls back), and an
/// event of a known type that does not parse still fails (the journal is never skipped over).
/// </summary>
public sealed class SerializerSpecs : IDisposable
{
    private readonly ActorSystem _system = ActorSystem.Create("serializer-spec", ConfigurationFactory.ParseString("akka.loglevel = WARNING")
        .WithFallback(CoordinatorHocon.Serialization));

    private object Read(string json, string manifest) =>
        _system.Serialization.Deserialize(Encoding.UTF8.GetBytes(json), CoordinatorSerializer.Id, manifest);

    [Fact]
    public void An_unknown_manifest_becomes_an_UnknownJournalEntry() =>
        Assert.Equal(new UnknownJournalEntry("VolumeSharded"), Read("""{"shards":4}""", "VolumeSharded"));

    [Theory]
    [InlineData("""{"epoch":3,"volumes":[{"name":"Vol""")]
    [InlineData("not json at all")]
    [InlineData("null")]
    [InlineData("{}")]
    public void A_snapshot_that_does_not_parse_becomes_a_CorruptSnapshot(string json) =>
        Assert.IsType<CorruptSnapshot>(Read(json, nameof(LedgerSnapshot)));

    [Fact]
    public void A_known_event_that_does_not_parse_still_fails() =>
        Assert.ThrowsAny<Exception>(() => Read("""{"volume":""", nameof(ReservationReleased)));

    public void Dispose() => _system.Terminate().Wait(TimeSpan.FromSeconds(10));
}
