using Akka.Configuration;
using Coordinator.Cluster.Configuration;
using Npgsql;

namespace Coordinator.Cluster.Tests;

/// <summary>
/// Secrets from the value, a file (key-file) or an environment variable (key-env): precedence, refusals that name the
/// setting and the file but never the secret, Unix permissions of secret files, and the journal's password merged into
/// the connection string.
/// </summary>
public sealed class SecretReaderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("coord-secret-").FullName;
    private readonly string _secret = "s3cr3t-" + Guid.NewGuid().ToString("N");

    private string SecretFile(string content, UnixFileMode mode = UnixFileMode.UserRead | UnixFileMode.UserWrite)
    {
        var path = Path.Combine(_dir, Guid.NewGuid().ToString("N")[..8] + ".secret");
        File.WriteAllText(path, content + "\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, mode);
        return path;
    }

    // Remoting on loopback, as the shipped defaults have it (plain remoting beyond loopback is refused at start).
    private static Config Hocon(string text) =>
        ConfigurationFactory.ParseString(text).WithFallback(ConfigurationFactory.ParseString("akka.remote.dot-netty.tcp.hostname = \"127.0.0.1\""));

    private static string Q(string s) => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";

    [Fact]
    public void The_file_wins_over_the_environment_which_wins_over_the_value()
    {
        var env = "COORD_TEST_SECRET_" + Guid.NewGuid().ToString("N")[..8].ToUpperInvariant();
        Environment.SetEnvironmentVariable(env, "from-env-" + _secret);
        try
        {
            var file = SecretFile("from-file-" + _secret);
            Assert.Equal("from-file-" + _secret, SecretReader.Read(Hocon($"t = value, t-file = {Q(file)}, t-env = {env}"), "t"));
            Assert.Equal("from-env-" + _secret, SecretReader.Read(Hocon($"t = value, t-env = {env}"), "t"));
            Assert.Equal("value", SecretReader.Read(Hocon("t = value"), "t"));
            Assert.Null(SecretReader.Read(Hocon("t = \"\""), "t"));
            Assert.Null(SecretReader.Read(Hocon("other = 1"), "t"));
        }
        finally
        {
            Environment.SetEnvironmentVariable(env, null);
        }
    }

    [Fact]
    public void A_missing_environment_variable_is_refused_by_name()
    {
        var env = "COORD_TEST_UNSET_" + Guid.NewGuid().ToString("N")[..8].ToUpperInvariant();
        var e = Assert.Throws<ConfigurationException>(() => SecretReader.Read(Hocon($"http.agent-token-env = {env}"), "http.agent-token"));
        Assert.Contains("coordinator.http.agent-token-env", e.Message);
        Assert.Contains(env, e.Message);
    }

    [Theory]
    [InlineData(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead)] // 644
    [InlineData(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead)] // 640
    [InlineData(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherWrite)] // 602
    public void A_secret_file_open_to_group_or_others_is_refused_naming_the_file_and_the_fix(UnixFileMode mode)
    {
        if (OperatingSystem.IsWindows()) return; // the ACL is the installer's business there
        var file = SecretFile(_secret, mode);
        var e = Assert.Throws<ConfigurationException>(() => SecretReader.Read(Hocon($"http.admin-token-file = {Q(file)}"), "http.admin-token"));
        Assert.Contains("coordinator.http.admin-token-file", e.Message);
        Assert.Contains(file, e.Message);
        Assert.Contains("chmod 600", e.Message);
        Assert.DoesNotContain(_secret, e.Message);
    }

    [Fact]
    public void A_private_file_is_read_trimmed()
    {
        var file = SecretFile("  " + _secret + "  ");
        Assert.Equal(_secret, SecretReader.Read(Hocon($"t-file = {Q(file)}"), "t"));
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(file, UnixFileMode.UserRead); // 400 is private too
            Assert.Equal(_secret, SecretReader.Read(Hocon($"t-file = {Q(file)}"), "t"));
        }
    }

    [Fact]
    public void A_missing_file_is_refused_by_setting_and_path()
    {
        var missing = Path.Combine(_dir, "nope.secret");
        var e = Assert.Throws<ConfigurationException>(() => SecretReader.Read(Hocon($"t-file = {Q(missing)}"), "t"));
        Assert.Contains("coordinator.t-file", e.Message);
        Assert.Contains(missing, e.Message);
    }

    [Fact]
    public void A_secret_with_a_line_break_inside_is_refused_without_being_quoted()
    {
        var file = SecretFile(_secret + "\nsecond-line-" + _secret);
        var e = Assert.Throws<ConfigurationException>(() => SecretReader.Read(Hocon($"images.glance.token-file = {Q(file)}"), "images.glance.token"));
        Assert.Contains("coordinator.images.glance.token-file", e.Message);
        Assert.Contains("control character", e.Message);
        Assert.DoesNotContain(_secret, e.Message);

        var env = "COORD_TEST_CTRL_" + Guid.NewGuid().ToString("N")[..8].ToUpperInvariant();
        Environment.SetEnvironmentVariable(env, _secret + "\r\nX-Injected: 1");
        try
        {
            e = Assert.Throws<ConfigurationException>(() => SecretReader.Read(Hocon($"t-env = {env}"), "t"));
            Assert.Contains("coordinator.t-env", e.Message);
            Assert.DoesNotContain(_secret, e.Message);
        }
        finally
        {
            Environment.SetEnvironmentVariable(env, null);
        }
    }

    [Fact]
    public void A_file_too_big_to_be_a_secret_is_refused()
    {
        var file = SecretFile(new string('x', SecretReader.MaxFileBytes + 1));
        var e = Assert.Throws<ConfigurationException>(() => SecretReader.Read(Hocon($"t-file = {Q(file)}"), "t"));
        Assert.Contains(file, e.Message);
        Assert.Contains("64 KiB", e.Message);
    }

    [Fact]
    public void The_journal_password_is_merged_into_the_connection_string_and_errors_never_quote_it()
    {
        var file = SecretFile(_secret);
        var c = Hocon($$"""
            coordinator.persistence {
              provider = postgresql
              connection-string = "Host=127.0.0.1;Port=5432;Username=coordinator;Database=postgres"
              password-file = {{Q(file)}}
            }
            """).GetConfig("coordinator");
        var conn = PersistenceHocon.ConnectionString(c, JournalProvider.PostgreSql, _dir);
        var parsed = new NpgsqlConnectionStringBuilder(conn);
        Assert.Equal(_secret, parsed.Password);
        Assert.Equal("coordinator", parsed.Username);
        Assert.Equal("127.0.0.1", parsed.Host);

        // A password in both places is ambiguous; the refusal names the settings, not the passwords.
        var both = Hocon($$"""
            coordinator.persistence {
              connection-string = "Host=h;Username=u;Password=inline-{{_secret}}"
              password = "{{_secret}}"
            }
            """).GetConfig("coordinator");
        var e = Assert.Throws<ConfigurationException>(() => PersistenceHocon.ConnectionString(both, JournalProvider.PostgreSql, _dir));
        Assert.Contains("coordinator.persistence.password", e.Message);
        Assert.DoesNotContain(_secret, e.Message);

        // SQLite has no password: say so rather than ignore it.
        var sqlite = Hocon($"coordinator.persistence.password = \"{_secret}\"").GetConfig("coordinator");
        e = Assert.Throws<ConfigurationException>(() => PersistenceHocon.ConnectionString(sqlite, JournalProvider.Sqlite, _dir));
        Assert.Contains("postgresql only", e.Message);
        Assert.DoesNotContain(_secret, e.Message);

        // A malformed connection string is refused without quoting it (it may hold a password).
        var malformed = Hocon($$"""coordinator.persistence { connection-string = "Host=h;Nonsense{{_secret}}", password = x }""").GetConfig("coordinator");
        e = Assert.Throws<ConfigurationException>(() => PersistenceHocon.ConnectionString(malformed, JournalProvider.PostgreSql, _dir));
        Assert.DoesNotContain(_secret, e.Message);
    }

    [Fact]
    public void Every_secret_setting_reads_from_a_file()
    {
        var admin = SecretFile("admin-" + _secret);
        var agent = SecretFile("agent-" + _secret);
        var glance = SecretFile("glance-" + _secret);
        var peer = SecretFile("peer-" + _secret);
        var settings = CoordinatorSettings.FromConfig(Hocon($$"""
            coordinator {
              node-name = hv01
              data-dir = {{Q(_dir)}}
              http { admin-token-file = {{Q(admin)}}, agent-token-file = {{Q(agent)}} }
              images.glance { endpoint = "http://127.0.0.1:1", token-file = {{Q(glance)}} }
              hyperv.peers { hvb01 { url = "https://peer.example:7070", token-file = {{Q(peer)}} } }
            }
            """));
        Assert.Equal("admin-" + _secret, settings.AdminToken);
        Assert.Equal("agent-" + _secret, settings.AgentToken);
        Assert.Equal("glance-" + _secret, settings.Images.GlanceToken);
        Assert.Equal("peer-" + _secret, settings.HyperV.Peers["hvb01"].Token);
        Assert.DoesNotContain(_secret, settings.HyperV.Peers["hvb01"].ToString());
    }

    public void Dispose() => Directory.Delete(_dir, true);
}
