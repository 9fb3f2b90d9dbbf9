using System.Collections.Concurrent;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Ledger;
using Coordinator.Domain;
using Coordinator.Service.Api;

namespace Coordinator.Service.Images;

/// <summary>
/// POST /v1/images/{id}/ensure: makes an image present in the cluster-wide cache. Takes the fetch lease on this
/// node's behalf; if another node holds it, waits (long poll, no busy polling) until that download ends; if this
/// node wins, downloads from glance, verifies, renames atomically and completes the lease. Callers on this node that
/// ask for the same image share one attempt.
/// </summary>
public sealed class ImageFetcher(
    LedgerGateway ledger, GlanceClient glance, CoordinatorSettings settings, IHostApplicationLifetime lifetime, ILogger<ImageFetcher> log)
{
    private readonly ConcurrentDictionary<string, Lazy<Task<ImageEntryView>>> _inFlight = new(StringComparer.Ordinal);

    public async Task<ImageEntryView> EnsureAsync(string imageId, CancellationToken callerCt)
    {
        var attempt = _inFlight.GetOrAdd(imageId, id => new Lazy<Task<ImageEntryView>>(() => RunAsync(id)));
        // A caller that goes away does not cancel the shared attempt; other callers may still wait for it.
        return await attempt.Value.WaitAsync(callerCt);
    }

    private async Task<ImageEntryView> RunAsync(string imageId)
    {
        try
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(lifetime.ApplicationStopping);
            cts.CancelAfter(settings.Images.EnsureTimeout);
            var ct = cts.Token;
            var image = await glance.GetImageAsync(imageId, ct);
            while (true)
            {
                ct.ThrowIfCancellationRequested();
                var r = await Retrying(() => ledger.Ask<LeaseReply>(new AcquireImageLease(imageId, settings.NodeName, image.Size!.Value), ct), ct);
                switch (r.Status)
                {
                    case LeaseStatus.Cached:
                        return r.Cached!;
                    case LeaseStatus.Pending:
                        log.LogDebug("Image {ImageId}: {Holder} is fetching it; waiting", imageId, r.Lease?.Holder);
                        await Retrying(() => ledger.Ask<ImageStateReply>(new WatchImage(imageId, 10_000), ct,
                            TimeSpan.FromSeconds(10) + settings.AskTimeout), ct);
                        continue;
                    case LeaseStatus.Granted:
                        if (await FetchAsync(image, r.Lease!, ct) is { } entry) return entry;
                        continue; // fenced off: someone else holds it now
                    case LeaseStatus.InsufficientSpace:
                        throw new ImageFetchException(409, "insufficient-space", "The image does not fit in the cache", r.Error!);
                    default:
                        throw new ImageFetchException(r.Status == LeaseStatus.Invalid ? 400 : 500, "invalid-request",
                            "The lease request was refused", r.Error ?? r.Status.ToString());
                }
            }
        }
        catch (OperationCanceledException) when (!lifetime.ApplicationStopping.IsCancellationRequested)
        {
            throw new ImageFetchException(504, "ensure-timeout", "The image did not become available in time",
                $"'{imageId}' was not cached within {settings.Images.EnsureTimeout}");
        }
        finally
        {
            _inFlight.TryRemove(imageId, out _);
        }
    }

    /// <summary>This node holds the lease: download, verify, rename, complete. Null when the lease was fenced off.</summary>
    private async Task<ImageEntryView?> FetchAsync(GlanceImage image, LeaseView lease, CancellationToken ct)
    {
        Directory.CreateDirectory(lease.Folder);
        var temp = Path.Combine(lease.Folder, "." + Path.GetFileName(lease.Path) + ".part");
        using var fetch = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var fenced = false;
        var renewals = RenewWhileFetching(lease, fetch, () => fenced = true);
        log.LogInformation("Image {ImageId}: fetching {Size} from glance under lease {LeaseId} (token {Token})",
            image.Id, ByteSize.Format(image.Size!.Value), lease.LeaseId, lease.FencingToken);
        try
        {
            var download = await glance.DownloadAsync(image, temp, fetch.Token);
            var checksum = GlanceClient.Verify(image, download);
            // The final name carries the fencing token, so this rename can never replace another holder's entry.
            File.Move(temp, lease.Path, overwrite: true);
            await fetch.CancelAsync();
            await renewals;
            var done = await Retrying(() => ledger.Ask<LeaseActionReply>(
                new CompleteImageLease(image.Id, lease.LeaseId, lease.FencingToken, download.Bytes, checksum, settings.NodeName), ct), ct);
            if (done.Status == LeaseActionStatus.Done || (done.Cached is { } c && c.Path == lease.Path))
            {
                log.LogInformation("Image {ImageId}: cached at {Path}", image.Id, lease.Path);
                return done.Cached!;
            }
            log.LogWarning("Image {ImageId}: completion refused ({Reason}); discarding this copy", image.Id, done.Error);
            TryDelete(lease.Path);
            return null;
        }
        catch (OperationCanceledException) when (fenced && !ct.IsCancellationRequested)
        {
            log.LogWarning("Image {ImageId}: lease {LeaseId} was fenced off during the download; discarding it", image.Id, lease.LeaseId);
            TryDelete(temp);
            return null;
        }
        catch (Exception e)
        {
            TryDelete(temp);
            await fetch.CancelAsync();
            await renewals;
            log.LogWarning("Image {ImageId}: fetch failed ({Error}); aborting lease {LeaseId}", image.Id, e.Message, lease.LeaseId);
            await AbortQuietly(lease);
            throw;
        }
    }

    /// <summary>Renews every third of the TTL; a stale answer (fenced) stops the download.</summary>
    private async Task RenewWhileFetching(LeaseView lease, CancellationTokenSource fetch, Action onFenced)
    {
        var every = settings.Images.LeaseTtl / 3;
        try
        {
            while (!fetch.IsCancellationRequested)
            {
                await Task.Delay(every, fetch.Token);
                try
                {
                    var r = await ledger.Ask<LeaseActionReply>(new RenewImageLease(lease.ImageId, lease.LeaseId, lease.FencingToken, settings.NodeName), fetch.Token);
                    if (r.Status != LeaseActionStatus.Done)
                    {
                        onFenced();
                        await fetch.CancelAsync();
                        return;
                    }
                }
                catch (NoLeaderException)
                {
                    // A leader change: the new leader refreshes every lease's TTL when it starts.
                }
            }
        }
        catch (OperationCanceledException) { }
    }

    private async Task AbortQuietly(LeaseView lease)
    {
        try
        {
            await ledger.Ask<LeaseActionReply>(new AbortImageLease(lease.ImageId, lease.LeaseId, lease.FencingToken, settings.NodeName), CancellationToken.None);
        }
        catch (Exception e)
        {
            log.LogWarning("Image {ImageId}: abort of lease {LeaseId} failed ({Error}); it expires by its TTL", lease.ImageId, lease.LeaseId, e.Message);
        }
    }

    /// <summary>Requests to the ledger are retried across a leader change (they are idempotent).</summary>
    private static async Task<T> Retrying<T>(Func<Task<T>> call, CancellationToken ct)
    {
        while (true)
        {
            try
            {
                return await call();
            }
            catch (NoLeaderException)
            {
                await Task.Delay(500, ct);
            }
        }
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
