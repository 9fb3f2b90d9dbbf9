using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Ledger;
using Coordinator.Cluster.Vms;
using Coordinator.Domain;
using Coordinator.Service.Vms;
using System.Text.Json.Serialization;

namespace Coordinator.Service.Api;

public sealed record SpawnBody([property: JsonRequired] string? Name, [property: JsonRequired] int? MemoryMb, [property: JsonRequired] int? Vcpus,
    [property: JsonRequired] long? DiskBytes, string? Volume = null, string? ImageId = null);

public sealed record MigrateBody([property: JsonRequired] string? Target, string? Mode = null);

public sealed record VmsResponse(long Epoch, IReadOnlyList<VmRecord> Vms);

public sealed record NodesResponse(long Epoch, IReadOnlyList<NodeView> Nodes);

public sealed record EventsResponse(long Epoch, long Head, IReadOnlyList<FeedEntry> Events);

/// <summary>VMs, nodes and the arrival/departure feed. Operations run on the node that hosts the VM.</summary>
public static class VmEndpoints
{
    public static void MapVmApi(this IEndpointRouteBuilder app)
    {
        var v1 = app.MapGroup("/v1").AddEndpointFilter(LedgerEndpoints.TranslateNoLeader);

        v1.MapGet("/vms", async (LedgerGateway ledger, CancellationToken ct) =>
        {
            var r = await ledger.Ask<VmsReply>(GetVms.Instance, ct);
            return Results.Ok(new VmsResponse(r.Epoch, r.Vms));
        });

        v1.MapGet("/vms/{name}", async (string name, LedgerGateway ledger, CancellationToken ct) =>
        {
            if (InputRules.CheckConsumerId(name) is { } err) return Problems.BadRequest(err);
            var r = await ledger.Ask<VmsReply>(GetVms.Instance, ct);
            return r.Vms.FirstOrDefault(v => FileNames.Comparer.Equals(v.Name, name)) is { } vm ? Results.Ok(vm) : Problems.NotFound($"no VM named '{name}'");
        }).Produces<VmRecord>().ProducesProblem(404);

        v1.MapPost("/vms", async (HttpRequest request, NodeDirectory nodes, CoordinatorSettings s, CancellationToken ct) =>
        {
            // The VM is created on this node: only its agent (or an admin) may ask.
            if (Authorization.ActFor(request.HttpContext, s.NodeName) is { } denied) return denied;
            var (b, problem) = await ReadVm(request, ct);
            if (problem is not null) return problem;
            var volume = b!.Volume ?? s.Volumes.FirstOrDefault()?.Name ?? "";
            var r = await nodes.AskAsync<VmOpReply>(s.NodeName, new SpawnVm(b.Name!, b.MemoryMb!.Value, b.Vcpus!.Value, b.DiskBytes!.Value, volume, b.ImageId),
                s.HyperV.OperationTimeout, ct);
            return Answer(r);
        }).Accepts<SpawnBody>("application/json").Produces<VmRecord>(201).ProducesProblem(409).ProducesProblem(403);

        // An arrival from another cluster: the same checks as a spawn. Its volume is the source cluster's name, so a
        // well-formed name this cluster does not have means our first volume (where the peer was told to put the files).
        v1.MapPost("/vms/arrivals", async (HttpRequest request, NodeDirectory nodes, CoordinatorSettings s, CancellationToken ct) =>
        {
            // A peer cluster hands the VM to this node; otherwise this node's agent or an admin.
            if (request.HttpContext.Caller()?.Kind != CallerKind.Peer && Authorization.ActFor(request.HttpContext, s.NodeName) is { } denied)
                return denied;
            var (b, problem) = await ReadVm(request, ct);
            if (problem is not null) return problem;
            var volume = b!.Volume is { } v && s.Volumes.Any(x => x.Name == v) ? v : s.Volumes.FirstOrDefault()?.Name ?? "";
            return Answer(await nodes.AskAsync<VmOpReply>(s.NodeName, new ArriveVm(b.Name!, b.MemoryMb!.Value, b.Vcpus!.Value, b.DiskBytes!.Value, volume, b.ImageId),
                s.HyperV.OperationTimeout, ct));
        }).Accepts<SpawnBody>("application/json").Produces<VmRecord>(201).ProducesProblem(409).ProducesProblem(403);

        v1.MapDelete("/vms/{name}", async (string name, HttpContext http, LedgerGateway ledger, NodeDirectory nodes, CoordinatorSettings s, CancellationToken ct) =>
        {
            if (InputRules.CheckConsumerId(name) is { } err) return Problems.BadRequest(err);
            var owner = (await ledger.Ask<VmsReply>(GetVms.Instance, ct)).Vms.FirstOrDefault(v => FileNames.Comparer.Equals(v.Name, name))?.Node ?? s.NodeName;
            if (Authorization.ActFor(http, owner) is { } denied) return denied;
            return Answer(await OnNode(nodes, owner, new DestroyVm(name), s, ct));
        }).Produces(204).ProducesProblem(404).ProducesProblem(403);

        v1.MapPost("/vms/{name}/migrate", async (string name, HttpRequest request, LedgerGateway ledger, NodeDirectory nodes, CoordinatorSettings s, CancellationToken ct) =>
        {
            if (InputRules.CheckConsumerId(name) is { } nameErr) return Problems.BadRequest(nameErr);
            var (b, problem) = await LedgerEndpoints.ReadJson<MigrateBody>(request, ct);
            if (problem is not null) return problem;
            if (InputRules.CheckId("target", b!.Target) is { } err) return Problems.BadRequest(err);
            MigrationMode mode;
            switch (b.Mode ?? "live")
            {
                case "live": mode = MigrationMode.Live; break;
                case "cold": mode = MigrationMode.Cold; break;
                default: return Problems.BadRequest("mode must be live or cold");
            }
            var vm = (await ledger.Ask<VmsReply>(GetVms.Instance, ct)).Vms.FirstOrDefault(v => FileNames.Comparer.Equals(v.Name, name));
            if (vm is null) return Problems.NotFound($"no VM named '{name}'");
            // Only the agent of the node that hosts the VM (or an admin) may move it away.
            if (Authorization.ActFor(request.HttpContext, vm.Node) is { } denied) return denied;
            return Answer(await OnNode(nodes, vm.Node, new MigrateVm(name, b.Target!, mode), s, ct));
        }).Accepts<MigrateBody>("application/json").Produces<VmRecord>().ProducesProblem(404).ProducesProblem(409).ProducesProblem(403);

        v1.MapGet("/nodes", async (LedgerGateway ledger, CancellationToken ct) =>
        {
            var r = await ledger.Ask<NodesReply>(GetNodes.Instance, ct);
            return Results.Ok(new NodesResponse(r.Epoch, r.Nodes));
        });

        // Drain and resume are operator actions: they need the admin role (401/403 in the document say so).
        v1.MapPost("/nodes/{node}/drain", async (string node, HttpContext http, HttpSecurity security, LedgerGateway ledger, NodeDirectory nodes, CancellationToken ct) =>
            Authorization.Admin(http, security) ?? await Drain(node, true, ledger, nodes, ct)).AdminOnly().ProducesProblem(404);
        v1.MapPost("/nodes/{node}/resume", async (string node, HttpContext http, HttpSecurity security, LedgerGateway ledger, NodeDirectory nodes, CancellationToken ct) =>
            Authorization.Admin(http, security) ?? await Drain(node, false, ledger, nodes, ct)).AdminOnly().ProducesProblem(404);

        v1.MapGet("/events", async (long? after, int? waitMs, string? node, LedgerGateway ledger, CancellationToken ct) =>
        {
            if (after is < 0 || waitMs is < 0 or > 60_000) return Problems.BadRequest("after must be >= 0 and waitMs between 0 and 60000");
            if (node is not null && InputRules.CheckId("node", node) is { } err) return Problems.BadRequest(err);
            var wait = waitMs ?? 0;
            var r = await ledger.Ask<FeedReply>(new GetFeed(after ?? 0, node, wait), ct, TimeSpan.FromMilliseconds(wait) + TimeSpan.FromSeconds(5));
            return Results.Ok(new EventsResponse(r.Epoch, r.Head, r.Entries));
        });
    }

