using System.Text;
using Coordinator.Domain;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using static Coordinator.Domain.Tests.LedgerDriver;

namespace Coordinator.Domain.Tests;

// ------------------------------------------------------------------------------------------------ commands

/// <summary>
/// A size: fixed bytes (any long), or relative to the target at the time of the step: the volume's capacity, or what
/// the target holds plus the volume's free space (the exact boundary of what fits), or what it holds, each plus <c>Delta</c>.
/// </summary>
public sealed record AnySize(long? Fixed, AnySize.Base From = AnySize.Base.Capacity, int Delta = 0)
{
    public enum Base { Capacity, HeldPlusFree, Held }

    public override string ToString() => Fixed is { } f ? f.ToString() : $"{From}{Delta:+0;-0;+0}";
}

public abstract record Cmd;
public sealed record ReserveCmd(string Volume, string Consumer, string Node, AnySize Size, bool WithPath, string? Image) : Cmd;
public sealed record ReleaseCmd(string Volume, string Consumer) : Cmd;
public sealed record AcquireCmd(string Image, string Node, AnySize Size, string Volume, int TtlSeconds) : Cmd;
/// <summary>A renew, complete or abort; image "*" names whichever lease is held (the first), if any.</summary>
public sealed record LeaseCmd(LeaseAction Action, string Image, bool StaleToken, AnySize Size) : Cmd;
public sealed record TimeCmd(int Seconds, bool Sweep) : Cmd;
public sealed record NodeLeftCmd(string Node) : Cmd;
public sealed record EvictCmd(string Image, int MaxAgeSeconds) : Cmd;
public sealed record NewLeaderCmd(string Node) : Cmd;
public sealed record CapacityCmd(string Node, long MemoryMb, int LogicalProcessors) : Cmd;
public sealed record DrainCmd(string Node, bool Draining) : Cmd;
public sealed record PlaceCmd(string Name, string Node, int MemoryMb, int Vcpus, string Volume, AnySize Disk, string? Image) : Cmd;
public sealed record AdoptCmd(string Name, string Node, int MemoryMb, int Vcpus, string Volume, AnySize Disk) : Cmd;
/// <summary>A VM that arrives by migration: a request like a spawn (it must fit), unlike a reconciliation adoption.</summary>
public sealed record ArriveCmd(string Name, string Node, int MemoryMb, int Vcpus, string Volume, AnySize Disk) : Cmd;
public sealed record PhaseCmd(string Name, VmPhase Phase) : Cmd;
public sealed record OwnerCmd(string Name, string Node) : Cmd;
public sealed record RemoveVmCmd(string Name) : Cmd;

/// <summary>Sends the last reservation or placement again, exactly as it was resolved (retries are idempotent).</summary>
public sealed record RepeatCmd : Cmd;

/// <summary>A rescan: used bytes and a size per current reservation (by index) plus usage under arbitrary names.</summary>
public sealed record RescanCmd(string Volume, AnySize Used, IReadOnlyList<AnySize> PerReservation, IReadOnlyList<(string Consumer, AnySize Size)> Extra) : Cmd
{
    public override string ToString() =>
        $"RescanCmd {{ {Volume}, used {Used}, [{string.Join(",", PerReservation)}], {string.Join(",", Extra.Select(e => $"{e.Consumer}={e.Size}"))} }}";
}

public sealed record ConfigureCmd(string Volume, AnySize Capacity, AnySize Headroom) : Cmd;

public sealed record CmdScenario(IReadOnlyList<Cmd> Cmds)
{
    public override string ToString()
    {
        var sb = new StringBuilder("CmdScenario").AppendLine();
        for (var i = 0; i < Cmds.Count; i++) sb.AppendLine($"  {i,3}: {Cmds[i]}");
        return sb.ToString();
    }
}

// ------------------------------------------------------------------------------------------------ generators

public static class CmdGen
{
    public static readonly (string Name, string Root, long Capacity, long Headroom)[] StartVolumes =
    [
        ("v1", @"C:\ClusterStorage\Volume1", 100 * GiB, 0),
        ("v2", "/mnt/csv2", ByteSize.MaxBytes, ByteSize.MaxBytes / 2),
    ];

    /// <summary>Ids with case twins (one id under NTFS rules) and ids that are not file names of their own.</summary>
    public static readonly string[] Consumers = ["c1", "C1", "c2", "vm1", "VM1"];
    public static readonly string[] BadConsumers = ["c1.", "c1 ", "CON", "a%b", "..%2F..%2Fetc", "a:b", "_image-i1", "", "a/b"];
    public static readonly string[] VmNames = ["vm1", "VM1", "vm2", "Vm2"];
    public static readonly string[] BadVmNames = ["vm1.", "NUL", "vm%1", ""];
    public static readonly string[] Images = ["i1", "I1", "i2"];
    public static readonly string[] BadImages = ["CON", "bad/x", "", ".x", "i1."];
    public static readonly string[] Nodes = ["n1", "n2", "n3"];
    public static readonly string[] BadNodes = ["", "n/1", "n\u0001"];

    public static readonly long[] Extremes =
        [0, 1, -1, ByteSize.MaxBytes, ByteSize.MaxBytes - 1, ByteSize.MaxBytes + 1, long.MaxValue, long.MinValue];

