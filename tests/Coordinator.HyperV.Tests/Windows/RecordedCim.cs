using System.Collections.Concurrent;
using System.Globalization;
using System.Text.RegularExpressions;
using Coordinator.HyperV;
using Coordinator.HyperV.Windows;

namespace Coordinator.HyperV.Tests.Windows;

/// <summary>
/// A fake <see cref="ICimGateway"/> holding instances shaped like the real WMI ones (property names and .NET types as
/// MI returns them) and recording every call, so tests assert the exact namespace/class/method/parameters the Windows
/// back-end sends. Queries are evaluated by a small WQL subset (SELECT ... FROM Class [WHERE a = 'x' AND b LIKE 'y%'
/// AND n = 5]); an unsupported query fails the test. Unknown paths are NotFound (WBEM_E_NOT_FOUND) as through MI.
/// </summary>
public sealed class RecordedCim : ICimGateway
{
    public const string Server = "HV1";

    public sealed record Invocation(string Namespace, string Path, string ClassName, string Method, IReadOnlyDictionary<string, object?> Parameters)
    {
        public object? this[string parameter] => Parameters.TryGetValue(parameter, out var v) ? v : null;
    }

    public sealed record Modification(string Namespace, string Path, IReadOnlyDictionary<string, object?> Properties);

    public sealed record JobStep(ushort State, ushort ErrorCode = 0, string? Description = null, string? Summary = null);

    private sealed class Stored(string ns, CimRecord record)
    {
        public string Ns { get; } = ns;
        public CimRecord Record { get; set; } = record;
        public Queue<JobStep>? Steps { get; init; }
        public int Reads { get; set; }
    }

    private readonly object _gate = new();
    private readonly Dictionary<string, Stored> _instances = new(StringComparer.OrdinalIgnoreCase);
    private readonly List<string> _order = [];
    private readonly List<(string From, string Association, string To)> _associations = [];
    private readonly Dictionary<(string Class, string Method), Func<Invocation, CimMethodResult>> _handlers = new();

    public List<Invocation> Invocations { get; } = [];
    public List<(string Namespace, string Wql)> Queries { get; } = [];
    public List<Modification> Modifications { get; } = [];
    public List<string> Gets { get; } = [];

    // ------------------------------------------------------------------ setup

    public CimRecord Add(string ns, string className, IReadOnlyDictionary<string, object?> properties, params string[] keys)
    {
        var props = new Dictionary<string, object?>(properties, StringComparer.OrdinalIgnoreCase);
        var path = WmiPath.Format(Server, ns, className, keys.Select(k => new KeyValuePair<string, object?>(k, props[k])));
        var record = new CimRecord(className, path, props);
        lock (_gate)
        {
            if (!_instances.ContainsKey(path))
                _order.Add(path);
            _instances[path] = new Stored(ns, record);
        }

        return record;
    }

    public void Remove(string path)
    {
        lock (_gate)
        {
            _instances.Remove(path);
            _order.Remove(path);
        }
    }

    public void Associate(CimRecord from, string association, CimRecord to)
    {
        lock (_gate)
            _associations.Add((from.Path, association, to.Path));
    }

    /// <summary>An Msvm_ConcreteJob whose successive reads go through <paramref name="steps"/> (the last one sticks).</summary>
    public CimReference AddJob(params JobStep[] steps)
    {
        var id = Guid.NewGuid().ToString().ToUpperInvariant();
        var path = WmiPath.Format(Server, CimNames.Virtualization, "Msvm_ConcreteJob", [new("InstanceID", id)]);
        var record = new CimRecord("Msvm_ConcreteJob", path, JobProperties(id, steps[0]));
        lock (_gate)
        {
            _order.Add(path);
            _instances[path] = new Stored(CimNames.Virtualization, record) { Steps = new Queue<JobStep>(steps) };
        }

        return new CimReference(path);
    }

    public int ReadsOf(CimReference job)
    {
        lock (_gate)
            return _instances[job.Path].Reads;
    }

    public void OnMethod(string className, string method, Func<Invocation, CimMethodResult> handler)
    {
        lock (_gate)
            _handlers[(className, method)] = handler;
    }

    public CimRecord Get(string path)
    {
        lock (_gate)
            return _instances[path].Record;
    }

    public IReadOnlyList<Invocation> Calls(string method)
    {
        lock (_gate)
            return Invocations.Where(i => i.Method == method).ToList();
    }

