using Coordinator.HyperV;
using Coordinator.HyperV.Windows;
using static Coordinator.HyperV.Windows.CimJobRunner;

namespace Coordinator.HyperV.Tests.Windows;

public sealed class CimJobRunnerTests
{
    private readonly HyperVShapes _hv = new();
    private readonly FakeClock _clock = new();
    private readonly CimJobRunner _runner;

    public CimJobRunnerTests()
    {
        _runner = new CimJobRunner(_hv.Cim, new CimJobOptions { PollInterval = TimeSpan.FromMilliseconds(100), Timeout = TimeSpan.FromSeconds(10) }, _clock);
    }

    private Task Invoke(CimMethodResult result)
    {
        _hv.Cim.OnMethod("Msvm_VirtualSystemManagementService", "DestroySystem", _ => result);
        return _runner.InvokeAsync(CimNames.Virtualization, _hv.Vsms.Path, "DestroySystem", new Dictionary<string, object?>(), default);
    }

    [Fact]
    public async Task Zero_is_done_without_a_job()
    {
        await Invoke(RecordedCim.Result(0));

        Assert.Empty(_hv.Cim.Gets);
    }

    [Fact]
    public async Task A_job_is_polled_through_its_running_states_until_completed()
    {
        var job = _hv.Cim.AddJob(new(JobStateNew), new(JobStateStarting), new(JobStateRunning), new(JobStateRunning), new(JobStateRunning), new(JobStateCompleted));

        await Invoke(RecordedCim.Result(4096, ("Job", job)));

        Assert.Equal(6, _hv.Cim.ReadsOf(job));
        Assert.Equal(Enumerable.Repeat(TimeSpan.FromMilliseconds(100), 5), _clock.Delays);
        Assert.All(_hv.Cim.Gets, g => Assert.Equal(job.Path, g));
    }

    [Fact]
    public async Task Completed_with_warnings_is_success()
    {
        var job = _hv.Cim.AddJob(new(JobStateRunning), new(JobStateCompletedWithWarnings, 0, "Some warning"));

        await Invoke(RecordedCim.Result(4096, ("Job", job)));

        Assert.Equal(2, _hv.Cim.ReadsOf(job));
    }

    [Fact]
    public async Task A_job_in_Exception_state_is_JobFailed_with_its_error_code_and_descriptions()
    {
        var job = _hv.Cim.AddJob(new(JobStateRunning), new(JobStateException, 32768,
            "'web' failed to start. (Virtual machine ID 5A9E…)", "'web' failed to start."));

        var e = await Assert.ThrowsAsync<HyperVException>(() => Invoke(RecordedCim.Result(4096, ("Job", job))));

        Assert.Equal(HyperVErrorKind.JobFailed, e.Kind);
        Assert.Equal(32768, e.Code);
        Assert.Contains("'web' failed to start. (Virtual machine ID 5A9E…)", e.Message);
        Assert.Contains("Exception", e.Message);
        Assert.Contains("Msvm_VirtualSystemManagementService.DestroySystem", e.Message);
    }

    [Theory]
    [InlineData(JobStateTerminated)]
    [InlineData(JobStateKilled)]
    public async Task Terminated_and_killed_jobs_fail_even_without_an_error_code(ushort state)
    {
        var job = _hv.Cim.AddJob(new RecordedCim.JobStep(state));

        var e = await Assert.ThrowsAsync<HyperVException>(() => Invoke(RecordedCim.Result(4096, ("Job", job))));

        Assert.Equal(HyperVErrorKind.JobFailed, e.Kind);
        Assert.Equal(0, e.Code);
    }

    [Fact]
    public async Task A_completed_job_with_an_error_code_failed()
    {
        var job = _hv.Cim.AddJob(new RecordedCim.JobStep(JobStateCompleted, 32773, "Invalid parameter."));

        var e = await Assert.ThrowsAsync<HyperVException>(() => Invoke(RecordedCim.Result(4096, ("Job", job))));

        Assert.Equal(HyperVErrorKind.JobFailed, e.Kind);
        Assert.Equal(32773, e.Code);
    }

    [Fact]
    public async Task A_job_that_never_ends_times_out_and_is_asked_to_stop()
    {
        var job = _hv.Cim.AddJob(new RecordedCim.JobStep(JobStateRunning));
        _hv.Cim.OnMethod("Msvm_ConcreteJob", "RequestStateChange", _ => RecordedCim.Result(0));

        var e = await Assert.ThrowsAsync<HyperVException>(() => Invoke(RecordedCim.Result(4096, ("Job", job))));

        Assert.Equal(HyperVErrorKind.Timeout, e.Kind);
        Assert.Equal(101, _hv.Cim.ReadsOf(job)); // 10 s of 100 ms polls, plus the first read
        var kill = _hv.Cim.Calls("RequestStateChange").Single();
        Assert.Equal(job.Path, kill.Path);
        Assert.Equal((ushort)5, kill["RequestedState"]);
    }

