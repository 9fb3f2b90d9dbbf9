namespace Coordinator.Cluster.Ledger;

/// <summary>Registry key of the ledger singleton's proxy (Akka.Hosting's ActorRegistry): every node talks to the ledger through it.</summary>
public sealed class CsvLedgerSingleton
{
    public const string Name = "csv-ledger";
}