    /// <summary>A query for assertions (not recorded).</summary>
    public IReadOnlyList<CimRecord> Query(string ns, string wql)
    {
        lock (_gate)
        {
            var (className, conditions) = ParseWql(wql);
            return _order.Select(p => _instances[p])
                .Where(s => SameNs(s.Ns, ns) && string.Equals(s.Record.ClassName, className, StringComparison.OrdinalIgnoreCase))
                .Select(s => s.Record)
                .Where(r => conditions.All(c => c(r)))
                .ToList();
        }
    }

    public static CimMethodResult Result(uint returnValue, params (string Name, object? Value)[] outs) =>
        new(returnValue, outs.ToDictionary(o => o.Name, o => o.Value, StringComparer.OrdinalIgnoreCase));

    // ------------------------------------------------------------------ ICimGateway

    public Task<IReadOnlyList<CimRecord>> QueryAsync(string ns, string wql, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        lock (_gate)
        {
            Queries.Add((ns, wql));
            var (className, conditions) = ParseWql(wql);
            IReadOnlyList<CimRecord> found = _order.Select(p => _instances[p])
                .Where(s => SameNs(s.Ns, ns) && string.Equals(s.Record.ClassName, className, StringComparison.OrdinalIgnoreCase))
                .Select(s => s.Record)
                .Where(r => conditions.All(c => c(r)))
                .ToList();
            return Task.FromResult(found);
        }
    }

    public Task<CimRecord> GetInstanceAsync(string ns, string path, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        lock (_gate)
        {
            Gets.Add(path);
            if (!_instances.TryGetValue(path, out var stored))
                throw NotFound($"get {path}");
            stored.Reads++;
            if (stored.Steps is { Count: > 0 } steps)
            {
                var step = steps.Count > 1 ? steps.Dequeue() : steps.Peek();
                var id = (string)stored.Record["InstanceID"]!;
                stored.Record = stored.Record with { Properties = JobProperties(id, step) };
            }

            return Task.FromResult(stored.Record);
        }
    }

    public Task<IReadOnlyList<CimRecord>> GetAssociatedAsync(string ns, string sourcePath, string? associationClass, string? resultClass, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        lock (_gate)
        {
            if (!_instances.ContainsKey(sourcePath))
                throw NotFound($"associators of {sourcePath}");
            IReadOnlyList<CimRecord> found = _associations
                .Where(a => string.Equals(a.From, sourcePath, StringComparison.OrdinalIgnoreCase)
                    && (associationClass is null || string.Equals(a.Association, associationClass, StringComparison.OrdinalIgnoreCase)))
                .Select(a => _instances.TryGetValue(a.To, out var s) ? s.Record : null)
                .OfType<CimRecord>()
                .Where(r => resultClass is null || string.Equals(r.ClassName, resultClass, StringComparison.OrdinalIgnoreCase))
                .ToList();
            return Task.FromResult(found);
        }
    }

    public Task<CimMethodResult> InvokeMethodAsync(string ns, string instancePath, string method, IReadOnlyDictionary<string, object?> parameters, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        Func<Invocation, CimMethodResult>? handler;
        Invocation invocation;
        lock (_gate)
        {
            var className = WmiPath.ClassOf(instancePath);
            invocation = new Invocation(ns, instancePath, className, method,
                new Dictionary<string, object?>(parameters, StringComparer.OrdinalIgnoreCase));
            Invocations.Add(invocation);
            if (!_instances.ContainsKey(instancePath))
                throw NotFound($"{className}.{method}");
            _handlers.TryGetValue((className, method), out handler);
        }

        return Task.FromResult(handler?.Invoke(invocation)
            ?? throw new InvalidOperationException($"RecordedCim: unexpected {invocation.ClassName}.{method} on {instancePath}"));
    }

    public Task<CimMethodResult> InvokeStaticMethodAsync(string ns, string className, string method, IReadOnlyDictionary<string, object?> parameters, CancellationToken ct)
    {
        Func<Invocation, CimMethodResult>? handler;
        Invocation invocation;
        lock (_gate)
        {
            invocation = new Invocation(ns, className, className, method, new Dictionary<string, object?>(parameters, StringComparer.OrdinalIgnoreCase));
            Invocations.Add(invocation);
            _handlers.TryGetValue((className, method), out handler);
        }

        return Task.FromResult(handler?.Invoke(invocation)
            ?? throw new InvalidOperationException($"RecordedCim: unexpected static {className}.{method}"));
    }

