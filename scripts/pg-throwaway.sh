#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for tests: its own port, its own temp folder, stopped by PID.
#   scripts/pg-throwaway.sh start DIR PORT   -> initdb into DIR, start, print a connection string
#   scripts/pg-throwaway.sh stop DIR         -> stop exactly the server whose data folder is DIR, remove DIR
#   scripts/pg-throwaway.sh pause DIR        -> stop the server but keep its data (a database outage)
#   scripts/pg-throwaway.sh resume DIR PORT  -> start it again on the same port
# PG_THROWAWAY_DURABLE=1 (the benchmark): fsync=on, synchronous_commit=on, full_page_writes=on, so an acknowledged commit
# is on disk; without it the tests' setting fsync=off (faster, not crash-safe).
# Debian's postgresql package provides the binaries (.ci/run installs it when missing). As root, the server runs as
# the 'postgres' user (PostgreSQL refuses to run as root). A start that fails prints the tail of the server's log (or of
# initdb's) on stderr and exits non-zero.
set -euo pipefail

# Why a start failed: the last lines of a log in the data folder, on stderr.
log_tail() {
  echo "pg-throwaway: $1 failed; last lines of $2:" >&2
  tail -n 40 "$2" >&2 2>/dev/null || echo "(no log at $2)" >&2
}

start_server() {
  local port=$1
  if ! as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir $durability -c max_connections=200" start >/dev/null; then
    log_tail "pg_ctl start (port $port)" "$dir/server.log"
    exit 1
  fi
}

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && { echo "$d"; return; }; done
  command -v pg_ctl >/dev/null && { dirname "$(command -v pg_ctl)"; return; }
  echo "pg-throwaway: no PostgreSQL binaries found (apt-get install postgresql)" >&2; exit 1
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cmd=${1:?usage: start DIR PORT | stop DIR}
if [ "${PG_THROWAWAY_DURABLE:-0}" = 1 ]; then
  durability="-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
else
  durability="-c fsync=off"
fi
dir=${2:?data folder}
bin=$(find_bin)

case "$cmd" in
  start)
    port=${3:?port}
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    if ! as_owner "$bin/initdb" -D "$dir/data" -U coordinator --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1; then
      log_tail initdb "$dir/initdb.log"
      exit 1
    fi
    start_server "$port"
    echo "Host=127.0.0.1;Port=$port;Username=coordinator;Database=postgres;Pooling=true"
    ;;
  pause)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null
    ;;
  resume)
    start_server "${3:?port}"
    ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null || {
        pid=$(head -n1 "$dir/data/postmaster.pid"); kill -9 "$pid" 2>/dev/null || true; }
    fi
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start DIR PORT | pause DIR | resume DIR PORT | stop DIR" >&2; exit 2 ;;
esac
