using Akka.Actor;
using Coordinator.Domain;

namespace Coordinator.Cluster.Ledger;

/// <summary>The cluster-wide VM inventory: placements, owners, node capacity, drain flags and the arrival feed.</summary>
public sealed partial class LedgerActor
{
    private readonly List<(GetFeed Query, IActorRef ReplyTo, DateTimeOffset Deadline)> _feedWatchers = [];

    private bool HandleVmMessage(object message)
    {
        var now = DateTimeOffset.UtcNow;
        switch (message)
        {
            case ReportNode r:
                Emit(_ledger.ReportCapacity(r.Node, r.MemoryMb, r.LogicalProcessors, now));
                foreach (var vm in r.Vms)
                {
                    // A VM on this host that the ledger has elsewhere moved while nobody watched (a failover during
                    // this node's downtime); one it does not know at all arrived from outside: adopt it.
                    if (_ledger.FindVm(vm.Name) is not null) Emit(_ledger.ObserveOwner(vm.Name, r.Node, "reconciled", now));
                    else if (VolumeOf(vm.DiskPath) is { } volume)
                        Emit(_ledger.AdoptVm(new PlaceVmRequest(vm.Name, r.Node, vm.MemoryMb, vm.Vcpus, volume, Math.Max(vm.DiskBytes, 1), null), "adopted", now));
                }
                Reply(new VmAck(_ledger.Epoch, null));
                return true;
            case PlaceVm p:
            {
                var d = _ledger.PlaceVm(p.Request, now);
                Emit(d.Events);
                Reply(new PlaceReply(_ledger.Epoch, d.Outcome));
                return true;
            }
            case AcceptArrival a:
            {
                var d = _ledger.Arrive(a.Request, now);
                Emit(d.Events);
                Reply(new PlaceReply(_ledger.Epoch, d.Outcome));
                return true;
            }
            case SetVmPhase ph:
                Emit(_ledger.SetVmPhase(ph.Name, ph.Phase, now));
                Reply(new VmAck(_ledger.Epoch, _ledger.FindVm(ph.Name)));
                return true;
            case ObserveOwner o:
                Emit(_ledger.ObserveOwner(o.Name, o.Node, o.Reason, now));
                Reply(new VmAck(_ledger.Epoch, _ledger.FindVm(o.Name)));
                return true;
            case RemoveVm rm:
                Emit(_ledger.RemoveVm(rm.Name, rm.Reason, now));
                Reply(new VmAck(_ledger.Epoch, null));
                return true;
            case SetDrain sd:
                Emit(_ledger.SetDraining(sd.Node, sd.Draining, now));
                Reply(new VmAck(_ledger.Epoch, null));
                return true;
            case PickTarget pt:
                Reply(new TargetReply(_ledger.Epoch, _ledger.PickTarget(pt.Vm, _liveNodes.Values.Distinct().ToList())));
                return true;
            case GetVms:
                Reply(new VmsReply(_ledger.Epoch, _ledger.Vms.ToList()));
                return true;
            case GetNodes:
                Reply(new NodesReply(_ledger.Epoch, _ledger.Usages().Select(u => new NodeView(u.Node,
                    !_liveNodes.ContainsValue(u.Node) ? "down" : u.Draining ? "draining" : "up",
                    u.MemoryMb, u.FreeMemoryMb, u.LogicalProcessors, u.FreeVcpus, u.Vms, u.Draining)).ToList()));
                return true;
            case GetFeed f:
            {
                var entries = _ledger.FeedAfter(f.After, f.Node);
                if (entries.Count > 0 || f.WaitMs <= 0) Reply(new FeedReply(_ledger.Epoch, _ledger.FeedHead, entries));
                else _feedWatchers.Add((f, Sender, now.AddMilliseconds(Math.Min(f.WaitMs, 120_000))));
                return true;
            }
            default:
                return false;
        }
    }

    /// <summary>Answers feed long polls that now have entries, or whose wait ended (called on every sweep and after emits).</summary>
    private void ServeFeedWatchers(DateTimeOffset now)
    {
        for (var i = _feedWatchers.Count - 1; i >= 0; i--)
        {
            var (q, to, deadline) = _feedWatchers[i];
            var entries = _ledger.FeedAfter(q.After, q.Node);
            if (entries.Count == 0 && deadline > now) continue;
            _feedWatchers.RemoveAt(i);
            ReplyTo(to, new FeedReply(_ledger.Epoch, _ledger.FeedHead, entries));
        }
    }

    private string? VolumeOf(string? diskPath)
    {
        if (diskPath is null) return null;
        var p = diskPath.Replace('\\', '/');
        return _ledger.Views().FirstOrDefault(v => p.StartsWith(v.Path.Replace('\\', '/').TrimEnd('/') + "/", StringComparison.OrdinalIgnoreCase))?.Name;
    }
}
