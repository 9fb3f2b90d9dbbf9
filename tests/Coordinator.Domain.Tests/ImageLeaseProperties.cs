using System.Text;
using Coordinator.Domain;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using static Coordinator.Domain.Tests.LedgerDriver;

namespace Coordinator.Domain.Tests;

// ------------------------------------------------------------------------------------------------ operations

/// <summary>One step of a generated image-cache scenario.</summary>
public abstract record ImageOp;

/// <summary>A size to ask for: fixed bytes, or (<c>Bytes</c> null) exactly the volume's free space + <c>FillDelta</c>.</summary>
public sealed record ImageSize(long? Bytes, int FillDelta)
{
    public override string ToString() => Bytes is { } b ? (b % GiB == 0 ? $"{b / GiB}GiB" : b.ToString()) : $"fill{FillDelta:+0;-0;+0}";
}

public sealed record AcquireImageOp(string Image, string Node, ImageSize Size, string Volume, int TtlSeconds) : ImageOp;

/// <summary>Which lease id and token a renew/complete/abort carries.</summary>
public enum LeaseHandle { Current, OlderGrant, WrongLeaseId, WrongToken }

public enum LeaseAction { Renew, Complete, Abort }

/// <summary>
/// <c>RealGiB</c> 0 completes at the granted size; negative picks an extreme: -1 2^62, -2 2^63-1, -3 the grant plus
/// the volume's free space plus one byte (just does not fit), -4 the grant plus exactly the free space.
/// </summary>
public sealed record LeaseActionOp(LeaseAction Action, string Image, LeaseHandle Handle, int Pick, int RealGiB, int TtlSeconds) : ImageOp;

/// <summary>Time passes; <c>Sweep</c>: the singleton's timer then ends the expired leases.</summary>
public sealed record AdvanceOp(int Seconds, bool Sweep) : ImageOp;

public sealed record EndLeasesOfOp(string Node) : ImageOp;

public sealed record EvictOp(string Image, int MaxAgeSeconds) : ImageOp;

/// <summary>A new leader took over.</summary>
public sealed record RefreshLeasesOp(int TtlSeconds) : ImageOp;

public sealed record ClientReserveOp(string Volume, string Consumer, string Node, int GiBs, string? Image) : ImageOp;

public sealed record ClientReleaseOp(string Volume, string Consumer) : ImageOp;

/// <summary>A scan: every reservation (image claims included) measured at a per-mille of its claim, plus unowned usage.</summary>
public sealed record MeasureOp(string Volume, IReadOnlyList<int> Permilles, int UnownedPermille) : ImageOp
{
    public override string ToString() => $"MeasureOp {{ {Volume}, [{string.Join(",", Permilles)}]‰, unowned {UnownedPermille}‰ }}";
}

public sealed record ImageScenario(IReadOnlyList<ImageOp> Ops, int SnapshotAt)
{
    public override string ToString()
    {
        var sb = new StringBuilder();
        sb.AppendLine($"ImageScenario (snapshot after op {SnapshotAt % (Ops.Count + 1)})");
        for (var i = 0; i < Ops.Count; i++) sb.AppendLine($"  {i,3}: {Ops[i]}");
        return sb.ToString();
    }
}

// ------------------------------------------------------------------------------------------------ generators

public static class ImageGen
{
    /// <summary>The volumes every scenario starts with: the image volume and a smaller second one.</summary>
    public static readonly (string Name, long Capacity)[] Volumes = [("v1", 200 * GiB), ("v2", 60 * GiB)];

    public static readonly string[] Images = ["i1", "i2", "i3"];
    public static readonly string[] BadImages = ["", "a/b", "..", ".x", "a..b"];
    public static readonly string[] Nodes = ["n1", "n2", "n3"];
    public static readonly string[] Consumers = ["c1", "c2", "c3"];

    private static Gen<string> Image() => Gen.Frequency((40, Gen.Elements(Images)), (1, Gen.Elements(BadImages)));

    private static Gen<string> Node() => Gen.Frequency((40, Gen.Elements(Nodes)), (1, Gen.Elements("", "n/1")));

    private static Gen<string> Volume() => Gen.Frequency((16, Gen.Constant("v1")), (3, Gen.Constant("v2")), (1, Gen.Constant("v9")));

