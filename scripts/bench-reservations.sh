#!/usr/bin/env bash
# Reservation throughput/latency benchmark: a throwaway 3-node local cluster plus the load generator.
#   scripts/bench-reservations.sh [bench options]     e.g. --duration 10 --concurrency 128
# Bench options (scripts/bench/ReservationBench): --concurrency 64 --duration 20 --warmup 3 --volume Volume1
#   --bytes 1MiB --sequential 5. Ports: HTTP from $HTTP_BASE (17071), Akka from $AKKA_BASE (14054), chosen so a
# default local cluster (7071/4054) is not disturbed. The cluster lives in a mktemp -d folder; it is stopped and the
# folder removed on exit, whatever happens.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

export HTTP_BASE=${HTTP_BASE:-17071}
export AKKA_BASE=${AKKA_BASE:-14054}
export CAPACITY=100TiB
nodes=3

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && ! git diff --quiet HEAD -- 2>/dev/null; then commit="$commit+dirty"; fi
echo "== reservation bench  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  nproc $(nproc)  commit $commit  dotnet $(dotnet --version)"
echo "== load average before start: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a) (other work on the machine skews the numbers)"
echo "== $nodes nodes, HTTP ports $HTTP_BASE.., Akka ports $AKKA_BASE.., capacity $CAPACITY, bench args: ${*:-(defaults)}"

# Build the load generator first: a compile error should not cost a cluster start.
dotnet build scripts/bench/ReservationBench -c Release -v q -nologo >/dev/null

dir=$(mktemp -d "${TMPDIR:-/tmp}/coordinator-bench.XXXXXX")
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  "$root/scripts/cluster.sh" stop "$dir" || true
  rm -rf "$dir"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! "$root/scripts/cluster.sh" start "$nodes" "$dir"; then
  for log in "$dir"/hv*.log; do [ -f "$log" ] && { echo "--- $log (tail)"; tail -n 20 "$log"; }; done
  exit 1
fi

endpoints=""
for i in $(seq 1 "$nodes"); do endpoints="$endpoints,http://127.0.0.1:$((HTTP_BASE + i - 1))"; done
endpoints=${endpoints#,}

echo
dotnet run -c Release --project scripts/bench/ReservationBench -- --endpoints "$endpoints" "$@"
