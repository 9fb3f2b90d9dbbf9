using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Net.Http.Headers;

namespace Coordinator.Testing.Glance;

/// <summary>
/// A glance (OpenStack Image service API v2) that tests control: images are deterministic pseudo-random content
/// generated on the fly (see <see cref="GlanceContent"/>), downloads are counted, and faults can be injected per image.
/// Listens on 127.0.0.1 only.
/// <para>Glance routes (require <c>X-Auth-Token: </c><see cref="Token"/>, else 401):
/// <c>GET /v2/images</c>, <c>GET /v2/images/{id}</c>, <c>GET /v2/images/{id}/file</c> (supports a single
/// <c>Range: bytes=</c> range, answering 206 or 416). <c>GET /versions</c> needs no token.</para>
/// <para>Control routes (no token): <c>GET|POST /_control/images</c>, <c>DELETE /_control/images/{id}</c>,
/// <c>PUT /_control/images/{id}/fault</c>, <c>POST /_control/images/{id}/release-stall</c>,
/// <c>GET /_control/images/{id}/stats</c>.</para>
/// </summary>
public sealed class GlanceTestServer : IAsyncDisposable
{
    public const string DefaultToken = "test-token";

    private static readonly JsonSerializerOptions GlanceJson = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static readonly JsonSerializerOptions ControlJson = new(JsonSerializerDefaults.Web)
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    private readonly WebApplication _app;
    private readonly ILogger _log;
    private readonly ConcurrentDictionary<string, ImageState> _images = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentQueue<RecordedRequest> _requests = new();
    private TaskCompletionSource _downloadStarted = NewSignal();
    private int _disposed;

    private GlanceTestServer(WebApplication app, string token)
    {
        _app = app;
        Token = token;
        _log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("GlanceTestServer");
        Endpoint = null!; // set once Kestrel has bound
    }

    /// <summary>The base address, e.g. <c>http://127.0.0.1:12345/</c>.</summary>
    public Uri Endpoint { get; private set; }

    /// <summary>The <c>X-Auth-Token</c> the glance routes require.</summary>
    public string Token { get; }

    /// <summary>The images currently held.</summary>
    public IReadOnlyCollection<GlanceImage> Images => _images.Values.Select(s => s.Image).OrderBy(i => i.Id, StringComparer.Ordinal).ToArray();

    /// <summary>Starts a server on 127.0.0.1:<paramref name="port"/> (0: a free port) that requires the token <see cref="DefaultToken"/>.</summary>
    public static Task<GlanceTestServer> StartAsync(int port = 0) => StartAsync(port, DefaultToken);

    /// <summary>Starts a server on 127.0.0.1:<paramref name="port"/> (0: a free port) that requires <paramref name="token"/>.</summary>
    public static Task<GlanceTestServer> StartAsync(int port, string token) => StartCoreAsync(port, token, standalone: false);

