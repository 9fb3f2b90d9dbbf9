using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Akka.Actor;
using Akka.Actor.Setup;
using Akka.Configuration;
using Akka.Remote.Transport.DotNetty;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Ledger;
using Coordinator.Domain;
using Coordinator.IntegrationTests.Harness;
using Xunit.Abstractions;

namespace Coordinator.IntegrationTests;

/// <summary>The TLS cluster the remoting tests share: hv01-hv03 (the seeds), hv04 joining with the cluster's certificate,
/// hv05 (plain remoting) and hv06 (a certificate of another CA) kept for the rogues.</summary>
public sealed class TlsClusterFixture : IAsyncLifetime
{
    public LocalCluster Cluster { get; } = new(6, seeds: 3);
    public IReadOnlyList<NodeInfo> Members => Cluster.Nodes.Take(4).ToList();

    public async Task InitializeAsync()
    {
        foreach (var n in Cluster.Nodes.Take(3)) Cluster.Start(n);
        await Cluster.WaitReadyAsync(Cluster.Nodes.Take(3), TimeSpan.FromSeconds(120));
    }

    public Task DisposeAsync()
    {
        Cluster.Dispose();
        return Task.CompletedTask;
    }
}

/// <summary>
/// Remoting over mutual TLS with real node processes and certificates made by the test: a node with the cluster's
/// certificate joins; a node without TLS, with a certificate of another CA, or with an expired one cannot join, never
/// shows in any member's /cluster/members, and cannot change the ledger (its state compared before and after, and a
/// direct message to the ledger tried). Each refusal is seen in the members' logs, so the rogue's traffic did arrive.
/// </summary>
public sealed class RemotingTlsTests(TlsClusterFixture fixture, ITestOutputHelper output) : IClassFixture<TlsClusterFixture>
{
    private const long GiB = 1L << 30;
    private LocalCluster Cluster => fixture.Cluster;
    private NodeInfo Hv(int i) => Cluster.Nodes[i - 1];

    [Fact]
    public async Task A_node_with_the_clusters_certificate_joins_over_tls()
    {
        var joiner = Hv(4);
        if (!Cluster.IsRunning(joiner)) Cluster.Start(joiner);
        await Cluster.WaitReadyAsync([joiner], TimeSpan.FromSeconds(90));
        foreach (var n in fixture.Members)
        {
            var members = await Members(n);
            Assert.Contains(members, m => m.Node == joiner.Name && m.Status == "Up");
            // With TLS the members' addresses use the akka.ssl.tcp scheme.
            Assert.All(members, m => Assert.StartsWith("akka.ssl.tcp://coordinator@", m.Address));
        }
        // It works as a member: a write through it is acknowledged.
        using var put = await Cluster.Http.PutAsync(Cluster.Url(joiner, "/v1/volumes/Volume2/reservations/joined-over-tls"),
            LocalCluster.Json(new { node = joiner.Name, bytes = GiB }));
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
    }

    [Fact]
    public async Task Nodes_without_tls_or_with_another_CAs_certificate_cannot_join_or_change_the_ledger()
    {
        await EnsureMembersAsync();
        using var otherCa = TestCa.Create("not the cluster's CA");
        var plain = Hv(5);
        var foreign = Hv(6);
        // hv05 runs plain remoting (the site file's seeds are rewritten to akka.tcp); hv06 has a certificate of another
        // CA (it trusts that CA too, so only the members' check can stop it).
        Cluster.AppendConfig(plain, "coordinator.security.remoting.tls = off");
        using (Cluster.IssueCertificate(foreign, otherCa)) { }
        var foreignTrust = Path.Combine(Cluster.CertificateDir, "foreign-trust.pem");
        TestCertificates.WriteBundle(foreignTrust, otherCa, Cluster.Ca!);
        Cluster.AppendConfig(foreign, $"coordinator.security.trust.ca-file = \"{foreignTrust}\"");

        var before = await LedgerState(Hv(1));
        var logMarks = fixture.Members.ToDictionary(n => n.Name, n => new FileInfo(Cluster.LogPath(n)).Length);
        // One rogue at a time, so each refusal in the members' logs is that rogue's: first the plain one, whose bytes are
        // no TLS handshake at all.
        Cluster.Start(plain);
        await Cluster.WaitUntilAsync(() => Task.FromResult(fixture.Members.Any(n => PlainRefusal(LogSince(n, logMarks[n.Name])))),
            "a member logs the refusal of hv05's plain connection", TimeSpan.FromSeconds(60));
        var foreignMarks = fixture.Members.ToDictionary(n => n.Name, n => new FileInfo(Cluster.LogPath(n)).Length);
        Cluster.Start(foreign);
        await Cluster.WaitUntilAsync(() => Task.FromResult(fixture.Members.Any(n =>
                LogSince(n, foreignMarks[n.Name]) is var log && log.Contains("Remoting TLS: refused", StringComparison.Ordinal)
                && log.Contains("is not issued by the cluster's CA", StringComparison.Ordinal)
                && log.Contains($"CN={foreign.Name}", StringComparison.Ordinal))),
            "a member logs the refusal of hv06's certificate (another CA)", TimeSpan.FromSeconds(60));
        foreach (var n in fixture.Members)
            output.WriteLine($"{n.Name} log since the rogues started:\n" + string.Join('\n',
                LogSince(n, logMarks[n.Name]).Split('\n').Where(l => l.Contains("WRN")).Take(4)));

        // A rogue that is still up is no member, so its API cannot reach the ledger; one that gave up exited 3: Akka.Remote
        // stops a node whose outbound TLS handshake failed (here: the members refused its certificate).
        foreach (var rogue in new[] { plain, foreign })
        {
            if (Cluster.IsRunning(rogue))
            {
                using var put = await Cluster.Http.PutAsync(Cluster.Url(rogue, $"/v1/volumes/Volume1/reservations/rogue-{rogue.Name}"),
                    LocalCluster.Json(new { node = rogue.Name, bytes = GiB }));
                Assert.NotEqual(HttpStatusCode.Created, put.StatusCode);
                Assert.NotEqual(HttpStatusCode.OK, put.StatusCode);
                output.WriteLine($"{rogue.Name} (still running) answered a write with {(int)put.StatusCode}");
            }
            else
            {
                var exit = await Cluster.WaitForExitAsync(rogue, TimeSpan.FromSeconds(1));
                Assert.True(exit == 3, $"{rogue.Name} exited {exit}; log:\n{Cluster.Tail(rogue)}");
                output.WriteLine($"{rogue.Name} gave up joining and exited 3");
            }
        }

        foreach (var n in fixture.Members)
        {
            var members = await Members(n);
            Assert.DoesNotContain(members, m => m.Node == plain.Name || m.Node == foreign.Name);
            Assert.Equal(fixture.Members.Select(m => m.Name).Order(), members.Select(m => m.Node).Order());
        }
        Assert.Equal(before, await LedgerState(Hv(1)));
        Cluster.Kill(plain);
        Cluster.Kill(foreign);
        AssertNoSerializationRefusals();
    }

