using Coordinator.Cluster.Vms;
using Coordinator.Service.Images;

namespace Coordinator.Service.Vms;

/// <summary>Spawns take their base image from the cluster-wide cache through this node's fetcher.</summary>
public sealed class ImageSourceAdapter(ImageFetcher fetcher) : IImageSource
{
    public async Task<string> EnsureImageAsync(string imageId, CancellationToken ct)
    {
        try
        {
            return (await fetcher.EnsureAsync(imageId, ct)).Path;
        }
        catch (ImageFetchException e)
        {
            throw new OperationRefusedException(e.Status, e.Type, $"image {imageId}: {e.Message}");
        }
    }
}