    private static Gen<string> Pick(string[] good, string[] bad) => Gen.Frequency((12, Gen.Elements(good)), (1, Gen.Elements(bad)));

    private static Gen<string> Volume() => Gen.Frequency((12, Gen.Constant("v1")), (4, Gen.Constant("v2")), (1, Gen.Constant("v9")));

    public static Gen<AnySize> Sizes() => Gen.Frequency(
        (8, Gen.Choose(1, 120).Select(i => new AnySize(i * GiB))),
        (2, Gen.Choose(1, int.MaxValue).Select(i => new AnySize(i))),
        (4, Gen.Elements(Extremes).Select(b => new AnySize(b))),
        (5, from b in Gen.Elements(AnySize.Base.Capacity, AnySize.Base.HeldPlusFree)
            from delta in Gen.Elements(-1, 0, 1)
            select new AnySize(null, b, delta)));

    /// <summary>Measured numbers: mostly plausible, sometimes anything a broken file system could report.</summary>
    private static Gen<AnySize> Measured() => Gen.Frequency(
        (14, Gen.Choose(0, 30).Select(i => new AnySize(i * GiB))),
        (2, Gen.Elements(Extremes).Select(b => new AnySize(b))),
        (1, Gen.Elements(-1, 0, 1).Select(delta => new AnySize(null, AnySize.Base.Capacity, delta))));

    private static Gen<Cmd> Reserves() =>
        from v in Volume()
        from c in Pick(Consumers, BadConsumers)
        from n in Pick(Nodes, BadNodes)
        from s in Sizes()
        from path in Gen.Elements(true, false)
        from i in Gen.Frequency((3, Gen.Constant<string?>(null)), (2, Gen.Elements<string?>(Images)))
        select (Cmd)new ReserveCmd(v, c, n, s, path, i);

    private static Gen<Cmd> Acquires() =>
        from i in Pick(Images, BadImages)
        from n in Pick(Nodes, BadNodes)
        from s in Sizes()
        from v in Volume()
        from ttl in Gen.Choose(10, 120)
        select (Cmd)new AcquireCmd(i, n, s, v, ttl);

    private static Gen<Cmd> LeaseActions() =>
        from a in Gen.Frequency((2, Gen.Constant(LeaseAction.Renew)), (5, Gen.Constant(LeaseAction.Complete)), (2, Gen.Constant(LeaseAction.Abort)))
        from i in Gen.Frequency((3, Gen.Constant("*")), (2, Pick(Images, BadImages)))
        from stale in Gen.Frequency((6, Gen.Constant(false)), (1, Gen.Constant(true)))
        from s in Gen.Frequency((4, Sizes()), (3, Gen.Elements(-1, 0, 0, 1).Select(delta => new AnySize(null, AnySize.Base.Held, delta))))
        select (Cmd)new LeaseCmd(a, i, stale, s);

    private static Gen<Cmd> Places() =>
        from name in Pick(VmNames, BadVmNames)
        from n in Pick(Nodes, BadNodes)
        from mem in Gen.Frequency((8, Gen.Choose(1, 16).Select(i => i * 1024)), (1, Gen.Elements(0, -1, int.MaxValue)))
        from cpus in Gen.Frequency((8, Gen.Choose(1, 8)), (1, Gen.Elements(0, -1, 4096)))
        from v in Volume()
        from disk in Sizes()
        from image in Gen.Frequency((3, Gen.Constant<string?>(null)), (1, Gen.Elements<string?>("i1", "I1", "bad/x")))
        select (Cmd)new PlaceCmd(name, n, mem, cpus, v, disk, image);

    private static Gen<Cmd> Adopts() =>
        from name in Pick(VmNames, BadVmNames)
        from n in Pick(Nodes, BadNodes)
        from mem in Gen.Frequency((8, Gen.Choose(1, 16).Select(i => i * 1024)), (1, Gen.Elements(0, -1, int.MaxValue)))
        from cpus in Gen.Frequency((8, Gen.Choose(1, 8)), (1, Gen.Elements(0, 4096)))
        from v in Volume()
        from disk in Sizes()
        select (Cmd)new AdoptCmd(name, n, mem, cpus, v, disk);

    private static Gen<Cmd> Arrivals() =>
        from name in Pick(VmNames, BadVmNames)
        from n in Pick(Nodes, BadNodes)
        from mem in Gen.Frequency((8, Gen.Choose(1, 16).Select(i => i * 1024)), (1, Gen.Elements(0, -1, int.MaxValue)))
        from cpus in Gen.Frequency((8, Gen.Choose(1, 8)), (1, Gen.Elements(0, 4096)))
        from v in Volume()
        from disk in Sizes()
        select (Cmd)new ArriveCmd(name, n, mem, cpus, v, disk);

    private static Gen<Cmd> Rescans() =>
        from v in Volume()
        from used in Measured()
        from per in Gen.ArrayOf(Measured(), 6)
        from extraNames in Gen.SubListOf(["ghost", "C1", "VM1", "_IMAGE-I1", "c2"])
        from extraSizes in Gen.ArrayOf(Measured(), extraNames.Count)
        select (Cmd)new RescanCmd(v, used, per, extraNames.Zip(extraSizes).ToList());

