using Coordinator.IntegrationTests.Harness;

namespace Coordinator.IntegrationTests;

/// <summary>
/// The harness's own PostgreSQL server: one that fails to start is a test failure that shows why (the tail of the
/// server's log), never a skip; only missing binaries are a missing prerequisite.
/// </summary>
public sealed class ThrowawayPostgresTests
{
    [SkippableFact]
    public void A_server_that_fails_to_start_is_an_error_with_the_tail_of_its_log()
    {
        using var first = ThrowawayPostgres.Start();
        // A second server on the same port cannot bind it.
        var e = Assert.Throws<InvalidOperationException>(() => ThrowawayPostgres.Start(first.Port));
        Assert.Contains("did not start", e.Message);
        Assert.Contains("server.log", e.Message);
        Assert.Contains("could not bind", e.Message);
    }
}
