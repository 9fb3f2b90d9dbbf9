using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Security;
using Coordinator.Cluster.Vms;

namespace Coordinator.Service.Vms;

/// <summary>
/// Other clusters' coordinators (coordinator.hyperv.peers), told of VMs migrated to their hosts. Each peer has its own
/// client: its token goes as <c>Authorization: Bearer</c> (the peer's coordinator.http.peer-token), its certificate is
/// checked against its ca-file (else the machine's store; never unchecked), redirects never carry the token elsewhere,
/// and every answer is checked (<see cref="PeerAnswers"/>) before anything acts on it.
/// </summary>
public sealed class HttpPeerClusters : IPeerClusters, IDisposable
{
    /// <summary>A coordinator's answers are a few KiB; more is refused rather than buffered.</summary>
    public const int MaxAnswerBytes = 1 << 20;

    private readonly IReadOnlyDictionary<string, PeerClusterSettings> _peers;
    private readonly Dictionary<Uri, (PeerClusterSettings Peer, HttpClient Http)> _clients = new();

    public HttpPeerClusters(CoordinatorSettings settings)
    {
        _peers = settings.HyperV.Peers;
        foreach (var peer in _peers.Values) _clients.TryAdd(peer.Url, (peer, CreateClient(peer)));
    }

    public Uri? EndpointFor(string host) => _peers.GetValueOrDefault(host)?.Url;

    public async Task<string> DestinationFolderAsync(Uri endpoint, string vmName, CancellationToken ct)
    {
        var (_, http) = Client(endpoint);
        var url = new Uri(endpoint, "/v1/volumes");
        try
        {
            using var response = await http.SendAsync(Request(endpoint, HttpMethod.Get, url), ct);
            var body = await response.Content.ReadAsStringAsync(ct);
            if (!response.IsSuccessStatusCode)
                throw new OperationRefusedException(502, "peer-refused",
                    $"the coordinator at {Show(endpoint)} answered {(int)response.StatusCode} when asked for its volumes: {PeerAnswers.Excerpt(body)}");
            using var doc = JsonDocument.Parse(body);
            return PeerAnswers.DestinationFolder(doc.RootElement, vmName);
        }
        catch (Exception e) when (e is JsonException or PeerAnswerException)
        {
            throw new OperationRefusedException(502, "peer-answer-invalid",
                $"the coordinator at {Show(endpoint)} sent a volume list that was refused, nothing was moved: {Reason(e)}");
        }
        catch (Exception e) when (e is HttpRequestException || (e is TaskCanceledException && !ct.IsCancellationRequested))
        {
            throw new OperationRefusedException(502, "peer-unreachable", $"the coordinator at {Show(endpoint)} could not be asked for its volumes: {e.Message}");
        }
    }

    public async Task AnnounceArrivalAsync(Uri endpoint, ArriveVm arrival, CancellationToken ct)
    {
        var (_, http) = Client(endpoint);
        var request = Request(endpoint, HttpMethod.Post, new Uri(endpoint, "/v1/vms/arrivals"));
        request.Content = JsonContent.Create(new
        {
            name = arrival.Name, memoryMb = arrival.MemoryMb, vcpus = arrival.Vcpus, diskBytes = arrival.DiskBytes,
            volume = arrival.Volume, imageId = arrival.ImageId,
        });
        try
        {
            using var response = await http.SendAsync(request, ct);
            var body = await response.Content.ReadAsStringAsync(ct);
            if (!response.IsSuccessStatusCode)
                throw new OperationRefusedException(502, "peer-refused",
                    $"the coordinator at {Show(endpoint)} answered {(int)response.StatusCode} to the arrival of {arrival.Name}: {PeerAnswers.Excerpt(body)}");
            JsonElement? json = null;
            try { json = JsonDocument.Parse(body).RootElement.Clone(); }
            catch (JsonException) { }
            PeerAnswers.CheckArrival((int)response.StatusCode, json, arrival.Name);
        }
        catch (PeerAnswerException e)
        {
            throw new OperationRefusedException(502, "peer-answer-invalid",
                $"the coordinator at {Show(endpoint)} answered the arrival of {arrival.Name} with something that was refused: {e.Message}");
        }
        catch (Exception e) when (e is HttpRequestException || (e is TaskCanceledException && !ct.IsCancellationRequested))
        {
            throw new OperationRefusedException(502, "peer-unreachable", $"the coordinator at {Show(endpoint)} could not be told of the arrival of {arrival.Name}: {e.Message}");
        }
    }

    public void Dispose()
    {
        foreach (var (_, http) in _clients.Values) http.Dispose();
    }

    private (PeerClusterSettings Peer, HttpClient Http) Client(Uri endpoint) =>
        _clients.TryGetValue(endpoint, out var c)
            ? c
            : throw new OperationRefusedException(400, "unknown-target", $"{Show(endpoint)} is not a configured peer cluster");

    private HttpRequestMessage Request(Uri endpoint, HttpMethod method, Uri url)
    {
        var request = new HttpRequestMessage(method, url);
        if (_clients[endpoint].Peer.Token is { } token) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return request;
    }

    private static HttpClient CreateClient(PeerClusterSettings peer)
    {
        var sockets = new SocketsHttpHandler { AllowAutoRedirect = false, PooledConnectionLifetime = TimeSpan.FromMinutes(5) };
        if (peer.Authorities is { } authorities)
        {
            // The peer's own CA, and only it: the machine's roots do not vouch for another cluster's coordinator.
            var trust = new ClusterTrust(authorities, []);
            sockets.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
                (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) == SslPolicyErrors.None // the name must match
                && certificate is X509Certificate2 c && trust.Check(c) is null;
        }
        // Without a ca-file the handler's default validation (the machine's store) applies.
        return new HttpClient(new SafeRedirectHandler(sockets))
        {
            Timeout = TimeSpan.FromMinutes(1),
            MaxResponseContentBufferSize = MaxAnswerBytes,
        };
    }

    private static string Reason(Exception e) => e is JsonException ? "the answer is not JSON" : e.Message;

    private static string Show(Uri u) => SafeRedirectHandler.Show(u);
}