    private static Gen<Cmd> Configures() =>
        from v in Gen.Frequency((3, Gen.Constant("v1")), (1, Gen.Constant("v2")), (1, Gen.Constant("v3")))
        from cap in Gen.Frequency((6, Gen.Choose(0, 200).Select(i => new AnySize(i * GiB))), (2, Gen.Elements(Extremes).Select(b => new AnySize(b))))
        from hr in Gen.Frequency((6, Gen.Constant(new AnySize(0))), (2, Gen.Choose(0, 20).Select(i => new AnySize(i * GiB))),
            (1, Gen.Elements(Extremes).Select(b => new AnySize(b))))
        select (Cmd)new ConfigureCmd(v, cap, hr);

    public static Gen<Cmd> Cmds() => Gen.Frequency(
        (10, Reserves()),
        (2, Gen.Constant<Cmd>(new RepeatCmd())),
        (3, from v in Volume() from c in Pick(Consumers, BadConsumers) select (Cmd)new ReleaseCmd(v, c)),
        (8, Acquires()),
        (10, LeaseActions()),
        (3, from s in Gen.Frequency((4, Gen.Choose(0, 30)), (2, Gen.Choose(30, 200)), (1, Gen.Choose(3600, 90_000)))
            from sweep in Gen.Elements(true, true, false)
            select (Cmd)new TimeCmd(s, sweep)),
        (2, Pick(Nodes, BadNodes).Select(n => (Cmd)new NodeLeftCmd(n))),
        (2, from i in Pick(Images, BadImages) from age in Gen.Elements(0, 60, 3600) select (Cmd)new EvictCmd(i, age)),
        (1, Gen.Elements(Nodes).Select(n => (Cmd)new NewLeaderCmd(n))),
        (3, from n in Pick(Nodes, BadNodes)
            from mem in Gen.Frequency((6, Gen.Choose(8, 64).Select(i => (long)i * 1024)), (1, Gen.Elements(0L, -1L, long.MaxValue, 1L << 40)))
            from lps in Gen.Frequency((6, Gen.Choose(1, 16)), (1, Gen.Elements(0, -1, int.MaxValue)))
            select (Cmd)new CapacityCmd(n, mem, lps)),
        (1, from n in Gen.Elements(Nodes) from dr in Gen.Elements(true, false) select (Cmd)new DrainCmd(n, dr)),
        (7, Places()),
        (2, Adopts()),
        (3, Arrivals()),
        (2, from n in Pick(VmNames, BadVmNames) from p in Gen.Elements(Enum.GetValues<VmPhase>()) select (Cmd)new PhaseCmd(n, p)),
        (2, from n in Pick(VmNames, BadVmNames) from node in Pick(Nodes, BadNodes) select (Cmd)new OwnerCmd(n, node)),
        (2, Pick(VmNames, BadVmNames).Select(n => (Cmd)new RemoveVmCmd(n))),
        (4, Rescans()),
        (1, Configures()));

    public static Gen<CmdScenario> Scenarios() =>
        from n in Gen.Choose(0, 60)
        from cmds in Gen.ArrayOf(Cmds(), n)
        select new CmdScenario(cmds);

    public static IEnumerable<CmdScenario> Shrink(CmdScenario s)
    {
        var cmds = s.Cmds;
        if (cmds.Count > 3)
        {
            yield return s with { Cmds = cmds.Take(cmds.Count / 2).ToList() };
            yield return s with { Cmds = cmds.Skip(cmds.Count / 2).ToList() };
        }
        for (var i = cmds.Count - 1; i >= 0; i--) yield return s with { Cmds = cmds.Where((_, j) => j != i).ToList() };
    }

    public static Arbitrary<CmdScenario> Arbitrary() => Arb.From(Scenarios(), Shrink);
}

// ------------------------------------------------------------------------------------------------ invariants

/// <summary>
/// The ledger's invariants, computed from scratch from its snapshot (no running totals) and compared with what it
/// answers. They hold for every state, whatever led to it.
/// </summary>
public static class LedgerInvariants
{
    public static long Sat(Int128 v) => (long)Int128.Clamp(v, long.MinValue, long.MaxValue);

    /// <summary>usable - Σ max(claimed, measured) - unowned, from scratch.</summary>
    public static Int128 Room(VolumeSnapshot vs)
    {
        var usage = vs.ConsumerUsage;
        Int128 measuredOwned = 0, effective = 0;
        foreach (var r in vs.Reservations)
        {
            var m = usage.GetValueOrDefault(r.ConsumerId);
            measuredOwned += m;
            effective += Math.Max(r.Bytes, m);
        }
        return Int128.Max(0, (Int128)vs.CapacityBytes - vs.HeadroomBytes) - effective - Int128.Max(0, (Int128)vs.UsedBytes - measuredOwned);
    }

