using Akka.Actor;
using Akka.Event;
using Coordinator.Domain;

namespace Coordinator.Cluster.Ledger;

/// <summary>
/// The image-fetch lock and cache: leases with TTLs and fencing tokens, long polls, waiters, and eviction.
/// File deletions run on the thread pool after the eviction is durable; no file I/O on the mailbox thread.
/// </summary>
public sealed partial class LedgerActor
{
    private readonly List<Watcher> _watchers = [];
    private readonly Dictionary<string, Dictionary<string, DateTimeOffset>> _waiters = new(StringComparer.Ordinal);
    private readonly HashSet<string> _evicting = new(StringComparer.Ordinal);

    private sealed record Watcher(string ImageId, IActorRef ReplyTo, DateTimeOffset Deadline);

    private sealed record LeaseSweepTick
    {
        public static readonly LeaseSweepTick Instance = new();
    }

    private sealed record EvictionTick
    {
        public static readonly EvictionTick Instance = new();
    }

    /// <summary>Sent to self once an eviction is durable: only then are the files deleted.</summary>
    private sealed record DeleteImageFiles(string ImageId, string Folder);

    private sealed record ImageFilesDeleted(string ImageId, string? Error);

    /// <summary>Sent to self once a completion is durable: leftovers of earlier holders are removed.</summary>
    private sealed record CleanImageFolder(string ImageId, string Folder, string Keep);

    private int RetryAfterMs => (int)Math.Clamp(_settings.Images.LeaseTtl.TotalMilliseconds / 3, 200, 5000);

    private bool HandleImageMessage(object message)
    {
        var now = DateTimeOffset.UtcNow;
        switch (message)
        {
            case AcquireImageLease a:
                OnAcquire(a, now);
                return true;
            case RenewImageLease r:
            {
                var d = _ledger.RenewLease(r.ImageId, r.LeaseId, r.FencingToken, _settings.Images.LeaseTtl, now, r.Caller);
                Emit(d.Events);
                Reply(ActionReply(d.Outcome));
                return true;
            }
            case CompleteImageLease c:
            {
                var lease = _ledger.FindLease(c.ImageId);
                var d = _ledger.CompleteLease(c.ImageId, c.LeaseId, c.FencingToken, c.SizeBytes, c.Checksum, now, c.Caller);
                Emit(d.Events);
                Reply(ActionReply(d.Outcome));
                if (d.Events.Count > 0 && lease is not null)
                {
                    ReplyTo(Self, new CleanImageFolder(c.ImageId, Absolute(lease.Volume, lease.Folder), Absolute(lease.Volume, lease.File)));
                    ImageChanged(c.ImageId);
                }
                return true;
            }
            case AbortImageLease ab:
            {
                var d = _ledger.AbortLease(ab.ImageId, ab.LeaseId, ab.FencingToken, now, ab.Caller);
                Emit(d.Events);
                Reply(ActionReply(d.Outcome));
                if (d.Events.Count > 0) ImageChanged(ab.ImageId);
                return true;
            }
            case WatchImage w:
            {
                if (InputRules.CheckImageId(w.ImageId) is null && IsSettled(w.ImageId, now) is false && w.WaitMs > 0)
                    _watchers.Add(new Watcher(w.ImageId, Sender, now.AddMilliseconds(Math.Min(w.WaitMs, 120_000))));
                else Reply(StateOf(w.ImageId));
                return true;
            }
            case GetImages:
                Reply(new ImagesReply(_ledger.Epoch,
                    _ledger.Images.Select(EntryView).ToList(),
                    _ledger.Leases.Select(LeaseViewOf).ToList()));
                return true;
            case EvictImages e:
                Reply(new EvictReply(_ledger.Epoch, EvictNow(e.OlderThan ?? _settings.Images.EvictAfter, now)));
                return true;
            case LeaseSweepTick:
                SweepLeases(now);
                return true;
            case EvictionTick:
                EvictNow(_settings.Images.EvictAfter, now);
                return true;
            case DeleteImageFiles del:
                Task.Run(() => DeleteFolder(del.Folder)).PipeTo(Self,
                    success: () => new ImageFilesDeleted(del.ImageId, null),
                    failure: ex => new ImageFilesDeleted(del.ImageId, ex.GetBaseException().Message));
                return true;
            case ImageFilesDeleted done:
                _evicting.Remove(done.ImageId);
                if (done.Error is not null)
                    _log.Warning("Evicted image {0}: deleting its files failed ({1}); the next scan counts them as unowned", done.ImageId, done.Error);
                else _log.Info("Evicted image {0}: files deleted", done.ImageId);
                ImageChanged(done.ImageId);
                return true;
            case CleanImageFolder clean:
                Task.Run(() => DeleteAllBut(clean.Folder, clean.Keep));
                return true;
            default:
                return false;
        }
    }