    public Task ModifyInstanceAsync(string ns, string path, IReadOnlyDictionary<string, object?> properties, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        lock (_gate)
        {
            Modifications.Add(new Modification(ns, path, new Dictionary<string, object?>(properties, StringComparer.OrdinalIgnoreCase)));
            if (!_instances.TryGetValue(path, out var stored))
                throw NotFound($"modify {path}");
            var merged = new Dictionary<string, object?>(stored.Record.Properties, StringComparer.OrdinalIgnoreCase);
            foreach (var (k, v) in properties)
                merged[k] = v;
            stored.Record = stored.Record with { Properties = merged };
        }

        return Task.CompletedTask;
    }

    // ------------------------------------------------------------------ internals

    /// <summary>What MI reports for a missing instance, through the same mapping as the real gateway.</summary>
    public static HyperVException NotFound(string operation) =>
        CimErrors.Map(operation, CimErrors.MiNotFound, CimErrors.WbemENotFound, "Not found");

    private static bool SameNs(string a, string b) =>
        string.Equals(a.Replace('\\', '/'), b.Replace('\\', '/'), StringComparison.OrdinalIgnoreCase);

    private static Dictionary<string, object?> JobProperties(string id, JobStep step) => new(StringComparer.OrdinalIgnoreCase)
    {
        ["InstanceID"] = id,
        ["Caption"] = "Job",
        ["JobState"] = step.State,
        ["ErrorCode"] = step.ErrorCode,
        ["ErrorDescription"] = step.Description,
        ["ErrorSummaryDescription"] = step.Summary,
        ["PercentComplete"] = (ushort)(step.State == CimJobRunner.JobStateCompleted ? 100 : 50),
        ["JobType"] = (ushort)1,
        ["Cancellable"] = true,
    };

    private static readonly Regex Select = new(@"^\s*SELECT\s+(?<fields>.+?)\s+FROM\s+(?<class>\w+)(\s+WHERE\s+(?<where>.+))?\s*$",
        RegexOptions.IgnoreCase | RegexOptions.Singleline);

    private static readonly Regex Condition = new(@"^\s*(?<prop>\w+)\s*(?<op>=|<>|!=|LIKE)\s*(?<lit>.+?)\s*$", RegexOptions.IgnoreCase);

    public static (string ClassName, List<Func<CimRecord, bool>> Conditions) ParseWql(string wql)
    {
        var m = Select.Match(wql);
        if (!m.Success)
            throw new InvalidOperationException($"RecordedCim: unsupported WQL '{wql}'");
        var conditions = new List<Func<CimRecord, bool>>();
        if (m.Groups["where"].Success)
        {
            foreach (var part in SplitAnd(m.Groups["where"].Value))
            {
                var c = Condition.Match(part);
                if (!c.Success)
                    throw new InvalidOperationException($"RecordedCim: unsupported condition '{part}' in '{wql}'");
                var prop = c.Groups["prop"].Value;
                var op = c.Groups["op"].Value.ToUpperInvariant();
                var literal = ParseLiteral(c.Groups["lit"].Value, wql);
                conditions.Add(op switch
                {
                    "=" => r => Equal(r[prop], literal),
                    "<>" or "!=" => r => !Equal(r[prop], literal),
                    "LIKE" => Like(prop, (string)literal),
                    _ => throw new InvalidOperationException(op),
                });
            }
        }

        return (m.Groups["class"].Value, conditions);
    }

    private static IEnumerable<string> SplitAnd(string where)
    {
        var parts = new List<string>();
        var start = 0;
        var quoted = false;
        for (var i = 0; i < where.Length; i++)
        {
            if (quoted && where[i] == '\\')
            {
                i++;
                continue;
            }

            if (where[i] == '\'')
                quoted = !quoted;
            else if (!quoted && i + 5 <= where.Length && string.Compare(where, i, " AND ", 0, 5, StringComparison.OrdinalIgnoreCase) == 0)
            {
                parts.Add(where[start..i]);
                start = i + 5;
                i += 4;
            }
        }

        parts.Add(where[start..]);
        return parts;
    }