    public static void Check(CsvLedger l)
    {
        var snapshot = l.ToSnapshot();
        Assert.Equal(snapshot.Volumes.Select(v => v.Name), l.VolumeNames);
        var live = l.ToSnapshot().Nodes!.ToDictionary(n => n.Node, _ => 1.0);
        foreach (var vs in snapshot.Volumes)
        {
            var view = l.View(vs.Name)!;
            // Ids are unique under NTFS equivalence; measured usage belongs to current reservations, spelled as they are.
            Assert.Equal(vs.Reservations.Count, vs.Reservations.Select(r => r.ConsumerId).Distinct(FileNames.Comparer).Count());
            Assert.All(vs.ConsumerUsage.Keys, k => Assert.Contains(k, vs.Reservations.Select(r => r.ConsumerId)));
            // Measured numbers are within [0, 2^62].
            Assert.InRange(vs.UsedBytes, 0, ByteSize.MaxBytes);
            Assert.All(vs.ConsumerUsage.Values, u => Assert.InRange(u, 0, ByteSize.MaxBytes));

            // (b) free is never negative; free and overcommitment are the two sides of one exact number.
            var room = Room(vs);
            Assert.True(view.FreeBytes >= 0 && view.OvercommittedBytes >= 0, view.ToString());
            Assert.Equal(Sat(Int128.Max(0, room)), view.FreeBytes);
            Assert.Equal(Sat(Int128.Max(0, -room)), view.OvercommittedBytes);

            // (c) the running totals equal a recomputation.
            Assert.Equal(Sat(vs.Reservations.Aggregate((Int128)0, (s, r) => s + r.Bytes)), view.ReservedBytes);
            Assert.Equal(vs.Reservations.Count, view.Reservations);
            var measuredOwned = vs.Reservations.Aggregate((Int128)0, (s, r) => s + vs.ConsumerUsage.GetValueOrDefault(r.ConsumerId));
            Assert.Equal(Sat(Int128.Max(0, (Int128)vs.UsedBytes - measuredOwned)), view.UnownedBytes);
            var byNode = vs.Reservations.GroupBy(r => r.Node)
                .ToDictionary(g => g.Key, g => Sat(g.Aggregate((Int128)0, (s, r) => s + Math.Max(r.Bytes, vs.ConsumerUsage.GetValueOrDefault(r.ConsumerId)))));
            foreach (var policy in new[] { QuotaPolicy.Shared, QuotaPolicy.Partitioned })
                foreach (var q in l.Quotas(vs.Name, policy, live)!)
                {
                    Assert.Equal(byNode.GetValueOrDefault(q.Node), q.ClaimedBytes);
                    Assert.True(q.FreeBytes >= 0 && q.FreeBytes <= view.FreeBytes && q.QuotaBytes >= q.ClaimedBytes);
                }
        }

        // The image cache: one lease or one entry per image (NTFS-equal ids are one image), each with its claim.
        var images = l.Images.Select(i => i.ImageId).ToList();
        var leases = l.Leases.Select(x => x.ImageId).ToList();
        Assert.Equal(images.Count + leases.Count, images.Concat(leases).Distinct(FileNames.Comparer).Count());
        foreach (var i in l.Images) Assert.Equal(i.SizeBytes, l.Find(i.Volume, CsvLedger.ImageClaim(i.ImageId))!.Bytes);
        foreach (var x in l.Leases) Assert.Equal(x.SizeBytes, l.Find(x.Volume, CsvLedger.ImageClaim(x.ImageId))!.Bytes);
        var users = snapshot.Volumes.SelectMany(v => v.Reservations)
            .Where(r => r.ImageId is not null && !r.ConsumerId.StartsWith(CsvLedger.ImageClaimPrefix, StringComparison.OrdinalIgnoreCase))
            .GroupBy(r => r.ImageId!, FileNames.Comparer).ToDictionary(g => g.Key, g => g.Count(), FileNames.Comparer);
        foreach (var image in users.Keys.Concat(images)) Assert.Equal(users.GetValueOrDefault(image), l.UsersOf(image));

        // The inventory: VM names unique under NTFS equivalence.
        Assert.Equal(l.Vms.Count, l.Vms.Select(v => v.Name).Distinct(FileNames.Comparer).Count());
    }
}

// ------------------------------------------------------------------------------------------------ the property

public class AllCommandsProperties
{
    private const string Checksum = "abcdef01";

    private sealed class Run(Coverage cov)
    {
        public readonly LedgerDriver D = new();
        public readonly Coverage Cov = cov;
        public readonly CsvLedger Replayed = new();
        public object? Last;
        public CsvLedger L => D.Ledger;

        public DateTimeOffset Step()
        {
            D.Advance(TimeSpan.FromSeconds(1));
            return D.Now;
        }
    }

    /// <summary>Runs every command, checking the invariants, replay and snapshots after each step.</summary>
    internal static CsvLedger Check(CmdScenario s, Coverage? cov = null)
    {
        var run = new Run(cov ?? new Coverage());
        foreach (var (name, root, capacity, headroom) in CmdGen.StartVolumes) run.D.Configure(name, root, capacity, headroom);
        foreach (var node in CmdGen.Nodes) run.D.Apply(run.L.ReportCapacity(node, 16 * 1024, 4, run.D.Now));
        Feed(run, 0);

        for (var step = 0; step < s.Cmds.Count; step++)
        {
            var cmd = s.Cmds[step];
            var journal = run.D.Journal.Count;
            var state = StateOf(run.L);
            var before = run.L.ToSnapshot().Volumes.ToDictionary(v => v.Name, LedgerInvariants.Room);

            var (refused, fact) = Execute(run, cmd);

            // (f) refused decisions emit no events and change nothing.
            if (refused)
            {
                Assert.Equal(journal, run.D.Journal.Count);
                Assert.Equal(state, StateOf(run.L));
            }

            // (a) no decision takes a volume past its usable capacity or deeper into overcommitment; only facts
            // (a scan, an adoption, configuration) may, and the views then report it exactly (checked below).
            foreach (var vs in run.L.ToSnapshot().Volumes)
            {
                var room = LedgerInvariants.Room(vs);
                if (room < 0) run.Cov.Hit(fact ? $"overcommitted by {cmd.GetType().Name}" : "overcommitted volume kept");
                if (!fact && before.TryGetValue(vs.Name, out var was))
                    Assert.True(room >= Int128.Min(was, 0), $"{cmd} took {vs.Name} from room {was} to {room}");
                if (room == 0 && before.GetValueOrDefault(vs.Name) != 0) run.Cov.Hit("volume filled exactly");
            }

            // (b), (c) and the books' own invariants.
            LedgerInvariants.Check(run.L);
            // (e) replaying the events (through JSON) gives the same state, and (d) so does a snapshot round trip.
            Feed(run, journal);
            Assert.Equal(StateOf(run.L), StateOf(CsvLedger.FromSnapshot(RoundTrip(run.L.ToSnapshot()))));
        }
        return run.L;
    }

