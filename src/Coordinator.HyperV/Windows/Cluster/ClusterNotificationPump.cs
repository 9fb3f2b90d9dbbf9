using System.Threading.Channels;

namespace Coordinator.HyperV.Windows;

/// <summary>
/// Drains a cluster notify port on a dedicated thread into an unbounded channel, so a slow consumer never makes the port
/// back up and no notification is lost between reads. The port is created in the constructor, before the caller acts
/// (a move, a subscription): nothing after that point is missed. GetClusterNotifyV2 blocks, so it is called with a
/// bounded wait and the stop flag is checked between calls (closing a SafeHandle under a blocked call would only wait
/// for that call); the port is closed by the pump thread itself when it stops.
/// </summary>
public sealed class ClusterNotificationPump<T> : IAsyncDisposable, IDisposable
    where T : class
{
    private readonly IClusApi _api;
    private readonly NotifyPortHandle _port;
    private readonly Func<ClusterNotification, T?> _transform;
    private readonly uint _waitMilliseconds;
    private readonly Channel<T> _channel = Channel.CreateUnbounded<T>(new UnboundedChannelOptions { SingleWriter = true });
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _stopping;

    /// <param name="transform">Runs on the pump thread for each notification: null drops it. A HyperVException (or a
    /// malformed property list) from it drops that notification only (e.g. a group deleted before it could be looked at).</param>
    public ClusterNotificationPump(
        IClusApi api, ClusterHandle cluster, IReadOnlyList<NotifyFilter> filters, Func<ClusterNotification, T?> transform, uint waitMilliseconds)
    {
        _api = api;
        _transform = transform;
        _waitMilliseconds = waitMilliseconds;
        _port = api.CreateClusterNotifyPortV2(cluster, filters);
        var thread = new Thread(Run) { IsBackground = true, Name = "clusapi notify port" };
        thread.Start();
    }

    public ChannelReader<T> Reader => _channel.Reader;

    private void Run()
    {
        try
        {
            while (!_stopping)
            {
                var notification = _api.GetClusterNotifyV2(_port, _waitMilliseconds);
                if (notification is null)
                    continue;
                T? item;
                try
                {
                    item = _transform(notification);
                }
                catch (Exception e) when (e is HyperVException or FormatException)
                {
                    continue;
                }

                if (item is not null)
                    _channel.Writer.TryWrite(item);
            }

            _channel.Writer.TryComplete();
        }
        catch (Exception e)
        {
            _channel.Writer.TryComplete(e);
        }
        finally
        {
            _port.Dispose();
            _stopped.TrySetResult();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stopping = true;
        try
        {
            await _stopped.Task.WaitAsync(TimeSpan.FromMilliseconds(_waitMilliseconds) + TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // The thread is a background one and closes the port when its call returns.
        }
    }

    public void Dispose() => _stopping = true;
}
