using Akka.Configuration;

namespace Coordinator.Cluster.Configuration;

/// <summary>Akka settings the coordinator's own types need wherever an ActorSystem runs them (service and tests).</summary>
public static class CoordinatorHocon
{
    public static readonly Config Serialization = ConfigurationFactory.ParseString("""
        akka.actor {
          serializers.coordinator = "Coordinator.Cluster.Serialization.CoordinatorSerializer, Coordinator.Cluster"
          serialization-bindings {
            "Coordinator.Cluster.Ledger.ICoordinatorMessage, Coordinator.Cluster" = coordinator
            "Coordinator.Domain.LedgerEvent, Coordinator.Domain" = coordinator
            "Coordinator.Domain.LedgerSnapshot, Coordinator.Domain" = coordinator
          }
        }
        """);
}
