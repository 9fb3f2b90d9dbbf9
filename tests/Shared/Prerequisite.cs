namespace Coordinator.Testing;

/// <summary>
/// A test that cannot run here (no PostgreSQL server, no network namespaces, not root) says why through
/// <see cref="Require"/>. Normally that is a skip with the reason; with COORDINATOR_TEST_REQUIRE_ALL=1 (as .ci/run sets
/// it) it is a failure with the same reason, so a green CI run cannot hide a test that did not run. The test must be a
/// [SkippableFact] or [SkippableTheory] (Xunit.SkippableFact) for the skip to be reported as one.
/// </summary>
public static class Prerequisite
{
    public const string RequireAllVariable = "COORDINATOR_TEST_REQUIRE_ALL";

    /// <summary>True when every prerequisite must be met (a missing one fails the test instead of skipping it).</summary>
    public static bool RequireAll => Environment.GetEnvironmentVariable(RequireAllVariable) == "1";

    /// <summary>Nothing when <paramref name="whyNot"/> is null; otherwise a skip with the reason, or a failure under
    /// COORDINATOR_TEST_REQUIRE_ALL=1.</summary>
    public static void Require(string? whyNot)
    {
        if (whyNot is null) return;
        if (RequireAll)
            Assert.Fail($"prerequisite missing (a failure, not a skip, because {RequireAllVariable}=1): {whyNot}");
        throw new SkipException(whyNot);
    }
}
