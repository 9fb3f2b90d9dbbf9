using Akka.Actor;
using Akka.Cluster;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Ledger;

namespace Coordinator.Service.Api;

public static class HealthEndpoints
{
    /// <summary>/healthz: the process serves HTTP. /readyz: this node is Up in the cluster and a ledger leader answers.</summary>
    public static void MapHealth(this IEndpointRouteBuilder app)
    {
        app.MapGet("/healthz", (CoordinatorSettings s) => Results.Ok(new HealthResponse("ok", s.NodeName)));

        app.MapGet("/readyz", async (ActorSystem system, LedgerGateway ledger, CoordinatorSettings s, CancellationToken ct) =>
        {
            var self = Akka.Cluster.Cluster.Get(system).SelfMember;
            if (self.Status != MemberStatus.Up)
                return Results.Json(new HealthResponse("not-ready", s.NodeName, self.Status.ToString(), Reason: "this node is not Up in the cluster"),
                    statusCode: 503);
            try
            {
                var leader = await ledger.Ask<LeaderReply>(GetLeader.Instance, ct, TimeSpan.FromSeconds(2));
                return Results.Ok(new HealthResponse("ready", s.NodeName, self.Status.ToString(), leader.Node));
            }
            catch (NoLeaderException e)
            {
                return Results.Json(new HealthResponse("not-ready", s.NodeName, self.Status.ToString(), Reason: e.Message), statusCode: 503);
            }
        });
    }
}