    private static Gen<ImageSize> Size() => Gen.Frequency(
        (12, Gen.Choose(1, 80).Select(i => new ImageSize(i * GiB, 0))),
        (2, Gen.Choose(1, int.MaxValue).Select(i => new ImageSize(i, 0))),
        (4, Gen.Elements(-1, 0, 0, 1).Select(delta => new ImageSize(null, delta))),
        (1, Gen.Elements(0L, -1L, ByteSize.MaxBytes, ByteSize.MaxBytes + 1).Select(b => new ImageSize(b, 0))));

    private static Gen<ImageOp> Acquires() =>
        from image in Image()
        from node in Node()
        from size in Size()
        from volume in Volume()
        from ttl in Gen.Choose(20, 120)
        select (ImageOp)new AcquireImageOp(image, node, size, volume, ttl);

    private static Gen<ImageOp> Actions() =>
        from action in Gen.Elements(LeaseAction.Renew, LeaseAction.Complete, LeaseAction.Abort)
        from image in Image()
        from handle in Gen.Frequency(
            (6, Gen.Constant(LeaseHandle.Current)), (3, Gen.Constant(LeaseHandle.OlderGrant)),
            (1, Gen.Constant(LeaseHandle.WrongLeaseId)), (1, Gen.Constant(LeaseHandle.WrongToken)))
        from pick in Gen.Choose(0, 1000)
        from real in Gen.Frequency((2, Gen.Constant(0)), (3, Gen.Choose(1, 80)), (1, Gen.Elements(-1, -2, -3, -4)))
        from ttl in Gen.Choose(20, 180)
        select (ImageOp)new LeaseActionOp(action, image, handle, pick, real, ttl);

    private static Gen<ImageOp> Advances() =>
        from seconds in Gen.Frequency(
            (6, Gen.Choose(0, 20)), (5, Gen.Choose(30, 90)), (2, Gen.Choose(100, 600)), (1, Gen.Choose(3600, 90_000)))
        from sweep in Gen.Frequency((2, Gen.Constant(true)), (1, Gen.Constant(false)))
        select (ImageOp)new AdvanceOp(seconds, sweep);

    private static Gen<ImageOp> Reserves() =>
        from volume in Gen.Frequency((4, Gen.Constant("v1")), (1, Gen.Constant("v2")))
        from consumer in Gen.Frequency((12, Gen.Elements(Consumers)), (1, Gen.Elements(Images.Select(CsvLedger.ImageClaim).ToArray())))
        from node in Gen.Elements(Nodes)
        from gib in Gen.Choose(1, 60)
        from image in Gen.Frequency((2, Gen.Constant<string?>(null)), (3, Gen.Elements<string?>(Images)))
        select (ImageOp)new ClientReserveOp(volume, consumer, node, gib, image);

    private static Gen<ImageOp> Releases() =>
        from volume in Gen.Frequency((4, Gen.Constant("v1")), (1, Gen.Constant("v2")))
        from consumer in Gen.Frequency((5, Gen.Elements(Consumers)), (1, Gen.Elements(Images.Select(CsvLedger.ImageClaim).ToArray())))
        select (ImageOp)new ClientReleaseOp(volume, consumer);

    private static Gen<ImageOp> Measures() =>
        from volume in Gen.Frequency((4, Gen.Constant("v1")), (1, Gen.Constant("v2")))
        from permilles in Gen.ArrayOf(Gen.Frequency((1, Gen.Constant(0)), (3, Gen.Choose(0, 1500))), 4)
        from unowned in Gen.Frequency((2, Gen.Constant(0)), (1, Gen.Choose(0, 100)))
        select (ImageOp)new MeasureOp(volume, permilles, unowned);

    public static Gen<ImageOp> Ops() => Gen.Frequency(
        (14, Acquires()),
        (12, Actions()),
        (8, Advances()),
        (1, Gen.Elements(Nodes).Select(n => (ImageOp)new EndLeasesOfOp(n))),
        (5, from i in Image() from age in Gen.Elements(0, 30, 60, 600, 3600) select (ImageOp)new EvictOp(i, age)),
        (2, Gen.Choose(20, 180).Select(t => (ImageOp)new RefreshLeasesOp(t))),
        (4, Reserves()),
        (2, Releases()),
        (2, Measures()));

    public static Gen<ImageScenario> Scenarios() =>
        from n in Gen.Choose(0, 80)
        from ops in Gen.ArrayOf(Ops(), n)
        from snapshotAt in Gen.Choose(0, 1000)
        select new ImageScenario(ops, snapshotAt);

