using System.Numerics;
using Coordinator.Domain;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;

namespace Coordinator.Domain.Tests;

public class ByteSizeTests
{
    [Theory]
    [InlineData("500GiB", 500L << 30)]
    [InlineData("1.5TiB", 3L << 39)]
    [InlineData("4096", 4096L)]
    [InlineData("10 MiB", 10L << 20)]
    [InlineData(" 10MiB ", 10L << 20)]
    [InlineData("1", 1L)]
    [InlineData("1B", 1L)]
    [InlineData("1 b", 1L)]
    [InlineData("1KiB", 1024L)]
    [InlineData("1kib", 1024L)]
    [InlineData("0.5KiB", 512L)]
    [InlineData("2K", 2048L)]
    [InlineData("2 M", 2L << 20)]
    [InlineData("3G", 3L << 30)]
    [InlineData("2T", 2L << 40)]
    [InlineData("1PiB", 1L << 50)]
    [InlineData("5KB", 5_000L)]
    [InlineData("5MB", 5_000_000L)]
    [InlineData("5GB", 5_000_000_000L)]
    [InlineData("5TB", 5_000_000_000_000L)]
    [InlineData("4096PiB", 1L << 62)]
    [InlineData("4611686018427387904", 1L << 62)]
    [InlineData("1.25GiB", 1342177280L)]
    public void Sizes_parse(string text, long expected)
    {
        Assert.True(ByteSize.TryParse(text, out var bytes));
        Assert.Equal(expected, bytes);
        Assert.Equal(expected, ByteSize.Parse(text));
    }

    [Theory]
    [InlineData("")]
    [InlineData(" ")]
    [InlineData("-1")]
    [InlineData("-1GiB")]
    [InlineData("+1")]
    [InlineData("abc")]
    [InlineData("GiB")]
    [InlineData("12 apples")]
    [InlineData("1e3")]
    [InlineData("1,000")]
    [InlineData("1.5")]            // not a whole number of bytes
    [InlineData("0.1KiB")]         // 102.4 bytes
    [InlineData("5 GiB GiB")]
    [InlineData("4611686018427387905")]          // 2^62 + 1
    [InlineData("9223372036854775807")]          // long.MaxValue
    [InlineData("9223372036854775808")]          // beyond long
    [InlineData("4097PiB")]
    [InlineData("4096.5PiB")]
    [InlineData("99999999999999999999999999999999")]   // beyond decimal
    [InlineData("1000000000000000000000000PiB")]       // the multiplication overflows decimal
    [InlineData("79228162514264337593543950335TB")]
    [InlineData("4000000000000000000PiB")]
    [InlineData("4611686018427387904KiB")]
    public void Non_sizes_and_overflows_are_refused(string text)
    {
        Assert.False(ByteSize.TryParse(text, out var bytes));
        Assert.Equal(0, bytes);
        Assert.Throws<FormatException>(() => ByteSize.Parse(text));
    }

    [Fact]
    public void Null_is_refused() => Assert.False(ByteSize.TryParse(null, out _));

    [Theory]
    [InlineData(0L, "0 B")]
    [InlineData(1023L, "1023 B")]
    [InlineData(1024L, "1 KiB")]
    [InlineData(1536L, "1.5 KiB")]
    [InlineData(500L << 30, "500 GiB")]
    [InlineData(-(100L << 30), "-100 GiB")]
    [InlineData(1L << 62, "4096 PiB")]
    public void Sizes_format_in_binary_units(long bytes, string expected) => Assert.Equal(expected, ByteSize.Format(bytes));

    [Fact]
    public void Units_are_binary()
    {
        Assert.Equal(1024L, ByteSize.KiB);
        Assert.Equal(1024L * 1024, ByteSize.MiB);
        Assert.Equal(1024L * 1024 * 1024, ByteSize.GiB);
        Assert.Equal(1024L * 1024 * 1024 * 1024, ByteSize.TiB);
        Assert.Equal(4611686018427387904L, ByteSize.MaxBytes);
    }

    private static readonly (string Unit, long Factor)[] Units =
    [
        ("", 1), ("B", 1), ("K", 1L << 10), ("KiB", 1L << 10), ("KB", 1000), ("M", 1L << 20), ("MiB", 1L << 20), ("MB", 1_000_000),
        ("G", 1L << 30), ("GiB", 1L << 30), ("GB", 1_000_000_000), ("T", 1L << 40), ("TiB", 1L << 40), ("TB", 1_000_000_000_000),
        ("PiB", 1L << 50),
    ];

    private static Gen<string> Digits(int min, int max) =>
        Gen.Choose(min, max).SelectMany(n => Gen.ArrayOf(Gen.Elements("0123456789".ToCharArray()), n)).Select(cs => new string(cs));

    /// <summary>Random sizes, from tiny to far beyond 2^62, with and without fractions and units.</summary>
    private static Gen<(string Integer, string Fraction, string Unit, long Factor, bool Space, bool Lower)> Texts() =>
        from integer in Gen.Frequency((6, Digits(1, 4)), (3, Digits(5, 19)), (1, Digits(20, 25)))
        from fraction in Gen.Frequency((3, Gen.Constant("")), (1, Digits(1, 6)))
        from unit in Gen.Elements(Units)
        from space in Gen.Elements(false, true)
        from lower in Gen.Elements(false, true)
        select (integer, fraction, unit.Unit, unit.Factor, space, lower);

    [Property(MaxTest = 1000)]
    public Property TryParse_never_throws_and_agrees_with_exact_arithmetic() =>
        Prop.ForAll(Texts().ToArbitrary(), t =>
        {
            var unit = t.Lower ? t.Unit.ToLowerInvariant() : t.Unit;
            var text = t.Integer + (t.Fraction.Length > 0 ? "." + t.Fraction : "") + (t.Space && unit.Length > 0 ? " " : "") + unit;

            // value = integer.fraction * factor, exactly.
            var scale = BigInteger.Pow(10, t.Fraction.Length);
            var numerator = BigInteger.Parse(t.Integer + t.Fraction) * t.Factor;
            var whole = numerator % scale == 0;
            var value = numerator / scale;
            var fits = whole && value <= ByteSize.MaxBytes;

            var ok = ByteSize.TryParse(text, out var bytes);
            Assert.True(fits == ok, $"'{text}': expected {(fits ? value.ToString() : "refusal")}, got {(ok ? bytes.ToString() : "refusal")}");
            Assert.Equal(fits ? (long)value : 0, bytes);
        });
}
