using Coordinator.Domain;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;

namespace Coordinator.Domain.Tests;

public class QuotaSplitTests
{
    private static Dictionary<string, double> W(params (string Node, double Weight)[] w) => w.ToDictionary(x => x.Node, x => x.Weight);

    [Fact]
    public void Equal_weights_split_evenly_and_the_remainder_goes_by_name()
    {
        var s = QuotaSplit.Split(100, W(("c", 1), ("a", 1), ("b", 1)));
        Assert.Equal(34, s["a"]);
        Assert.Equal(33, s["b"]);
        Assert.Equal(33, s["c"]);
    }

    [Fact]
    public void The_remainder_goes_to_the_largest_fraction_first()
    {
        var s = QuotaSplit.Split(10, W(("a", 1), ("b", 2)));
        Assert.Equal(3, s["a"]); // 3.33
        Assert.Equal(7, s["b"]); // 6.67
    }

    [Fact]
    public void Weights_are_proportional()
    {
        var s = QuotaSplit.Split(600L << 30, W(("hv1", 1), ("hv2", 2), ("hv3", 3)));
        Assert.Equal(100L << 30, s["hv1"]);
        Assert.Equal(200L << 30, s["hv2"]);
        Assert.Equal(300L << 30, s["hv3"]);
    }

    [Fact]
    public void Zero_negative_and_non_finite_weights_get_nothing_but_are_listed()
    {
        var s = QuotaSplit.Split(1000, W(("a", 1), ("b", 0), ("c", -2), ("d", double.NaN), ("e", double.PositiveInfinity), ("f", 3)));
        Assert.Equal(6, s.Count);
        Assert.Equal(250, s["a"]);
        Assert.Equal(750, s["f"]);
        Assert.All(new[] { "b", "c", "d", "e" }, n => Assert.Equal(0, s[n]));
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(-5L)]
    public void Nothing_or_less_to_split_gives_zeros(long total)
    {
        var s = QuotaSplit.Split(total, W(("a", 1), ("b", 1)));
        Assert.Equal([0L, 0L], s.Values);
    }

    [Fact]
    public void No_positive_weight_gives_zeros_and_no_nodes_gives_nothing()
    {
        Assert.All(QuotaSplit.Split(100, W(("a", 0), ("b", -1))).Values, v => Assert.Equal(0, v));
        Assert.Empty(QuotaSplit.Split(100, W()));
    }

    [Fact]
    public void The_largest_total_splits_exactly()
    {
        var s = QuotaSplit.Split(ByteSize.MaxBytes, W(("a", 1), ("b", 1), ("c", 1), ("d", 0.1), ("e", 7.3)));
        Assert.Equal(ByteSize.MaxBytes, s.Values.Sum());
    }

    private static readonly string[] Nodes = ["hv1", "hv2", "hv3", "hv4", "hv5", "hv6", "a", "B"];

    private static Gen<long> Totals() => Gen.OneOf(
        Gen.Choose(0, 1000).Select(i => (long)i),
        Gen.Choose(0, int.MaxValue).Select(i => (long)i * 1000 + 7),
        Gen.Choose(0, int.MaxValue).Zip(Gen.Choose(0, int.MaxValue)).Select(t => ((long)t.Item1 << 31 | (uint)t.Item2) % (ByteSize.MaxBytes + 1)),
        Gen.Elements(1L, 2L, 3L, ByteSize.MaxBytes, ByteSize.MaxBytes - 1));

    private static Gen<double> Weights() => Gen.OneOf(
        Gen.Choose(1, 10).Select(i => (double)i),
        Gen.Choose(1, 100_000).Select(i => i / 1000.0),
        Gen.Elements(0.0, -1.0, 1e-3, 1e6, 0.1, 1.0 / 3));

    private static Gen<Dictionary<string, double>> WeightMaps() =>
        Gen.SubListOf(Nodes).SelectMany(nodes => Gen.CollectToList(nodes.Select(_ => Weights()))
            .Select(ws => nodes.Zip(ws).ToDictionary(x => x.First, x => x.Second)));

    [Property(MaxTest = 500)]
    public Property Parts_add_up_exactly_are_proportional_and_deterministic() =>
        Prop.ForAll(Totals().Zip(WeightMaps()).ToArbitrary(), input =>
        {
            var (total, weights) = input;
            var split = QuotaSplit.Split(total, weights);
            var positive = weights.Where(kv => kv.Value > 0).ToList();
            var sum = positive.Sum(kv => (decimal)kv.Value);

            // Every node is listed, and non-positive weights get nothing.
            Assert.Equal(weights.Keys.Order(), split.Keys.Order());
            Assert.All(weights.Where(kv => kv.Value <= 0), kv => Assert.Equal(0, split[kv.Key]));
            Assert.All(split.Values, v => Assert.True(v >= 0));

            if (positive.Count > 0 && total > 0)
            {
                Assert.Equal(total, split.Values.Sum());
                foreach (var (node, w) in positive)
                {
                    var exact = total * (decimal)w / sum;
                    Assert.True(Math.Abs(split[node] - exact) < 1, $"{node}: {split[node]} vs {exact}");
                }
            }
            else Assert.All(split.Values, v => Assert.Equal(0, v));

            // The same weights in another order split the same way.
            var reversed = weights.Reverse().ToDictionary(kv => kv.Key, kv => kv.Value);
            var again = QuotaSplit.Split(total, reversed);
            Assert.All(split, kv => Assert.Equal(kv.Value, again[kv.Key]));
        });
}