    public static IEnumerable<ImageScenario> Shrink(ImageScenario s)
    {
        var ops = s.Ops;
        if (ops.Count > 3)
        {
            yield return s with { Ops = ops.Take(ops.Count / 2).ToList() };
            yield return s with { Ops = ops.Skip(ops.Count / 2).ToList() };
        }
        for (var i = ops.Count - 1; i >= 0; i--)
            yield return s with { Ops = ops.Where((_, j) => j != i).ToList() };
    }

    public static Arbitrary<ImageScenario> Arbitrary() => Arb.From(Scenarios(), Shrink);
}

// ------------------------------------------------------------------------------------------------ properties

public class ImageLeaseProperties
{
    private static readonly LeaseStatus[] SilentLease = [LeaseStatus.Pending, LeaseStatus.InsufficientSpace, LeaseStatus.UnknownVolume, LeaseStatus.Invalid];

    private const string Checksum = "0123abcd";

    /// <summary>Everything the run remembers across steps.</summary>
    private sealed class Run
    {
        public readonly LedgerDriver D = new();
        public readonly Coverage Cov;
        public readonly List<ImageLeaseGranted> Grants = [];
        public long MaxToken;
        public readonly CsvLedger Replayed = new();
        public CsvLedger? Restored;
        public int SnapshotEvents = -1;

        public Run(Coverage cov) => Cov = cov;
        public CsvLedger L => D.Ledger;
    }

    /// <summary>Runs a scenario, checking every step; returns the driver.</summary>
    internal static LedgerDriver Check(ImageScenario s, Coverage? cov = null)
    {
        var run = new Run(cov ?? new Coverage());
        var d = run.D;
        foreach (var (name, capacity) in ImageGen.Volumes) d.Configure(name, LedgerGen.Roots[name], capacity);
        Feed(run, 0);
        var snapshotAfter = s.SnapshotAt % (s.Ops.Count + 1);
        if (snapshotAfter == 0) TakeSnapshot(run);

        for (var step = 0; step < s.Ops.Count; step++)
        {
            var op = s.Ops[step];
            var journal = d.Journal.Count;
            var state = StateOf(run.L);
            var overBefore = run.L.Views().ToDictionary(v => v.Name, v => v.OvercommittedBytes);

            var silent = op switch
            {
                AcquireImageOp a => Acquire(run, a),
                LeaseActionOp a => Action(run, a),
                AdvanceOp a => Advance(run, a),
                EndLeasesOfOp e => EndLeasesOf(run, e),
                EvictOp e => Evict(run, e),
                RefreshLeasesOp r => Refresh(run, r),
                ClientReserveOp r => ClientReserve(run, r),
                ClientReleaseOp r => ClientRelease(run, r),
                MeasureOp m => Measure(run, m),
                _ => throw new InvalidOperationException(op.ToString()),
            };

            // (f) refused decisions (and repeats) emit nothing and change nothing.
            if (silent)
            {
                Assert.Equal(journal, d.Journal.Count);
                Assert.Equal(state, StateOf(run.L));
            }

            // (b) every grant's token is greater than all earlier ones, and the counter is the greatest.
            foreach (var g in d.Journal.Skip(journal).OfType<ImageLeaseGranted>())
            {
                Assert.True(g.FencingToken > run.MaxToken, $"token {g.FencingToken} after {run.MaxToken}");
                run.MaxToken = g.FencingToken;
                run.Grants.Add(g);
            }
            Assert.Equal(run.MaxToken, run.L.LastFencingToken);

            Invariants(run);
            // Only a scan (a fact) may overcommit a volume; no decision ever adds to it, and free never reads negative.
            foreach (var v in run.L.Views())
            {
                Assert.True(v.FreeBytes >= 0 && v.OvercommittedBytes >= 0, v.ToString());
                if (op is not MeasureOp) Assert.True(v.OvercommittedBytes <= overBefore[v.Name], $"{op} overcommitted {v}");
            }
            // (e) replay (through JSON) and snapshot + later events give the same state, step by step.
            Feed(run, journal);
            if (step + 1 == snapshotAfter) TakeSnapshot(run);
        }

        if (run.SnapshotEvents > 0 && run.SnapshotEvents < d.Journal.Count) run.Cov.Hit("snapshot between events");
        if (run.L.Leases.Count > 0 && run.SnapshotEvents == d.Journal.Count) run.Cov.Hit("snapshot with a lease at the end");

        // A new leader restored from the snapshot (or replaying) continues the token sequence and decides the same.
        foreach (var ledger in new[] { run.Replayed, run.Restored!, CsvLedger.FromSnapshot(RoundTrip(run.L.ToSnapshot())) })
            foreach (var image in ImageGen.Images.Append("i9"))
            {
                // The same secret: a decision is repeatable given its inputs (the secret is drawn outside the domain).
                var secret = LeaseIds.NewSecret();
                var live = run.L.AcquireImage(image, "n9", GiB, "v1", CacheFolder, Ttl, d.Now, secret);
                var other = ledger.AcquireImage(image, "n9", GiB, "v1", CacheFolder, Ttl, d.Now, secret);
                Assert.Equal(live.Outcome, other.Outcome);
                Assert.Equal(live.Events, other.Events);
                if (live.Outcome.Status == LeaseStatus.Granted && live.Events.Count > 0)
                    Assert.Equal(run.MaxToken + 1, other.Outcome.Lease!.FencingToken);
            }
        return d;
    }