    private static object ParseLiteral(string text, string wql)
    {
        text = text.Trim();
        if (text.StartsWith('\''))
        {
            if (!text.EndsWith('\'') || text.Length < 2)
                throw new InvalidOperationException($"RecordedCim: bad literal {text} in '{wql}'");
            var body = text[1..^1];
            var sb = new System.Text.StringBuilder();
            for (var i = 0; i < body.Length; i++)
            {
                if (body[i] == '\\' && i + 1 < body.Length)
                {
                    sb.Append(body[++i]);
                    continue;
                }

                if (body[i] == '\'')
                    throw new InvalidOperationException($"RecordedCim: unescaped quote in {text} in '{wql}'");
                sb.Append(body[i]);
            }

            return sb.ToString();
        }

        return long.Parse(text, CultureInfo.InvariantCulture);
    }

    private static bool Equal(object? value, object literal) => (value, literal) switch
    {
        (null, _) => false,
        (string s, string l) => string.Equals(s, l, StringComparison.OrdinalIgnoreCase),
        (_, long l) when value is IConvertible && value is not string => Convert.ToDecimal(value, CultureInfo.InvariantCulture) == l,
        _ => false,
    };

    private static Func<CimRecord, bool> Like(string prop, string pattern)
    {
        var regex = new System.Text.StringBuilder("^");
        for (var i = 0; i < pattern.Length; i++)
        {
            var c = pattern[i];
            if (c == '[')
            {
                var end = pattern.IndexOf(']', i + 2);
                regex.Append(Regex.Escape(pattern[(i + 1)..end]));
                i = end;
            }
            else if (c == '%')
                regex.Append(".*");
            else if (c == '_')
                regex.Append('.');
            else
                regex.Append(Regex.Escape(c.ToString()));
        }

        var r = new Regex(regex.Append('$').ToString(), RegexOptions.IgnoreCase | RegexOptions.Singleline);
        return rec => rec[prop] is string s && r.IsMatch(s);
    }
}

/// <summary>A clock whose delays pass at once (and move its time).</summary>
public sealed class FakeClock : IHyperVClock
{
    private long _ticks = new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero).UtcTicks;

    public ConcurrentQueue<TimeSpan> Delays { get; } = new();

    public DateTimeOffset UtcNow => new(Interlocked.Read(ref _ticks), TimeSpan.Zero);

    public Task Delay(TimeSpan delay, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        Delays.Enqueue(delay);
        Interlocked.Add(ref _ticks, delay.Ticks);
        return Task.CompletedTask;
    }
}

/// <summary>Files and folders by path, in memory, named as NTFS names them: case-insensitive, trailing dots and spaces
/// of each component ignored (<c>D:\vms\VM1.</c> is <c>D:\vms\vm1</c>).</summary>
public sealed class FakeFiles : IHostFiles
{
    public HashSet<string> Files { get; } = new(NtfsPathComparer.Instance);

    public HashSet<string> Folders { get; } = new(NtfsPathComparer.Instance);

    public Exception? DeleteFailure { get; set; }

    public bool Exists(string path) => Files.Contains(path);

    public void Delete(string path)
    {
        if (DeleteFailure is { } e)
            throw e;
        Files.Remove(path);
    }

    public bool FolderExists(string path) => Folders.Contains(path);

    public void CreateFolder(string path) => Folders.Add(path);

    public bool HoldsFiles(string folder) => Files.Any(f => IsUnder(f, folder));

    public void DeleteFolder(string path)
    {
        if (DeleteFailure is { } e)
            throw e;
        Files.RemoveWhere(f => IsUnder(f, path));
        Folders.RemoveWhere(f => NtfsNames.SamePath(f, path) || IsUnder(f, path));
    }

    private static bool IsUnder(string path, string folder)
    {
        var cut = path.LastIndexOf('\\');
        while (cut > 0)
        {
            if (NtfsNames.SamePath(path[..cut], folder))
                return true;
            cut = path.LastIndexOf('\\', cut - 1);
        }

        return false;
    }

    private sealed class NtfsPathComparer : IEqualityComparer<string>
    {
        public static readonly NtfsPathComparer Instance = new();

        public bool Equals(string? x, string? y) => x is not null && y is not null && NtfsNames.SamePath(x, y);

        public int GetHashCode(string obj) => StringComparer.OrdinalIgnoreCase.GetHashCode(
            string.Join('\\', obj.Split(['\\', '/'], StringSplitOptions.RemoveEmptyEntries).Select(NtfsNames.Strip)));
    }
}