    [Fact]
    public async Task Actor_systems_with_an_expired_or_foreign_certificate_cannot_join_or_message_the_ledger()
    {
        await EnsureMembersAsync();
        using var otherCa = TestCa.Create("a stranger's CA");
        using var expired = Cluster.Ca!.Issue("rogue-expired", notBefore: DateTimeOffset.UtcNow.AddDays(-10),
            notAfter: DateTimeOffset.UtcNow.AddDays(-1));
        using var foreign = otherCa.Issue("rogue-foreign");
        using var valid = Cluster.Ca!.Issue("control-valid");
        var seeds = fixture.Members.Take(3).Select(n => Address.Parse($"akka.ssl.tcp://coordinator@127.0.0.1:{n.AkkaPort}")).ToList();

        // The control: a system with a certificate of the cluster's CA reaches the ledger with a direct message (so the
        // path the rogues try is real, and their failure is the certificate's doing).
        var controlId = "direct-" + Guid.NewGuid().ToString("N")[..8];
        await using (var control = Rogue(valid, joinCluster: false))
        {
            var reply = await control.AskLedger(seeds[0], controlId, TimeSpan.FromSeconds(20));
            Assert.IsType<ReserveReply>(reply);
        }
        Assert.Contains(controlId, (await LedgerState(Hv(1))).Reservations);

        var before = await LedgerState(Hv(1));
        foreach (var (cert, why) in new[] { (expired, "is not valid now"), (foreign, "is not issued by the cluster's CA") })
        {
            var marks = fixture.Members.ToDictionary(n => n.Name, n => new FileInfo(Cluster.LogPath(n)).Length);
            await using var rogue = Rogue(cert, joinCluster: true);
            rogue.Join(seeds);
            var reply = await rogue.AskLedger(seeds[0], "rogue-" + cert.GetNameInfo(X509NameType.SimpleName, false), TimeSpan.FromSeconds(8));
            Assert.Null(reply); // no answer: the message never got in
            await Cluster.WaitUntilAsync(() => Task.FromResult(fixture.Members.Any(n =>
                    LogSince(n, marks[n.Name]) is var log && log.Contains("Remoting TLS: refused", StringComparison.Ordinal)
                    && log.Contains(cert.Subject, StringComparison.Ordinal) && log.Contains(why, StringComparison.Ordinal))),
                $"a member logs the refusal of {cert.Subject} ({why})", TimeSpan.FromSeconds(30));
            Assert.False(rogue.IsUp, $"{cert.Subject} became a member");
            output.WriteLine($"{cert.Subject}: refused ({why}), no answer from the ledger");
        }
        foreach (var n in fixture.Members)
        {
            var members = await Members(n);
            Assert.Equal(fixture.Members.Select(m => m.Name).Order(), members.Select(m => m.Node).Order());
        }
        Assert.Equal(before, await LedgerState(Hv(1)));
        AssertNoSerializationRefusals();
    }

