using Coordinator.Domain;

namespace Coordinator.Domain.Tests;

/// <summary>The one rule for ids that become NTFS file or folder names, and the map keyed by them.</summary>
public class FileNamesTests
{
    public static TheoryData<string?> Refused() =>
    [
        null, "", ".", "..", "vm1.", "vm1 ", "vm1. ", " ", "...", new string('x', 256),
        "a:b", "a%b", "..%2F..%2Fetc", "a/b", @"a\b", "a*b", "a?b", "a\"b", "a<b", "a>b", "a|b", "a\u0000b", "a\u001fb", "a\u007fb",
        "CON", "con", "Prn", "AUX", "NUL", "COM0", "COM1", "com9", "LPT0", "LPT1", "lpt9", "COM¹", "LPT³",
        "CON.txt", "nul.tar.gz", "COM1.", "CON .txt", "CONIN$", "conout$",
    ];

    [Theory]
    [MemberData(nameof(Refused))]
    public void Names_that_are_not_files_of_their_own_are_refused(string? name) => Assert.NotNull(FileNames.Check("id", name));

    [Theory]
    [InlineData("vm1")]
    [InlineData("VM-01_x.y")]
    [InlineData("a..b")]
    [InlineData(".hidden")]
    [InlineData("with space")]
    [InlineData("ünïcødé-名前")]
    [InlineData("CONSOLE")]
    [InlineData("COM10")]
    [InlineData("LPT")]
    [InlineData("nul-1")]
    [InlineData("xCON")]
    public void Ordinary_names_are_accepted(string name) => Assert.Null(FileNames.Check("id", name));

    [Fact]
    public void A_name_of_exactly_255_characters_is_accepted() => Assert.Null(FileNames.Check("id", new string('x', 255)));

    [Fact]
    public void The_comparer_follows_NTFS_case_insensitivity()
    {
        Assert.Equal(0, FileNames.Comparer.Compare("VM1", "vm1"));
        Assert.True(FileNames.Comparer.Equals("Straße", "STRASSE") is false); // ordinal, not linguistic
        Assert.Equal(FileNames.Comparer.GetHashCode("AbC"), FileNames.Comparer.GetHashCode("aBc"));
    }

    [Fact]
    public void The_map_finds_equivalent_spellings_lists_in_ordinal_order_and_a_new_spelling_replaces_the_old()
    {
        var map = new FileNameMap<int>();
        map.Set("b", 1);
        map.Set("_x", 2);
        map.Set("A", 3);
        Assert.Equal(["A", "_x", "b"], map.Keys);
        Assert.True(map.TryGetValue("a", out var a) && a == 3);
        Assert.Equal("A", map.SpellingOf("a"));

        map.Set("B", 4);
        Assert.Equal(3, map.Count);
        Assert.Equal(["A", "B", "_x"], map.Keys);
        Assert.Equal(4, map.GetValueOrDefault("b"));

        Assert.True(map.Remove("_X", out var x) && x == 2);
        Assert.False(map.ContainsKey("_x"));
        Assert.Equal(["A", "B"], map.Keys);
    }
}
