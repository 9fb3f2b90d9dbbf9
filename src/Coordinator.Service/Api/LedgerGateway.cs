using Akka.Actor;
using Akka.Hosting;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Ledger;

namespace Coordinator.Service.Api;

/// <summary>Thrown when the singleton does not answer in time: no leader, a handover, or a journal outage.</summary>
public class NoLeaderException(string message) : Exception(message);

/// <summary>
/// The ledger is up but refuses to serve its journal (an event or snapshot type from a newer version): 503 with the
/// ledger's own reason, which says what to do. It does not pass by itself, unlike a leader change.
/// </summary>
public sealed class LedgerRefusedException(string reason) : NoLeaderException(reason);

/// <summary>
/// This node's way to the ledger singleton: asks through the proxy with a deadline, so that a 503 means the request
/// did not and will not take effect (the ledger drops it if it arrives late), and a client's retry is safe.
/// </summary>
public sealed class LedgerGateway(IRequiredActor<CsvLedgerSingleton> proxy, CoordinatorSettings settings)
{
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Type, System.Reflection.PropertyInfo?> EpochProperties = new();

    /// <summary>
    /// Asks on behalf of an HTTP request and stamps the answering ledger's epoch on its response
    /// (<see cref="LedgerEndpoints.EpochHeader"/>), whatever the route then answers: a success, or a refusal the ledger
    /// decided (404, 409, a 400 from the domain rules). A client can tell which incarnation decided every answer,
    /// also one without a body (204) or with a body that has no epoch (a renewed LeaseView). Answers the edge gives
    /// without asking the ledger (a malformed request) and 503s (no ledger answered) carry no epoch.
    /// </summary>
    public async Task<T> Ask<T>(HttpContext http, ILedgerRequest request, CancellationToken ct, TimeSpan? timeout = null)
    {
        var reply = await Ask<T>(request, ct, timeout);
        var epoch = EpochProperties.GetOrAdd(reply!.GetType(), t => t.GetProperty("Epoch") is { PropertyType: var pt } p && pt == typeof(long) ? p : null);
        if (epoch is not null && !http.Response.HasStarted)
            http.Response.Headers[LedgerEndpoints.EpochHeader] = ((long)epoch.GetValue(reply)!).ToString(System.Globalization.CultureInfo.InvariantCulture);
        return reply;
    }

    public async Task<T> Ask<T>(ILedgerRequest request, CancellationToken ct, TimeSpan? timeout = null)
    {
        var actor = await proxy.GetAsync(ct);
        try
        {
            // Any request may be answered LedgerRefused (a ledger that stopped at a journal it cannot read).
            var reply = await actor.AskWithDeadline<object>(request, timeout ?? settings.AskTimeout, settings.MaxClockSkew, ct);
            return reply switch
            {
                T answer => answer,
                LedgerRefused refused => throw new LedgerRefusedException(refused.Reason),
                _ => throw new InvalidOperationException($"the ledger answered {request.GetType().Name} with {reply.GetType().Name}"),
            };
        }
        catch (AskTimeoutException)
        {
            throw new NoLeaderException($"the ledger did not answer within {(timeout ?? settings.AskTimeout).TotalMilliseconds:0} ms " +
                                        "(the request will not take effect later)");
        }
    }
}
