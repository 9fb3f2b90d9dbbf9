namespace Coordinator.Domain;

public sealed record ImageLease(
    string ImageId, string LeaseId, string Node, long FencingToken, string Volume, string Folder, string File,
    long SizeBytes, DateTimeOffset GrantedAt, DateTimeOffset ExpiresAt);

public sealed record CachedImage(
    string ImageId, string Volume, string File, long SizeBytes, string Checksum, DateTimeOffset CachedAt, DateTimeOffset LastUsedAt);

public enum LeaseStatus { Cached, Granted, Pending, InsufficientSpace, UnknownVolume, Invalid }

/// <summary>Answer to a lease request: the cache entry, this caller's grant, or who holds the lease now.</summary>
public sealed record LeaseOutcome(LeaseStatus Status, CachedImage? Cached, ImageLease? Lease, long FreeBytes = 0, string? Error = null);

/// <summary>
/// Outcome of renew/complete/abort. Stale: the lease is not (or no longer) the one named with that token.
/// InsufficientSpace: a completion larger than its grant whose growth does not fit (the lease stays as it was).
/// NotHolder: the caller acts for another node than the lease's holder (the lease stays as it was).
/// </summary>
public enum LeaseActionStatus { Done, Stale, NotFound, Invalid, InsufficientSpace, NotHolder }

/// <summary>Answer to renew/complete/abort. Stale: the lease is not (or no longer) the one named with that token.</summary>
public sealed record LeaseActionOutcome(LeaseActionStatus Status, ImageLease? Lease, CachedImage? Cached, string? Error = null, long FreeBytes = 0);

/// <summary>
/// The image-fetch lock and the image cache, in the same ledger as the volumes (one journal, one authority).
/// Semantics follow etcd's leases and concurrency mutex: a lease has a TTL and must be renewed; every grant gets a
/// fencing token from one counter that only grows (it is persisted, so it keeps growing across leader changes), and
/// a request carrying an older token is refused and changes nothing. Image ids name folders, so ids equal under
/// <see cref="FileNames.Comparer"/> are one image. Space is claimed through the <see cref="VolumeBook"/> only: a grant
/// claims its size, a completion resizes the claim to the real size if that fits, an end or eviction releases it.
/// </summary>
public sealed class ImageCache
{
    private readonly VolumeBook _volumes;
    private readonly FileNameMap<CachedImage> _images = new();
    private readonly FileNameMap<ImageLease> _leases = new();

    internal ImageCache(VolumeBook volumes) => _volumes = volumes;

    public long LastFencingToken { get; private set; }

    public IReadOnlyCollection<CachedImage> Images => _images.Values;
    public IReadOnlyCollection<ImageLease> Leases => _leases.Values;
    public int Count => _images.Count + _leases.Count;

    public CachedImage? FindImage(string imageId) => _images.GetValueOrDefault(imageId);
    public ImageLease? FindLease(string imageId) => _leases.GetValueOrDefault(imageId);

    // ---------------------------------------------------------------- decisions