    private static void TakeSnapshot(Run run)
    {
        run.Restored = CsvLedger.FromSnapshot(RoundTrip(run.L.ToSnapshot()));
        run.SnapshotEvents = run.D.Journal.Count;
        Assert.Equal(StateOf(run.L), StateOf(run.Restored));
    }

    private static void Feed(Run run, int from)
    {
        var events = run.D.Journal.Skip(from).Select(e => (LedgerEvent)RoundTrip(e)).ToList();
        foreach (var e in events)
        {
            run.Replayed.Apply(e);
            run.Restored?.Apply(e);
        }
        if (events.Count == 0 && from > 0) return;
        var state = StateOf(run.L);
        Assert.Equal(state, StateOf(run.Replayed));
        if (run.Restored is not null) Assert.Equal(state, StateOf(run.Restored));
    }

    private static Dictionary<string, long> FreeSpace(CsvLedger l) => l.Views().ToDictionary(v => v.Name, v => v.FreeBytes);

    private static Int128 Room(VolumeView v) => (Int128)v.FreeBytes - v.OvercommittedBytes;

    private static bool ValidImage(string image) => ImageGen.Images.Contains(image);

    // ---------------------------------------------------------------- steps (each returns whether it must be silent)

    private static bool Acquire(Run run, AcquireImageOp a)
    {
        var (d, l) = (run.D, run.L);
        var lease = l.FindLease(a.Image);
        var cached = l.FindImage(a.Image);
        var freeBefore = FreeSpace(l);
        var snapshot = l.ToSnapshot();
        var copy = CsvLedger.FromSnapshot(snapshot);
        var bytes = a.Size.Bytes ?? Math.Max(1, (freeBefore.TryGetValue(a.Volume, out var f) ? f : GiB) + a.Size.FillDelta);
        var ttl = TimeSpan.FromSeconds(a.TtlSeconds);

        var decision = d.Acquire(a.Image, a.Node, bytes, a.Volume, ttl);
        var (outcome, events, now) = (decision.Outcome, decision.Events, d.Now);
        run.Cov.Hit($"acquire {outcome.Status}");

        if (!ValidImage(a.Image) || !ImageGen.Nodes.Contains(a.Node) || bytes <= 0 || bytes > ByteSize.MaxBytes)
        {
            Assert.Equal(LeaseStatus.Invalid, outcome.Status);
            return true;
        }
        if (cached is not null)
        {
            Assert.Equal(LeaseStatus.Cached, outcome.Status);
            Assert.Equal(cached, outcome.Cached);
            var used = now - cached.LastUsedAt >= TimeSpan.FromMinutes(1);
            Assert.Equal(used ? [new ImageUsed(a.Image, now)] : Array.Empty<LedgerEvent>(), events);
            if (used) run.Cov.Hit("image use recorded");
            return !used;
        }
        if (lease is not null && lease.ExpiresAt > now)
        {
            Assert.Equal(lease.Node == a.Node ? LeaseStatus.Granted : LeaseStatus.Pending, outcome.Status);
            Assert.Equal(lease, outcome.Lease);
            if (lease.Node == a.Node) run.Cov.Hit("holder asked again");
            return true;
        }
        if (!freeBefore.ContainsKey(a.Volume))
        {
            Assert.Equal(LeaseStatus.UnknownVolume, outcome.Status);
            return true;
        }

        // The free space a separate decision would see once the expired lease had ended.
        if (lease is not null) copy.Apply(new ImageLeaseEnded(a.Image, lease.LeaseId, LeaseEndReason.Expired, now));
        var available = copy.View(a.Volume)!.FreeBytes;
        if (l.View(a.Volume)!.OvercommittedBytes > 0) run.Cov.Hit($"acquire on overcommitted volume {outcome.Status}");
        if (bytes > available)
        {
            Assert.Equal(LeaseStatus.InsufficientSpace, outcome.Status);
            Assert.Equal(Math.Max(available, 0), outcome.FreeBytes);
            if (lease is not null) run.Cov.Hit("expired lease kept: next grant does not fit");
            return true;
        }

        Assert.Equal(LeaseStatus.Granted, outcome.Status);
        var granted = Assert.IsType<ImageLeaseGranted>(events[^1]);
        if (lease is not null)
        {
            Assert.Equal(2, events.Count);
            Assert.Equal(new ImageLeaseEnded(a.Image, lease.LeaseId, LeaseEndReason.Expired, now), events[0]);
            run.Cov.Hit(lease.Volume == a.Volume ? "grant replaced an expired lease" : "grant replaced an expired lease on another volume");
            if (snapshot.Volumes.Single(v => v.Name == lease.Volume).ConsumerUsage.GetValueOrDefault(CsvLedger.ImageClaim(a.Image)) > 0)
                run.Cov.Hit("grant replaced an expired lease whose claim was measured");
        }
        else Assert.Single(events);
        Assert.Equal(run.MaxToken + 1, granted.FencingToken);
        Assert.Equal(new ImageLease(a.Image, granted.LeaseId, a.Node, granted.FencingToken, a.Volume, $"{CacheFolder}/{a.Image}",
            granted.File, bytes, now, now + ttl), outcome.Lease);
        Assert.Equal(outcome.Lease, l.FindLease(a.Image));
        var freeAfter = FreeSpace(l);
        Assert.Equal(freeAfter[a.Volume], outcome.FreeBytes);
        Assert.Equal(available - bytes, freeAfter[a.Volume]);
        // (c) a grant never takes a volume below zero.
        foreach (var (volume, free) in freeBefore)
            if (free >= 0) Assert.True(freeAfter[volume] >= 0, $"{volume}: free went from {free} to {freeAfter[volume]}");
        if (freeAfter[a.Volume] == 0) run.Cov.Hit("grant filled the volume exactly");
        return false;
    }

