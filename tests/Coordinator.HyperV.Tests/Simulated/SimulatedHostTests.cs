using System.Diagnostics;
using Coordinator.HyperV.Simulated;

namespace Coordinator.HyperV.Tests.Simulated;

public sealed class SimulatedHostTests : IAsyncLifetime
{
    private readonly SimCluster _cluster = new();
    private SimulatedHyperV _a = null!;
    private SimulatedHyperV _b = null!;

    public async Task InitializeAsync()
    {
        _a = await _cluster.NodeAsync("node-a", memoryMb: 4096, logicalProcessors: 2);
        _b = await _cluster.NodeAsync("node-b", memoryMb: 8192, logicalProcessors: 4);
    }

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    private static async Task<HyperVException> Refused(HyperVErrorKind kind, Func<Task> action)
    {
        var e = await Assert.ThrowsAsync<HyperVException>(action);
        Assert.Equal(kind, e.Kind);
        return e;
    }

    [Fact]
    public async Task Capacity_is_what_the_node_was_given()
    {
        Assert.Equal(new HostCapacity("node-a", 4096, 2), await _a.GetCapacityAsync(default));
    }

    [Fact]
    public async Task Define_start_stop_destroy_round_trip()
    {
        var definition = new VmDefinition("vm1", 1024, 2, _cluster.Disk("vm1"));
        await _a.DefineVmAsync(definition, default);
        Assert.Equal(new VmInfo("vm1", VmPowerState.Off, 1024, 2, definition.DiskPath), await _a.GetVmAsync("vm1", default));
        Assert.Equal(["vm1"], (await _a.ListVmsAsync(default)).Select(v => v.Name));
        Assert.Empty(await _b.ListVmsAsync(default));
        Assert.Null(await _b.GetVmAsync("vm1", default));

        await _a.StartVmAsync("vm1", default);
        await _a.StartVmAsync("vm1", default); // already running: success
        Assert.Equal(VmPowerState.Running, (await _a.GetVmAsync("vm1", default))!.State);
        await _a.StopVmAsync("vm1", default);
        await _a.StopVmAsync("vm1", default); // already off: success
        Assert.Equal(VmPowerState.Off, (await _a.GetVmAsync("vm1", default))!.State);

        await _a.DestroyVmAsync("vm1", default);
        Assert.Null(await _a.GetVmAsync("vm1", default));
        Assert.True(File.Exists(definition.DiskPath)); // the disk is not the VM's definition
    }

    [Fact]
    public async Task Unknown_vms_are_not_found_and_other_nodes_vms_are_unknown_here()
    {
        await _cluster.VmAsync(_b, "elsewhere");
        foreach (var name in new[] { "nope", "elsewhere" })
        {
            await Refused(HyperVErrorKind.NotFound, () => _a.StartVmAsync(name, default));
            await Refused(HyperVErrorKind.NotFound, () => _a.StopVmAsync(name, default));
            await Refused(HyperVErrorKind.NotFound, () => _a.DestroyVmAsync(name, default));
            await Refused(HyperVErrorKind.NotFound, () => _a.MigrateToHostAsync(name, "outside", false, null, default));
            Assert.Null(await _a.GetVmAsync(name, default));
        }
    }

    [Fact]
    public async Task Define_refuses_a_name_that_exists_anywhere_in_the_cluster()
    {
        await _cluster.VmAsync(_b, "vm1");
        await Refused(HyperVErrorKind.AlreadyExists, () => _a.DefineVmAsync(new VmDefinition("VM1", 512, 1, _cluster.Disk("other")), default));
        Assert.Empty(await _a.ListVmsAsync(default));
    }

    [Fact]
    public async Task Concurrent_defines_of_one_name_on_two_nodes_let_exactly_one_win()
    {
        var disk = _cluster.Disk("race");
        var results = await Task.WhenAll(Enumerable.Range(0, 10).Select(i => Task.Run(async () =>
        {
            try
            {
                await (i % 2 == 0 ? _a : _b).DefineVmAsync(new VmDefinition("race", 256, 1, disk), default);
                return true;
            }
            catch (HyperVException e) when (e.Kind == HyperVErrorKind.AlreadyExists)
            {
                return false;
            }
        })));
        Assert.Single(results, r => r);
        Assert.Single(_cluster.Db.ListVms(), v => v.Name == "race");
    }

    [Fact]
    public async Task Define_refuses_a_missing_disk()
    {
        await Refused(HyperVErrorKind.NotFound, () =>
            _a.DefineVmAsync(new VmDefinition("vm1", 512, 1, Path.Combine(_cluster.Csv, "missing.vhdx")), default));
    }

    [Fact]
    public async Task Define_refuses_more_memory_than_the_node_has()
    {
        await _cluster.VmAsync(_a, "big", memoryMb: 3000, start: false);
        var e = await Refused(HyperVErrorKind.InsufficientResources, () =>
            _a.DefineVmAsync(new VmDefinition("too-big", 2000, 1, _cluster.Disk("too-big")), default));
        Assert.Contains("1096", e.Message);
        await _cluster.VmAsync(_a, "fits", memoryMb: 1096); // exactly the rest
        await _cluster.VmAsync(_b, "too-big-elsewhere", memoryMb: 2000); // another node's memory is its own
    }