    private static void Feed(Run run, int from)
    {
        foreach (var e in run.D.Journal.Skip(from)) run.Replayed.Apply((LedgerEvent)RoundTrip(e));
        Assert.Equal(StateOf(run.L), StateOf(run.Replayed));
    }

    /// <summary>Resolves a size against the target's volume: capacity ± delta, or held + free ± delta (saturated).</summary>
    private static long Resolve(Run run, AnySize size, string volume, long held)
    {
        if (size.Fixed is { } f) return f;
        var view = run.L.View(volume);
        Int128 b = size.From switch
        {
            AnySize.Base.Capacity => view?.CapacityBytes ?? 100 * GiB,
            AnySize.Base.Held => held,
            _ => (Int128)held + (view?.FreeBytes ?? 0),
        };
        return LedgerInvariants.Sat(b + size.Delta);
    }

    private static string SizeClass(long bytes, long capacity, long heldPlusFree) =>
        bytes > 0 && bytes == heldPlusFree ? "free" : bytes > 1 && bytes == heldPlusFree + 1 ? "free+1"
        : Array.IndexOf(CmdGen.Extremes, bytes) >= 0 ? bytes switch
        {
            ByteSize.MaxBytes => "2^62", long.MaxValue => "2^63-1", 0 => "0", 1 => "1", long.MinValue => "min", -1 => "-1", _ => "near 2^62",
        }
        : bytes == capacity ? "capacity" : bytes == capacity + 1 ? "capacity+1" : "other";

    /// <summary>The class of a size against the volume as it is before the decision.</summary>
    private static string Classify(Run run, long bytes, string volume, long held)
    {
        var view = run.L.View(volume);
        return SizeClass(bytes, view?.CapacityBytes ?? -2, view is null ? -2 : held + view.FreeBytes);
    }

    private static void HitSize(Run run, string what, string cls, string status)
    {
        if (cls == "other") return;
        run.Cov.Hit($"{what} size {cls}");
        run.Cov.Hit($"{what} size {cls} {status}");
    }

    private static bool ValidBytes(long b) => b > 0 && b <= ByteSize.MaxBytes;

