using System.Net.Http.Json;
using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Vms;

namespace Coordinator.Service.Vms;

/// <summary>Other clusters' coordinators (coordinator.hyperv.peers), told of VMs migrated to their hosts.</summary>
public sealed class HttpPeerClusters(CoordinatorSettings settings, HttpClient http) : IPeerClusters
{
    public Uri? EndpointFor(string host) => settings.HyperV.Peers.GetValueOrDefault(host);

    public async Task<string> DestinationFolderAsync(Uri endpoint, string vmName, CancellationToken ct)
    {
        try
        {
            var volumes = await http.GetFromJsonAsync<System.Text.Json.JsonElement>(new Uri(endpoint, "/v1/volumes"), ct);
            var root = volumes.GetProperty("volumes").EnumerateArray().First().GetProperty("path").GetString()!;
            return Path.Combine(root, "instances", vmName);
        }
        catch (Exception e) when (e is HttpRequestException or InvalidOperationException or System.Text.Json.JsonException or KeyNotFoundException)
        {
            throw new OperationRefusedException(502, "peer-unreachable", $"the coordinator at {endpoint} could not be asked for its volumes: {e.Message}");
        }
    }

    public async Task AnnounceArrivalAsync(Uri endpoint, ArriveVm arrival, CancellationToken ct)
    {
        using var response = await http.PostAsJsonAsync(new Uri(endpoint, "/v1/vms/arrivals"), new
        {
            name = arrival.Name, memoryMb = arrival.MemoryMb, vcpus = arrival.Vcpus, diskBytes = arrival.DiskBytes,
            volume = arrival.Volume, imageId = arrival.ImageId,
        }, ct);
        if (!response.IsSuccessStatusCode)
            throw new OperationRefusedException(502, "peer-refused",
                $"the coordinator at {endpoint} answered {(int)response.StatusCode} to the arrival of {arrival.Name}: {await response.Content.ReadAsStringAsync(ct)}");
    }
}