    /// <summary>
    /// <paramref name="leaseSecret"/> makes the lease id unguessable (<see cref="LeaseIds"/>); null draws a new one. It is
    /// a parameter so that a decision can be repeated exactly (the event records the id, so replays never draw).
    /// </summary>
    public Decision<LeaseOutcome> AcquireImage(string imageId, string node, long sizeBytes, string volume, string cacheFolder,
        TimeSpan ttl, DateTimeOffset now, string? leaseSecret = null)
    {
        var error = InputRules.CheckImageId(imageId) ?? InputRules.CheckId("node", node) ?? InputRules.CheckBytes("sizeBytes", sizeBytes);
        if (error is not null) return new(new LeaseOutcome(LeaseStatus.Invalid, null, null, Error: error), []);

        if (_images.TryGetValue(imageId, out var cached))
            return new(new LeaseOutcome(LeaseStatus.Cached, cached, null), Touch(cached.ImageId, now));

        if (_leases.TryGetValue(imageId, out var lease) && lease.ExpiresAt > now)
            // The holder asking again (a retry, or after a leader change) gets its own grant back.
            return new(new LeaseOutcome(lease.Node == node ? LeaseStatus.Granted : LeaseStatus.Pending, null, lease), []);

        if (!_volumes.Has(volume))
            return new(new LeaseOutcome(LeaseStatus.UnknownVolume, null, null, Error: $"unknown image volume '{volume}'"), []);

        // An expired lease's folder keeps its spelling: "ABC" after "abc" is the same folder.
        var id = lease?.ImageId ?? imageId;
        var events = new List<LedgerEvent>();
        string? releasing = null;
        if (lease is not null)
        {
            // Expired but not yet swept: end it first, so its claim is returned before the new one is taken. Only a
            // claim on this volume frees room here, and its measured bytes stay on disk (unowned) until the next scan.
            events.Add(new ImageLeaseEnded(id, lease.LeaseId, LeaseEndReason.Expired, now));
            if (lease.Volume == volume) releasing = CsvLedger.ImageClaim(id);
        }
        var fit = _volumes.Fit(volume, CsvLedger.ImageClaim(id), sizeBytes, releasing);
        if (!fit.Fits)
            return new(new LeaseOutcome(LeaseStatus.InsufficientSpace, null, null, fit.FreeBefore,
                $"image {id} ({ByteSize.Format(sizeBytes)}) does not fit on {volume}: {ByteSize.Format(fit.FreeBefore)} free"), []);

        var token = LastFencingToken + 1;
        var folder = CsvLedger.ImageFolder(cacheFolder, id);
        // The file name carries the token: a fenced-off holder's rename can never replace the entry's file.
        var granted = new ImageLeaseGranted(id, LeaseIds.Make(id, token, leaseSecret ?? LeaseIds.NewSecret()), node, token, volume, folder,
            $"{folder}/{id}.t{token}", sizeBytes, now, now + ttl);
        events.Add(granted);
        return new(new LeaseOutcome(LeaseStatus.Granted, null, ToLease(granted), fit.FreeAfter), events);
    }

    public Decision<LeaseActionOutcome> RenewLease(string imageId, string leaseId, long token, TimeSpan ttl, DateTimeOffset now, string? caller = null)
    {
        var check = CheckHolder(imageId, leaseId, token, now, caller, out var lease);
        if (check is not null) return new(check, []);
        var renewed = new ImageLeaseRenewed(lease!.ImageId, lease.LeaseId, now + ttl);
        return new(new LeaseActionOutcome(LeaseActionStatus.Done, lease with { ExpiresAt = renewed.ExpiresAt }, null), [renewed]);
    }

    /// <summary>
    /// The holder's download is done: the claim becomes the cache entry's, at the real size. A real size larger than
    /// the grant claims the difference, which must fit like any other claim; otherwise the answer is
    /// <see cref="LeaseActionStatus.InsufficientSpace"/> and the lease stays as it was (the holder may abort).
    /// </summary>
    public Decision<LeaseActionOutcome> CompleteLease(string imageId, string leaseId, long token, long sizeBytes, string checksum, DateTimeOffset now, string? caller = null)
    {
        var check = CheckHolder(imageId, leaseId, token, now, caller, out var lease);
        if (check is not null) return new(check, []);
        var err = InputRules.CheckBytes("sizeBytes", sizeBytes) ?? InputRules.CheckChecksum(checksum);
        if (err is not null) return new(new LeaseActionOutcome(LeaseActionStatus.Invalid, lease, null, err), []);
        var fit = _volumes.Fit(lease!.Volume, CsvLedger.ImageClaim(lease.ImageId), sizeBytes);
        if (!fit.Fits)
            return new(new LeaseActionOutcome(LeaseActionStatus.InsufficientSpace, lease, null,
                $"image {lease.ImageId} is {ByteSize.Format(sizeBytes)}, {ByteSize.Format(fit.Growth)} more than its grant of " +
                $"{ByteSize.Format(lease.SizeBytes)}, and {lease.Volume} has {ByteSize.Format(fit.FreeBefore)} free", fit.FreeBefore), []);
        var done = new ImageCached(lease.ImageId, lease.LeaseId, sizeBytes, checksum.ToLowerInvariant(), now);
        var entry = new CachedImage(lease.ImageId, lease.Volume, lease.File, sizeBytes, done.Checksum, now, now);
        return new(new LeaseActionOutcome(LeaseActionStatus.Done, null, entry), [done]);
    }

