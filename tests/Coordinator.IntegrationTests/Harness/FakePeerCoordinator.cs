using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Coordinator.IntegrationTests.Harness;

/// <summary>
/// Another cluster's coordinator as a node sees it when it migrates a VM out: <c>GET /v1/volumes</c> and
/// <c>POST /v1/vms/arrivals</c>, answered by whatever the test sets (hostile answers included), over real HTTPS on
/// 127.0.0.1 with a certificate the test made. Every request's Authorization header is recorded.
/// </summary>
public sealed class FakePeerCoordinator : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentQueue<(string Path, string? Authorization)> _requests = new();

    /// <summary>The body (JSON text) and status of the next answers to GET /v1/volumes.</summary>
    public volatile string VolumesAnswer = "{}";
    public volatile int VolumesStatus = 200;

    private FakePeerCoordinator(WebApplication app) => _app = app;

    public Uri Endpoint { get; private set; } = null!;
    public IReadOnlyList<(string Path, string? Authorization)> Requests => _requests.ToArray();

    public static async Task<FakePeerCoordinator> StartAsync(X509Certificate2 serverCertificate)
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.UseHttps(serverCertificate)));
        builder.Services.AddRoutingCore();
        var app = builder.Build();
        var peer = new FakePeerCoordinator(app);
        app.Use(async (ctx, next) =>
        {
            peer._requests.Enqueue((ctx.Request.Path.Value ?? "", ctx.Request.Headers.Authorization.FirstOrDefault()));
            await next(ctx);
        });
        app.MapGet("/v1/volumes", async ctx =>
        {
            ctx.Response.StatusCode = peer.VolumesStatus;
            ctx.Response.ContentType = "application/json";
            await ctx.Response.WriteAsync(peer.VolumesAnswer);
        });
        app.MapPost("/v1/vms/arrivals", async ctx =>
        {
            var body = await System.Text.Json.JsonDocument.ParseAsync(ctx.Request.Body);
            ctx.Response.StatusCode = 201;
            ctx.Response.ContentType = "application/json";
            await ctx.Response.WriteAsync(System.Text.Json.JsonSerializer.Serialize(new
            {
                name = body.RootElement.GetProperty("name").GetString(), node = "hvb01",
            }));
        });
        await app.StartAsync();
        peer.Endpoint = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single());
        return peer;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>A CA made by the test, and server certificates it issues for 127.0.0.1.</summary>
public sealed class TestCertificateAuthority : IDisposable
{
    private readonly X509Certificate2 _ca;

    public TestCertificateAuthority(string name)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256); // lives as long as the CA certificate
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        _ca = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddDays(2));
    }

    /// <summary>The CA certificate as PEM (what a ca-file holds).</summary>
    public string Pem => _ca.ExportCertificatePem();

    /// <summary>A server certificate for 127.0.0.1 and localhost, with its private key (loaded as Kestrel needs it);
    /// with <paramref name="clientAuth"/> also usable as a client certificate (a node's, for mutual TLS).</summary>
    public X509Certificate2 IssueServer(bool clientAuth = false)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=127.0.0.1", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        san.AddDnsName("localhost");
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            clientAuth ? [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")] : [new Oid("1.3.6.1.5.5.7.3.1")], false));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        var serial = RandomNumberGenerator.GetBytes(12);
        using var issued = request.Create(_ca, DateTimeOffset.UtcNow.AddMinutes(-30), DateTimeOffset.UtcNow.AddDays(1), serial);
        using var withKey = issued.CopyWithPrivateKey(key);
        // A PFX round trip: SslStream on Linux wants a certificate whose key is not an ephemeral handle.
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pfx), null);
    }

    public void Dispose() => _ca.Dispose();
}
