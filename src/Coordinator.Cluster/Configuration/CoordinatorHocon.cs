using Akka.Configuration;

namespace Coordinator.Cluster.Configuration;

/// <summary>
/// Akka settings the coordinator's own types need wherever an ActorSystem runs them (service and tests). Members accept
/// only the coordinator's types and Akka's own: the serializers that would build any type a message names (Akka's
/// Newtonsoft JSON, identifier 1, bound to System.Object; remote deployment, identifier 3) are replaced under their
/// names and identifiers by ones that refuse, and System.Object is bound to the refusal.
/// </summary>
public static class CoordinatorHocon
{
    public static readonly Config Serialization = ConfigurationFactory.ParseString("""
        akka.actor {
          serializers.coordinator = "Coordinator.Cluster.Serialization.CoordinatorSerializer, Coordinator.Cluster"
          serializers.json = "Coordinator.Cluster.Serialization.RefuseReflectionJson, Coordinator.Cluster"
          serializers.daemon-create = "Coordinator.Cluster.Serialization.RefuseRemoteDeployment, Coordinator.Cluster"
          serialization-bindings {
            "System.Object" = json
            "Coordinator.Cluster.Ledger.ICoordinatorMessage, Coordinator.Cluster" = coordinator
            "Coordinator.Domain.LedgerEvent, Coordinator.Domain" = coordinator
            "Coordinator.Domain.LedgerSnapshot, Coordinator.Domain" = coordinator
          }
        }
        """);
}