    private static (string LeaseId, long Token) Resolve(Run run, LeaseActionOp a)
    {
        var ofImage = run.Grants.Where(g => g.ImageId == a.Image).ToList();
        var current = run.L.FindLease(a.Image) is { } l ? (l.LeaseId, l.FencingToken)
            : ofImage.Count > 0 ? (ofImage[^1].LeaseId, ofImage[^1].FencingToken)
            : ($"{a.Image}.{run.MaxToken + 1}", run.MaxToken + 1);
        switch (a.Handle)
        {
            case LeaseHandle.OlderGrant:
            {
                var older = ofImage.Where(g => g.FencingToken < current.Item2).ToList();
                if (older.Count > 0)
                {
                    var g = older[a.Pick % older.Count];
                    return (g.LeaseId, g.FencingToken);
                }
                var any = run.Grants.Where(g => g.FencingToken < current.Item2).ToList();
                return any.Count > 0 ? (current.Item1, any[a.Pick % any.Count].FencingToken) : (current.Item1, current.Item2 - 1);
            }
            case LeaseHandle.WrongLeaseId: return (current.Item1 + "x", current.Item2);
            case LeaseHandle.WrongToken: return (current.Item1, current.Item2 + (a.Pick % 2 == 0 ? -1 : 1));
            default: return current;
        }
    }

