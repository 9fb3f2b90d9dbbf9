using Akka.Actor;
using Coordinator.Domain;

namespace Coordinator.Cluster.Ledger;

/// <summary>
/// The ledger's group commit: events decided but not yet written (the next batch) with the replies that wait for
/// them, and the replies of the batch being written. At most one batch is in flight; a reply is released only once
/// the write holding every event it reflects is confirmed. The two reply lists are swapped, not reallocated.
/// </summary>
internal sealed class ReplyBatch
{
    private readonly List<LedgerEvent> _pendingEvents = [];
    private List<(IActorRef To, object Reply)> _pendingReplies = [];
    private List<(IActorRef To, object Reply)> _inFlightReplies = [];

    /// <summary>A batch has been handed to the journal and is not yet confirmed.</summary>
    public bool InFlight { get; private set; }

    /// <summary>Events that go into the next write.</summary>
    public bool HasPending => _pendingEvents.Count > 0;

    /// <summary>Nothing decided is unwritten and no write is outstanding.</summary>
    public bool IsIdle => !InFlight && _pendingEvents.Count == 0;

    public void AddEvent(LedgerEvent e) => _pendingEvents.Add(e);

    /// <summary>
    /// Holds a reply until the events it reflects are durable: behind the pending events, else behind the write in
    /// flight. False when nothing is outstanding: the caller sends it at once.
    /// </summary>
    public bool TryHold(IActorRef to, object reply)
    {
        if (_pendingEvents.Count > 0) _pendingReplies.Add((to, reply));
        else if (InFlight) _inFlightReplies.Add((to, reply));
        else return false;
        return true;
    }

    /// <summary>Moves the pending events and their replies in flight; returns the events to write in one write.</summary>
    public LedgerEvent[] StartWrite()
    {
        var events = _pendingEvents.ToArray();
        _pendingEvents.Clear();
        (_inFlightReplies, _pendingReplies) = (_pendingReplies, _inFlightReplies); // the in-flight list is empty here
        InFlight = true;
        return events;
    }

    /// <summary>The write in flight is confirmed: its replies go out.</summary>
    public void Release(IActorRef self)
    {
        InFlight = false;
        foreach (var (to, reply) in _inFlightReplies) to.Tell(reply, self);
        _inFlightReplies.Clear();
    }
}
