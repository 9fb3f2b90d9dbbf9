using System.ComponentModel;
using Coordinator.Client;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Coordinator.Cli.Commands;

public sealed class VolumeSettings : GlobalSettings
{
    [CommandArgument(0, "<VOLUME>")]
    [Description("A CSV's name (coordctl volumes lists them).")]
    public string Volume { get; init; } = "";
}

public sealed class QuotaSettings : GlobalSettings
{
    [CommandArgument(0, "<VOLUME>")]
    [Description("A CSV's name.")]
    public string Volume { get; init; } = "";

    [CommandOption("--node <NODE>")]
    [Description("Only this node's quota.")]
    public string? Node { get; init; }
}

/// <summary>coordctl volumes</summary>
public sealed class VolumesCommand : ApiCommand<GlobalSettings, VolumesResponse>
{
    protected override Task<ApiResult<VolumesResponse>> Call(CoordinatorClient c, GlobalSettings s, CancellationToken ct) => c.GetVolumesAsync(ct);

    protected override void Render(VolumesResponse v, GlobalSettings s)
    {
        var t = Terminal.Table("VOLUME", "CAPACITY", "HEADROOM", "USED", "RESERVED", "UNOWNED", "FREE", "CLAIMS", "MEASURED", "PATH");
        foreach (var x in v.Volumes)
            t.AddRow(Terminal.Esc(x.Name), Terminal.Bytes(x.CapacityBytes), Terminal.Bytes(x.HeadroomBytes), Terminal.Bytes(x.UsedBytes),
                Terminal.Bytes(x.ReservedBytes), Terminal.Bytes(x.UnownedBytes), Terminal.Bytes(x.FreeBytes), x.Reservations.Inv(),
                Terminal.Age(x.MeasuredAt), Terminal.Esc(x.Path));
        Terminal.Write(t);
        // Free reads 0 when claims and measured usage exceed the usable capacity; say by how much, per volume.
        foreach (var x in v.Volumes.Where(x => x.OvercommittedBytes > 0))
            Terminal.Line($"{Terminal.Esc(x.Name)}: overcommitted by {Terminal.Bytes(x.OvercommittedBytes)} (claims and measured usage exceed capacity - headroom)");
        Terminal.Line($"epoch {v.Epoch}");
    }
}

/// <summary>coordctl quotas &lt;volume&gt; [--node X]</summary>
public sealed class QuotasCommand : AsyncCommand<QuotaSettings>
{
    protected override async Task<int> ExecuteAsync(CommandContext context, QuotaSettings s, CancellationToken ct)
    {
        using var c = s.CreateClient();
        try
        {
            if (s.Node is { } node)
                return Reply.Print(await c.GetQuotaAsync(s.Volume, node, ct), s, q =>
                    Render(q.Volume, q.Policy, [new NodeQuota(q.Node, q.Live, q.ClaimedBytes, q.FreeBytes, q.QuotaBytes)]));
            return Reply.Print(await c.GetQuotasAsync(s.Volume, ct), s, q => Render(q.Volume, q.Policy, q.Quotas));
        }
        catch (CoordinatorUnavailableException e)
        {
            return Terminal.Unavailable(e);
        }
    }

    private static void Render(string volume, QuotaPolicy policy, IReadOnlyList<NodeQuota> quotas)
    {
        var t = Terminal.Table("NODE", "LIVE", "CLAIMED", "FREE", "QUOTA");
        foreach (var x in quotas)
            t.AddRow(Terminal.Esc(x.Node), Terminal.YesNo(x.Live), Terminal.Bytes(x.ClaimedBytes), Terminal.Bytes(x.FreeBytes), Terminal.Bytes(x.QuotaBytes));
        Terminal.Write(t);
        Terminal.Line($"{volume}: policy {policy.ToString().ToLowerInvariant()}");
    }
}

/// <summary>coordctl reservations &lt;volume&gt;</summary>
public sealed class ReservationsCommand : ApiCommand<VolumeSettings, ReservationsResponse>
{
    protected override Task<ApiResult<ReservationsResponse>> Call(CoordinatorClient c, VolumeSettings s, CancellationToken ct) =>
        c.GetReservationsAsync(s.Volume, ct);

    protected override void Render(ReservationsResponse r, VolumeSettings s)
    {
        var t = Terminal.Table("CONSUMER", "NODE", "SIZE", "IMAGE", "CREATED", "UPDATED", "PATH");
        foreach (var x in r.Reservations.OrderBy(x => x.ConsumerId, StringComparer.Ordinal))
            t.AddRow(Terminal.Esc(x.ConsumerId), Terminal.Esc(x.Node), Terminal.Bytes(x.Bytes), Terminal.Esc(x.ImageId ?? "-"),
                Terminal.Age(x.CreatedAt), Terminal.Age(x.UpdatedAt), Terminal.Esc(x.Path ?? "-"));
        Terminal.Write(t);
        Terminal.Line($"{r.Reservations.Count} reservations on {r.Volume}, {Terminal.Bytes(r.Reservations.Sum(x => x.Bytes))} claimed");
    }
}

/// <summary>coordctl images: the cache's entries.</summary>
public sealed class ImagesCommand : ApiCommand<GlobalSettings, ImagesResponse>
{
    protected override Task<ApiResult<ImagesResponse>> Call(CoordinatorClient c, GlobalSettings s, CancellationToken ct) => c.GetImagesAsync(ct);

    protected override void Render(ImagesResponse i, GlobalSettings s)
    {
        var t = Terminal.Table("IMAGE", "SIZE", "USERS", "CACHED", "LAST USED", "CHECKSUM", "PATH");
        foreach (var x in i.Images.OrderBy(x => x.ImageId, StringComparer.Ordinal))
            t.AddRow(Terminal.Esc(x.ImageId), Terminal.Bytes(x.SizeBytes), x.Users.Inv(), Terminal.Age(x.CachedAt), Terminal.Age(x.LastUsedAt),
                Terminal.Esc(x.Checksum.Length > 19 ? x.Checksum[..19] + "…" : x.Checksum), Terminal.Esc(x.Path));
        Terminal.Write(t);
        Terminal.Line($"{i.Images.Count} cached, {Terminal.Bytes(i.Images.Sum(x => x.SizeBytes))}; {i.Leases.Count} fetch leases (coordctl leases)");
    }
}

/// <summary>coordctl leases: the image-fetch leases (from the same route as images).</summary>
public sealed class LeasesCommand : ApiCommand<GlobalSettings, ImagesResponse>
{
    protected override Task<ApiResult<ImagesResponse>> Call(CoordinatorClient c, GlobalSettings s, CancellationToken ct) => c.GetImagesAsync(ct);

    protected override void Render(ImagesResponse i, GlobalSettings s)
    {
        var t = Terminal.Table("IMAGE", "LEASE", "HOLDER", "TOKEN", "SIZE", "GRANTED", "EXPIRES", "WAITERS");
        foreach (var x in i.Leases.OrderBy(x => x.ImageId, StringComparer.Ordinal))
            t.AddRow(Terminal.Esc(x.ImageId), Terminal.Esc(x.LeaseId ?? "(holder only)"), Terminal.Esc(x.Holder), x.FencingToken.Inv(), Terminal.Bytes(x.SizeBytes),
                Terminal.Age(x.GrantedAt), Terminal.Age(x.ExpiresAt), Terminal.Esc(x.Waiters.Count == 0 ? "-" : string.Join(", ", x.Waiters)));
        Terminal.Write(t);
        Terminal.Line($"{i.Leases.Count} fetch leases");
    }
}
