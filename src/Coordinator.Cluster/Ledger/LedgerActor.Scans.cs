using Akka.Event;
using Akka.Actor;
using Coordinator.Domain;

namespace Coordinator.Cluster.Ledger;

/// <summary>Volume scans: the walk runs on the thread pool, its result comes back as a message and is persisted if it changes anything.</summary>
public sealed partial class LedgerActor
{
    private void StartScan(string volume, IActorRef? requester)
    {
        if (_scans.TryGetValue(volume, out var waiters))
        {
            if (requester is not null) waiters.Add(requester);
            return;
        }
        _scans[volume] = requester is null ? [] : [requester];
        var settings = _settings.Volumes.FirstOrDefault(v => v.Name == volume);
        var root = _ledger.View(volume)!.Path;
        var fsTotals = settings?.UseFileSystemTotals ?? false;
        var dirs = _ledger.MeasuredDirectories(volume);
        // The walk runs on the thread pool; its result comes back as a message.
        Task.Run(() => VolumeMeasurer.Measure(root, fsTotals, dirs)).PipeTo(Self,
            success: u => new ScanCompleted(volume, u, null),
            failure: ex => new ScanCompleted(volume, null, ex.GetBaseException().Message));
    }

    private void OnScanCompleted(ScanCompleted s)
    {
        _scans.Remove(s.Volume, out var waiters);
        if (s.Usage is null)
            _log.Warning("Scan of {0} failed: {1}", s.Volume, s.Error);
        else
            Emit(_ledger.Measure(s.Volume, s.Usage.UsedBytes, s.Usage.ConsumerUsage, DateTimeOffset.UtcNow));
        foreach (var w in waiters ?? [])
            ReplyTo(w, new VolumeReply(_ledger.Epoch, _ledger.View(s.Volume), s.Error));
    }

    private sealed record RescanTick
    {
        public static readonly RescanTick Instance = new();
    }

    private sealed record ScanCompleted(string Volume, VolumeUsage? Usage, string? Error);
}
