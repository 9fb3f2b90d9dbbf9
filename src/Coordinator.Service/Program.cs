using Akka.Actor;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Journal;
using Coordinator.Cluster.Ledger;
using Coordinator.Service.Api;
using Coordinator.Service.Hosting;
using Coordinator.Service.Images;
using Coordinator.Service.Vms;
using Coordinator.Cluster.Vms;
using Serilog;
using Serilog.Events;

// The node service: one per Hyper-V host. It joins the coordinator's Akka.NET cluster, runs the ledger singleton
// manager (the ledger itself runs on the oldest node) and serves the node-agent HTTP API.
var builder = WebApplication.CreateBuilder(new WebApplicationOptions
{
    Args = args,
    ContentRootPath = AppContext.BaseDirectory,
});

CoordinatorSettings settings;
Akka.Configuration.Config hocon;
HttpSecurity httpSecurity;
System.Security.Cryptography.X509Certificates.X509Certificate2? httpsCertificate;
try
{
    // --config FILE (the host's command-line configuration provider reads it).
    hocon = HoconLoader.Load(builder.Configuration["config"]);
    settings = CoordinatorSettings.FromConfig(hocon);
    // Who may call the API and whether it is HTTPS: refused here (exit 2) when beyond loopback without TLS or tokens.
    httpSecurity = HttpSecurity.FromConfig(hocon, settings);
    httpsCertificate = httpSecurity.Certificate?.Load();
}
catch (Exception e)
{
    await Console.Error.WriteLineAsync($"coordinator: invalid configuration: {e.Message}");
    return 2;
}