    [Fact]
    public async Task A_job_that_vanishes_is_JobFailed()
    {
        var job = _hv.Cim.AddJob(new RecordedCim.JobStep(JobStateRunning));
        _hv.Cim.Remove(job.Path);

        var e = await Assert.ThrowsAsync<HyperVException>(() => Invoke(RecordedCim.Result(4096, ("Job", job))));

        Assert.Equal(HyperVErrorKind.JobFailed, e.Kind);
        Assert.IsType<HyperVException>(e.InnerException);
        Assert.Equal(HyperVErrorKind.NotFound, ((HyperVException)e.InnerException!).Kind);
    }

    [Fact]
    public async Task A_job_start_without_a_job_reference_is_Failed()
    {
        var e = await Assert.ThrowsAsync<HyperVException>(() => Invoke(RecordedCim.Result(4096)));

        Assert.Equal(HyperVErrorKind.Failed, e.Kind);
    }

    [Theory]
    [InlineData(32768u, HyperVErrorKind.Failed, "failed")]
    [InlineData(32769u, HyperVErrorKind.Failed, "access denied")]
    [InlineData(32770u, HyperVErrorKind.Failed, "not supported")]
    [InlineData(32772u, HyperVErrorKind.Timeout, "timeout")]
    [InlineData(32773u, HyperVErrorKind.Failed, "invalid parameter")]
    [InlineData(32775u, HyperVErrorKind.InvalidState, "invalid state for this operation")]
    [InlineData(32778u, HyperVErrorKind.InsufficientResources, "out of memory")]
    [InlineData(12345u, HyperVErrorKind.Failed, "unknown return value")]
    public async Task Other_return_values_are_errors_carrying_the_code(uint code, HyperVErrorKind kind, string text)
    {
        var e = await Assert.ThrowsAsync<HyperVException>(() => Invoke(RecordedCim.Result(code)));

        Assert.Equal(kind, e.Kind);
        Assert.Equal(code, e.Code);
        Assert.Contains($"returned {code} ({text})", e.Message);
        Assert.Empty(_hv.Cim.Gets);
    }

    [Fact]
    public async Task Cancellation_stops_the_polling()
    {
        var job = _hv.Cim.AddJob(new RecordedCim.JobStep(JobStateRunning));
        _hv.Cim.OnMethod("Msvm_VirtualSystemManagementService", "DestroySystem", _ => RecordedCim.Result(4096, ("Job", job)));
        using var cts = new CancellationTokenSource();
        var result = await _hv.Cim.InvokeMethodAsync(CimNames.Virtualization, _hv.Vsms.Path, "DestroySystem", new Dictionary<string, object?>(), default);
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => _runner.CompleteAsync("x", result, cts.Token));
    }
}

public sealed class CimErrorsTests
{
    [Fact]
    public void WBEM_E_NOT_FOUND_is_NotFound()
    {
        var e = CimErrors.Map("get x", null, 0x80041002, "Not found");

        Assert.Equal(HyperVErrorKind.NotFound, e.Kind);
        Assert.Equal(0x80041002, e.Code);
        Assert.Contains("0x80041002", e.Message);
    }

    [Fact]
    public void MI_NotFound_is_NotFound()
    {
        var e = CimErrors.Map("get x", CimErrors.MiNotFound, null, "The requested object could not be found.");

        Assert.Equal(HyperVErrorKind.NotFound, e.Kind);
        Assert.Equal(6, e.Code);
    }

    [Theory]
    [InlineData(CimErrors.MiInvalidNamespace, null, HyperVErrorKind.PlatformUnsupported)]
    [InlineData(null, 0x8004100Eu, HyperVErrorKind.PlatformUnsupported)]
    [InlineData(CimErrors.MiInvalidClass, null, HyperVErrorKind.PlatformUnsupported)]
    [InlineData(CimErrors.MiAccessDenied, 0x80041003u, HyperVErrorKind.Failed)]
    [InlineData(CimErrors.MiAlreadyExists, null, HyperVErrorKind.AlreadyExists)]
    [InlineData(1, 0x80071392u, HyperVErrorKind.AlreadyExists)] // HRESULT_FROM_WIN32(ERROR_OBJECT_ALREADY_EXISTS)
    [InlineData(1, 0x80071395u, HyperVErrorKind.NotFound)] // HRESULT_FROM_WIN32(ERROR_GROUP_NOT_FOUND)
    [InlineData(1, 0x8007139Fu, HyperVErrorKind.InvalidState)] // HRESULT_FROM_WIN32(ERROR_INVALID_STATE)
    [InlineData(1, null, HyperVErrorKind.Failed)]
    public void Other_statuses(int? native, uint? hresult, HyperVErrorKind kind) =>
        Assert.Equal(kind, CimErrors.Map("op", native, hresult, "m").Kind);
}