    private static bool Action(Run run, LeaseActionOp a)
    {
        var (d, l) = (run.D, run.L);
        var (leaseId, token) = Resolve(run, a);
        var lease = l.FindLease(a.Image);
        var cached = l.FindImage(a.Image);
        var last = l.LastFencingToken;
        var ttl = TimeSpan.FromSeconds(a.TtlSeconds);
        var granted = lease?.SizeBytes ?? GiB;
        var freeOfLease = lease is null ? 0 : l.View(lease.Volume)!.FreeBytes;
        var real = a.RealGiB switch
        {
            0 => granted,
            -1 => ByteSize.MaxBytes,
            -2 => long.MaxValue,
            -3 => granted + freeOfLease + 1,
            -4 => granted + freeOfLease,
            _ => a.RealGiB * GiB,
        };

        // Whether a completion's growth over its grant fits the volume (judged before the decision).
        var completionFits = true;
        if (lease is not null && a.Action == LeaseAction.Complete)
        {
            var measured = l.ToSnapshot().Volumes.Single(v => v.Name == lease.Volume).ConsumerUsage.GetValueOrDefault(CsvLedger.ImageClaim(lease.ImageId));
            var claimed = l.Find(lease.Volume, CsvLedger.ImageClaim(lease.ImageId))!.Bytes;
            var growth = (Int128)Math.Max(real, measured) - Math.Max(claimed, measured);
            completionFits = growth <= 0 || growth <= l.View(lease.Volume)!.FreeBytes;
        }

        var decision = a.Action switch
        {
            LeaseAction.Renew => d.Renew(a.Image, leaseId, token, ttl),
            LeaseAction.Complete => d.Complete(a.Image, leaseId, token, real, Checksum),
            _ => d.Abort(a.Image, leaseId, token),
        };
        var (outcome, events, now) = (decision.Outcome, decision.Events, d.Now);
        run.Cov.Hit($"{a.Action} {outcome.Status}");
        if (outcome.Status == LeaseActionStatus.Stale) run.Cov.Hit($"stale {a.Handle}");

        if (lease is not null && a.Action == LeaseAction.Complete && real > granted)
            run.Cov.Hit($"completion above its grant {(completionFits ? "fits" : "does not fit")}");
        var expected =
            !ValidImage(a.Image) ? LeaseActionStatus.Invalid
            : lease is null ? (cached is not null || token <= last ? LeaseActionStatus.Stale : LeaseActionStatus.NotFound)
            : lease.LeaseId != leaseId || lease.FencingToken != token || lease.ExpiresAt <= now ? LeaseActionStatus.Stale
            : a.Action == LeaseAction.Complete && real > ByteSize.MaxBytes ? LeaseActionStatus.Invalid
            : !completionFits ? LeaseActionStatus.InsufficientSpace
            : LeaseActionStatus.Done;
        Assert.Equal(expected, outcome.Status);
        if (expected != LeaseActionStatus.Done) return true;

        // Done: only ever for the lease currently held, with its token, before it expired.
        Assert.Equal((lease!.LeaseId, lease.FencingToken), (leaseId, token));
        Assert.True(lease.ExpiresAt > now);
        var claim = l.Find(lease.Volume, CsvLedger.ImageClaim(a.Image));
        switch (a.Action)
        {
            case LeaseAction.Renew:
                Assert.Equal([new ImageLeaseRenewed(a.Image, leaseId, now + ttl)], events);
                Assert.Equal(lease with { ExpiresAt = now + ttl }, l.FindLease(a.Image));
                break;
            case LeaseAction.Complete:
                Assert.Equal([new ImageCached(a.Image, leaseId, real, Checksum, now)], events);
                Assert.Null(l.FindLease(a.Image));
                Assert.Equal(new CachedImage(a.Image, lease.Volume, lease.File, real, Checksum, now, now), l.FindImage(a.Image));
                Assert.Equal(real, claim!.Bytes);
                break;
            case LeaseAction.Abort:
                Assert.Equal([new ImageLeaseEnded(a.Image, leaseId, LeaseEndReason.Aborted, now)], events);
                Assert.Null(l.FindLease(a.Image));
                Assert.Null(claim);
                break;
        }
        return false;
    }

    private static bool Advance(Run run, AdvanceOp a)
    {
        run.D.Advance(TimeSpan.FromSeconds(a.Seconds));
        if (!a.Sweep) return true;
        var due = run.L.Leases.ToList();
        var events = run.D.ExpireLeases();
        var now = run.D.Now;
        Assert.Equal(
            due.Where(l => l.ExpiresAt <= now).Select(l => (LedgerEvent)new ImageLeaseEnded(l.ImageId, l.LeaseId, LeaseEndReason.Expired, now)),
            events);
        Assert.Equal(due.Where(l => l.ExpiresAt > now), run.L.Leases);
        if (events.Count > 0) run.Cov.Hit("expired leases swept");
        return events.Count == 0;
    }

    private static bool EndLeasesOf(Run run, EndLeasesOfOp e)
    {
        var before = run.L.Leases.ToList();
        var events = run.D.EndLeasesOf(e.Node);
        var now = run.D.Now;
        Assert.Equal(
            before.Where(l => l.Node == e.Node).Select(l => (LedgerEvent)new ImageLeaseEnded(l.ImageId, l.LeaseId, LeaseEndReason.HolderRemoved, now)),
            events);
        Assert.Equal(before.Where(l => l.Node != e.Node), run.L.Leases);
        if (events.Count > 0) run.Cov.Hit("leases of a removed node ended");
        return events.Count == 0;
    }

