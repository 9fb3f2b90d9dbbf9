using System.Text.RegularExpressions;

namespace Coordinator.Domain;

public sealed record ImageLease(
    string ImageId, string LeaseId, string Node, long FencingToken, string Volume, string Folder, string File,
    long SizeBytes, DateTimeOffset GrantedAt, DateTimeOffset ExpiresAt);

public sealed record CachedImage(
    string ImageId, string Volume, string File, long SizeBytes, string Checksum, DateTimeOffset CachedAt, DateTimeOffset LastUsedAt);

public enum LeaseStatus { Cached, Granted, Pending, InsufficientSpace, UnknownVolume, Invalid }

/// <summary>Answer to a lease request: the cache entry, this caller's grant, or who holds the lease now.</summary>
public sealed record LeaseOutcome(LeaseStatus Status, CachedImage? Cached, ImageLease? Lease, long FreeBytes = 0, string? Error = null);

public enum LeaseActionStatus { Done, Stale, NotFound, Invalid }

/// <summary>Answer to renew/complete/abort. Stale: the lease is not (or no longer) the one named with that token.</summary>
public sealed record LeaseActionOutcome(LeaseActionStatus Status, ImageLease? Lease, CachedImage? Cached, string? Error = null);

/// <summary>
/// The image-fetch lock and the image cache, in the same ledger as the volumes (one journal, one authority).
/// Semantics follow etcd's leases and concurrency mutex: a lease has a TTL and must be renewed; every grant gets a
/// fencing token from one counter that only grows (it is persisted, so it keeps growing across leader changes), and
/// a request carrying an older token is refused and changes nothing.
/// </summary>
public sealed partial class CsvLedger
{
    public const string ImageClaimPrefix = "_image-";

    private readonly SortedDictionary<string, CachedImage> _images = new(StringComparer.Ordinal);
    private readonly SortedDictionary<string, ImageLease> _leases = new(StringComparer.Ordinal);

    public long LastFencingToken { get; private set; }

    public IReadOnlyCollection<CachedImage> Images => _images.Values;
    public IReadOnlyCollection<ImageLease> Leases => _leases.Values;

    public CachedImage? FindImage(string imageId) => _images.GetValueOrDefault(imageId);
    public ImageLease? FindLease(string imageId) => _leases.GetValueOrDefault(imageId);

    public static string ImageClaim(string imageId) => ImageClaimPrefix + imageId;

    /// <summary>Where an image lives on its volume: a folder of its own (measured as the claim's directory).</summary>
    public static string ImageFolder(string cacheFolder, string imageId) => $"{cacheFolder.Trim('/')}/{imageId}";

    // ---------------------------------------------------------------- decisions

    public Decision<LeaseOutcome> AcquireImage(string imageId, string node, long sizeBytes, string volume, string cacheFolder,
        TimeSpan ttl, DateTimeOffset now)
    {
        var error = InputRules.CheckImageId(imageId) ?? InputRules.CheckId("node", node) ?? InputRules.CheckBytes("sizeBytes", sizeBytes);
        if (error is not null) return new(new LeaseOutcome(LeaseStatus.Invalid, null, null, Error: error), []);

        if (_images.TryGetValue(imageId, out var cached))
            return new(new LeaseOutcome(LeaseStatus.Cached, cached, null), Touch(imageId, now));

        if (_leases.TryGetValue(imageId, out var lease) && lease.ExpiresAt > now)
            // The holder asking again (a retry, or after a leader change) gets its own grant back.
            return new(new LeaseOutcome(lease.Node == node ? LeaseStatus.Granted : LeaseStatus.Pending, null, lease), []);

        if (!_volumes.TryGetValue(volume, out var v))
            return new(new LeaseOutcome(LeaseStatus.UnknownVolume, null, null, Error: $"unknown image volume '{volume}'"), []);

        var events = new List<LedgerEvent>();
        var free = v.Free;
        if (lease is not null)
        {
            // Expired but not yet swept: end it first, so its claim is returned before the new one is taken. Only a
            // claim on this volume frees room here, and its measured bytes stay on disk (unowned) until the next scan.
            events.Add(new ImageLeaseEnded(imageId, lease.LeaseId, LeaseEndReason.Expired, now));
            if (lease.Volume == volume) free = v.FreeWithout(ImageClaim(imageId));
        }
        if (sizeBytes > free)
            return new(new LeaseOutcome(LeaseStatus.InsufficientSpace, null, null, Math.Max(free, 0),
                $"image {imageId} ({ByteSize.Format(sizeBytes)}) does not fit on {volume}: {ByteSize.Format(Math.Max(free, 0))} free"), []);

        var token = LastFencingToken + 1;
        var folder = ImageFolder(cacheFolder, imageId);
        // The file name carries the token: a fenced-off holder's rename can never replace the entry's file.
        var granted = new ImageLeaseGranted(imageId, $"{imageId}.{token}", node, token, volume, folder,
            $"{folder}/{imageId}.t{token}", sizeBytes, now, now + ttl);
        events.Add(granted);
        return new(new LeaseOutcome(LeaseStatus.Granted, null, ToLease(granted), free - sizeBytes), events);
    }

