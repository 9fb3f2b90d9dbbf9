using System.Text.Json;
using Akka.Configuration;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Security;
using Coordinator.Cluster.Vms;

namespace Coordinator.Cluster.Tests;

/// <summary>
/// The rules behind outgoing calls, without a network (OutgoingCallTests shows them with real processes): which
/// redirect keeps credentials, how peers are configured, and which peer answers are believed.
/// </summary>
public sealed class OutgoingCallSpecs
{
    [Theory]
    [InlineData("http://glance:9292/v2/images/x/file", "http://glance:9292/objects/x", RedirectDecision.FollowWithCredentials)]
    [InlineData("https://glance/v2/x", "https://GLANCE:443/other", RedirectDecision.FollowWithCredentials)]
    [InlineData("http://glance:9292/v2/x", "http://glance:9293/v2/x", RedirectDecision.FollowWithoutCredentials)]
    [InlineData("http://glance:9292/v2/x", "http://store:9292/v2/x", RedirectDecision.FollowWithoutCredentials)]
    [InlineData("http://glance/v2/x", "https://glance/v2/x", RedirectDecision.FollowWithoutCredentials)]
    [InlineData("https://glance/v2/x", "http://glance/v2/x", RedirectDecision.Refuse)]
    [InlineData("https://glance/v2/x", "http://store/v2/x", RedirectDecision.Refuse)]
    [InlineData("http://glance/v2/x", "file:///etc/passwd", RedirectDecision.Refuse)]
    public void A_redirect_keeps_credentials_only_within_its_origin_and_never_downgrades(string from, string to, RedirectDecision expected) =>
        Assert.Equal(expected, SafeRedirectHandler.Decide(new Uri(from), new Uri(to)));

    [Fact]
    public void Messages_about_a_redirect_never_show_its_query()
    {
        var shown = SafeRedirectHandler.Show(new Uri("https://store.example/obj/x?temp_url_sig=abcdef&temp_url_expires=1"));
        Assert.Equal("https://store.example/obj/x", shown);
    }

    private static IReadOnlyDictionary<string, PeerClusterSettings> Peers(string hocon, bool insecure = false) =>
        PeerClusterSettings.FromConfig(ConfigurationFactory.ParseString(hocon).GetConfig("coordinator"), insecure);

    [Fact]
    public void Peers_beyond_loopback_need_https_unless_insecure_and_the_plain_form_is_for_loopback_only()
    {
        Assert.Equal(new Uri("http://127.0.0.1:7070"), Peers("""coordinator.hyperv.peers { HV21 = "http://127.0.0.1:7070" }""")["hv21"].Url);
        var e = Assert.Throws<ConfigurationException>(() => Peers("""coordinator.hyperv.peers { HV21 = "https://hv21.example:7070" }"""));
        Assert.Contains("coordinator.hyperv.peers.HV21", e.Message);
        e = Assert.Throws<ConfigurationException>(() => Peers("""coordinator.hyperv.peers { HV21 { url = "http://hv21.example:7070", token = t } }"""));
        Assert.Contains("https", e.Message);
        Assert.Contains("coordinator.security.insecure", e.Message);
        Assert.Equal("http", Peers("""coordinator.hyperv.peers { HV21 { url = "http://hv21.example:7070", token = t } }""", insecure: true)["HV21"].Url.Scheme);
        e = Assert.Throws<ConfigurationException>(() => Peers("""coordinator.hyperv.peers { HV21 { url = "https://u:p@hv21.example" } }"""));
        Assert.Contains("coordinator.hyperv.peers.HV21.url", e.Message);
        e = Assert.Throws<ConfigurationException>(() => Peers("""coordinator.hyperv.peers { HV21 { url = "https://hv21.example", ca-file = "/nonexistent/ca.pem" } }"""));
        Assert.Contains("coordinator.hyperv.peers.HV21.ca-file", e.Message);
    }