    private static bool Refresh(Run run, RefreshLeasesOp r)
    {
        var before = run.L.Leases.ToList();
        var ttl = TimeSpan.FromSeconds(r.TtlSeconds);
        var events = run.D.RefreshLeases(ttl);
        var now = run.D.Now;
        Assert.Equal(before.Select(l => l with { ExpiresAt = now + ttl }), run.L.Leases);
        Assert.Equal(before.Count, events.Count);
        if (before.Any(l => l.ExpiresAt <= now)) run.Cov.Hit("refresh revived an expired lease");
        return events.Count == 0;
    }

    private static bool Evict(Run run, EvictOp e)
    {
        var (d, l) = (run.D, run.L);
        var maxAge = TimeSpan.FromSeconds(e.MaxAgeSeconds);
        var entry = l.FindImage(e.Image);
        var userCounts = l.Views().SelectMany(v => l.Reservations(v.Name))
            .Where(r => !r.ConsumerId.StartsWith("_image-", StringComparison.Ordinal) && r.ImageId is not null)
            .GroupBy(r => r.ImageId!).ToDictionary(g => g.Key, g => g.Count());
        var users = userCounts.Keys.ToHashSet();
        // The ledger's incremental count of users equals a scan of every reservation.
        foreach (var image in userCounts.Keys.Concat(l.Images.Select(i => i.ImageId)).Append(e.Image).Distinct())
            Assert.Equal(userCounts.GetValueOrDefault(image), l.UsersOf(image));
        var roomBefore = e.Image.Length > 0 && entry is not null ? Room(l.View(entry.Volume)!) : 0;

        // The candidates are exactly the old, unused, unleased entries, judged at the decision's time.
        var at = d.Now + TimeSpan.FromSeconds(1);
        bool Candidate(CachedImage i) => at - i.LastUsedAt >= maxAge && !users.Contains(i.ImageId) && l.FindLease(i.ImageId) is null;
        Assert.Equal(l.Images.Where(Candidate), l.EvictionCandidates(maxAge, at));

        var decision = d.Evict(e.Image, maxAge);
        Assert.Equal(at, d.Now);
        if (entry is not null && !Candidate(entry)) run.Cov.Hit(users.Contains(e.Image) ? "eviction refused: in use" : "eviction refused: recently used");
        if (entry is null || !Candidate(entry))
        {
            Assert.Null(decision.Outcome);
            return true;
        }
        run.Cov.Hit("evicted");
        Assert.Equal(entry, decision.Outcome);
        Assert.Equal([new ImageEvicted(e.Image, at)], decision.Events);
        Assert.Null(l.FindImage(e.Image));
        Assert.Null(l.Find(entry.Volume, CsvLedger.ImageClaim(e.Image)));
        // Room (free, or minus the overcommitment) grows by the entry's size, less what stays on disk unowned.
        Assert.True(Room(l.View(entry.Volume)!) >= roomBefore + entry.SizeBytes - l.View(entry.Volume)!.UnownedBytes);
        return false;
    }

    private static bool ClientReserve(Run run, ClientReserveOp r)
    {
        var decision = run.D.Reserve(r.Volume, r.Consumer, r.Node, r.GiBs * GiB, $"vms/{r.Consumer}", r.Image);
        var status = decision.Outcome.Status;
        if (r.Consumer.StartsWith(CsvLedger.ImageClaimPrefix, StringComparison.Ordinal))
        {
            Assert.Equal(ReserveStatus.Invalid, status);
            run.Cov.Hit("client reserve of an image claim refused");
        }
        if (r.Image is not null && status is ReserveStatus.Created or ReserveStatus.Updated) run.Cov.Hit("reservation naming an image");
        return status is ReserveStatus.Invalid or ReserveStatus.InsufficientSpace or ReserveStatus.Unchanged;
    }

    private static bool ClientRelease(Run run, ClientReleaseOp r)
    {
        var decision = run.D.Release(r.Volume, r.Consumer);
        if (r.Consumer.StartsWith(CsvLedger.ImageClaimPrefix, StringComparison.Ordinal))
        {
            Assert.Equal(ReleaseStatus.NotFound, decision.Outcome.Status);
            if (run.L.Find(r.Volume, r.Consumer) is not null) run.Cov.Hit("client release of an image claim refused");
        }
        return decision.Outcome.Status != ReleaseStatus.Released;
    }

