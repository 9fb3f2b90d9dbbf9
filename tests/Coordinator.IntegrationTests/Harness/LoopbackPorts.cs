using System.Net;
using System.Net.Sockets;

namespace Coordinator.IntegrationTests.Harness;

/// <summary>
/// Ports for the processes the tests (and scripts/bench, which links this file) start on 127.0.0.1. Taken below Linux's ephemeral range (32768-60999), so that no
/// outbound connection and no bind to port 0 can take a port while its node is down between a kill and a restart, and
/// never the same twice in this process (bind-to-0-then-close handed one port out twice once: a node's HTTP port was
/// another node's remoting port).
/// </summary>
public static class LoopbackPorts
{
    private static readonly HashSet<int> HandedOut = [];

    public static int Next()
    {
        lock (HandedOut)
        {
            for (var attempt = 0; attempt < 1000; attempt++)
            {
                var port = Random.Shared.Next(20000, 32000);
                if (!HandedOut.Add(port)) continue;
                try
                {
                    var l = new TcpListener(IPAddress.Loopback, port);
                    l.Start();
                    l.Stop();
                    return port;
                }
                catch (SocketException)
                {
                    // in use by something else: keep it out of the set's free ports and try another
                }
            }
            throw new InvalidOperationException("no free loopback port in 20000-32000");
        }
    }
}
