using System.Buffers;
using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Text.Json.Serialization;
using Coordinator.Cluster.Configuration;
using Coordinator.Domain;

namespace Coordinator.Service.Images;

/// <summary>What glance's image API v2 says of an image (GET /v2/images/{id}).</summary>
public sealed record GlanceImage(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("status")] string? Status,
    [property: JsonPropertyName("size")] long? Size,
    [property: JsonPropertyName("disk_format")] string? DiskFormat,
    [property: JsonPropertyName("checksum")] string? Checksum,
    [property: JsonPropertyName("os_hash_algo")] string? HashAlgorithm,
    [property: JsonPropertyName("os_hash_value")] string? HashValue);

/// <summary>A failed fetch, with the HTTP status and problem type the node's API answers with.</summary>
public sealed class ImageFetchException(int status, string type, string title, string detail) : Exception(detail)
{
    public int Status { get; } = status;
    public string Type { get; } = type;
    public string Title { get; } = title;
}

/// <summary>
/// Glance over HTTP: metadata, then the image streamed to a file while it is hashed (never held in memory).
/// The X-Auth-Token comes from configuration and is never logged.
/// </summary>
public sealed class GlanceClient(HttpClient http, CoordinatorSettings settings, ILogger<GlanceClient> log)
{
    private const int BufferSize = 1 << 20;
    private ImageCacheSettings Images => settings.Images;