    internal static async Task<GlanceTestServer> StartCoreAsync(int port, string token, bool standalone)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, IPEndPoint.MaxPort);
        ArgumentException.ThrowIfNullOrEmpty(token);

        // The empty builder reads no appsettings and no ASPNETCORE_* variables: nothing in the environment of a
        // test process can add endpoints or change behaviour.
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions
        {
            ApplicationName = typeof(GlanceTestServer).Assembly.GetName().Name,
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = 1024 * 1024;
            kestrel.Listen(IPAddress.Loopback, port);
        });
        builder.Services.AddRoutingCore();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(5));
        if (standalone)
        {
            builder.Logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
            });
            builder.Logging.SetMinimumLevel(LogLevel.Information);
            builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
            // failAfter ends responses short of their Content-Length on purpose; Kestrel logs each one as an error.
            builder.Logging.AddFilter("Microsoft.AspNetCore.Server.Kestrel", LogLevel.Critical);
        }
        else
        {
            // Embedded: leave Ctrl+C and SIGTERM to the test process.
            builder.Services.AddSingleton<IHostLifetime, EmbeddedLifetime>();
        }

        var app = builder.Build();
        var server = new GlanceTestServer(app, token);
        server.MapRoutes();
        app.Lifetime.ApplicationStopping.Register(server._stopping.Cancel);
        try
        {
            await app.StartAsync();
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        server.Endpoint = new Uri(address);
        return server;
    }

    /// <summary>Completes when the host shuts down (standalone: Ctrl+C or SIGTERM).</summary>
    internal Task WaitForShutdownAsync() => _app.WaitForShutdownAsync();

    /// <summary>
    /// Adds an image (or replaces the image with the same id, resetting its counters and fault). Computes MD5 and SHA-512
    /// by generating the content once; results are cached per (id, size, seed) for the life of the process.
    /// </summary>
    public GlanceImage AddImage(string id, long sizeBytes, int seed = 0, string diskFormat = "vhdx")
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(id);
        if (id.Contains('/'))
            throw new ArgumentException("An image id cannot contain '/'.", nameof(id));
        ArgumentOutOfRangeException.ThrowIfNegative(sizeBytes);
        ArgumentException.ThrowIfNullOrWhiteSpace(diskFormat);
        var (md5, sha512) = GlanceContent.ComputeHashes(id, sizeBytes, seed);
        var image = new GlanceImage(id, sizeBytes, seed, diskFormat, md5, sha512);
        _images[id] = new ImageState(image, DateTimeOffset.UtcNow);
        _log.LogInformation("Image {Id}: {Size} bytes, seed {Seed}, {DiskFormat}, md5 {Md5}, sha512 {Sha512}", id, sizeBytes, seed, diskFormat, md5, sha512);
        return image;
    }

    /// <summary>The path of the object route for an image (no token needed): <c>/objects/v2/images/{id}/file</c>.</summary>
    public static string ObjectPath(string id) => $"/objects/v2/images/{Uri.EscapeDataString(id)}/file";

    /// <summary>Every request received so far, with all its headers, in order.</summary>
    public IReadOnlyList<RecordedRequest> Requests => _requests.ToArray();

    /// <summary>Sets (or, with null, clears) the redirect of an image's file route.</summary>
    public void SetRedirect(string id, GlanceRedirect? redirect)
    {
        if (redirect is not null && redirect.Status is not (301 or 302 or 303 or 307 or 308))
            throw new ArgumentOutOfRangeException(nameof(redirect), redirect.Status, "Not a redirect status.");
        var state = State(id);
        lock (state.Gate)
            state.Redirect = redirect;
        _log.LogInformation("Image {Id}: redirect {Redirect}", id, redirect);
    }

    /// <summary>Removes an image: both routes then answer 404. Downloads in progress continue.</summary>
    public bool RemoveImage(string id) => _images.TryRemove(id, out _);

    /// <summary>The image with this id; <see cref="KeyNotFoundException"/> if there is none.</summary>
    public GlanceImage GetImage(string id) => State(id).Image;

    /// <summary>A read-only, seekable stream over the expected (unfaulted) content of an image.</summary>
    public Stream OpenContent(string id) => GetImage(id).OpenContent();

    /// <summary>The number of <c>GET /v2/images/{id}/file</c> requests started for this image (faulted ones included).</summary>
    public int Downloads(string id)
    {
        var state = State(id);
        lock (state.Gate)
            return state.Downloads;
    }

    /// <summary>The number of body bytes written to clients for this image, over all its downloads.</summary>
    public long BytesServed(string id) => Interlocked.Read(ref State(id).BytesServed);

    /// <summary>
    /// Sets the fault of an image. A fault applies to downloads that start afterwards; downloads in progress keep the
    /// fault they started with.
    /// </summary>
    public void SetFault(string id, GlanceFault fault)
    {
        ArgumentNullException.ThrowIfNull(fault);
        ArgumentOutOfRangeException.ThrowIfNegative(fault.AfterBytes);
        if (!Enum.IsDefined(fault.Mode))
            throw new ArgumentOutOfRangeException(nameof(fault), fault.Mode, "Unknown fault mode.");
        var state = State(id);
        if (fault.Mode == GlanceFaultMode.Corrupt && fault.AfterBytes >= state.Image.SizeBytes)
            throw new ArgumentOutOfRangeException(nameof(fault), fault.AfterBytes, $"Corrupt needs an offset inside the image (size {state.Image.SizeBytes}).");
        lock (state.Gate)
            state.Fault = fault;
        _log.LogInformation("Image {Id}: fault {Fault}", id, fault);
    }

    /// <summary>
    /// Releases the stall of every download of this image that has already started: stalled ones resume and send the
    /// rest, ones that have not reached their stall point yet will not stall. Downloads started later stall again
    /// while the fault is <see cref="GlanceFaultMode.StallAfter"/>.
    /// </summary>
    public void ReleaseStall(string id)
    {
        var state = State(id);
        TaskCompletionSource released;
        lock (state.Gate)
        {
            released = state.StallRelease;
            state.StallRelease = NewSignal();
        }
        released.TrySetResult();
        _log.LogInformation("Image {Id}: stall released", id);
    }

    /// <summary>
    /// Waits until at least <paramref name="count"/> downloads of the image have started (see <see cref="Downloads"/>).
    /// The image need not exist yet. Throws <see cref="TimeoutException"/> after <paramref name="timeout"/>.
    /// </summary>
    public async Task WaitForDownloadStartAsync(string id, int count, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(id);
        using var timeoutCts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeoutCts.CancelAfter(timeout);
        while (true)
        {
            // Read the signal before the count: a download that starts in between completes this signal.
            var signal = Volatile.Read(ref _downloadStarted).Task;
            var current = CurrentDownloads(id);
            if (current >= count)
                return;
            try
            {
                await signal.WaitAsync(timeoutCts.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new TimeoutException($"Image {id}: {CurrentDownloads(id)} download(s) started within {timeout}, expected {count}.");
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        await _stopping.CancelAsync(); // ends downloads in progress, stalled ones included
        try
        {
            await _app.StopAsync();
        }
        finally
        {
            await _app.DisposeAsync();
            _stopping.Dispose();
        }
    }

    private void MapRoutes()
    {
        _app.Use(async (context, next) =>
        {
            _requests.Enqueue(new RecordedRequest(context.Request.Method, context.Request.Path + context.Request.QueryString,
                context.Request.Headers.ToDictionary(h => h.Key, h => h.Value.ToString(), StringComparer.OrdinalIgnoreCase)));
            await next(context);
        });
        _app.MapGet("/versions", Versions);
        _app.MapGet("/v2/images", ListImages);
        _app.MapGet("/v2/images/{id}", ShowImage);
        _app.MapGet("/v2/images/{id}/file", context => Download(context, objectRoute: false));
        _app.MapGet("/objects/v2/images/{id}/file", context => Download(context, objectRoute: true));

        _app.MapGet("/_control/images", ControlList);
        _app.MapPost("/_control/images", ControlAdd);
        _app.MapDelete("/_control/images/{id}", ControlRemove);
        _app.MapPut("/_control/images/{id}/fault", ControlFault);
        _app.MapPost("/_control/images/{id}/release-stall", ControlReleaseStall);
        _app.MapGet("/_control/images/{id}/stats", ControlStats);
    }

    // ---- Glance routes ----

    private Task Versions(HttpContext context)
    {
        var self = new Uri(Endpoint, "/v2/").ToString();
        return WriteJson(context, 200, new Dictionary<string, object?>
        {
            ["versions"] = new[]
            {
                new Dictionary<string, object?>
                {
                    ["id"] = "v2.16",
                    ["status"] = "CURRENT",
                    ["links"] = new[] { new Dictionary<string, object?> { ["rel"] = "self", ["href"] = self } },
                },
            },
        });
    }

    private Task ListImages(HttpContext context)
    {
        if (!Authorized(context))
            return Unauthorized(context);
        return WriteJson(context, 200, new Dictionary<string, object?>
        {
            ["images"] = _images.Values.OrderBy(s => s.Image.Id, StringComparer.Ordinal).Select(ImageJson).ToArray(),
            ["schema"] = "/v2/schemas/images",
            ["first"] = "/v2/images",
        });
    }

    private Task ShowImage(HttpContext context)
    {
        if (!Authorized(context))
            return Unauthorized(context);
        var id = RouteId(context);
        if (!_images.TryGetValue(id, out var state))
            return NotFound(context, id);
        GlanceFault fault;
        lock (state.Gate)
        {
            fault = state.Fault;
            if (fault.Once && fault.Mode is GlanceFaultMode.NotFound or GlanceFaultMode.ServerError)
                state.Fault = GlanceFault.None;
        }
        return fault.Mode switch
        {
            GlanceFaultMode.NotFound => NotFound(context, id),
            GlanceFaultMode.ServerError => ServerError(context),
            _ => WriteJson(context, 200, ImageJson(state)),
        };
    }

    private async Task Download(HttpContext context, bool objectRoute)
    {
        if (!objectRoute && !Authorized(context))
        {
            await Unauthorized(context);
            return;
        }
        var id = RouteId(context);
        if (!_images.TryGetValue(id, out var state))
        {
            await NotFound(context, id);
            return;
        }
        GlanceRedirect? redirect;
        lock (state.Gate)
            redirect = objectRoute ? null : state.Redirect;
        if (redirect is not null)
        {
            context.Response.StatusCode = redirect.Status;
            context.Response.Headers.Location = redirect.Location;
            _log.LogInformation("Image {Id}: download redirected ({Status}) to {Location}", id, redirect.Status, redirect.Location);
            return;
        }

        GlanceFault fault;
        Task stallReleased;
        int number;
        lock (state.Gate)
        {
            number = ++state.Downloads;
            fault = state.Fault;
            if (fault.Once)
                state.Fault = GlanceFault.None;
            stallReleased = state.StallRelease.Task;
        }
        Interlocked.Exchange(ref _downloadStarted, NewSignal()).TrySetResult();

        var image = state.Image;
        var size = image.SizeBytes;
        var rangeHeader = context.Request.Headers.Range.ToString();
        _log.LogInformation("Image {Id}: download #{Number} started (range {Range}, fault {Fault})", id, number, rangeHeader.Length == 0 ? "none" : rangeHeader, fault);

        switch (fault.Mode)
        {
            case GlanceFaultMode.NotFound:
                await NotFound(context, id);
                return;
            case GlanceFaultMode.ServerError:
                await ServerError(context);
                return;
        }

        long start = 0, end = size;
        if (rangeHeader.Length > 0)
        {
            switch (ParseRange(rangeHeader, size, out var from, out var to))
            {
                case RangeOutcome.Unsatisfiable:
                    context.Response.Headers.ContentRange = $"bytes */{size}";
                    await WriteError(context, 416, "Requested Range Not Satisfiable", $"Invalid range {rangeHeader} for an image of {size} bytes.");
                    return;
                case RangeOutcome.Satisfiable:
                    (start, end) = (from, to);
                    context.Response.StatusCode = 206;
                    context.Response.Headers.ContentRange = $"bytes {start}-{end - 1}/{size}";
                    break;
            }
        }

        var length = end - start;
        context.Response.ContentType = "application/octet-stream";
        context.Response.ContentLength = length;

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, _stopping.Token);
        var ct = cts.Token;
        var body = context.Response.Body;
        var key = GlanceContent.Key(image.Id, image.Seed);
        var cutsBody = fault.Mode is GlanceFaultMode.FailAfter or GlanceFaultMode.StallAfter;
        var stallPending = fault.Mode == GlanceFaultMode.StallAfter;
        var buffer = ArrayPool<byte>.Shared.Rent(GlanceContent.ChunkSize);
        long sent = 0;
        try
        {
            await context.Response.StartAsync(ct);
            while (true)
            {
                if (fault.Mode == GlanceFaultMode.FailAfter && sent == fault.AfterBytes)
                {
                    // Ending the response short of Content-Length makes Kestrel close the connection after the
                    // bytes written so far are sent (HttpContext.Abort would reset it and lose bytes in flight).
                    await body.FlushAsync(ct);
                    _log.LogInformation("Image {Id}: download #{Number} cut after {Sent} bytes (failAfter)", id, number, sent);
                    return;
                }
                if (stallPending && sent == fault.AfterBytes)
                {
                    stallPending = false;
                    await body.FlushAsync(ct);
                    if (!stallReleased.IsCompleted)
                    {
                        _log.LogInformation("Image {Id}: download #{Number} stalled after {Sent} bytes", id, number, sent);
                        await stallReleased.WaitAsync(ct);
                        _log.LogInformation("Image {Id}: download #{Number} resumed", id, number);
                    }
                }
                if (sent == length)
                    break;

                var n = (int)Math.Min(GlanceContent.ChunkSize, length - sent);
                if (cutsBody && sent < fault.AfterBytes)
                    n = (int)Math.Min(n, fault.AfterBytes - sent);
                var chunk = buffer.AsMemory(0, n);
                var offset = start + sent;
                GlanceContent.Fill(key, offset, chunk.Span);
                if (fault.Mode == GlanceFaultMode.Corrupt && fault.AfterBytes >= offset && fault.AfterBytes < offset + n)
                    chunk.Span[(int)(fault.AfterBytes - offset)] ^= 0xFF;
                await body.WriteAsync(chunk, ct);
                sent += n;
                Interlocked.Add(ref state.BytesServed, n);
            }
            _log.LogInformation("Image {Id}: download #{Number} completed ({Sent} bytes)", id, number, sent);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException)
        {
            // The client went away, or the server is stopping: make sure the client sees a cut, not a short body.
            _log.LogInformation("Image {Id}: download #{Number} ended after {Sent} of {Length} bytes ({Reason})", id, number, sent, length,
                _stopping.IsCancellationRequested ? "server stopping" : "client disconnected");
            context.Abort();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private bool Authorized(HttpContext context) =>
        string.Equals(context.Request.Headers["X-Auth-Token"].ToString(), Token, StringComparison.Ordinal);

    private static Dictionary<string, object?> ImageJson(ImageState state)
    {
        var image = state.Image;
        var created = state.CreatedAt.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);
        var escaped = Uri.EscapeDataString(image.Id);
        return new Dictionary<string, object?>
        {
            ["id"] = image.Id,
            ["name"] = image.Id,
            ["status"] = "active",
            ["visibility"] = "public",
            ["protected"] = false,
            ["os_hidden"] = false,
            ["owner"] = "glance-test-server",
            ["size"] = image.SizeBytes,
            ["virtual_size"] = null,
            ["disk_format"] = image.DiskFormat,
            ["container_format"] = "bare",
            ["checksum"] = image.Md5,
            ["os_hash_algo"] = "sha512",
            ["os_hash_value"] = image.Sha512,
            ["min_disk"] = 0,
            ["min_ram"] = 0,
            ["tags"] = Array.Empty<string>(),
            ["created_at"] = created,
            ["updated_at"] = created,
            ["self"] = $"/v2/images/{escaped}",
            ["file"] = $"/v2/images/{escaped}/file",
            ["schema"] = "/v2/schemas/image",
        };
    }

    private enum RangeOutcome { Ignored, Satisfiable, Unsatisfiable }

    // A single byte range; anything else is ignored and the whole image is served, as RFC 9110 allows.
    private static RangeOutcome ParseRange(string header, long size, out long start, out long end)
    {
        start = 0;
        end = size;
        if (!RangeHeaderValue.TryParse(header, out var range)
            || !string.Equals(range.Unit.ToString(), "bytes", StringComparison.OrdinalIgnoreCase)
            || range.Ranges.Count != 1)
            return RangeOutcome.Ignored;
        var item = range.Ranges.First();
        if (item.From is { } from)
        {
            if (from >= size)
                return RangeOutcome.Unsatisfiable;
            start = from;
            end = item.To is { } to ? Math.Min(to + 1, size) : size;
            return RangeOutcome.Satisfiable;
        }
        if (item.To is { } suffix)
        {
            if (suffix == 0 || size == 0)
                return RangeOutcome.Unsatisfiable;
            start = Math.Max(0, size - suffix);
            return RangeOutcome.Satisfiable;
        }
        return RangeOutcome.Ignored;
    }

    // ---- Control routes ----

    private sealed record AddImageRequest(string? Id, long? SizeBytes, int? Seed, string? DiskFormat);

    private Task ControlList(HttpContext context) =>
        WriteJson(context, 200, Images.Select(ControlImageJson).ToArray(), ControlJson);

    private async Task ControlAdd(HttpContext context)
    {
        AddImageRequest? request;
        try
        {
            request = await context.Request.ReadFromJsonAsync<AddImageRequest>(ControlJson, context.RequestAborted);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            await WriteError(context, 400, "Bad Request", e.Message);
            return;
        }
        if (request is not { Id: { Length: > 0 } id, SizeBytes: { } sizeBytes } || sizeBytes < 0 || id.Contains('/'))
        {
            await WriteError(context, 400, "Bad Request", "Expected {\"id\": string without '/', \"sizeBytes\": number >= 0, \"seed\"?: number, \"diskFormat\"?: string}.");
            return;
        }
        var image = await Task.Run(() => AddImage(id, sizeBytes, request.Seed ?? 0, string.IsNullOrWhiteSpace(request.DiskFormat) ? "vhdx" : request.DiskFormat));
        await WriteJson(context, 201, ControlImageJson(image), ControlJson);
    }

    private Task ControlRemove(HttpContext context)
    {
        var id = RouteId(context);
        if (!RemoveImage(id))
            return NotFound(context, id);
        context.Response.StatusCode = 204;
        return Task.CompletedTask;
    }

    private async Task ControlFault(HttpContext context)
    {
        var id = RouteId(context);
        if (!_images.ContainsKey(id))
        {
            await NotFound(context, id);
            return;
        }
        GlanceFault? fault;
        try
        {
            fault = await context.Request.ReadFromJsonAsync<GlanceFault>(ControlJson, context.RequestAborted);
            if (fault is null)
                throw new JsonException("Empty body.");
            SetFault(id, fault);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or ArgumentException)
        {
            await WriteError(context, 400, "Bad Request",
                $"{e.Message} Expected {{\"mode\": none|failAfter|stallAfter|corrupt|notFound|serverError, \"afterBytes\"?: number, \"once\"?: bool}}.");
            return;
        }
        catch (KeyNotFoundException)
        {
            await NotFound(context, id);
            return;
        }
        await WriteJson(context, 200, fault, ControlJson);
    }

    private Task ControlReleaseStall(HttpContext context)
    {
        var id = RouteId(context);
        if (!_images.ContainsKey(id))
            return NotFound(context, id);
        ReleaseStall(id);
        context.Response.StatusCode = 204;
        return Task.CompletedTask;
    }

    private Task ControlStats(HttpContext context)
    {
        var id = RouteId(context);
        if (!_images.ContainsKey(id))
            return NotFound(context, id);
        return WriteJson(context, 200, new Dictionary<string, object?>
        {
            ["downloads"] = Downloads(id),
            ["bytesServed"] = BytesServed(id),
        }, ControlJson);
    }

    private static Dictionary<string, object?> ControlImageJson(GlanceImage image) => new()
    {
        ["id"] = image.Id,
        ["sizeBytes"] = image.SizeBytes,
        ["seed"] = image.Seed,
        ["diskFormat"] = image.DiskFormat,
        ["md5"] = image.Md5,
        ["sha512"] = image.Sha512,
    };

    // ---- Helpers ----

    private ImageState State(string id)
    {
        ArgumentNullException.ThrowIfNull(id);
        return _images.TryGetValue(id, out var state) ? state : throw new KeyNotFoundException($"No image with id '{id}'.");
    }

    private int CurrentDownloads(string id)
    {
        if (!_images.TryGetValue(id, out var state))
            return 0;
        lock (state.Gate)
            return state.Downloads;
    }

    private static string RouteId(HttpContext context) => (string)context.GetRouteValue("id")!;

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private static Task WriteJson<T>(HttpContext context, int status, T value, JsonSerializerOptions? options = null)
    {
        context.Response.StatusCode = status;
        return context.Response.WriteAsJsonAsync(value, options ?? GlanceJson, "application/json; charset=UTF-8", context.RequestAborted);
    }

    private static Task WriteError(HttpContext context, int status, string title, string message) =>
        WriteJson(context, status, new Dictionary<string, object?> { ["code"] = status, ["title"] = title, ["message"] = message });

    private static Task NotFound(HttpContext context, string id) =>
        WriteError(context, 404, "Not Found", $"No image found with ID {id}");

    private static Task ServerError(HttpContext context) =>
        WriteError(context, 500, "Internal Server Error", "The server has either erred or is incapable of performing the requested operation.");

    private static Task Unauthorized(HttpContext context)
    {
        context.Response.Headers.WWWAuthenticate = "Keystone uri=\"http://127.0.0.1/identity\"";
        return WriteError(context, 401, "Unauthorized", "The request you have made requires authentication.");
    }

    private sealed class ImageState(GlanceImage image, DateTimeOffset createdAt)
    {
        public readonly object Gate = new();
        public readonly GlanceImage Image = image;
        public readonly DateTimeOffset CreatedAt = createdAt;
        public GlanceFault Fault = GlanceFault.None; // under Gate
        public GlanceRedirect? Redirect; // under Gate
        public TaskCompletionSource StallRelease = NewSignal(); // under Gate
        public int Downloads; // under Gate
        public long BytesServed; // Interlocked
    }

    private sealed class EmbeddedLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