public sealed class WmiPathTests
{
    [Fact]
    public void Formats_keys_sorted_and_quoted_and_parses_back()
    {
        var path = WmiPath.Format("HV1", "root/virtualization/v2", "Msvm_ComputerSystem",
            [new("Name", "5A9E-01"), new("CreationClassName", "Msvm_ComputerSystem")]);

        Assert.Equal(@"\\HV1\root\virtualization\v2:Msvm_ComputerSystem.CreationClassName=""Msvm_ComputerSystem"",Name=""5A9E-01""", path);
        var parsed = WmiPath.Parse(path);
        Assert.Equal("HV1", parsed.Server);
        Assert.Equal("root/virtualization/v2", parsed.Namespace);
        Assert.Equal("Msvm_ComputerSystem", parsed.ClassName);
        Assert.Equal("5A9E-01", parsed.Keys["name"]);
        Assert.Equal("Msvm_ComputerSystem", parsed.Keys["CreationClassName"]);
    }

    [Fact]
    public void Escapes_backslashes_quotes_and_keeps_dots_colons_and_commas_inside_values()
    {
        var id = @"Microsoft:5A9E\4764334D-E001,x.""y""";
        var path = WmiPath.Format(null, "root/virtualization/v2", "Msvm_MemorySettingData", [new("InstanceID", id)]);

        Assert.Equal(@"root\virtualization\v2:Msvm_MemorySettingData.InstanceID=""Microsoft:5A9E\\4764334D-E001,x.\""y\""""", path);
        Assert.Equal(id, WmiPath.Parse(path).Keys["InstanceID"]);
        Assert.Equal("Msvm_MemorySettingData", WmiPath.ClassOf(path));
    }

    [Fact]
    public void Integer_keys_and_singletons()
    {
        var path = WmiPath.Format(null, null, "Thing", [new("Id", 42u), new("On", true)]);
        Assert.Equal("Thing.Id=42,On=TRUE", path);
        Assert.Equal(42L, WmiPath.Parse(path).Keys["Id"]);
        Assert.Equal(true, WmiPath.Parse(path).Keys["On"]);
        Assert.Equal("Single=@", WmiPath.Format(null, null, "Single", []));
        Assert.Equal("Single", WmiPath.Parse("Single=@").ClassName);
    }

    [Fact]
    public void Wql_quotes_and_like_literals()
    {
        Assert.Equal(@"'it\'s a \\ path'", Wql.Quote(@"it's a \ path"));
        Assert.Equal("50[%][_][[]x]", Wql.LikeLiteral("50%_[x]"));
    }

    [Theory]
    [InlineData(@"C:\ClusterStorage\Volume1\vms\web.vhdx", @"C:\ClusterStorage\Volume1\vms", "web.vhdx")]
    [InlineData(@"D:\web.vhdx", @"D:\", "web.vhdx")]
    [InlineData(@"\\sofs\share\web.vhdx", @"\\sofs\share", "web.vhdx")]
    [InlineData("web.vhdx", "", "web.vhdx")]
    public void Windows_paths_split_on_any_OS(string path, string folder, string file)
    {
        Assert.Equal(folder, WindowsPaths.GetDirectoryName(path));
        Assert.Equal(file, WindowsPaths.GetFileName(path));
        Assert.Equal(@"E:\vms\web.vhdx", WindowsPaths.Combine(@"E:\vms\", "web.vhdx"));
    }

    [Fact]
    public void Serialized_embedded_instances_decode_from_utf16_or_utf8()
    {
        const string xml = "<INSTANCE CLASSNAME=\"Msvm_VirtualHardDiskSettingData\"></INSTANCE>";

        Assert.Equal(xml, MiCimGateway.DecodeSerialized(System.Text.Encoding.Unicode.GetBytes(xml + "\0")));
        Assert.Equal(xml, MiCimGateway.DecodeSerialized(System.Text.Encoding.UTF8.GetBytes(xml)));
        Assert.Equal(xml, MiCimGateway.DecodeSerialized([0xFF, 0xFE, .. System.Text.Encoding.Unicode.GetBytes(xml)]));
    }
}