    private void OnAcquire(AcquireImageLease a, DateTimeOffset now)
    {
        if (_evicting.Contains(a.ImageId))
        {
            // Files of the old entry are being deleted; a new download must not race the deletion.
            Reply(new LeaseReply(_ledger.Epoch, LeaseStatus.Pending, null, null, RetryAfterMs, 0, "the image is being evicted"));
            return;
        }
        // The lease id's secret comes from a CSPRNG here, on the singleton (LeaseIds); the event records the whole id.
        var d = _ledger.AcquireImage(a.ImageId, a.Node, a.SizeBytes, _settings.Images.Volume, _settings.Images.Folder,
            _settings.Images.LeaseTtl, now, LeaseIds.NewSecret());
        Emit(d.Events);
        var o = d.Outcome;
        if (o.Status == LeaseStatus.Pending)
            (_waiters.TryGetValue(a.ImageId, out var w) ? w : _waiters[a.ImageId] = new(StringComparer.Ordinal))[a.Node] = now;
        else if (_waiters.TryGetValue(a.ImageId, out var w2))
        {
            w2.Remove(a.Node);
            if (w2.Count == 0 || o.Status == LeaseStatus.Cached) _waiters.Remove(a.ImageId);
        }
        if (d.Events.Count > 0 && o.Status == LeaseStatus.Granted)
            _log.Info("Image {0}: lease {1} granted to {2} (token {3}, {4})", a.ImageId, o.Lease!.LeaseId, a.Node,
                o.Lease.FencingToken, ByteSize.Format(a.SizeBytes));
        Reply(new LeaseReply(_ledger.Epoch, o.Status, o.Cached is null ? null : EntryView(o.Cached),
            o.Lease is null ? null : LeaseViewOf(o.Lease), o.Status == LeaseStatus.Pending ? RetryAfterMs : 0, o.FreeBytes, o.Error));
    }

    private void SweepLeases(DateTimeOffset now)
    {
        var expired = _ledger.ExpireLeases(now);
        if (expired.Count > 0)
        {
            Emit(expired);
            foreach (var e in expired.OfType<ImageLeaseEnded>())
            {
                _log.Warning("Image {0}: lease {1} expired (not renewed)", e.ImageId, e.LeaseId);
                ImageChanged(e.ImageId);
            }
        }
        // Long polls that reached their deadline get the state as it is.
        for (var i = _watchers.Count - 1; i >= 0; i--)
        {
            var w = _watchers[i];
            if (w.Deadline > now) continue;
            _watchers.RemoveAt(i);
            ReplyTo(w.ReplyTo, StateOf(w.ImageId));
        }
        // Waiters that stopped asking are forgotten.
        var stale = now - _settings.Images.LeaseTtl * 2;
        foreach (var (image, nodes) in _waiters.ToList())
        {
            foreach (var (node, seen) in nodes.ToList())
                if (seen < stale) nodes.Remove(node);
            if (nodes.Count == 0) _waiters.Remove(image);
        }
    }

    private void EndLeasesOfRemovedNode(string node)
    {
        var ended = _ledger.EndLeasesOf(node, DateTimeOffset.UtcNow);
        if (ended.Count == 0) return;
        Emit(ended);
        foreach (var e in ended.OfType<ImageLeaseEnded>())
        {
            _log.Warning("Image {0}: lease {1} ended, its holder {2} left the cluster", e.ImageId, e.LeaseId, node);
            ImageChanged(e.ImageId);
        }
    }