    [Fact]
    public async Task Define_refuses_vcpus_beyond_the_overcommit()
    {
        // node-a: 2 logical processors × 4 = 8 vCPUs.
        await _cluster.VmAsync(_a, "six", memoryMb: 256, vcpus: 6);
        await Refused(HyperVErrorKind.InsufficientResources, () =>
            _a.DefineVmAsync(new VmDefinition("three", 256, 3, _cluster.Disk("three")), default));
        await _cluster.VmAsync(_a, "two", memoryMb: 256, vcpus: 2);
    }

    [Fact]
    public async Task Destroy_refuses_a_clustered_vm_until_its_role_is_removed()
    {
        await _cluster.VmAsync(_a, "ha", clustered: true);
        await Refused(HyperVErrorKind.InvalidState, () => _a.DestroyVmAsync("ha", default));
        await _a.RemoveVmRoleAsync("ha", default);
        await _a.DestroyVmAsync("ha", default);
        Assert.Null(await _a.GetVmAsync("ha", default));
    }

    [Fact]
    public async Task An_empty_disk_is_a_sparse_file_of_its_size()
    {
        var path = Path.Combine(_cluster.Csv, "empty.vhdx");
        var size = 100L << 30; // 100 GiB
        await _a.CreateDiskAsync(path, null, DiskKind.Copy, size, default);
        Assert.Equal(size, new FileInfo(path).Length);
        // Sparse is what the file system says is allocated, not how fast it was made (a loaded machine is slow anyway).
        if (SimCluster.AllocatedBytes(path) is { } allocated)
            Assert.True(allocated < 1L << 20, $"{allocated} bytes allocated");
        await Refused(HyperVErrorKind.AlreadyExists, () => _a.CreateDiskAsync(path, null, DiskKind.Copy, size, default));
        await Refused(HyperVErrorKind.NotFound, () =>
            _a.CreateDiskAsync(Path.Combine(_cluster.Csv, "no-such-folder", "x.vhdx"), null, DiskKind.Copy, size, default));
    }

    [Fact]
    public async Task A_differencing_disk_names_its_parent_and_is_sparse()
    {
        var parent = Path.Combine(_cluster.Csv, "base.vhdx");
        await _a.CreateDiskAsync(parent, null, DiskKind.Copy, 10L << 30, default);
        var child = Path.Combine(_cluster.Csv, "child.vhdx");
        await _a.CreateDiskAsync(child, parent, DiskKind.Differencing, 0, default);

        Assert.Equal(parent, SimulatedDisks.ReadParentPath(child));
        Assert.Null(SimulatedDisks.ReadParentPath(parent));
        Assert.Equal(10L << 30, new FileInfo(child).Length); // the parent's virtual size
        if (SimCluster.AllocatedBytes(child) is { } allocated)
            Assert.True(allocated < 1L << 20, $"{allocated} bytes allocated");

        var bigger = Path.Combine(_cluster.Csv, "bigger.vhdx");
        await _a.CreateDiskAsync(bigger, child, DiskKind.Differencing, 20L << 30, default);
        Assert.Equal(child, SimulatedDisks.ReadParentPath(bigger));
        Assert.Equal(20L << 30, new FileInfo(bigger).Length);

        await Refused(HyperVErrorKind.NotFound, () =>
            _a.CreateDiskAsync(Path.Combine(_cluster.Csv, "orphan.vhdx"), Path.Combine(_cluster.Csv, "gone.vhdx"), DiskKind.Differencing, 0, default));
        Assert.False(File.Exists(Path.Combine(_cluster.Csv, "orphan.vhdx")));
    }

