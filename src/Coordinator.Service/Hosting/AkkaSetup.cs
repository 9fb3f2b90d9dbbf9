using Akka;
using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Configuration;
using Akka.Hosting;
using Akka.Logger.Serilog;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Journal;
using Coordinator.Cluster.Ledger;
using Coordinator.Cluster.Security;
using Coordinator.Cluster.Vms;
using Coordinator.Service.Vms;
using Serilog;

namespace Coordinator.Service.Hosting;

public static class AkkaSetup
{
    /// <summary>The ActorSystem's name; it is part of every member's address (akka.tcp://coordinator@host:port, or
    /// akka.ssl.tcp://coordinator@host:port with remoting TLS).</summary>
    public const string SystemName = "coordinator";

    /// <summary>
    /// The node's ActorSystem: remoting and cluster from the HOCON, the Split Brain Resolver, the journal, and the
    /// ledger singleton manager with its proxy. Every node runs the manager; Akka starts the ledger on the oldest.
    /// </summary>
    public static IServiceCollection AddCoordinatorAkka(this IServiceCollection services, Config config,
        CoordinatorSettings settings, LedgerSettings ledgerSettings, JournalIdentity journal)
    {
        // The journal's cluster id travels as a member role, so every node can refuse a member with another journal.
        var roles = ConfigurationFactory.ParseString(
            $"akka.cluster.roles = [\"{settings.NodeRole.Replace("\"", "\\\"")}\", \"{JournalIdentityGuard.RoleFor(journal.ClusterId)}\"]");
        var security = settings.Security;
        var akkaConfig = roles
            .WithFallback(RemotingTls.Hocon(config, security.RemotingTls))
            .WithFallback(JournalIdentityGuard.ConfigFor(journal.ClusterId))
            .WithFallback(PersistenceHocon.For(settings.Provider, settings.ConnectionString))
            .WithFallback(CoordinatorHocon.Serialization)
            .WithFallback(config);

        var (hostname, publicHostname) = RemotingTls.Hosts(config);
        // Loaded once for the ActorSystem (CoordinatorSettings has already refused a certificate that does not load).
        var certificate = security.RemotingTls ? security.Certificate.Load() : null;
        if (certificate is not null)
            Log.Information("Remoting: mutual TLS on {Host} with the certificate {Subject} issued by {Issuer} (SHA-256 {Thumbprint}, " +
                            "valid to {NotAfter:u}); trusted: {Trust}", publicHostname, certificate.Subject, certificate.Issuer,
                ClusterTrust.Sha256(certificate), certificate.NotAfter.ToUniversalTime(), TrustText(security.Trust));
        else if (RemotingTls.IsInsecureExposure(config, security))
            Log.Warning("Remoting is plain text on {Host} (beyond loopback) because coordinator.security.insecure is on: anyone " +
                        "who reaches the port can join the cluster and send it messages; set coordinator.security.certificate and " +
                        "trust for production", publicHostname.Length > 0 ? publicHostname : hostname);
        else if (security.Insecure)
            Log.Warning("coordinator.security.insecure is on (remoting stays on loopback here)");

        return services.AddAkka(SystemName, (builder, _) =>
        {
            if (certificate is not null) builder.AddSetup(RemotingTls.Setup(certificate, security.Trust));
            builder
                .AddHocon(akkaConfig, HoconAddMode.Prepend)
                .ConfigureLoggers(loggers =>
                {
                    loggers.ClearLoggers();
                    loggers.AddLogger<SerilogLogger>();
                })
                .WithSingleton<CsvLedgerSingleton>(CsvLedgerSingleton.Name, LedgerActor.SupervisedProps(ledgerSettings),
                    new ClusterSingletonOptions { Role = null, TerminationMessage = StopLedger.Instance }, createProxyToo: true)
                .WithActors((system, registry, resolver) =>
                {
                    // Akka.Remote 1.5.73 shuts the whole node down when one of its outbound TLS handshakes fails (a peer
                    // that does not trust this node's certificate, or a connection closed mid-handshake): say so.
                    var shutdown = CoordinatedShutdown.Get(system);
                    shutdown.AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "explain-tls-shutdown", () =>
                    {
                        if (RemotingTls.StoppedByTlsHandshake(shutdown.ShutdownReason))
                            Log.Error("This node stops because a TLS handshake it started failed (Akka.Remote stops a node then): " +
                                      "check that every member trusts this node's certificate (coordinator.security.trust) and " +
                                      "that it trusts theirs; the handshake error is logged just before; it exits 3 to be restarted");
                        return Task.FromResult(Done.Instance);
                    });
                    // The node actor: this node's VMs, reconciled with the ledger through the singleton proxy.
                    var backend = resolver.GetService<HyperVBackend>();
                    var nodeSettings = new NodeSettings(settings.NodeName,
                        settings.Volumes.ToDictionary(v => v.Name, v => v.Path), settings.AskTimeout,
                        settings.HyperV.MoveTimeout, settings.HyperV.OwnerSettle, settings.HyperV.ReconcileInterval,
                        settings.HyperV.DrainConcurrency, settings.MaxClockSkew);
                    var node = system.ActorOf(NodeActor.Props(nodeSettings, backend.Host, backend.Cluster,
                        registry.Get<CsvLedgerSingleton>(), resolver.GetService<IImageSource>(), resolver.GetService<IPeerClusters>()),
                        NodeActor.Name);
                    registry.Register<NodeActorKey>(node);
                    // Refuses members whose journal is not this cluster's (and this node, if it is the one joining wrongly).
                    system.ActorOf(JournalIdentityGuard.Props(journal.ClusterId), "journal-identity-guard");
                    // Start the journal and compile its queries now, not during the recovery that a failover waits for.
                    system.ActorOf(JournalWarmup.Props(settings.NodeName), "journal-warmup");
                    // A node that formed a cluster of its own while the others are alive elsewhere leaves it (and rejoins).
                    system.ActorOf(Coordinator.Cluster.Downing.IslandDetector.Props(system.Settings.Config.GetTimeSpan(
                        "coordinator.split-brain-resolver.island-timeout", TimeSpan.FromSeconds(15))), "island-detector");
                });
        });
    }

    private static string TrustText(ClusterTrust trust) =>
        string.Join(", ", new[]
        {
            trust.Authorities.Count > 0 ? $"{trust.Authorities.Count} CA(s): " + string.Join("; ", trust.Authorities.Select(a => a.Subject)) : null,
            trust.PinnedCount > 0 ? $"{trust.PinnedCount} pinned thumbprint(s)" : null,
        }.Where(t => t is not null));
}
