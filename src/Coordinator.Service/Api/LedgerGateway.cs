using Akka.Actor;
using Akka.Hosting;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Ledger;

namespace Coordinator.Service.Api;

/// <summary>Thrown when the singleton does not answer in time: no leader, a handover, or a journal outage.</summary>
public sealed class NoLeaderException(string message) : Exception(message);

/// <summary>This node's way to the ledger singleton: asks through the proxy with a bounded timeout.</summary>
public sealed class LedgerGateway(IRequiredActor<CsvLedgerSingleton> proxy, CoordinatorSettings settings)
{
    public async Task<T> Ask<T>(ILedgerRequest request, CancellationToken ct, TimeSpan? timeout = null)
    {
        var actor = await proxy.GetAsync(ct);
        try
        {
            return await actor.Ask<T>(request, timeout ?? settings.AskTimeout, ct);
        }
        catch (AskTimeoutException)
        {
            throw new NoLeaderException($"the ledger did not answer within {(timeout ?? settings.AskTimeout).TotalMilliseconds:0} ms");
        }
    }
}