    /// <summary>Executes one command; returns whether it must have been refused (silent) and whether it is a fact.</summary>
    private static (bool Refused, bool Fact) Execute(Run run, Cmd cmd)
    {
        var (d, l) = (run.D, run.L);
        switch (cmd)
        {
            case ReserveCmd c:
            {
                var held = l.Find(c.Volume, c.Consumer);
                var bytes = Resolve(run, c.Size, c.Volume, held?.Bytes ?? 0);
                var view = l.View(c.Volume);
                var cls = Classify(run, bytes, c.Volume, held?.Bytes ?? 0);
                var request = new ReserveRequest(c.Volume, c.Consumer, c.Node, bytes, c.WithPath ? $"vms/{c.Consumer}" : null, c.Image);
                run.Last = request;
                var decision = d.Reserve(request);
                var o = decision.Outcome;
                run.Cov.Hit($"reserve {o.Status}");
                HitSize(run, "reserve", cls, o.Status.ToString());
                if (held is not null && held.ConsumerId != c.Consumer && o.Status is ReserveStatus.Updated or ReserveStatus.Unchanged)
                    run.Cov.Hit("reserve of a case twin is the same reservation");
                var bad = CmdGen.BadConsumers.Contains(c.Consumer) || CmdGen.BadNodes.Contains(c.Node) || !ValidBytes(bytes);
                if (view is not null && bad) Assert.Equal(ReserveStatus.Invalid, o.Status);
                Assert.True(o.FreeBytes >= 0);
                if (o.Status is ReserveStatus.Created or ReserveStatus.Updated)
                {
                    Assert.Equal(l.View(c.Volume)!.FreeBytes, o.FreeBytes);
                    Assert.Equal(bytes, l.Find(c.Volume, c.Consumer)!.Bytes);
                    Assert.Equal(held?.ConsumerId ?? c.Consumer, l.Find(c.Volume, c.Consumer)!.ConsumerId);
                    return (false, false);
                }
                return (true, false);
            }
            case ReleaseCmd c:
            {
                var o = d.Release(c.Volume, c.Consumer).Outcome;
                run.Cov.Hit($"release {o.Status}");
                if (o.Status == ReleaseStatus.Released) Assert.Null(l.Find(c.Volume, c.Consumer));
                return (o.Status != ReleaseStatus.Released, false);
            }
            case AcquireCmd c:
            {
                var bytes = Resolve(run, c.Size, c.Volume, 0);
                var hadLease = l.FindLease(c.Image);
                var cls = Classify(run, bytes, c.Volume, 0);
                var decision = d.Acquire(c.Image, c.Node, bytes, c.Volume, TimeSpan.FromSeconds(c.TtlSeconds));
                var o = decision.Outcome;
                run.Cov.Hit($"acquire {o.Status}");
                HitSize(run, "acquire", cls, o.Status.ToString());
                if (o.Cached is { } hit && hit.ImageId != c.Image) run.Cov.Hit("acquire of a case twin answers cached");
                if (CmdGen.BadImages.Contains(c.Image) || CmdGen.BadNodes.Contains(c.Node) || !ValidBytes(bytes))
                    Assert.Equal(LeaseStatus.Invalid, o.Status);
                Assert.True(o.FreeBytes >= 0);
                if (o.Status == LeaseStatus.Granted && decision.Events.Count > 0)
                {
                    Assert.Equal(l.View(c.Volume)!.FreeBytes, o.FreeBytes);
                    return (false, false);
                }
                if (o.Status == LeaseStatus.Granted) Assert.Equal(hadLease, o.Lease);
                return (o.Status != LeaseStatus.Cached || decision.Events.Count == 0, false);
            }
            case LeaseCmd { Image: "*" } any:
                return Execute(run, any with { Image = l.Leases.FirstOrDefault()?.ImageId ?? "i2" });
            case LeaseCmd c:
            {
                var lease = l.FindLease(c.Image);
                var (leaseId, token) = lease is null ? ($"{c.Image}.{l.LastFencingToken + 1}", l.LastFencingToken + 1)
                    : c.StaleToken ? (lease.LeaseId, lease.FencingToken - 1) : (lease.LeaseId, lease.FencingToken);
                var volume = lease?.Volume ?? "v1";
                var bytes = Resolve(run, c.Size, volume, lease?.SizeBytes ?? 0);
                var cls = Classify(run, bytes, volume, lease?.SizeBytes ?? 0);
                var decision = c.Action switch
                {
                    LeaseAction.Renew => d.Renew(c.Image, leaseId, token),
                    LeaseAction.Complete => d.Complete(c.Image, leaseId, token, bytes, Checksum),
                    _ => d.Abort(c.Image, leaseId, token),
                };
                var o = decision.Outcome;
                run.Cov.Hit($"{c.Action} {o.Status}");
                if (lease is not null && lease.ImageId != c.Image && o.Status == LeaseActionStatus.Done) run.Cov.Hit("lease action through a case twin");
                if (c.Action == LeaseAction.Complete && lease is not null && !c.StaleToken)
                {
                    HitSize(run, "complete", cls, o.Status.ToString());
                    if (bytes > lease.SizeBytes) run.Cov.Hit($"complete above its grant {o.Status}");
                    if (!ValidBytes(bytes) && o.Status != LeaseActionStatus.Stale) Assert.Equal(LeaseActionStatus.Invalid, o.Status);
                    if (o.Status == LeaseActionStatus.InsufficientSpace) Assert.Equal(lease, l.FindLease(c.Image));
                    if (o.Status == LeaseActionStatus.Done) Assert.Equal(bytes, l.Find(volume, CsvLedger.ImageClaim(lease.ImageId))!.Bytes);
                }
                return (o.Status != LeaseActionStatus.Done, false);
            }
            case TimeCmd t:
            {
                d.Advance(TimeSpan.FromSeconds(t.Seconds));
                if (!t.Sweep) return (true, false);
                var events = d.ExpireLeases();
                if (events.Count > 0) run.Cov.Hit("leases expired");
                return (events.Count == 0, false);
            }
            case NodeLeftCmd n:
            {
                var events = d.EndLeasesOf(n.Node);
                if (events.Count > 0) run.Cov.Hit("leases of a node that left ended");
                return (events.Count == 0, false);
            }
            case EvictCmd e:
            {
                var decision = d.Evict(e.Image, TimeSpan.FromSeconds(e.MaxAgeSeconds));
                if (decision.Outcome is not null) run.Cov.Hit("evicted");
                return (decision.Outcome is null, false);
            }
            case NewLeaderCmd n:
                d.NextEpoch(n.Node);
                d.RefreshLeases();
                return (false, false);
            case RepeatCmd when run.Last is ReserveRequest r:
            {
                run.Cov.Hit("repeat reserve");
                var o = d.Reserve(r).Outcome;
                run.Cov.Hit($"repeated reserve {o.Status}");
                run.Cov.Hit($"reserve {o.Status}");
                return (o.Status is not (ReserveStatus.Created or ReserveStatus.Updated), false);
            }
            case RepeatCmd when run.Last is PlaceVmRequest r:
            {
                var decision = l.PlaceVm(r, run.Step());
                d.Apply(decision.Events);
                run.Cov.Hit($"place {decision.Outcome.Status}");
                return (decision.Outcome.Status != PlaceStatus.Placed, false);
            }
            case RepeatCmd:
                return (true, false);
            case CapacityCmd c:
            {
                var events = l.ReportCapacity(c.Node, c.MemoryMb, c.LogicalProcessors, run.Step());
                d.Apply(events);
                var bad = CmdGen.BadNodes.Contains(c.Node) || c.MemoryMb is < 0 or > VmInventory.MaxNodeMemoryMb || c.LogicalProcessors < 0
                          || c.LogicalProcessors > VmInventory.MaxLogicalProcessors;
                if (bad) Assert.Empty(events);
                run.Cov.Hit(bad ? "capacity report refused" : "capacity report");
                return (events.Count == 0, false);
            }
            case DrainCmd c:
            {
                var events = l.SetDraining(c.Node, c.Draining, run.Step());
                d.Apply(events);
                return (events.Count == 0, false);
            }
            case PlaceCmd c:
            {
                var bytes = Resolve(run, c.Disk, c.Volume, 0);
                var cls = Classify(run, bytes, c.Volume, 0);
                var twin = l.FindVm(c.Name);
                var request = new PlaceVmRequest(c.Name, c.Node, c.MemoryMb, c.Vcpus, c.Volume, bytes, c.Image);
                run.Last = request;
                var decision = l.PlaceVm(request, run.Step());
                d.Apply(decision.Events);
                var o = decision.Outcome;
                run.Cov.Hit($"place {o.Status}");
                HitSize(run, "place", cls, o.Status.ToString());
                if (twin is not null && twin.Name != c.Name)
                {
                    Assert.NotEqual(PlaceStatus.Placed, o.Status);
                    Assert.NotEqual(PlaceStatus.Unchanged, o.Status);
                    if (o.Status == PlaceStatus.AlreadyExists) run.Cov.Hit("place of a case twin AlreadyExists");
                }
                if (!ValidBytes(bytes) || CmdGen.BadVmNames.Contains(c.Name) || CmdGen.BadNodes.Contains(c.Node) || c.MemoryMb <= 0 || c.Vcpus <= 0)
                    Assert.Equal(PlaceStatus.Invalid, o.Status);
                return (o.Status != PlaceStatus.Placed, false);
            }
            case AdoptCmd c:
            {
                var bytes = Resolve(run, c.Disk, c.Volume, 0);
                var cls = Classify(run, bytes, c.Volume, 0);
                var request = new PlaceVmRequest(c.Name, c.Node, c.MemoryMb, c.Vcpus, c.Volume, bytes, null);
                var now = run.Step();
                var decision = l.DecideAdoption(request, "arrival", now);
                Assert.Equal(decision.Events, l.AdoptVm(request, "arrival", now));
                d.Apply(decision.Events);
                var o = decision.Outcome;
                run.Cov.Hit($"adopt {o.Status}");
                HitSize(run, "adopt", cls, o.Status.ToString());
                if (!ValidBytes(bytes) || CmdGen.BadVmNames.Contains(c.Name) || CmdGen.BadNodes.Contains(c.Node) || c.MemoryMb <= 0 || c.Vcpus <= 0)
                    Assert.Equal(PlaceStatus.Invalid, o.Status);
                if (o.Status == PlaceStatus.Placed && l.View(c.Volume)?.OvercommittedBytes > 0) run.Cov.Hit("adoption overcommitted");
                return (o.Status is not PlaceStatus.Placed, true);
            }
            case ArriveCmd c:
            {
                var bytes = Resolve(run, c.Disk, c.Volume, 0);
                var cls = Classify(run, bytes, c.Volume, 0);
                var request = new PlaceVmRequest(c.Name, c.Node, c.MemoryMb, c.Vcpus, c.Volume, bytes, null);
                var decision = l.Arrive(request, run.Step());
                d.Apply(decision.Events);
                var o = decision.Outcome;
                run.Cov.Hit($"arrive {o.Status}");
                HitSize(run, "arrive", cls, o.Status.ToString());
                if (!ValidBytes(bytes) || CmdGen.BadVmNames.Contains(c.Name) || CmdGen.BadNodes.Contains(c.Node) || c.MemoryMb <= 0 || c.Vcpus <= 0)
                    Assert.Equal(PlaceStatus.Invalid, o.Status);
                // An arrival is a request: unlike an adoption it may never be what overcommits a volume.
                return (o.Status is not PlaceStatus.Placed, false);
            }
            case PhaseCmd c:
            {
                var events = l.SetVmPhase(c.Name, c.Phase, run.Step());
                d.Apply(events);
                return (events.Count == 0, false);
            }
            case OwnerCmd c:
            {
                var events = l.ObserveOwner(c.Name, c.Node, "failover", run.Step());
                d.Apply(events);
                if (events.Count > 0) run.Cov.Hit("owner moved");
                return (events.Count == 0, false);
            }
            case RemoveVmCmd c:
            {
                var events = l.RemoveVm(c.Name, "destroy", run.Step());
                d.Apply(events);
                if (events.Count > 0) run.Cov.Hit("vm removed");
                return (events.Count == 0, false);
            }
            case RescanCmd c:
            {
                var reservations = l.Reservations(c.Volume);
                var usage = new Dictionary<string, long>();
                for (var i = 0; i < reservations.Count; i++)
                    usage[reservations[i].ConsumerId] = Resolve(run, c.PerReservation[i % c.PerReservation.Count], c.Volume, 0);
                foreach (var (consumer, size) in c.Extra) usage[consumer] = Resolve(run, size, c.Volume, 0);
                var used = Resolve(run, c.Used, c.Volume, 0);
                var events = d.Measure(c.Volume, used, usage);
                if (events.Count > 0 && (usage.Values.Append(used).Any(b => b < 0 || b > ByteSize.MaxBytes))) run.Cov.Hit("scan with absurd numbers");
                return (events.Count == 0, true);
            }
            case ConfigureCmd c:
            {
                var root = CmdGen.StartVolumes.FirstOrDefault(v => v.Name == c.Volume).Root ?? "/mnt/" + c.Volume;
                var capacity = Resolve(run, c.Capacity, c.Volume, 0);
                var headroom = Resolve(run, c.Headroom, c.Volume, 0);
                var valid = capacity is >= 0 and <= ByteSize.MaxBytes && headroom is >= 0 and <= ByteSize.MaxBytes;
                if (!valid)
                {
                    Assert.Throws<ArgumentOutOfRangeException>(() => l.Configure(c.Volume, root, capacity, headroom));
                    run.Cov.Hit("configuration refused");
                    return (true, true);
                }
                var events = d.Configure(c.Volume, root, capacity, headroom);
                run.Cov.Hit("configuration applied");
                return (events.Count == 0, true);
            }
            default:
                throw new InvalidOperationException(cmd.ToString());
        }
    }