    [Fact]
    public async Task A_copy_has_the_base_content_and_keeps_its_holes()
    {
        var basePath = Path.Combine(_cluster.Csv, "image.vhdx");
        var size = 8L << 30; // 8 GiB, nearly all hole
        var pieces = new (long Offset, byte[] Bytes)[]
        {
            (0, "boot sector"u8.ToArray()),
            (3L << 30, Enumerable.Repeat((byte)0xAB, 70_000).ToArray()),
            (size - 5, "tail!"u8.ToArray()),
        };
        await using (var stream = new FileStream(basePath, FileMode.CreateNew))
        {
            stream.SetLength(size);
            foreach (var (offset, bytes) in pieces)
            {
                stream.Position = offset;
                stream.Write(bytes);
            }
        }

        var copy = Path.Combine(_cluster.Csv, "copy.vhdx");
        await _a.CreateDiskAsync(copy, basePath, DiskKind.Copy, 0, default);
        Assert.Equal(size, new FileInfo(copy).Length);
        await using (var stream = new FileStream(copy, FileMode.Open, FileAccess.Read))
        {
            foreach (var (offset, bytes) in pieces)
            {
                var read = new byte[bytes.Length];
                stream.Position = offset;
                stream.ReadExactly(read);
                Assert.Equal(bytes, read);
                if (offset > 0)
                {
                    stream.Position = offset - 1;
                    Assert.Equal(0, stream.ReadByte());
                }
            }
        }

        // The holes are kept: the copy allocates what the base holds (about 70 KB), not its 8 GiB.
        if (SimCluster.AllocatedBytes(copy) is { } allocated)
            Assert.True(allocated < 4L << 20, $"{allocated} bytes allocated");

        await Refused(HyperVErrorKind.AlreadyExists, () => _a.CreateDiskAsync(copy, basePath, DiskKind.Copy, 0, default));
        await Refused(HyperVErrorKind.NotFound, () =>
            _a.CreateDiskAsync(Path.Combine(_cluster.Csv, "c2.vhdx"), Path.Combine(_cluster.Csv, "missing.vhdx"), DiskKind.Copy, 0, default));

        var grown = Path.Combine(_cluster.Csv, "grown.vhdx");
        await _a.CreateDiskAsync(grown, basePath, DiskKind.Copy, 10L << 30, default);
        Assert.Equal(10L << 30, new FileInfo(grown).Length);
    }

    [Fact]
    public async Task Delete_disk_is_idempotent_and_refused_while_a_running_vm_uses_it()
    {
        var definition = await _cluster.VmAsync(_a, "user");
        await Refused(HyperVErrorKind.InvalidState, () => _b.DeleteDiskAsync(definition.DiskPath, default));
        await _a.StopVmAsync("user", default);
        await _a.DeleteDiskAsync(definition.DiskPath, default);
        Assert.False(File.Exists(definition.DiskPath));
        await _a.DeleteDiskAsync(definition.DiskPath, default);
        await _a.DeleteDiskAsync(Path.Combine(_cluster.Csv, "no-folder", "x.vhdx"), default);
    }

    [Fact]
    public async Task Migration_outside_the_cluster_takes_the_vm_away()
    {
        var shared = await _cluster.VmAsync(_a, "shared");
        await _a.MigrateToHostAsync("shared", "other-cluster-host", includeStorage: false, null, default);
        Assert.Null(await _a.GetVmAsync("shared", default));
        Assert.Null(_cluster.Db.GetVm("shared"));
        Assert.True(File.Exists(shared.DiskPath)); // shared storage stays

        var withStorage = await _cluster.VmAsync(_a, "with-storage");
        var destination = Path.Combine(_cluster.Root, "far-away");
        await _a.MigrateToHostAsync("with-storage", "other-cluster-host", includeStorage: true, destination, default);
        Assert.Null(await _a.GetVmAsync("with-storage", default));
        Assert.False(File.Exists(withStorage.DiskPath));
        Assert.True(File.Exists(Path.Combine(destination, "with-storage.vhdx")));
    }

    [Fact]
    public async Task Migration_to_a_node_of_the_simulated_cluster_lands_there()
    {
        await _cluster.VmAsync(_a, "hop");
        await _a.MigrateToHostAsync("hop", "node-b", includeStorage: false, null, default);
        Assert.Null(await _a.GetVmAsync("hop", default));
        Assert.Equal(VmPowerState.Running, (await _b.GetVmAsync("hop", default))!.State);
    }

    [Fact]
    public async Task Migration_to_an_unreachable_host_fails_and_leaves_the_vm_in_place()
    {
        await using var node = await _cluster.NodeAsync("node-c", options: SimCluster.Fast with { UnreachableHosts = ["from-options"] });
        var definition = await _cluster.VmAsync(node, "stay");
        node.SetUnreachableHost("at-runtime", true);
        _cluster.Db.SetUnreachableHost("from-the-db", true);
        foreach (var host in new[] { "from-options", "AT-RUNTIME", "from-the-db" })
        {
            var e = await Refused(HyperVErrorKind.JobFailed, () =>
                node.MigrateToHostAsync("stay", host, includeStorage: true, Path.Combine(_cluster.Root, "dest"), default));
            Assert.Equal("migration failed: destination unreachable", e.Message);
            Assert.Equal(SimulatedHyperV.JobFailedCode, e.Code);
            Assert.Equal(new VmInfo("stay", VmPowerState.Running, 1024, 2, definition.DiskPath), await node.GetVmAsync("stay", default));
            Assert.True(File.Exists(definition.DiskPath));
        }

        node.SetUnreachableHost("at-runtime", false);
        await node.MigrateToHostAsync("stay", "at-runtime", includeStorage: false, null, default);
        Assert.Null(await node.GetVmAsync("stay", default));
    }

    [Fact]
    public async Task Migration_of_a_clustered_vm_is_refused()
    {
        await _cluster.VmAsync(_a, "ha", clustered: true);
        await Refused(HyperVErrorKind.InvalidState, () => _a.MigrateToHostAsync("ha", "outside", false, null, default));
        Assert.NotNull(await _a.GetVmAsync("ha", default));
    }
}