    private List<ImageEntryView> EvictNow(TimeSpan olderThan, DateTimeOffset now)
    {
        var evicted = new List<ImageEntryView>();
        foreach (var candidate in _ledger.EvictionCandidates(olderThan, now))
        {
            var d = _ledger.Evict(candidate.ImageId, olderThan, now);
            if (d.Outcome is null) continue;
            var folder = Absolute(candidate.Volume, CsvLedger.ImageFolder(_settings.Images.Folder, candidate.ImageId));
            evicted.Add(EntryView(candidate));
            Emit(d.Events);
            _evicting.Add(candidate.ImageId);
            _log.Info("Evicting image {0} ({1}, last used {2:O})", candidate.ImageId, ByteSize.Format(candidate.SizeBytes), candidate.LastUsedAt);
            ReplyTo(Self, new DeleteImageFiles(candidate.ImageId, folder));
        }
        return evicted;
    }

    /// <summary>Answers the long polls on an image whose state settled (cached, or no live lease).</summary>
    private void ImageChanged(string imageId)
    {
        var now = DateTimeOffset.UtcNow;
        if (!IsSettled(imageId, now)) return;
        for (var i = _watchers.Count - 1; i >= 0; i--)
        {
            if (_watchers[i].ImageId != imageId) continue;
            ReplyTo(_watchers[i].ReplyTo, StateOf(imageId));
            _watchers.RemoveAt(i);
        }
    }

    private bool IsSettled(string imageId, DateTimeOffset now) =>
        !_evicting.Contains(imageId) && (_ledger.FindImage(imageId) is not null || _ledger.FindLease(imageId) is not { } l || l.ExpiresAt <= now);

    private ImageStateReply StateOf(string imageId)
    {
        var cached = _ledger.FindImage(imageId);
        var lease = _ledger.FindLease(imageId);
        var state = cached is not null ? "cached" : lease is not null || _evicting.Contains(imageId) ? "leased" : "absent";
        return new ImageStateReply(_ledger.Epoch, imageId, state, cached is null ? null : EntryView(cached),
            lease is null ? null : LeaseViewOf(lease));
    }

    private LeaseActionReply ActionReply(LeaseActionOutcome o) =>
        new(_ledger.Epoch, o.Status, o.Lease is null ? null : LeaseViewOf(o.Lease), o.Cached is null ? null : EntryView(o.Cached), o.Error, o.FreeBytes);

    private ImageEntryView EntryView(CachedImage c) =>
        new(c.ImageId, c.Volume, Absolute(c.Volume, c.File), c.SizeBytes, c.Checksum, c.CachedAt, c.LastUsedAt, _ledger.UsersOf(c.ImageId));

    private LeaseView LeaseViewOf(ImageLease l) =>
        new(l.ImageId, l.LeaseId, l.Node, l.FencingToken, l.Volume, Absolute(l.Volume, l.File), Absolute(l.Volume, l.Folder),
            l.SizeBytes, l.GrantedAt, l.ExpiresAt,
            _waiters.TryGetValue(l.ImageId, out var w) ? w.Keys.Order(StringComparer.Ordinal).ToList() : []);

    private string Absolute(string volume, string relative)
    {
        var root = _ledger.View(volume)?.Path ?? "";
        return Path.Combine(root, relative.Replace('/', Path.DirectorySeparatorChar));
    }

    private static void DeleteFolder(string folder)
    {
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
    }

    private static void DeleteAllBut(string folder, string keep)
    {
        if (!Directory.Exists(folder)) return;
        foreach (var f in Directory.EnumerateFiles(folder))
            if (!string.Equals(Path.GetFullPath(f), Path.GetFullPath(keep), StringComparison.Ordinal))
                try { File.Delete(f); } catch (IOException) { /* a stale holder still writing: removed at eviction */ }
    }
}
