namespace Coordinator.Testing.Glance;

/// <summary>An image the server holds. <see cref="Md5"/> and <see cref="Sha512"/> are lowercase hex of the (unfaulted) content.</summary>
public sealed record GlanceImage(string Id, long SizeBytes, int Seed, string DiskFormat, string Md5, string Sha512)
{
    /// <summary>A read-only, seekable stream over the expected content of this image.</summary>
    public Stream OpenContent() => GlanceContent.OpenContent(Id, SizeBytes, Seed);
}

/// <summary>How the server misbehaves for one image.</summary>
public enum GlanceFaultMode
{
    /// <summary>Serve normally.</summary>
    None,

    /// <summary>Abort the connection after <see cref="GlanceFault.AfterBytes"/> bytes of the download body were sent.</summary>
    FailAfter,

    /// <summary>
    /// Send <see cref="GlanceFault.AfterBytes"/> bytes of the download body, then send nothing more until
    /// <see cref="GlanceTestServer.ReleaseStall"/> is called (the rest is then sent) or the client disconnects.
    /// </summary>
    StallAfter,

    /// <summary>Serve the full size, with the byte at image offset <see cref="GlanceFault.AfterBytes"/> flipped (XOR 0xFF).</summary>
    Corrupt,

    /// <summary>404 on both the metadata and the file route.</summary>
    NotFound,

    /// <summary>500 on both the metadata and the file route.</summary>
    ServerError,
}

/// <summary>
/// A fault for one image. With <paramref name="Once"/>, the fault applies to the next download only (for
/// <see cref="GlanceFaultMode.NotFound"/> and <see cref="GlanceFaultMode.ServerError"/>: the next request on either route)
/// and then resets to <see cref="None"/>.
/// </summary>
public sealed record GlanceFault(GlanceFaultMode Mode, long AfterBytes = 0, bool Once = false)
{
    public static GlanceFault None { get; } = new(GlanceFaultMode.None);
}

/// <summary>
/// Makes <c>GET /v2/images/{id}/file</c> answer <paramref name="Status"/> (301, 302, 303, 307, 308) with
/// <c>Location: </c><paramref name="Location"/>: a relative location stays on this server (e.g. its object route
/// <see cref="GlanceTestServer.ObjectPath"/>), an absolute one sends the client elsewhere (another server's object route).
/// </summary>
public sealed record GlanceRedirect(int Status, string Location);

/// <summary>One request as the server received it: every header, for tests of what a client sends where.</summary>
public sealed record RecordedRequest(string Method, string Path, IReadOnlyDictionary<string, string> Headers)
{
    public bool Has(string header) => Headers.ContainsKey(header);
}
