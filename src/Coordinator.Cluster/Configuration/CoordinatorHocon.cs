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
          # The singleton's hand-over messages: Akka binds them only once its singleton config is injected; without the
          # binding they would reach the refusal above (they used to go through Newtonsoft JSON).
          serializers.akka-singleton = "Akka.Cluster.Tools.Singleton.Serialization.ClusterSingletonMessageSerializer, Akka.Cluster.Tools"
          serialization-identifiers."Akka.Cluster.Tools.Singleton.Serialization.ClusterSingletonMessageSerializer, Akka.Cluster.Tools" = 14
          serialization-bindings {
            "System.Object" = json
            "Akka.Cluster.Tools.Singleton.IClusterSingletonMessage, Akka.Cluster.Tools" = akka-singleton
            "Coordinator.Cluster.Ledger.ICoordinatorMessage, Coordinator.Cluster" = coordinator
            "Coordinator.Domain.LedgerEvent, Coordinator.Domain" = coordinator
            "Coordinator.Domain.LedgerSnapshot, Coordinator.Domain" = coordinator
          }
        }
        """);
}