    /// <summary>
    /// The client glance calls go through: one long-lived client (pooled connections recycled every few minutes, so
    /// DNS changes are seen). Redirects are followed by <see cref="Coordinator.Cluster.Security.SafeRedirectHandler"/>,
    /// never by the socket handler, so the X-Auth-Token never reaches another origin (an object store glance sends the
    /// download to, say). Downloads can take long: stalls are caught per read (images.glance.timeout), not by a
    /// whole-request timeout.
    /// </summary>
    public static HttpClient CreateHttpClient() =>
        new(new Coordinator.Cluster.Security.SafeRedirectHandler(
            new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5), AllowAutoRedirect = false }))
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };

    public async Task<GlanceImage> GetImageAsync(string imageId, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(Images.GlanceTimeout);
        HttpResponseMessage response;
        try
        {
            response = await http.SendAsync(Request(HttpMethod.Get, $"v2/images/{Uri.EscapeDataString(imageId)}"), timeout.Token);
        }
        catch (Exception e) when (e is HttpRequestException || (e is OperationCanceledException && !ct.IsCancellationRequested))
        {
            throw Unavailable($"glance at {Images.GlanceEndpoint} is unreachable: {e.Message}");
        }
        using (response)
        {
            if (response.StatusCode == HttpStatusCode.NotFound)
                throw new ImageFetchException(404, "image-not-found", "Glance does not know the image", $"glance has no image '{imageId}'");
            if (!response.IsSuccessStatusCode)
                throw Unavailable($"glance answered {(int)response.StatusCode} for image '{imageId}'");
            var image = await response.Content.ReadFromJsonAsync<GlanceImage>(timeout.Token)
                        ?? throw Unavailable("glance sent an empty image record");
            if (!string.Equals(image.Status, "active", StringComparison.OrdinalIgnoreCase))
                throw new ImageFetchException(409, "image-not-active", "The image is not active in glance",
                    $"image '{imageId}' is '{image.Status}' in glance; only active images can be fetched");
            if (image.Size is not > 0 || image.Size > ByteSize.MaxBytes)
                throw Unavailable($"glance reports an unusable size ({image.Size}) for '{imageId}'");
            if (string.IsNullOrEmpty(image.HashValue) && string.IsNullOrEmpty(image.Checksum))
                throw Unavailable($"glance reports no checksum for '{imageId}': it cannot be verified");
            return image;
        }
    }

    /// <summary>Streams the image into <paramref name="path"/> and returns the digests computed on the way.</summary>
    public async Task<DownloadResult> DownloadAsync(GlanceImage image, string path, CancellationToken ct)
    {
        var started = Stopwatch.StartNew();
        HttpResponseMessage response;
        try
        {
            response = await http.SendAsync(Request(HttpMethod.Get, $"v2/images/{Uri.EscapeDataString(image.Id)}/file"),
                HttpCompletionOption.ResponseHeadersRead, ct);
        }
        catch (HttpRequestException e)
        {
            throw Unavailable($"glance download of '{image.Id}' failed: {e.Message}");
        }
        using (response)
        {
            if (response.StatusCode == HttpStatusCode.NotFound)
                throw new ImageFetchException(404, "image-not-found", "Glance does not know the image", $"glance has no data for '{image.Id}'");
            if (!response.IsSuccessStatusCode)
                throw Unavailable($"glance answered {(int)response.StatusCode} to the download of '{image.Id}'");

            using var md5 = IncrementalHash.CreateHash(HashAlgorithmName.MD5);
            using var hash = CreateHash(image.HashAlgorithm);
            var buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
            long total = 0, lastLogged = 0;
            var lastLog = Stopwatch.StartNew();
            try
            {
                await using var source = await response.Content.ReadAsStreamAsync(ct);
                await using var target = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, BufferSize, FileOptions.Asynchronous);
                while (true)
                {
                    int n;
                    using (var stall = CancellationTokenSource.CreateLinkedTokenSource(ct))
                    {
                        stall.CancelAfter(Images.GlanceTimeout);
                        try
                        {
                            n = await source.ReadAsync(buffer.AsMemory(0, BufferSize), stall.Token);
                        }
                        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                        {
                            throw Unavailable($"the download of '{image.Id}' stalled for {Images.GlanceTimeout.TotalSeconds:0}s after {total} bytes");
                        }
                        catch (Exception e) when (e is IOException or HttpRequestException)
                        {
                            throw Unavailable($"the download of '{image.Id}' broke off after {total} bytes: {e.Message}");
                        }
                    }
                    if (n == 0) break;
                    await target.WriteAsync(buffer.AsMemory(0, n), ct);
                    md5.AppendData(buffer, 0, n);
                    hash?.AppendData(buffer, 0, n);
                    total += n;
                    if (total > image.Size)
                        throw BadData($"glance sent more than the {image.Size} bytes it announced for '{image.Id}'");
                    if (lastLog.Elapsed >= Images.ProgressInterval)
                    {
                        var rate = (total - lastLogged) / lastLog.Elapsed.TotalSeconds;
                        log.LogInformation("Image {ImageId}: {Bytes} of {Total} ({Percent:0.0}%) at {Rate}/s",
                            image.Id, ByteSize.Format(total), ByteSize.Format(image.Size!.Value), 100.0 * total / image.Size.Value, ByteSize.Format((long)rate));
                        lastLogged = total;
                        lastLog.Restart();
                    }
                }
                await target.FlushAsync(ct);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
            var result = new DownloadResult(total, Convert.ToHexStringLower(md5.GetHashAndReset()),
                hash is null ? null : Convert.ToHexStringLower(hash.GetHashAndReset()), started.Elapsed);
            log.LogInformation("Image {ImageId}: downloaded {Bytes} in {Seconds:0.0}s ({Rate}/s)", image.Id, ByteSize.Format(total),
                started.Elapsed.TotalSeconds, ByteSize.Format((long)(total / Math.Max(started.Elapsed.TotalSeconds, 0.001))));
            return result;
        }
    }

    /// <summary>Checks a finished download against glance's size, os_hash and md5; returns the checksum to record.</summary>
    public static string Verify(GlanceImage image, DownloadResult d)
    {
        if (d.Bytes != image.Size)
            throw BadData($"'{image.Id}': received {d.Bytes} bytes, glance announced {image.Size}");
        if (!string.IsNullOrEmpty(image.HashValue) && d.Hash is not null
            && !string.Equals(image.HashValue, d.Hash, StringComparison.OrdinalIgnoreCase))
            throw BadData($"'{image.Id}': {image.HashAlgorithm} mismatch (glance {Short(image.HashValue)}, received {Short(d.Hash)})");
        if (!string.IsNullOrEmpty(image.Checksum) && !string.Equals(image.Checksum, d.Md5, StringComparison.OrdinalIgnoreCase))
            throw BadData($"'{image.Id}': md5 mismatch (glance {image.Checksum}, received {d.Md5})");
        return (d.Hash ?? d.Md5).ToLowerInvariant();
    }

    private HttpRequestMessage Request(HttpMethod method, string relative)
    {
        if (string.IsNullOrEmpty(Images.GlanceEndpoint))
            throw new ImageFetchException(503, "glance-not-configured", "No glance endpoint is configured",
                "set coordinator.images.glance.endpoint to fetch images");
        var request = new HttpRequestMessage(method, new Uri(new Uri(Images.GlanceEndpoint + "/"), relative));
        if (!string.IsNullOrEmpty(Images.GlanceToken)) request.Headers.TryAddWithoutValidation("X-Auth-Token", Images.GlanceToken);
        return request;
    }

    private static IncrementalHash? CreateHash(string? algorithm) => algorithm?.ToLowerInvariant() switch
    {
        "sha512" => IncrementalHash.CreateHash(HashAlgorithmName.SHA512),
        "sha384" => IncrementalHash.CreateHash(HashAlgorithmName.SHA384),
        "sha256" => IncrementalHash.CreateHash(HashAlgorithmName.SHA256),
        "sha1" => IncrementalHash.CreateHash(HashAlgorithmName.SHA1),
        _ => null, // md5 is always checked as well
    };

    private static string Short(string hex) => hex.Length > 16 ? hex[..16] + "…" : hex;

    private static ImageFetchException Unavailable(string detail) =>
        new(502, "glance-unavailable", "Glance could not deliver the image", detail);

    private static ImageFetchException BadData(string detail) =>
        new(502, "checksum-mismatch", "The image from glance failed verification", detail);
}

public sealed record DownloadResult(long Bytes, string Md5, string? Hash, TimeSpan Elapsed);
