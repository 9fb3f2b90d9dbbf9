using Coordinator.Cluster.Configuration;
using Coordinator.Cluster.Journal;

namespace Coordinator.Service.Hosting;

/// <summary>
/// Reads (or, at the cluster's first start, writes) the journal's identity before the ActorSystem starts: the cluster id
/// goes into the node's Akka configuration (see <see cref="JournalIdentityGuard"/>), and a journal written in a newer
/// format stops the node here, before anything reads its rows.
/// </summary>
public static class JournalStartup
{
    /// <summary>A journal that does not answer at boot (PostgreSQL still starting) is retried this long.</summary>
    public static readonly TimeSpan WaitForJournal = TimeSpan.FromSeconds(60);

    public static async Task<JournalIdentity> EnsureIdentityAsync(CoordinatorSettings settings, Serilog.ILogger log)
    {
        log = log.ForContext(typeof(JournalStartup));
        var started = DateTime.UtcNow;
        var delay = TimeSpan.FromMilliseconds(500);
        while (true)
        {
            try
            {
                var identity = await JournalIdentityStore.EnsureAsync(settings.Provider, settings.ConnectionString);
                log.Information("Journal ({Provider}) belongs to cluster {ClusterId}, format version {FormatVersion}",
                    settings.Provider, identity.ClusterId, identity.FormatVersion);
                return identity;
            }
            catch (JournalIdentityException)
            {
                throw; // a journal we must not use: retrying cannot help
            }
            catch (Exception e) when (DateTime.UtcNow - started < WaitForJournal)
            {
                // The connection string may hold a password: it is never logged.
                log.Warning("The journal ({Provider}) did not answer ({Error}); retrying in {Delay:0.#} s", settings.Provider,
                    e.GetBaseException().Message, delay.TotalSeconds);
                await Task.Delay(delay);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(5).Ticks));
            }
            catch (Exception e)
            {
                throw new JournalIdentityException(
                    $"the journal ({settings.Provider}) did not answer for {WaitForJournal.TotalSeconds:0} s: {e.GetBaseException().Message} " +
                    "(check coordinator.persistence.connection-string and coordinator.persistence.password)", e);
            }
        }
    }
}
