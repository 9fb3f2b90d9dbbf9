#!/usr/bin/env bash
# Side-by-side benchmark (issues 7, 12, 13): our 3-node cluster on SQLite (ours-3; ours-3-tls with mutual TLS between
# the nodes, certificates made by scripts/deploy/make-certs.sh) and on PostgreSQL (ours-3-pg, a
# throwaway fsync=on server), with the fast-failover profile (ours-3-fast), vs etcd 3.4: 1 member (etcd-1), 3 members
# (etcd-3: one usage key per volume) and 3 members with a usage key per node (etcd-3-pernode), under the same load
# generator; failover after SIGKILL of the leader (median of 5); recovery/size with 100k reservations + 10k images.
# Prints markdown tables (README-ready); exits 1 when a target/workload had no successful operation or an error.
#   scripts/bench.sh                       the full run (~25 minutes on 2 cores)
#   scripts/bench.sh --smoke               every target and workload for about a second each (CI runs this)
#   scripts/bench.sh --targets ours-3,etcd-1 --workloads reserve --duration 20 --concurrency 128 --failover-trials 0
#   scripts/bench.sh --help                every option
# Installs Debian's etcd-server (and postgresql) when missing (needs root). Every process runs on 127.0.0.1 with free
# ports, under one mktemp -d folder (PostgreSQL's next to it: its server user must reach it); on exit exactly the
# PIDs recorded there are stopped, the PostgreSQL server of that folder is stopped, and the folders are removed.
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

if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "bench: installing postgresql from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1 \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
  else
    echo "bench: PostgreSQL is not installed (apt-get install postgresql); target ours-3-pg needs it" >&2
  fi
fi

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && ! git diff --quiet HEAD -- 2>/dev/null; then commit="$commit+dirty"; fi
export BENCH_COMMIT=$commit DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

dotnet build src/Coordinator.Service -c Release -v q -nologo >/dev/null
dotnet build scripts/bench/CoordinatorBench -c Release -v q -nologo >/dev/null

dir=$(mktemp -d "${TMPDIR:-/tmp}/coordinator-bench.XXXXXX")
pg_dir="$dir-pg"
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # The throwaway PostgreSQL of ours-3-pg, if the bench left it running: the script stops the server of that folder.
  if [ -d "$pg_dir" ]; then
    "$root/scripts/pg-throwaway.sh" stop "$pg_dir" >/dev/null 2>&1 && echo "bench: stopped leftover PostgreSQL ($pg_dir)" || true
  fi
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

# The certificates of ours-3-tls: a throwaway CA and hv01..hv03, in this run's folder (removed with it).
"$root/scripts/deploy/make-certs.sh" ca "$dir/certs" 30 >/dev/null
for n in hv01 hv02 hv03; do "$root/scripts/deploy/make-certs.sh" node "$dir/certs" "$n" 127.0.0.1 localhost --days 30 >/dev/null; done

dotnet "$root/scripts/bench/CoordinatorBench/bin/Release/net10.0/CoordinatorBench.dll" \
  --service-dll "$root/src/Coordinator.Service/bin/Release/net10.0/Coordinator.Service.dll" --dir "$dir" \
  --fast-profile "$root/hocon/fast-failover.hocon" --pg-script "$root/scripts/pg-throwaway.sh" --pg-dir "$pg_dir" --tls-certs "$dir/certs" "$@"