    [Fact]
    public void A_peer_token_comes_from_the_environment_and_is_never_printed()
    {
        var env = "COORD_TEST_PEER_" + Guid.NewGuid().ToString("N")[..8].ToUpperInvariant();
        var token = Guid.NewGuid().ToString("N");
        Environment.SetEnvironmentVariable(env, token);
        try
        {
            var peer = Peers($$"""coordinator.hyperv.peers { hvb01 { url = "https://hvb01.example:7070", token-env = {{env}} } }""")["hvb01"];
            Assert.Equal(token, peer.Token);
            Assert.DoesNotContain(token, peer.ToString());
        }
        finally
        {
            Environment.SetEnvironmentVariable(env, null);
        }
    }

    private static JsonElement Volumes(string path, string name = "Volume1") =>
        JsonDocument.Parse(JsonSerializer.Serialize(new { volumes = new[] { new { name, path, capacityBytes = 1L << 40 } } })).RootElement;

    [Theory]
    [InlineData(@"C:\ClusterStorage\Volume1", @"C:\ClusterStorage\Volume1\instances\vm1")]
    [InlineData(@"C:\ClusterStorage\Volume1\", @"C:\ClusterStorage\Volume1\instances\vm1")]
    [InlineData("/srv/csv/Volume1", "/srv/csv/Volume1/instances/vm1")]
    public void A_well_formed_volume_gives_the_instance_folder_under_it(string root, string expected) =>
        Assert.Equal(expected, PeerAnswers.DestinationFolder(Volumes(root), "vm1"));

    [Theory]
    [InlineData("instances")]
    [InlineData("C:")]
    [InlineData(@"C:\")]
    [InlineData("/")]
    [InlineData(@"C:\ClusterStorage\..\Windows")]
    [InlineData("/srv/./csv")]
    [InlineData(@"\\evil\share\Volume1")]
    [InlineData("//evil/share")]
    [InlineData("/srv/csv\u0000/x")]
    [InlineData(@"C:\ClusterStorage\Volume1\D:\x")]
    [InlineData("/srv/csv/*")]
    public void A_malformed_volume_root_is_refused(string root) =>
        Assert.Throws<PeerAnswerException>(() => PeerAnswers.DestinationFolder(Volumes(root), "vm1"));

    [Theory]
    [InlineData("../x")]
    [InlineData("CON")]
    [InlineData("_image-x")]
    public void A_vm_name_that_would_leave_the_folder_is_refused(string vm) =>
        Assert.Throws<PeerAnswerException>(() => PeerAnswers.DestinationFolder(Volumes("/srv/csv/Volume1"), vm));

    [Fact]
    public void An_arrival_answer_must_be_about_the_vm_that_was_sent()
    {
        JsonElement Body(string name) => JsonDocument.Parse(JsonSerializer.Serialize(new { name })).RootElement;
        PeerAnswers.CheckArrival(201, Body("vm1"), "vm1");
        PeerAnswers.CheckArrival(200, Body("VM1"), "vm1"); // names compare as the file system does
        Assert.Throws<PeerAnswerException>(() => PeerAnswers.CheckArrival(202, Body("vm1"), "vm1"));
        Assert.Throws<PeerAnswerException>(() => PeerAnswers.CheckArrival(201, Body("other"), "vm1"));
        Assert.Throws<PeerAnswerException>(() => PeerAnswers.CheckArrival(201, null, "vm1"));
    }

    [Fact]
    public void A_refusing_peers_words_are_cut_short_and_made_printable()
    {
        var excerpt = PeerAnswers.Excerpt(JsonSerializer.Serialize(new { title = "Forbidden", detail = "\u001b[2J" + new string('x', 5000) }));
        Assert.StartsWith("Forbidden: ?[2J", excerpt);
        Assert.True(excerpt.Length <= 300);
        Assert.Equal("(a body of 13 characters that is not JSON)", PeerAnswers.Excerpt("<html></html>"));
    }
}