    [Property(MaxTest = 200)]
    public Property Every_command_keeps_every_invariant_replays_and_snapshots_identically() =>
        Prop.ForAll(CmdGen.Arbitrary(), s => { Check(s); });
}

public class AllCommandsCoverageTests(Xunit.Abstractions.ITestOutputHelper output)
{
    /// <summary>The generators reach every command's outcomes and the extreme sizes (fixed seed, deterministic).</summary>
    [Fact]
    public void Generated_commands_reach_every_outcome_and_the_extreme_sizes()
    {
        var cov = new Coverage();
        foreach (var s in CmdGen.Scenarios().Sample(300, new Rnd(20261201UL), 60)) AllCommandsProperties.Check(s, cov);
        output.WriteLine(cov.ToString());

        string[] expected =
        [
            // WrongNode needs a caller acting for a node; these commands act as an admin (LeaseHolderTests cover it).
            .. Enum.GetValues<ReserveStatus>().Where(st => st != ReserveStatus.WrongNode).Select(st => $"reserve {st}"),
            .. Enum.GetValues<ReleaseStatus>().Where(st => st != ReleaseStatus.WrongNode).Select(st => $"release {st}"),
            .. Enum.GetValues<LeaseStatus>().Select(st => $"acquire {st}"),
            .. new[] { "Renew", "Complete", "Abort" }.SelectMany(a => new[] { $"{a} Done", $"{a} Stale", $"{a} NotFound", $"{a} Invalid" }),
            "Complete InsufficientSpace", "complete above its grant Done", "complete above its grant InsufficientSpace",
            .. Enum.GetValues<PlaceStatus>().Select(st => $"place {st}"),
            "adopt Placed", "adopt Invalid", "repeated reserve Unchanged", "adopt Unchanged", "adopt AlreadyExists", "adopt UnknownVolume",
            // Extreme sizes reach every claiming command.
            .. new[] { "0", "1", "-1", "2^62", "2^63-1", "min", "free", "free+1" }.Select(c => $"reserve size {c}"),
            "reserve size capacity+1 InsufficientSpace", "reserve size free Created", "reserve size free+1 InsufficientSpace",
            "reserve size 2^62 InsufficientSpace", "reserve size 2^63-1 Invalid",
            "complete size 2^62 InsufficientSpace", "complete size 2^63-1 Invalid", "complete size free+1 InsufficientSpace", "complete size free Done",
            "acquire size 2^62 InsufficientSpace", "acquire size free Granted", "acquire size free+1 InsufficientSpace",
            "place size 2^62 InsufficientSpace", "place size 2^63-1 Invalid", "place size free+1 InsufficientSpace",
            "adopt size 2^62 Placed", "adopt size 2^63-1 Invalid", "adopt size 0 Invalid",
            "arrive Placed", "arrive Invalid", "arrive AlreadyExists", "arrive InsufficientSpace",
            "arrive size 2^62 InsufficientSpace", "arrive size 2^63-1 Invalid", "arrive size free+1 InsufficientSpace",
            // Names that are one id, facts that overcommit, and the rest of the command set.
            "reserve of a case twin is the same reservation", "place of a case twin AlreadyExists", "acquire of a case twin answers cached",
            "lease action through a case twin",
            "overcommitted by RescanCmd", "overcommitted by AdoptCmd", "overcommitted by ConfigureCmd", "overcommitted volume kept",
            "adoption overcommitted", "scan with absurd numbers", "volume filled exactly",
            "configuration refused", "configuration applied", "capacity report refused", "capacity report",
            "leases expired", "leases of a node that left ended", "evicted", "owner moved", "vm removed",
        ];
        Assert.All(expected, what => Assert.True(cov.Counts.GetValueOrDefault(what) > 0, $"never reached: {what}\n{cov}"));
    }
}