    /// <summary>A spawn or an arrival body: what the JSON reader refuses, then the domain's rules for each value.</summary>
    private static async Task<(SpawnBody? Body, IResult? Problem)> ReadVm(HttpRequest request, CancellationToken ct)
    {
        var (b, problem) = await LedgerEndpoints.ReadJson<SpawnBody>(request, ct);
        if (problem is not null) return (null, problem);
        if (b!.MemoryMb is not { } mem || b.Vcpus is not { } cpus || b.DiskBytes is not { } disk)
            return (null, Problems.BadRequest("memoryMb, vcpus and diskBytes must not be null"));
        var err = InputRules.CheckConsumerId(b.Name) ?? InputRules.CheckBytes("diskBytes", disk)
                  ?? (mem <= 0 ? "memoryMb must be positive" : null) ?? (cpus <= 0 ? "vcpus must be positive" : null)
                  ?? (b.Volume is null ? null : InputRules.CheckId("volume", b.Volume))
                  ?? (b.ImageId is null ? null : InputRules.CheckImageId(b.ImageId));
        return err is null ? (b, null) : (null, Problems.BadRequest(err));
    }

    private static async Task<IResult> Drain(string node, bool draining, LedgerGateway ledger, NodeDirectory nodes, CancellationToken ct)
    {
        if (InputRules.CheckId("node", node) is { } err) return Problems.BadRequest(err);
        var known = (await ledger.Ask<NodesReply>(GetNodes.Instance, ct)).Nodes.Any(n => n.Node == node);
        if (!known) return Problems.NotFound($"unknown node '{node}'");
        await ledger.Ask<VmAck>(new SetDrain(node, draining), ct);
        if (draining)
        {
            try { await nodes.TellAsync(node, new DrainNode(node), ct); }
            catch (NodeUnavailableException e) { return Problems.Make(409, "node-unavailable", "The node cannot drain", e.Message); }
        }
        return Results.Accepted($"/v1/nodes", new { node, draining });
    }

    private static async Task<VmOpReply> OnNode(NodeDirectory nodes, string node, IVmCommand command, CoordinatorSettings s, CancellationToken ct)
    {
        try
        {
            return await nodes.AskAsync<VmOpReply>(node, command, s.HyperV.OperationTimeout, ct);
        }
        catch (NodeUnavailableException e)
        {
            return VmOpReply.Fail(503, "node-unavailable", e.Message);
        }
    }

    private static IResult Answer(VmOpReply r) => r.Ok
        ? r.Status == 204 ? Results.NoContent() : Results.Json(r.Vm, statusCode: r.Status)
        : Problems.Make(r.Status, r.ProblemType ?? "operation-failed", "The VM operation failed", r.Error ?? "failed");
}
