namespace Coordinator.HyperV.Tests;

public sealed class NtfsNamesTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "ntfs-" + Guid.NewGuid().ToString("N"));

    public NtfsNamesTests() => Directory.CreateDirectory(Path.Combine(_root, "instances", "vm1"));

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Theory]
    [InlineData("vm1", "vm1", true)]
    [InlineData("VM1", "vm1", true)]
    [InlineData("vm1.", "vm1", true)]
    [InlineData("vm1 . .", "VM1", true)]
    [InlineData(" vm1", "vm1", false)] // leading spaces are kept
    [InlineData("vm1..vhdx", "vm1.vhdx", false)]
    [InlineData("vm2", "vm1", false)]
    public void Names_compare_case_insensitively_without_trailing_dots_and_spaces(string a, string b, bool same) =>
        Assert.Equal(same, NtfsNames.SameName(a, b));

    [Fact]
    public void Paths_compare_component_by_component()
    {
        Assert.True(NtfsNames.SamePath(@"C:\ClusterStorage\Volume1\instances\VM1.\VM1.vhdx", @"c:\clusterstorage\volume1\instances\vm1\vm1.vhdx"));
        Assert.True(NtfsNames.SamePath("/csv/instances/vm1./disk", "/csv/instances/VM1/disk"));
        Assert.False(NtfsNames.SamePath("/csv/instances/vm1/disk", "/csv/instances/vm2/disk"));
        Assert.False(NtfsNames.SamePath("/csv/instances/vm1", "/csv/instances/vm1/disk"));
    }

    [Theory]
    [InlineData("VM1")]
    [InlineData("vm1.")]
    [InlineData("Vm1 ")]
    [InlineData("vm1")]
    public void An_existing_folder_is_found_under_any_of_its_NTFS_names(string name)
    {
        var resolved = NtfsNames.ResolveOnDisk(Path.Combine(_root, "INSTANCES", name, "VM1.vhdx"));

        Assert.Equal(Path.Combine(_root, "instances", "vm1", "VM1.vhdx"), resolved); // the missing file keeps its case
    }

    [Fact]
    public void Missing_components_are_stripped_and_an_exact_match_wins()
    {
        Directory.CreateDirectory(Path.Combine(_root, "instances", "VM1")); // possible on Linux, never on NTFS

        Assert.Equal(Path.Combine(_root, "instances", "VM1"), NtfsNames.ResolveOnDisk(Path.Combine(_root, "instances", "VM1")));
        Assert.Equal(Path.Combine(_root, "instances", "vm1"), NtfsNames.ResolveOnDisk(Path.Combine(_root, "instances", "vm1.")));
        Assert.Equal(Path.Combine(_root, "instances", "new", "disk"), NtfsNames.ResolveOnDisk(Path.Combine(_root, "instances", "new. ", "disk.")));
        Assert.Throws<ArgumentException>(() => NtfsNames.ResolveOnDisk(Path.Combine(_root, "instances", "...")));
    }
}
