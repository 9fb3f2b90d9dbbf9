#!/usr/bin/env bash
# Side-by-side benchmark (issue 7): our 3-node cluster vs etcd 3.4 (1 member and 3 members) under the same load
# generator; failover after SIGKILL of the leader (median of 5); recovery/size with 100k reservations + 10k images.
#   scripts/bench.sh                       the full run (~10 minutes on 2 cores)
#   scripts/bench.sh --smoke               ~10 s of load: every code path still works (CI runs this)
#   scripts/bench.sh --targets ours,etcd-3 --workloads reserve --duration 20 --concurrency 128 --failover-trials 0
#   scripts/bench.sh --help                every option
# Installs Debian's etcd-server when etcd is missing (needs root). Every process runs on 127.0.0.1 with free ports,
# under one mktemp -d folder; on exit exactly the PIDs recorded there are stopped and the folder is removed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if ! command -v etcd >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "bench: installing etcd-server from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null 2>&1 \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; }
  else
    echo "bench: etcd is not installed (apt-get install etcd-server)" >&2; exit 1
  fi
fi

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && ! git diff --quiet HEAD -- 2>/dev/null; then commit="$commit+dirty"; fi
export BENCH_COMMIT=$commit DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

dotnet build src/Coordinator.Service -c Release -v q -nologo >/dev/null
dotnet build scripts/bench/CoordinatorBench -c Release -v q -nologo >/dev/null

dir=$(mktemp -d "${TMPDIR:-/tmp}/coordinator-bench.XXXXXX")
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # The bench stops what it started; if it died, stop the PIDs it recorded (etcd members, node services).
  for f in "$dir"/*/pids; do
    [ -f "$f" ] || continue
    while read -r pid name; do
      # Only a process whose command line names this run's folder: a recorded PID may since have been reused.
      if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir"; then
        kill -KILL "$pid" 2>/dev/null && echo "bench: stopped leftover $name (PID $pid)"
      fi
    done <"$f" || true
  done
  rm -rf "$dir"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

dotnet "$root/scripts/bench/CoordinatorBench/bin/Release/net10.0/CoordinatorBench.dll" \
  --service-dll "$root/src/Coordinator.Service/bin/Release/net10.0/Coordinator.Service.dll" --dir "$dir" \
  --fast-profile "$root/hocon/fast-failover.hocon" "$@"