    public Decision<LeaseActionOutcome> RenewLease(string imageId, string leaseId, long token, TimeSpan ttl, DateTimeOffset now)
    {
        var check = CheckHolder(imageId, leaseId, token, now, out var lease);
        if (check is not null) return new(check, []);
        var renewed = new ImageLeaseRenewed(imageId, leaseId, now + ttl);
        return new(new LeaseActionOutcome(LeaseActionStatus.Done, lease! with { ExpiresAt = renewed.ExpiresAt }, null), [renewed]);
    }

    public Decision<LeaseActionOutcome> CompleteLease(string imageId, string leaseId, long token, long sizeBytes, string checksum, DateTimeOffset now)
    {
        var check = CheckHolder(imageId, leaseId, token, now, out var lease);
        if (check is not null) return new(check, []);
        var err = InputRules.CheckBytes("sizeBytes", sizeBytes) ?? InputRules.CheckChecksum(checksum);
        if (err is not null) return new(new LeaseActionOutcome(LeaseActionStatus.Invalid, lease, null, err), []);
        var done = new ImageCached(imageId, leaseId, sizeBytes, checksum.ToLowerInvariant(), now);
        var entry = new CachedImage(imageId, lease!.Volume, lease.File, sizeBytes, done.Checksum, now, now);
        return new(new LeaseActionOutcome(LeaseActionStatus.Done, null, entry), [done]);
    }

    public Decision<LeaseActionOutcome> AbortLease(string imageId, string leaseId, long token, DateTimeOffset now)
    {
        var check = CheckHolder(imageId, leaseId, token, now, out var lease);
        if (check is not null) return new(check, []);
        return new(new LeaseActionOutcome(LeaseActionStatus.Done, lease, null),
            [new ImageLeaseEnded(imageId, leaseId, LeaseEndReason.Aborted, now)]);
    }

    /// <summary>Leases whose TTL ran out by <paramref name="now"/>.</summary>
    public IReadOnlyList<LedgerEvent> ExpireLeases(DateTimeOffset now) =>
        _leases.Values.Where(l => l.ExpiresAt <= now)
            .Select(l => (LedgerEvent)new ImageLeaseEnded(l.ImageId, l.LeaseId, LeaseEndReason.Expired, now)).ToList();

    /// <summary>Leases held by a node that left the cluster end at once.</summary>
    public IReadOnlyList<LedgerEvent> EndLeasesOf(string node, DateTimeOffset now) =>
        _leases.Values.Where(l => l.Node == node)
            .Select(l => (LedgerEvent)new ImageLeaseEnded(l.ImageId, l.LeaseId, LeaseEndReason.HolderRemoved, now)).ToList();

    /// <summary>A new leader cannot know how long the old one was gone: every lease gets a fresh TTL from now.</summary>
    public IReadOnlyList<LedgerEvent> RefreshLeases(TimeSpan ttl, DateTimeOffset now) =>
        _leases.Values.Select(l => (LedgerEvent)new ImageLeaseRenewed(l.ImageId, l.LeaseId, now + ttl)).ToList();

    public IReadOnlyList<LedgerEvent> Touch(string imageId, DateTimeOffset now) =>
        _images.TryGetValue(imageId, out var c) && now - c.LastUsedAt >= TimeSpan.FromMinutes(1)
            ? [new ImageUsed(imageId, now)]
            : [];

