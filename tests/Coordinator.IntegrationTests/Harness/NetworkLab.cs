using System.Diagnostics;

namespace Coordinator.IntegrationTests.Harness;

/// <summary>
/// Network namespaces for partition tests: each node gets a namespace with a cluster link (a veth on a shared bridge)
/// and a management link to the host (so the test can still talk to a node that is cut off). Cutting a node's cluster
/// link partitions it from the others. Everything is created with a run-unique prefix and deleted on Dispose.
/// </summary>
public sealed class NetworkLab : IDisposable
{
    private readonly string _id = Convert.ToHexStringLower(Guid.NewGuid().ToByteArray())[..4];
    private readonly int _net = Random.Shared.Next(1, 250);
    private readonly List<string> _namespaces = [];
    private readonly List<string> _links = [];

    private string Bridge => $"cb{_id}";
    private string HostLink(int i) => $"c{_id}h{i}";
    private string MgmtLink(int i) => $"c{_id}m{i}";
    public string Namespace(int i) => $"c{_id}n{i}";
    public string ClusterAddress(int i) => $"10.123.{_net}.{i}";
    public string ManagementAddress(int i) => $"10.124.{_net}.{4 * i + 2}";

    /// <summary>Null when namespaces can be made here; otherwise why not (not root, no iproute2, no permission).</summary>
    public static string? WhyUnavailable()
    {
        if (!OperatingSystem.IsLinux()) return "network namespaces need Linux";
        if (Environment.UserName != "root" && Environment.GetEnvironmentVariable("USER") != "root") return "network namespaces need root";
        if (!File.Exists("/usr/sbin/ip") && !File.Exists("/sbin/ip") && !File.Exists("/usr/bin/ip")) return "iproute2 (ip) is not installed";
        var name = "cprobe" + Convert.ToHexStringLower(Guid.NewGuid().ToByteArray())[..4];
        var (code, output) = Run("ip", "netns", "add", name);
        if (code != 0) return $"ip netns add failed: {output.Trim()}";
        Run("ip", "netns", "del", name);
        return null;
    }

    public NodePlacement Create(int i)
    {
        if (_namespaces.Count == 0)
        {
            Must("ip", "link", "add", Bridge, "type", "bridge");
            _links.Add(Bridge);
            Must("ip", "addr", "add", $"10.123.{_net}.254/24", "dev", Bridge);
            Must("ip", "link", "set", Bridge, "up");
        }
        var ns = Namespace(i);
        Must("ip", "netns", "add", ns);
        _namespaces.Add(ns);
        Must("ip", "link", "add", HostLink(i), "type", "veth", "peer", "name", "eth0", "netns", ns);
        _links.Add(HostLink(i));
        Must("ip", "link", "set", HostLink(i), "master", Bridge, "up");
        Must("ip", "netns", "exec", ns, "ip", "addr", "add", $"{ClusterAddress(i)}/24", "dev", "eth0");
        Must("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up");
        Must("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up");
        Must("ip", "link", "add", MgmtLink(i), "type", "veth", "peer", "name", "mgmt0", "netns", ns);
        _links.Add(MgmtLink(i));
        Must("ip", "addr", "add", $"10.124.{_net}.{4 * i + 1}/30", "dev", MgmtLink(i));
        Must("ip", "link", "set", MgmtLink(i), "up");
        Must("ip", "netns", "exec", ns, "ip", "addr", "add", $"{ManagementAddress(i)}/30", "dev", "mgmt0");
        Must("ip", "netns", "exec", ns, "ip", "link", "set", "mgmt0", "up");
        return new NodePlacement(ClusterAddress(i), "0.0.0.0", ManagementAddress(i), ns);
    }

    /// <summary>Cuts node i's cluster link: it can reach no other node, and none can reach it.</summary>
    public void Cut(int i) => Must("ip", "link", "set", HostLink(i), "down");

    public void Heal(int i) => Must("ip", "link", "set", HostLink(i), "up");

    private static void Must(params string[] args)
    {
        var (code, output) = Run(args[0], args[1..]);
        if (code != 0) throw new InvalidOperationException($"{string.Join(' ', args)}: {output.Trim()}");
    }

    private static (int Code, string Output) Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit(30_000);
        return (p.ExitCode, output);
    }

    public void Dispose()
    {
        foreach (var link in _links.AsEnumerable().Reverse()) Run("ip", "link", "del", link);
        foreach (var ns in _namespaces) Run("ip", "netns", "del", ns);
    }
}