    /// <summary>The members never sent or received a message without a serializer of its own (the refusal's words).</summary>
    private void AssertNoSerializationRefusals()
    {
        foreach (var n in fixture.Members)
        {
            var log = LogSince(n, 0);
            Assert.False(log.Contains("has no serializer binding", StringComparison.Ordinal)
                         || log.Contains("refused a message for serializer", StringComparison.Ordinal),
                $"{n.Name} refused to serialize a message of the cluster's own:\n" + string.Join('\n',
                    log.Split('\n').Where(l => l.Contains("serializer", StringComparison.OrdinalIgnoreCase)).Take(5)));
        }
    }

    /// <summary>What a member logs when a peer speaks plain Akka to its TLS port (Akka's own words: the handshake fails).</summary>
    private static bool PlainRefusal(string log) =>
        log.Split('\n').Any(l => l.Contains("WRN", StringComparison.Ordinal)
                                 && l.Contains("Rejected incoming connection from", StringComparison.Ordinal)
                                 && l.Contains("due to TLS handshake failure", StringComparison.Ordinal));

    private async Task EnsureMembersAsync()
    {
        if (!Cluster.IsRunning(Hv(4))) Cluster.Start(Hv(4));
        await Cluster.WaitReadyAsync(fixture.Members, TimeSpan.FromSeconds(90));
    }

    private string LogSince(NodeInfo n, long offset)
    {
        using var f = new FileStream(Cluster.LogPath(n), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        f.Seek(Math.Min(offset, f.Length), SeekOrigin.Begin);
        return new StreamReader(f).ReadToEnd();
    }

    private sealed record MemberRow(string Node, string Address, string Status);

    private async Task<List<MemberRow>> Members(NodeInfo via)
    {
        var doc = await Cluster.Http.GetFromJsonAsync<JsonElement>(Cluster.Url(via, "/cluster/members"));
        return doc.GetProperty("members").EnumerateArray()
            .Select(m => new MemberRow(m.GetProperty("node").GetString()!, m.GetProperty("address").GetString()!, m.GetProperty("status").GetString()!))
            .ToList();
    }

    /// <summary>The ledger as the API shows it: reservations (id, bytes) of both volumes, image leases and cache, VMs.</summary>
    private sealed record State(string Reservations, string Images, string Vms);

    private async Task<State> LedgerState(NodeInfo via)
    {
        var rows = new List<string>();
        foreach (var volume in new[] { "Volume1", "Volume2" })
        {
            var doc = await Cluster.Http.GetFromJsonAsync<JsonElement>(Cluster.Url(via, $"/v1/volumes/{volume}/reservations"));
            rows.AddRange(doc.GetProperty("reservations").EnumerateArray()
                .Select(r => $"{volume}/{r.GetProperty("consumerId").GetString()}={r.GetProperty("bytes").GetInt64()}"));
        }
        var images = await Cluster.Http.GetStringAsync(Cluster.Url(via, "/v1/images"));
        var vms = await Cluster.Http.GetStringAsync(Cluster.Url(via, "/v1/vms"));
        return new State(string.Join(",", rows.Order()), images, vms);
    }

    /// <summary>An ActorSystem named like the cluster's, with its own certificate, that trusts anyone (a rogue cares
    /// only about getting in).</summary>
    private RogueSystem Rogue(X509Certificate2 certificate, bool joinCluster)
    {
        var config = ConfigurationFactory.ParseString($$"""
            akka.actor.provider = {{(joinCluster ? "cluster" : "remote")}}
            akka.remote.dot-netty.tcp { hostname = "127.0.0.1", port = 0, enable-ssl = on }
            akka.cluster.roles = ["node:rogue"]
            akka.loglevel = WARNING
            akka.stdout-loglevel = WARNING
            """).WithFallback(CoordinatorHocon.Serialization);
        var setup = BootstrapSetup.Create().WithConfig(config)
            .And(new DotNettySslSetup(certificate, suppressValidation: true, requireMutualAuthentication: true,
                validateCertificateHostname: false, (_, _, _, _, _) => true));
        return new RogueSystem(ActorSystem.Create("coordinator", setup));
    }

    private sealed class RogueSystem(ActorSystem system) : IAsyncDisposable
    {
        public void Join(IEnumerable<Address> seeds) => Akka.Cluster.Cluster.Get(system).JoinSeedNodes(seeds);

        public bool IsUp => Akka.Cluster.Cluster.Get(system).SelfMember.Status == Akka.Cluster.MemberStatus.Up;

        /// <summary>Sends a reservation straight to a member's ledger proxy; the reply, or null when none comes.</summary>
        public async Task<object?> AskLedger(Address member, string consumerId, TimeSpan timeout)
        {
            var proxy = system.ActorSelection(new RootActorPath(member) / "user" / (CsvLedgerSingleton.Name + "-proxy"));
            try
            {
                return await proxy.Ask<object>(new ReserveCommand(new ReserveRequest("Volume1", consumerId, "hv01", GiB)), timeout);
            }
            catch (AskTimeoutException) { return null; }
        }

        public async ValueTask DisposeAsync() => await system.Terminate().WaitAsync(TimeSpan.FromSeconds(20));
    }
}