    /// <summary>Reservations that name the image (instances created from it) keep it in the cache.</summary>
    public int UsersOf(string imageId) => _volumes.Values.Sum(v => v.ImageUsers.GetValueOrDefault(imageId));

    /// <summary>Cached images nobody refers to, unused for at least <paramref name="maxAge"/>, and under no lease.</summary>
    public IReadOnlyList<CachedImage> EvictionCandidates(TimeSpan maxAge, DateTimeOffset now)
    {
        return _images.Values.Where(i => now - i.LastUsedAt >= maxAge && UsersOf(i.ImageId) == 0 && !_leases.ContainsKey(i.ImageId)).ToList();
    }

    public Decision<CachedImage?> Evict(string imageId, TimeSpan maxAge, DateTimeOffset now)
    {
        var candidate = EvictionCandidates(maxAge, now).FirstOrDefault(i => i.ImageId == imageId);
        return candidate is null ? new(null, []) : new(candidate, [new ImageEvicted(imageId, now)]);
    }

    private LeaseActionOutcome? CheckHolder(string imageId, string leaseId, long token, DateTimeOffset now, out ImageLease? lease)
    {
        lease = null;
        if (InputRules.CheckImageId(imageId) is { } err) return new(LeaseActionStatus.Invalid, null, null, err);
        if (!_leases.TryGetValue(imageId, out lease))
            return _images.ContainsKey(imageId) || token <= LastFencingToken
                ? new(LeaseActionStatus.Stale, null, _images.GetValueOrDefault(imageId), $"lease {leaseId} is no longer held")
                : new(LeaseActionStatus.NotFound, null, null, $"no lease on image {imageId}");
        if (lease.LeaseId != leaseId || lease.FencingToken != token)
            return new(LeaseActionStatus.Stale, lease, null, $"lease {leaseId} with token {token} is stale; the lease is held with token {lease.FencingToken}");
        if (lease.ExpiresAt <= now)
            return new(LeaseActionStatus.Stale, lease, null, $"lease {leaseId} expired at {lease.ExpiresAt:O}");
        return null;
    }

    private static ImageLease ToLease(ImageLeaseGranted g) =>
        new(g.ImageId, g.LeaseId, g.Node, g.FencingToken, g.Volume, g.Folder, g.File, g.SizeBytes, g.At, g.ExpiresAt);

    // ---------------------------------------------------------------- state changes

    private bool ApplyImageEvent(LedgerEvent e)
    {
        switch (e)
        {
            case ImageLeaseGranted g:
                _leases[g.ImageId] = ToLease(g);
                LastFencingToken = Math.Max(LastFencingToken, g.FencingToken);
                _volumes[g.Volume].Put(new Reservation(g.Volume, ImageClaim(g.ImageId), g.Node, g.SizeBytes, g.Folder, g.ImageId, g.At, g.At));
                return true;
            case ImageLeaseRenewed r:
                if (_leases.TryGetValue(r.ImageId, out var l)) _leases[r.ImageId] = l with { ExpiresAt = r.ExpiresAt };
                return true;
            case ImageLeaseEnded end:
                if (_leases.Remove(end.ImageId, out var ended) && !_images.ContainsKey(end.ImageId))
                    _volumes[ended.Volume].Remove(ImageClaim(end.ImageId));
                return true;
            case ImageCached c:
            {
                var lease = _leases[c.ImageId];
                _leases.Remove(c.ImageId);
                _images[c.ImageId] = new CachedImage(c.ImageId, lease.Volume, lease.File, c.SizeBytes, c.Checksum, c.At, c.At);
                var v = _volumes[lease.Volume];
                var claim = v.Reservations[ImageClaim(c.ImageId)];
                v.Put(claim with { Bytes = c.SizeBytes, UpdatedAt = c.At });
                return true;
            }
            case ImageUsed u:
                if (_images.TryGetValue(u.ImageId, out var img)) _images[u.ImageId] = img with { LastUsedAt = u.At };
                return true;
            case ImageEvicted ev:
                if (_images.Remove(ev.ImageId, out var gone)) _volumes[gone.Volume].Remove(ImageClaim(ev.ImageId));
                return true;
            default:
                return false;
        }
    }
}
