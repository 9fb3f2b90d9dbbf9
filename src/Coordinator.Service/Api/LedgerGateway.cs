using Akka.Actor;
using Akka.Hosting;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Ledger;

namespace Coordinator.Service.Api;

/// <summary>Thrown when the singleton does not answer in time: no leader, a handover, or a journal outage.</summary>
public sealed class NoLeaderException(string message) : Exception(message);

/// <summary>
/// This node's way to the ledger singleton: asks through the proxy with a deadline, so that a 503 means the request
/// did not and will not take effect (the ledger drops it if it arrives late), and a client's retry is safe.
/// </summary>
public sealed class LedgerGateway(IRequiredActor<CsvLedgerSingleton> proxy, CoordinatorSettings settings)
{
    public async Task<T> Ask<T>(ILedgerRequest request, CancellationToken ct, TimeSpan? timeout = null)
    {
        var actor = await proxy.GetAsync(ct);
        try
        {
            return await actor.AskWithDeadline<T>(request, timeout ?? settings.AskTimeout, settings.MaxClockSkew, ct);
        }
        catch (AskTimeoutException)
        {
            throw new NoLeaderException($"the ledger did not answer within {(timeout ?? settings.AskTimeout).TotalMilliseconds:0} ms " +
                                        "(the request will not take effect later)");
        }
    }
}
