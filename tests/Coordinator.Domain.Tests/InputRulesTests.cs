using Coordinator.Domain;
using static Coordinator.Domain.Tests.LedgerDriver;

namespace Coordinator.Domain.Tests;

/// <summary>Bad input is refused as Invalid before it reaches the accounting, and changes nothing.</summary>
public class InputRulesTests
{
    private const string Vol = "Volume1";
    private const string Root = @"C:\ClusterStorage\Volume1";

    private static LedgerDriver Volume()
    {
        var d = new LedgerDriver();
        d.Configure(Vol, Root, 100 * GiB, 0);
        d.Reserve(Vol, "existing", "hv1", 10 * GiB, "existing");
        return d;
    }

    /// <summary>Asserts that the request is refused as Invalid with no events and no change.</summary>
    private static void AssertInvalid(ReserveRequest request)
    {
        var d = Volume();
        var journal = d.Journal.Count;
        var state = StateOf(d.Ledger);

        var r = d.Reserve(request);

        Assert.Equal(ReserveStatus.Invalid, r.Outcome.Status);
        Assert.False(string.IsNullOrWhiteSpace(r.Outcome.Error));
        Assert.Null(r.Outcome.Reservation);
        Assert.Equal(90 * GiB, r.Outcome.FreeBytes);
        Assert.Empty(r.Events);
        Assert.Equal(journal, d.Journal.Count);
        Assert.Equal(state, StateOf(d.Ledger));
    }

    public static TheoryData<string> BadIds => new()
    {
        "",
        " ",
        "\t",
        "   \n ",
        new string('x', InputRules.MaxIdLength + 1),
        "a/b",
        "/",
        @"a\b",
        @"\",
        "..",
        ".",
        "vm\u0000",
        "vm\u0001x",
        "vm\tx",
        "vm\nx",
        "vm\u007f",
        "vm\u0085",
    };

    [Theory]
    [MemberData(nameof(BadIds))]
    public void Bad_consumer_ids_are_invalid(string id)
    {
        Assert.NotNull(InputRules.CheckId("consumer id", id));
        AssertInvalid(new ReserveRequest(Vol, id, "hv1", GiB));
    }

    [Theory]
    [MemberData(nameof(BadIds))]
    public void Bad_node_names_are_invalid(string node) => AssertInvalid(new ReserveRequest(Vol, "vm1", node, GiB));

    [Theory]
    [MemberData(nameof(BadIds))]
    public void Bad_image_ids_are_invalid(string image) => AssertInvalid(new ReserveRequest(Vol, "vm1", "hv1", GiB, ImageId: image));

    [Fact]
    public void A_bad_id_of_an_existing_reservation_is_invalid_not_unchanged()
    {
        AssertInvalid(new ReserveRequest(Vol, "existing", "hv1/x", 10 * GiB, "existing"));
        AssertInvalid(new ReserveRequest(Vol, "existing", "hv1", 0, "existing"));
    }

    [Fact]
    public void A_null_id_is_invalid() => Assert.NotNull(InputRules.CheckId("node", null));

    [Theory]
    [InlineData("vm1")]
    [InlineData("a")]
    [InlineData("VM-01_x.y")]
    [InlineData("a..b")]
    [InlineData("ünïcødé-名前")]
    [InlineData("with space")]
    public void Good_ids_are_accepted(string id)
    {
        Assert.Null(InputRules.CheckId("consumer id", id));
        var d = Volume();
        var r = d.Reserve(Vol, id, id, GiB, image: id);
        Assert.Equal(ReserveStatus.Created, r.Outcome.Status);
        Assert.Equal(id, d.Ledger.Find(Vol, id)!.Node);
    }

    [Fact]
    public void An_id_of_exactly_the_maximum_length_is_accepted()
    {
        var id = new string('x', InputRules.MaxIdLength);
        Assert.Null(InputRules.CheckId("consumer id", id));
        Assert.Equal(ReserveStatus.Created, Volume().Reserve(Vol, id, "hv1", GiB).Outcome.Status);
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(-1L)]
    [InlineData(-1073741824L)]
    [InlineData(long.MinValue)]
    [InlineData((1L << 62) + 1)]
    [InlineData(long.MaxValue)]
    public void Bad_byte_counts_are_invalid(long bytes)
    {
        Assert.NotNull(InputRules.CheckBytes("bytes", bytes));
        AssertInvalid(new ReserveRequest(Vol, "vm1", "hv1", bytes));
    }

    [Theory]
    [InlineData(1L)]
    [InlineData(1L << 62)]
    public void Byte_counts_up_to_2_pow_62_are_valid(long bytes) => Assert.Null(InputRules.CheckBytes("bytes", bytes));

    [Fact]
    public void A_claim_of_2_pow_62_bytes_is_checked_for_space_not_refused_as_invalid()
    {
        var d = Volume();
        Assert.Equal(ReserveStatus.InsufficientSpace, d.Reserve(Vol, "vm1", "hv1", ByteSize.MaxBytes).Outcome.Status);

        var big = new LedgerDriver();
        big.Configure("Big", "/mnt/big", ByteSize.MaxBytes, 0);
        Assert.Equal(ReserveStatus.Created, big.Reserve("Big", "vm1", "hv1", ByteSize.MaxBytes).Outcome.Status);
        Assert.Equal(0, big.Free("Big"));
        Assert.Equal(ReserveStatus.InsufficientSpace, big.Reserve("Big", "vm2", "hv1", ByteSize.MaxBytes).Outcome.Status);
        Assert.Equal(ReserveStatus.InsufficientSpace, big.Reserve("Big", "vm2", "hv1", 1).Outcome.Status);
    }

