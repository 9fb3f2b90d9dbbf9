using System.ComponentModel;
using System.Globalization;
using Coordinator.Client;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Coordinator.Cli.Commands;

/// <summary>The options every command takes.</summary>
public class GlobalSettings : CommandSettings
{
    public const string DefaultEndpoint = "http://127.0.0.1:7070";

    [CommandOption("--endpoint <URL>")]
    [Description("A node's API. Default $COORDCTL_ENDPOINT, else " + DefaultEndpoint + ".")]
    public string? Endpoint { get; init; }

    [CommandOption("--token <TOKEN>")]
    [Description("Bearer token: the admin token (leave, down, drain, resume, evict, backup) or this node's agent token. " +
                 "Default $COORDCTL_TOKEN. Prefer --token-file: a command line is visible to other users.")]
    public string? Token { get; init; }

    [CommandOption("--token-file <FILE>")]
    [Description("Read the bearer token from FILE (its first line). Default $COORDCTL_TOKEN_FILE.")]
    public string? TokenFile { get; init; }

    [CommandOption("--ca-file <FILE>")]
    [Description("PEM file of the CA that issued the nodes' HTTPS certificates (instead of the machine's roots). Default $COORDCTL_CA_FILE.")]
    public string? CaFile { get; init; }

    [CommandOption("--json")]
    [Description("Print the API's JSON body unchanged (for scripts).")]
    public bool Json { get; init; }

    [CommandOption("--retry-for <SECONDS>")]
    [Description("How long to keep retrying while no leader answers or the node refuses connections. Default 10.")]
    public double RetryFor { get; init; } = 10;

    public Uri EndpointUri
    {
        get
        {
            var e = Endpoint ?? (Environment.GetEnvironmentVariable("COORDCTL_ENDPOINT") is { Length: > 0 } env ? env : DefaultEndpoint);
            if (!e.Contains("://", StringComparison.Ordinal)) e = "http://" + e;
            return Uri.TryCreate(e, UriKind.Absolute, out var u) && (u.Scheme == Uri.UriSchemeHttp || u.Scheme == Uri.UriSchemeHttps)
                ? u
                : throw new UsageException($"--endpoint: '{e}' is not an http(s) URL");
        }
    }

    /// <summary>--token, else --token-file, else $COORDCTL_TOKEN, else $COORDCTL_TOKEN_FILE.</summary>
    public string? EffectiveToken
    {
        get
        {
            if (Token is not null) return Token;
            var file = TokenFile ?? (Environment.GetEnvironmentVariable("COORDCTL_TOKEN") is { Length: > 0 } ? null : Env("COORDCTL_TOKEN_FILE"));
            try
            {
                return CoordinatorClientOptions.ReadToken(file, "COORDCTL_TOKEN");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
            {
                throw new UsageException($"--token-file: {e.Message}");
            }
        }
    }

    public string? EffectiveCaFile => CaFile ?? Env("COORDCTL_CA_FILE");

    private static string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : null;

    public override ValidationResult Validate()
    {
        if (RetryFor is < 0 or > 3600) return ValidationResult.Error("--retry-for must be between 0 and 3600 seconds");
        if (Token is not null && TokenFile is not null) return ValidationResult.Error("give --token or --token-file, not both");
        try { _ = EndpointUri; _ = EffectiveToken; }
        catch (UsageException e) { return ValidationResult.Error(e.Message); }
        if (EffectiveCaFile is { } ca && !File.Exists(ca)) return ValidationResult.Error($"--ca-file: '{ca}' does not exist");
        return ValidationResult.Success();
    }

    public CoordinatorClient CreateClient(TimeSpan? retryBudget = null) => new(EndpointUri, new CoordinatorClientOptions
    {
        Token = EffectiveToken,
        CaFile = EffectiveCaFile,
        RetryBudget = retryBudget ?? TimeSpan.FromSeconds(RetryFor),
        MaxRetryDelay = TimeSpan.FromSeconds(2),
    });
}

/// <summary>
/// One API call: with --json its body is printed unchanged; otherwise <see cref="Render"/> prints a table. A refusal
/// prints the problem's title and detail on stderr (and, with --json, its body on stdout) and exits 1.
/// </summary>
public abstract class ApiCommand<TSettings, T> : AsyncCommand<TSettings> where TSettings : GlobalSettings
{
    protected abstract Task<ApiResult<T>> Call(CoordinatorClient client, TSettings settings, CancellationToken ct);

    protected abstract void Render(T value, TSettings settings);

    protected override async Task<int> ExecuteAsync(CommandContext context, TSettings settings, CancellationToken cancellationToken)
    {
        using var client = settings.CreateClient();
        ApiResult<T> r;
        try
        {
            r = await Call(client, settings, cancellationToken);
        }
        catch (CoordinatorUnavailableException e)
        {
            return Terminal.Unavailable(e);
        }
        return Reply.Print(r, settings, v => Render(v, settings));
    }
}

public static class Reply
{
    /// <summary>--json: the body unchanged; else the rendering. A refusal: its problem on stderr, exit code 1.</summary>
    public static int Print<TV>(ApiResult<TV> r, GlobalSettings settings, Action<TV> render)
    {
        if (!r.IsOk)
        {
            if (settings.Json && r.RawBody.Length > 0) Terminal.WriteRaw(r.RawBody);
            return Terminal.Refused(r.Problem);
        }
        if (settings.Json) Terminal.WriteRaw(r.RawBody);
        else render(r.Value);
        return ExitCodes.Ok;
    }
}

public static class Format
{
    public static string Inv(this int n) => n.ToString(CultureInfo.InvariantCulture);

    public static string Inv(this long n) => n.ToString(CultureInfo.InvariantCulture);
}
