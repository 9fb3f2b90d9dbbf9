// Each test class starts its own node processes; on a 2-core machine running them one class at a time keeps the
// failure-detector timings (and so the failover figures) honest.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
