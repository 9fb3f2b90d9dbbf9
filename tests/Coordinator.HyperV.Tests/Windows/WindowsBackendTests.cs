using Coordinator.HyperV;
using Coordinator.HyperV.Windows;

namespace Coordinator.HyperV.Tests.Windows;

public sealed class WindowsBackendTests
{
    [SkippableFact]
    public void Off_Windows_the_backend_refuses_with_PlatformUnsupported_and_points_at_the_simulator()
    {
        // On a Windows host the outcome depends on its features: said as a skip, never a silent pass.
        Prerequisite.Require(OperatingSystem.IsWindows() ? "on a Windows host the backend's outcome depends on its features" : null);

        var create = Assert.Throws<HyperVException>(() => WindowsBackend.Create("node-1"));
        var ensure = Assert.Throws<HyperVException>(WindowsBackend.EnsureSupported);

        Assert.Equal(HyperVErrorKind.PlatformUnsupported, create.Kind);
        Assert.Equal(HyperVErrorKind.PlatformUnsupported, ensure.Kind);
        Assert.StartsWith(WindowsBackend.UnsupportedMessage, create.Message);
        Assert.Contains("root/virtualization/v2", create.Message);
        Assert.Contains("clusapi.dll", create.Message);
        Assert.Contains("coordinator.hyperv.backend = simulated", create.Message);
    }

    [Fact]
    public void A_namespace_without_the_feature_is_PlatformUnsupported()
    {
        var cim = new RecordedCim();

        var empty = Assert.Throws<HyperVException>(() => WindowsBackend.Probe(cim, CimNames.Cluster, "MSCluster_Cluster", "Failover Clustering"));

        Assert.Equal(HyperVErrorKind.PlatformUnsupported, empty.Kind);
        Assert.Contains("Failover Clustering: no MSCluster_Cluster in root/MSCluster", empty.Message);
    }

    [Fact]
    public void A_namespace_that_does_not_exist_is_PlatformUnsupported()
    {
        var cim = new ThrowingCim(CimErrors.Map("query", CimErrors.MiInvalidNamespace, CimErrors.WbemEInvalidNamespace, "Invalid namespace"));

        var e = Assert.Throws<HyperVException>(() => WindowsBackend.Probe(cim, CimNames.Virtualization, "Msvm_VirtualSystemManagementService", "Hyper-V"));

        Assert.Equal(HyperVErrorKind.PlatformUnsupported, e.Kind);
        Assert.Contains("Hyper-V", e.Message);
        Assert.Equal(CimErrors.WbemEInvalidNamespace, (uint)e.Code!.Value);
    }

    [Fact]
    public void The_probe_passes_where_the_class_has_an_instance()
    {
        var shapes = new HyperVShapes();

        WindowsBackend.Probe(shapes.Cim, CimNames.Virtualization, "Msvm_VirtualSystemManagementService", "Hyper-V");
    }

    private sealed class ThrowingCim(HyperVException error) : ICimGateway
    {
        public Task<IReadOnlyList<CimRecord>> QueryAsync(string ns, string wql, CancellationToken ct) => throw error;
        public Task<CimRecord> GetInstanceAsync(string ns, string path, CancellationToken ct) => throw error;
        public Task<IReadOnlyList<CimRecord>> GetAssociatedAsync(string ns, string sourcePath, string? associationClass, string? resultClass, CancellationToken ct) => throw error;
        public Task<CimMethodResult> InvokeMethodAsync(string ns, string instancePath, string method, IReadOnlyDictionary<string, object?> parameters, CancellationToken ct) => throw error;
        public Task<CimMethodResult> InvokeStaticMethodAsync(string ns, string className, string method, IReadOnlyDictionary<string, object?> parameters, CancellationToken ct) => throw error;
        public Task ModifyInstanceAsync(string ns, string path, IReadOnlyDictionary<string, object?> properties, CancellationToken ct) => throw error;
    }
}