    private static bool Measure(Run run, MeasureOp m)
    {
        var reservations = run.L.Reservations(m.Volume);
        var usage = reservations.Select((r, i) => (r.ConsumerId, Bytes: r.Bytes / 1000 * m.Permilles[i % m.Permilles.Count]))
            .ToDictionary(x => x.ConsumerId, x => x.Bytes);
        var capacity = run.L.View(m.Volume)!.CapacityBytes;
        var used = usage.Values.Sum() + capacity / 1000 * m.UnownedPermille;
        run.D.Measure(m.Volume, used, usage);
        if (usage.Any(kv => kv.Key.StartsWith(CsvLedger.ImageClaimPrefix, StringComparison.Ordinal) && kv.Value > 0)) run.Cov.Hit("image claim measured");
        return false;
    }

    // ---------------------------------------------------------------- invariants

    private static void Invariants(Run run)
    {
        var l = run.L;
        var leases = l.Leases.ToList();
        var images = l.Images.ToList();

        // (a) at most one lease per image; an image is cached or leased, never both.
        Assert.Equal(leases.Count, leases.Select(x => x.ImageId).Distinct().Count());
        Assert.Equal(images.Count, images.Select(x => x.ImageId).Distinct().Count());
        Assert.Empty(leases.Select(x => x.ImageId).Intersect(images.Select(x => x.ImageId)));
        Assert.All(leases, x => Assert.True(x.FencingToken <= l.LastFencingToken));
        if (leases.Count > 0 && images.Count > 0) run.Cov.Hit("leases and cached images together");

        // (d) an image's claim exists exactly while it is leased or cached, on its volume, at its size.
        foreach (var volume in l.VolumeNames)
        {
            var claims = l.Reservations(volume).Where(r => r.ConsumerId.StartsWith(CsvLedger.ImageClaimPrefix, StringComparison.Ordinal)).ToList();
            var expected = leases.Where(x => x.Volume == volume).Select(x => (x.ImageId, x.Node, x.SizeBytes))
                .Concat(images.Where(x => x.Volume == volume).Select(x => (x.ImageId, Node: claims.FirstOrDefault(c => c.ImageId == x.ImageId)?.Node ?? "?", x.SizeBytes)))
                .OrderBy(x => x.ImageId, StringComparer.Ordinal);
            Assert.Equal(expected, claims.Select(c => (c.ImageId!, c.Node, c.Bytes)));
            Assert.All(claims, c =>
            {
                Assert.Equal(CsvLedger.ImageClaim(c.ImageId!), c.ConsumerId);
                Assert.Equal($"{CacheFolder}/{c.ImageId}", c.Path);
            });
        }
        if (leases.Any(x => x.ExpiresAt <= run.D.Now)) run.Cov.Hit("expired lease not yet swept");
    }

    // ---------------------------------------------------------------- the properties

    [Property(MaxTest = 400)]
    public Property Leases_fence_claim_and_replay_consistently_at_every_step() =>
        Prop.ForAll(ImageGen.Arbitrary(), s => { Check(s); });
}

public class ImageScenarioCoverageTests(Xunit.Abstractions.ITestOutputHelper output)
{
    /// <summary>The generators must reach the interesting cases (fixed seed, deterministic).</summary>
    [Fact]
    public void Image_scenarios_reach_the_interesting_cases()
    {
        var cov = new Coverage();
        foreach (var s in ImageGen.Scenarios().Sample(60, new Rnd(20250101UL), 300)) ImageLeaseProperties.Check(s, cov);
        output.WriteLine(cov.ToString());

        string[] expected =
        [
            .. Enum.GetValues<LeaseStatus>().Select(st => $"acquire {st}"),
            .. Enum.GetValues<LeaseAction>().SelectMany(a => new[] { $"{a} Done", $"{a} Stale", $"{a} NotFound", $"{a} Invalid" }),
            .. Enum.GetValues<LeaseHandle>().Select(h => $"stale {h}"),
            "image use recorded", "holder asked again", "grant replaced an expired lease", "grant replaced an expired lease on another volume",
            "grant replaced an expired lease whose claim was measured", "expired lease kept: next grant does not fit",
            "acquire on overcommitted volume InsufficientSpace", "grant filled the volume exactly", "expired leases swept",
            "leases of a removed node ended", "refresh revived an expired lease", "evicted", "eviction refused: in use",
            "eviction refused: recently used", "client reserve of an image claim refused", "client release of an image claim refused",
            "reservation naming an image", "image claim measured", "leases and cached images together", "expired lease not yet swept",
            "snapshot between events", "Complete InsufficientSpace", "completion above its grant fits", "completion above its grant does not fit",
        ];
        Assert.All(expected, what => Assert.True(cov.Counts.GetValueOrDefault(what) > 0, $"never reached: {what}\n{cov}"));
    }
}
