using System.ComponentModel;
using Coordinator.Client;
using Spectre.Console.Cli;

namespace Coordinator.Cli.Commands;

/// <summary>Options every command takes.</summary>
public class GlobalSettings : CommandSettings
{
    [CommandOption("--endpoint <URL>")]
    [Description("A node's API (default http://127.0.0.1:7070, or $COORDCTL_ENDPOINT).")]
    public string? Endpoint { get; init; }

    [CommandOption("--token <TOKEN>")]
    [Description("Bearer token (or $COORDCTL_TOKEN).")]
    public string? Token { get; init; }

    [CommandOption("--json")]
    [Description("Print the API's JSON unchanged.")]
    public bool Json { get; init; }

    public Uri EndpointUri
    {
        get
        {
            var e = Endpoint ?? Environment.GetEnvironmentVariable("COORDCTL_ENDPOINT") ?? "http://127.0.0.1:7070";
            return Uri.TryCreate(e, UriKind.Absolute, out var u) ? u : throw new UsageException($"--endpoint: '{e}' is not a URL");
        }
    }

    public CoordinatorClient Client() =>
        new(EndpointUri, Token ?? Environment.GetEnvironmentVariable("COORDCTL_TOKEN"),
            new CoordinatorClientOptions { RetryBudget = TimeSpan.FromSeconds(15) });
}

/// <summary>One API call: --json prints its body unchanged; otherwise <see cref="Render"/> prints a table.</summary>
public abstract class ApiCommand<TSettings, T> : AsyncCommand<TSettings> where TSettings : GlobalSettings
{
    protected abstract Task<ApiResult<T>> Call(CoordinatorClient client, TSettings settings);

    protected abstract void Render(T value, TSettings settings);

    protected override async Task<int> ExecuteAsync(CommandContext context, TSettings settings, CancellationToken cancellationToken)
    {
        using var client = settings.Client();
        var r = await Call(client, settings);
        if (!r.IsSuccess) return Output.Refused(r.Problem, r.Status);
        if (settings.Json) Console.WriteLine(r.Body);
        else Render(r.Value!, settings);
        return ExitCodes.Ok;
    }
}
