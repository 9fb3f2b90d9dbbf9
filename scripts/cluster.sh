#!/usr/bin/env bash
# A local cluster of N node processes on 127.0.0.1: distinct ports, one shared CSV folder, one shared SQLite journal.
#   scripts/cluster.sh start N [DIR]   build once, write DIR/hvNN.hocon, start the nodes, record their PIDs
#   scripts/cluster.sh status [DIR]    which recorded PIDs are alive, and each node's /readyz
#   scripts/cluster.sh stop [DIR]      SIGTERM exactly the recorded PIDs (SIGKILL after 15 s), nothing else
# DIR defaults to ./data/local-cluster. Ports: HTTP from $HTTP_BASE (7071), Akka from $AKKA_BASE (4054).
# Extra HOCON for every node can be given in $EXTRA_HOCON (e.g. 'coordinator.csv.quota-policy = partitioned').
# TLS=1: mutual TLS between the nodes, with a CA and node certificates made in DIR/certs by scripts/deploy/make-certs.sh
# (the HTTP API stays plain http on loopback).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}
http_base=${HTTP_BASE:-7071}
akka_base=${AKKA_BASE:-4054}

case "$cmd" in
  start)
    n=${2:?usage: cluster.sh start N [DIR]}
    dir=$(mkdir -p "${3:-$root/data/local-cluster}" && cd "${3:-$root/data/local-cluster}" && pwd)
    if [ -s "$dir/pids" ]; then echo "cluster.sh: $dir/pids exists; stop that cluster first" >&2; exit 1; fi
    dotnet build "$root/src/Coordinator.Service" -c Release -v q -nologo >/dev/null
    dll="$root/src/Coordinator.Service/bin/Release/net10.0/Coordinator.Service.dll"
    seeds=""
    for i in $(seq 1 "$n"); do seeds="$seeds\"akka.tcp://coordinator@127.0.0.1:$((akka_base + i - 1))\","; done
    mkdir -p "$dir/csv/Volume1"
    if [ "${TLS:-0}" = 1 ] && [ ! -f "$dir/certs/ca.crt" ]; then
      "$root/scripts/deploy/make-certs.sh" ca "$dir/certs" >/dev/null
      for i in $(seq 1 "$n"); do "$root/scripts/deploy/make-certs.sh" node "$dir/certs" "$(printf 'hv%02d' "$i")" 127.0.0.1 localhost >/dev/null; done
    fi
    : >"$dir/pids"
    for i in $(seq 1 "$n"); do
      name=$(printf 'hv%02d' "$i")
      cat >"$dir/$name.hocon" <<HOCON
coordinator {
  node-name = "$name"
  data-dir = "$dir/$name"
  http.port = $((http_base + i - 1))
  persistence.connection-string = "Data Source=$dir/ledger.db"
  csv.volumes = [ { name = "Volume1", path = "$dir/csv/Volume1", capacity = ${CAPACITY:-500GiB}, headroom = 0 } ]
}
$([ "${TLS:-0}" = 1 ] && printf 'coordinator.security.certificate { file = "%s", key-file = "%s" }\ncoordinator.security.trust.ca-file = "%s"\ncoordinator.security.remoting.tls = on\n' "$dir/certs/$name.crt" "$dir/certs/$name.key" "$dir/certs/ca.crt")
akka.remote.dot-netty.tcp.port = $((akka_base + i - 1))
akka.cluster.seed-nodes = [${seeds%,}]
${EXTRA_HOCON:-}
HOCON
      nohup dotnet "$dll" --config "$dir/$name.hocon" >"$dir/$name.log" 2>&1 &
      echo "$! $name $((http_base + i - 1))" >>"$dir/pids"
      echo "started $name (PID $!): http://127.0.0.1:$((http_base + i - 1)), akka 127.0.0.1:$((akka_base + i - 1)), log $dir/$name.log"
    done
    # Wait until every node is ready (Up, and a leader answers).
    for i in $(seq 1 "$n"); do
      port=$((http_base + i - 1))
      for _ in $(seq 1 120); do
        curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
        sleep 0.5
      done
      curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { echo "node on port $port did not become ready" >&2; exit 1; }
    done
    echo "cluster of $n ready; leader: $(curl -fs "http://127.0.0.1:$http_base/v1/leader")"
    ;;
  status)
    dir=${2:-$root/data/local-cluster}
    [ -s "$dir/pids" ] || { echo "no cluster recorded in $dir"; exit 0; }
    while read -r pid name port; do
      if kill -0 "$pid" 2>/dev/null; then state=running; else state=gone; fi
      echo "$name PID $pid $state readyz: $(curl -s -m 2 "http://127.0.0.1:$port/readyz" || echo unreachable)"
    done <"$dir/pids"
    ;;
  stop)
    dir=${2:-$root/data/local-cluster}
    [ -s "$dir/pids" ] || { echo "no cluster recorded in $dir"; exit 0; }
    while read -r pid name _; do kill -TERM "$pid" 2>/dev/null && echo "stopping $name (PID $pid)" || true; done <"$dir/pids"
    for _ in $(seq 1 30); do
      alive=0
      while read -r pid _ _; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$dir/pids"
      [ $alive = 0 ] && break
      sleep 0.5
    done
    while read -r pid name _; do kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid"; echo "killed $name (PID $pid)"; }; done <"$dir/pids" || true
    rm -f "$dir/pids"
    ;;
  *) echo "usage: $0 start N [DIR] | status [DIR] | stop [DIR]" >&2; exit 2 ;;
esac
