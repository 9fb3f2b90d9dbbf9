using Coordinator.Domain;
using static Coordinator.Domain.Tests.LedgerDriver;

namespace Coordinator.Domain.Tests;

/// <summary>
/// Identities in the ledger: only a lease's holder may renew, complete or abort it; a node may not take over or release
/// another node's reservation; lease ids are unguessable. Every refusal changes nothing (journal and state compared).
/// </summary>
public class LeaseHolderTests
{
    private const string Vol = "Volume1";

    private static LedgerDriver Volume()
    {
        var d = new LedgerDriver();
        d.Configure(Vol, @"C:\ClusterStorage\Volume1", 100 * GiB, 0);
        return d;
    }

    private static T Unchanged<T>(LedgerDriver d, Func<Decision<T>> act)
    {
        var journal = d.Journal.Count;
        var state = StateOf(d.Ledger);
        var result = act();
        Assert.Empty(result.Events);
        Assert.Equal(journal, d.Journal.Count);
        Assert.Equal(state, StateOf(d.Ledger));
        return result.Outcome;
    }

    [Fact]
    public void Only_the_holder_renews_completes_or_aborts_and_a_refusal_changes_nothing()
    {
        var d = Volume();
        var lease = d.Acquire("img1", "hv1", GiB, Vol).Outcome.Lease!;

        // With the right id and token, hv2 is still not the holder.
        var renew = Unchanged(d, () => d.Ledger.RenewLease("img1", lease.LeaseId, lease.FencingToken, Ttl, d.Now, caller: "hv2"));
        var complete = Unchanged(d, () => d.Ledger.CompleteLease("img1", lease.LeaseId, lease.FencingToken, GiB, "ab", d.Now, caller: "hv2"));
        var abort = Unchanged(d, () => d.Ledger.AbortLease("img1", lease.LeaseId, lease.FencingToken, d.Now, caller: "hv2"));
        Assert.All([renew, complete, abort], o => Assert.Equal(LeaseActionStatus.NotHolder, o.Status));
        Assert.Contains("held by hv1", abort.Error);
        // A wrong id from a non-holder is refused the same way: it learns nothing about the id.
        Assert.Equal(LeaseActionStatus.NotHolder,
            Unchanged(d, () => d.Ledger.AbortLease("img1", "img1.1.x", 99, d.Now, caller: "hv2")).Status);
        Assert.Equal(lease, d.Ledger.FindLease("img1"));

        // The holder (and an admin, caller null) may.
        var renewed = d.Ledger.RenewLease("img1", lease.LeaseId, lease.FencingToken, Ttl, d.Now, caller: "hv1");
        Assert.Equal(LeaseActionStatus.Done, renewed.Outcome.Status);
        var done = d.Ledger.CompleteLease("img1", lease.LeaseId, lease.FencingToken, GiB, "ab", d.Now, caller: null);
        Assert.Equal(LeaseActionStatus.Done, done.Outcome.Status);
    }

    [Fact]
    public void Lease_ids_carry_a_128_bit_secret_and_parse_from_the_right()
    {
        var d = Volume();
        var ids = Enumerable.Range(0, 20).Select(i => d.Acquire($"img.{i}", "hv1", GiB, Vol).Outcome.Lease!).ToList();
        foreach (var l in ids)
        {
            Assert.True(LeaseIds.TryParse(l.LeaseId, out var image, out var token, out var secret), l.LeaseId);
            Assert.Equal((l.ImageId, l.FencingToken), (image, token));
            Assert.Equal(32, secret.Length);
        }
        // Drawn per grant: no two alike, and not derivable from image and token.
        Assert.Equal(ids.Count, ids.Select(l => l.LeaseId.Split('.')[^1]).Distinct().Count());
        Assert.False(LeaseIds.TryParse("img1.1", out _, out _, out _));
        Assert.False(LeaseIds.TryParse("img1.x.0123456789abcdef0123456789abcdef", out _, out _, out _));
        // A given secret is used as given: a decision can be repeated exactly.
        var a = Volume().Ledger.AcquireImage("i", "hv1", GiB, Vol, CacheFolder, Ttl, d.Now, "00112233445566778899aabbccddeeff");
        Assert.Equal("i.1.00112233445566778899aabbccddeeff", a.Outcome.Lease!.LeaseId);
    }

    [Fact]
    public void A_node_may_not_claim_for_another_node_nor_change_or_release_its_reservation()
    {
        var d = Volume();
        Assert.Equal(ReserveStatus.Created, d.Ledger.Reserve(new ReserveRequest(Vol, "vm1", "hv1", GiB, null, null), d.Now, "hv1") is var r
            ? Apply(d, r) : default);

        // hv2 claiming in hv1's name, taking over hv1's consumer, or releasing it: refused, nothing changes.
        var forOther = Unchanged(d, () => d.Ledger.Reserve(new ReserveRequest(Vol, "vm2", "hv1", GiB, null, null), d.Now, "hv2"));
        var takeOver = Unchanged(d, () => d.Ledger.Reserve(new ReserveRequest(Vol, "vm1", "hv2", 2 * GiB, null, null), d.Now, "hv2"));
        var release = Unchanged(d, () => d.Ledger.Release(Vol, "vm1", d.Now, "hv2"));
        Assert.Equal((ReserveStatus.WrongNode, ReserveStatus.WrongNode, ReleaseStatus.WrongNode), (forOther.Status, takeOver.Status, release.Status));
        Assert.Contains("held by hv1", takeOver.Error);

        // Its own node and an admin may.
        Assert.Equal(ReleaseStatus.Released, d.Ledger.Release(Vol, "vm1", d.Now, "hv1").Outcome.Status);
        Assert.Equal(ReserveStatus.Created, d.Ledger.Reserve(new ReserveRequest(Vol, "vm3", "hv2", GiB, null, null), d.Now, null).Outcome.Status);
    }

    private static ReserveStatus Apply(LedgerDriver d, Decision<ReserveOutcome> decision)
    {
        d.Apply(decision.Events);
        return decision.Outcome.Status;
    }
}
