namespace Coordinator.Domain;

/// <summary>
/// Splits a number of bytes between nodes in proportion to their weights so that the parts add up exactly
/// (largest-remainder method; ties broken by node name, so the split is deterministic).
/// </summary>
public static class QuotaSplit
{
    public static IReadOnlyDictionary<string, long> Split(long total, IReadOnlyDictionary<string, double> weights)
    {
        var result = new Dictionary<string, long>(StringComparer.Ordinal);
        var positive = weights.Where(kv => kv.Value > 0 && double.IsFinite(kv.Value)).OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
        foreach (var n in weights.Keys) result[n] = 0;
        if (positive.Count == 0 || total <= 0) return result;

        var sum = positive.Sum(kv => (decimal)kv.Value);
        var remainders = new List<(string Node, decimal Remainder)>();
        long given = 0;
        foreach (var (node, w) in positive)
        {
            var exact = total * (decimal)w / sum;
            var floor = (long)decimal.Floor(exact);
            result[node] = floor;
            given += floor;
            remainders.Add((node, exact - floor));
        }
        // Fewer than positive.Count bytes are left over; hand them out one each, largest remainder first.
        foreach (var (node, _) in remainders.OrderByDescending(x => x.Remainder).ThenBy(x => x.Node, StringComparer.Ordinal))
        {
            if (given >= total) break;
            result[node]++;
            given++;
        }
        return result;
    }
}