    public Decision<LeaseActionOutcome> AbortLease(string imageId, string leaseId, long token, DateTimeOffset now, string? caller = null)
    {
        var check = CheckHolder(imageId, leaseId, token, now, caller, out var lease);
        if (check is not null) return new(check, []);
        return new(new LeaseActionOutcome(LeaseActionStatus.Done, lease, null),
            [new ImageLeaseEnded(lease!.ImageId, lease.LeaseId, LeaseEndReason.Aborted, now)]);
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
            ? [new ImageUsed(c.ImageId, now)]
            : [];

    /// <summary>Reservations that name the image (instances created from it) keep it in the cache.</summary>
    public int UsersOf(string imageId) => _volumes.UsersOf(imageId);

    /// <summary>Cached images nobody refers to, unused for at least <paramref name="maxAge"/>, and under no lease.</summary>
    public IReadOnlyList<CachedImage> EvictionCandidates(TimeSpan maxAge, DateTimeOffset now) =>
        _images.Values.Where(i => now - i.LastUsedAt >= maxAge && UsersOf(i.ImageId) == 0 && !_leases.ContainsKey(i.ImageId)).ToList();

    public Decision<CachedImage?> Evict(string imageId, TimeSpan maxAge, DateTimeOffset now)
    {
        var candidate = EvictionCandidates(maxAge, now).FirstOrDefault(i => FileNames.Comparer.Equals(i.ImageId, imageId));
        return candidate is null ? new(null, []) : new(candidate, [new ImageEvicted(candidate.ImageId, now)]);
    }

    /// <summary>
    /// Null when <paramref name="caller"/> may act on the lease with this id and token. A caller is the node the request
    /// acts for (null: an administrator, any holder); only the holder's node may renew, complete or abort, and a
    /// non-holder learns nothing about the id or token it sent.
    /// </summary>
    private LeaseActionOutcome? CheckHolder(string imageId, string leaseId, long token, DateTimeOffset now, string? caller, out ImageLease? lease)
    {
        lease = null;
        if (InputRules.CheckImageId(imageId) is { } err) return new(LeaseActionStatus.Invalid, null, null, err);
        if (!_leases.TryGetValue(imageId, out lease))
            return _images.ContainsKey(imageId) || token <= LastFencingToken
                ? new(LeaseActionStatus.Stale, null, _images.GetValueOrDefault(imageId), $"lease {leaseId} is no longer held")
                : new(LeaseActionStatus.NotFound, null, null, $"no lease on image {imageId}");
        if (caller is not null && lease.Node != caller)
            return new(LeaseActionStatus.NotHolder, lease, null, $"the lease on image {imageId} is held by {lease.Node}, not by {caller}");
        if (lease.LeaseId != leaseId || lease.FencingToken != token)
            return new(LeaseActionStatus.Stale, lease, null, $"lease {leaseId} with token {token} is stale; the lease is held with token {lease.FencingToken}");
        if (lease.ExpiresAt <= now)
            return new(LeaseActionStatus.Stale, lease, null, $"lease {leaseId} expired at {lease.ExpiresAt:O}");
        return null;
    }

    private static ImageLease ToLease(ImageLeaseGranted g) =>
        new(g.ImageId, g.LeaseId, g.Node, g.FencingToken, g.Volume, g.Folder, g.File, g.SizeBytes, g.At, g.ExpiresAt);

    // ---------------------------------------------------------------- state changes

    internal bool Apply(LedgerEvent e)
    {
        switch (e)
        {
            case ImageLeaseGranted g:
                _leases.Set(g.ImageId, ToLease(g));
                LastFencingToken = Math.Max(LastFencingToken, g.FencingToken);
                _volumes.Claim(new Reservation(g.Volume, CsvLedger.ImageClaim(g.ImageId), g.Node, g.SizeBytes, g.Folder, g.ImageId, g.At, g.At));
                return true;
            case ImageLeaseRenewed r:
                if (_leases.TryGetValue(r.ImageId, out var l)) _leases.Set(l.ImageId, l with { ExpiresAt = r.ExpiresAt });
                return true;
            case ImageLeaseEnded end:
                if (_leases.Remove(end.ImageId, out var ended) && !_images.ContainsKey(end.ImageId))
                    _volumes.Unclaim(ended.Volume, CsvLedger.ImageClaim(end.ImageId));
                return true;
            case ImageCached c:
            {
                if (!_leases.Remove(c.ImageId, out var lease)) return true; // nothing to complete (cannot happen in a journal we wrote)
                _images.Set(lease.ImageId, new CachedImage(lease.ImageId, lease.Volume, lease.File, c.SizeBytes, c.Checksum, c.At, c.At));
                var claimId = CsvLedger.ImageClaim(lease.ImageId);
                var claim = _volumes.Find(lease.Volume, claimId)
                            ?? new Reservation(lease.Volume, claimId, lease.Node, c.SizeBytes, lease.Folder, lease.ImageId, c.At, c.At);
                _volumes.Claim(claim with { Bytes = c.SizeBytes, UpdatedAt = c.At });
                return true;
            }
            case ImageUsed u:
                if (_images.TryGetValue(u.ImageId, out var img)) _images.Set(img.ImageId, img with { LastUsedAt = u.At });
                return true;
            case ImageEvicted ev:
                if (_images.Remove(ev.ImageId, out var gone)) _volumes.Unclaim(gone.Volume, CsvLedger.ImageClaim(gone.ImageId));
                return true;
            default:
                return false;
        }
    }

    // ---------------------------------------------------------------- snapshots

    internal void Load(LedgerSnapshot s)
    {
        LastFencingToken = s.LastFencingToken;
        foreach (var i in s.Images ?? []) _images.Set(i.ImageId, i);
        foreach (var l in s.Leases ?? []) _leases.Set(l.ImageId, l);
    }
}

/// <summary>
/// Lease ids: <c>{imageId}.{fencingToken}.{secret}</c>, the secret 128 bits from a CSPRNG in lower-case hex, so that an
/// id cannot be guessed from the image and the token (ids are shown only to their holder). Parsed from the right: an
/// image id may itself hold dots.
/// </summary>
public static class LeaseIds
{
    public const int SecretBytes = 16;

    public static string NewSecret() => Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(SecretBytes));

    public static string Make(string imageId, long fencingToken, string secret) => $"{imageId}.{fencingToken}.{secret}";

    /// <summary>The parts of a lease id of this format; false for anything else (e.g. an older id without a secret).</summary>
    public static bool TryParse(string leaseId, out string imageId, out long fencingToken, out string secret)
    {
        imageId = secret = "";
        fencingToken = 0;
        var last = leaseId.LastIndexOf('.');
        if (last <= 0) return false;
        var middle = leaseId.LastIndexOf('.', last - 1);
        if (middle <= 0) return false;
        secret = leaseId[(last + 1)..];
        imageId = leaseId[..middle];
        return secret.Length == SecretBytes * 2 && secret.All(Uri.IsHexDigit)
               && long.TryParse(leaseId.AsSpan(middle + 1, last - middle - 1), System.Globalization.NumberStyles.None,
                   System.Globalization.CultureInfo.InvariantCulture, out fencingToken);
    }
}