Log.Logger = LoggingSetup.CreateLogger(settings);
try
{
    Directory.CreateDirectory(settings.DataDirectory);
    foreach (var v in settings.Volumes) Directory.CreateDirectory(v.Path);
    var ledgerSettings = LedgerSettings.From(settings);
    // Before the ActorSystem: the journal's cluster id (written at the cluster's first start), its format checked.
    var journalIdentity = await JournalStartup.EnsureIdentityAsync(settings, Log.Logger);

    builder.Host.UseWindowsService(o => o.ServiceName = "HyperVCoordinator");
    builder.Host.UseSystemd();
    builder.Services.AddSerilog();
    builder.WebHost.UseUrls($"{(httpsCertificate is null ? "http" : "https")}://{settings.HttpHost}:{settings.HttpPort}");
    builder.WebHost.ConfigureKestrel(k =>
    {
        k.Limits.MaxRequestBodySize = LedgerEndpoints.MaxBodyBytes;
        if (httpsCertificate is not null)
            k.ConfigureHttpsDefaults(o =>
            {
                o.ServerCertificate = httpsCertificate;
                o.SslProtocols = System.Security.Authentication.SslProtocols.Tls12 | System.Security.Authentication.SslProtocols.Tls13;
            });
    });
    builder.Services.ConfigureHttpJsonOptions(o => JsonDefaults.Configure(o.SerializerOptions));
    builder.Services.AddProblemDetails(o => o.CustomizeProblemDetails = Problems.Customize);
    builder.Services.AddOpenApi("v1", o => o.AddDocumentTransformer((doc, _, _) =>
    {
        doc.Info.Title = "Hyper-V cluster coordinator: node-agent and admin API";
        doc.Info.Description = "CSV disk reservations and quotas, image-fetch leases and cache, VMs, nodes and events; every node serves it.";
        return Task.CompletedTask;
    }));
    builder.Services.AddSingleton(settings);
    builder.Services.AddSingleton(httpSecurity);
    builder.Services.AddSingleton(journalIdentity);
    builder.Services.AddSingleton<LedgerGateway>();
    builder.Services.AddSingleton<ImageFetcher>();
    builder.Services.AddSingleton<IImageSource, ImageSourceAdapter>();
    builder.Services.AddSingleton<IPeerClusters>(_ => new HttpPeerClusters(settings));
    builder.Services.AddSingleton<NodeDirectory>();
    // Started before Akka (registration order), so the node actor finds its hypervisor ready.
    builder.Services.AddSingleton<HyperVBackend>();
    builder.Services.AddHostedService(sp => sp.GetRequiredService<HyperVBackend>());
    // Outgoing calls never follow a redirect with their credentials to another origin (see SafeRedirectHandler).
    builder.Services.AddSingleton(sp => new GlanceClient(GlanceClient.CreateHttpClient(), settings, sp.GetRequiredService<ILogger<GlanceClient>>()));
    builder.Services.AddCoordinatorAkka(hocon, settings, ledgerSettings, journalIdentity);
    

    var app = builder.Build();
    app.UseExceptionHandler();
    app.UseStatusCodePages();
    // Every request gets its caller's identity (agent of one node, admin, peer, or the anonymous local agent).
    app.UseCallerIdentity(httpSecurity);
    app.MapOpenApi("/openapi/{documentName}.json");
    app.MapHealth();
    app.MapLedgerApi();
    app.MapImageApi();
    app.MapVmApi();
    app.MapAdminApi();
    app.MapBackupApi();

    // A node that the cluster removed (downed by the Split Brain Resolver, or told to leave) has a terminated
    // ActorSystem; exit non-zero so the service manager restarts it and it joins as a new incarnation.
    var lifetime = app.Lifetime;
    ActorSystem? nodeSystem = null;
    lifetime.ApplicationStarted.Register(() =>
    {
        var system = nodeSystem = app.Services.GetRequiredService<ActorSystem>();
        system.WhenTerminated.ContinueWith(_ =>
        {
            if (lifetime.ApplicationStopping.IsCancellationRequested) return;
            Log.Warning("The ActorSystem terminated (this node was removed from the cluster); stopping the service");
            Environment.ExitCode = 3;
            lifetime.StopApplication();
        }, TaskScheduler.Default);
    });

    Log.Information("Node {Node} starting: {Scheme} {Host}:{Port}, journal {Provider}, {Volumes} volume(s), quota policy {Policy}, API credentials: {Credentials}",
        settings.NodeName, httpsCertificate is null ? "HTTP" : "HTTPS", settings.HttpHost, settings.HttpPort, settings.Provider, settings.Volumes.Count,
        settings.QuotaPolicy, httpSecurity.Credentials.Count == 0 ? "none (loopback, anonymous local agent)"
            : string.Join(", ", httpSecurity.Credentials.Select(c => $"{c.Name} ({c.Role.ToString().ToLowerInvariant()})")));
    foreach (var warning in httpSecurity.Warnings) Log.Warning("{Warning}", warning);
    await app.RunAsync();
    if (JournalIdentityGuard.RefusedReason is { } refused)
    {
        // A configuration error (this node's journal is not the cluster's): exit 4, whoever stopped the host first.
        Log.Fatal("The node exits: it was {Reason}", refused);
        return 4;
    }
    // Removed from the cluster: exit 3 whoever asked the host to stop first (Akka.Hosting's own termination hook
    // races ours and sets -1, i.e. 255).
    if (nodeSystem is { WhenTerminated.IsCompleted: true }
        && (CoordinatedShutdown.Get(nodeSystem).ShutdownReason is CoordinatedShutdown.ClusterDowningReason
            or CoordinatedShutdown.ClusterLeavingReason or CoordinatedShutdown.ClusterJoinUnsuccessfulReason
        || Coordinator.Cluster.Security.RemotingTls.StoppedByTlsHandshake(CoordinatedShutdown.Get(nodeSystem).ShutdownReason)))
        return 3;
    return Environment.ExitCode;
}
catch (Exception e)
{
    Log.Fatal(e, "The node service failed");
    return 1;
}
finally
{
    await Log.CloseAndFlushAsync();
}

internal static class LoggingSetup
{
    public static Serilog.ILogger CreateLogger(CoordinatorSettings settings)
    {
        var level = Enum.TryParse<LogEventLevel>(settings.LogLevel, true, out var l) ? l : LogEventLevel.Information;
        var config = new LoggerConfiguration()
            .MinimumLevel.Is(level)
            .MinimumLevel.Override("Microsoft.AspNetCore", LogEventLevel.Warning)
            .MinimumLevel.Override("Microsoft.Hosting", LogEventLevel.Information)
            .Enrich.FromLogContext()
            .Enrich.WithProperty("Node", settings.NodeName)
            .WriteTo.Console(outputTemplate: "[{Timestamp:HH:mm:ss.fff} {Level:u3}] {Node} {SourceContext}: {Message:lj}{NewLine}{Exception}");
        if (settings.LogFile is not null)
            config = config.WriteTo.File(settings.LogFile, rollingInterval: RollingInterval.Day, retainedFileCountLimit: 14,
                outputTemplate: "{Timestamp:o} [{Level:u3}] {Node} {SourceContext}: {Message:lj}{NewLine}{Exception}");
        return config.CreateLogger();
    }
}