    [Theory]
    [InlineData(@"D:\Other\vm1")]
    [InlineData(@"C:\ClusterStorage\Volume2\vm1")]
    [InlineData(@"C:\ClusterStorage\Volume10\vm1")]
    [InlineData(@"C:\ClusterStorage\Volume1")]
    [InlineData(@"C:\ClusterStorage\Volume1\")]
    [InlineData(@"C:\ClusterStorage\Volume1\..\Volume2\vm1")]
    [InlineData(@"C:\ClusterStorage\Volume1\vms\..\..\x")]
    [InlineData(@"C:vm1")]
    [InlineData("/etc/passwd")]
    [InlineData(@"\\server\share\vm1")]
    [InlineData("//server/share/vm1")]
    [InlineData("..")]
    [InlineData(@"..\vm1")]
    [InlineData("../vm1")]
    [InlineData("vms/../vm1")]
    [InlineData(@"vms\..")]
    [InlineData("vm1:stream")]
    [InlineData("")]
    [InlineData(".")]
    [InlineData("./")]
    [InlineData("//")]
    [InlineData("vm\u0000")]
    [InlineData("vm\nx")]
    public void Paths_outside_the_volume_or_malformed_are_invalid(string path)
    {
        Assert.NotNull(InputRules.NormalizeVolumePath(Root, path, out var rel));
        Assert.Null(rel);
        AssertInvalid(new ReserveRequest(Vol, "vm1", "hv1", GiB, path));
    }

    [Fact]
    public void Overlong_paths_are_invalid()
    {
        var path = string.Join('/', Enumerable.Repeat("abcdefgh", 600));
        AssertInvalid(new ReserveRequest(Vol, "vm1", "hv1", GiB, path));
    }

    [Theory]
    [InlineData("vm1", "vm1")]
    [InlineData(@"a\b", "a/b")]
    [InlineData("a/b", "a/b")]
    [InlineData(@"a\\b\", "a/b")]
    [InlineData("./a//b/.", "a/b")]
    [InlineData(@"C:\ClusterStorage\Volume1\vms\vm1", "vms/vm1")]
    [InlineData(@"C:\ClusterStorage\Volume1\vms\vm1\", "vms/vm1")]
    [InlineData("c:/clusterstorage/VOLUME1/Vms/VM1", "Vms/VM1")]
    [InlineData("..a/b..", "..a/b..")]
    [InlineData("a b/c", "a b/c")]
    public void Relative_paths_and_absolute_paths_under_the_root_are_normalised(string path, string expected)
    {
        Assert.Null(InputRules.NormalizeVolumePath(Root, path, out var rel));
        Assert.Equal(expected, rel);

        var d = Volume();
        var r = d.Reserve(Vol, "vm1", "hv1", GiB, path);
        Assert.Equal(ReserveStatus.Created, r.Outcome.Status);
        Assert.Equal(expected, r.Outcome.Reservation!.Path);
        Assert.Equal(expected, Assert.IsType<ReservationPlaced>(Assert.Single(r.Events)).Path);
        Assert.Equal(expected, d.Ledger.MeasuredDirectories(Vol)["vm1"]);
    }

    [Theory]
    [InlineData(@"C:\ClusterStorage\Volume1\", @"C:\ClusterStorage\Volume1\vm1", "vm1")]
    [InlineData("/mnt/csv1", "/mnt/csv1/vm1/disk", "vm1/disk")]
    [InlineData("/mnt/csv1/", "/mnt/csv1/vm1", "vm1")]
    public void The_volume_root_may_be_spelt_with_a_trailing_separator_or_posix_style(string root, string path, string expected)
    {
        Assert.Null(InputRules.NormalizeVolumePath(root, path, out var rel));
        Assert.Equal(expected, rel);
    }

    [Fact]
    public void A_posix_root_does_not_accept_a_sibling_directory()
    {
        Assert.NotNull(InputRules.NormalizeVolumePath("/mnt/csv1", "/mnt/csv10/vm1", out _));
        Assert.NotNull(InputRules.NormalizeVolumePath("/mnt/csv1", "/mnt/csv1", out _));
    }

    [Fact]
    public void No_path_is_fine_and_stays_null()
    {
        Assert.Null(InputRules.NormalizeVolumePath(Root, null, out var rel));
        Assert.Null(rel);
        var r = Volume().Reserve(Vol, "vm1", "hv1", GiB);
        Assert.Null(r.Outcome.Reservation!.Path);
    }

    [Theory]
    [InlineData("Volume9")]
    [InlineData("volume1")]
    [InlineData("")]
    public void An_unknown_volume_is_reported_as_such_and_changes_nothing(string volume)
    {
        var d = Volume();
        var state = StateOf(d.Ledger);
        var r = d.Reserve(volume, "vm1", "hv1", GiB);
        Assert.Equal(ReserveStatus.UnknownVolume, r.Outcome.Status);
        Assert.Empty(r.Events);
        Assert.Null(r.Outcome.Reservation);
        Assert.Equal(state, StateOf(d.Ledger));
    }

    [Fact]
    public void An_unknown_volume_wins_over_invalid_input()
    {
        var r = Volume().Reserve("Volume9", "", "hv1", -5);
        Assert.Equal(ReserveStatus.UnknownVolume, r.Outcome.Status);
        Assert.Empty(r.Events);
    }
}
