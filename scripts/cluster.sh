#!/usr/bin/env bash
# A local three-node cluster: nats-server with JetStream on 127.0.0.1:4222
# (its store in target/cluster/nats) and three pubsub-server instances on
# 127.0.0.1:4001, :4002 and :4003 sharing it, each with the web UI. Logs go
# to target/cluster/*.log; Ctrl-C stops everything. Put a load balancer in
# front of the three (deploy/nginx-cluster.conf) to give them one address.
# Flags are passed on to every instance: scripts/cluster.sh --history-size 1000
# Browsers may use each node's own address or the balancer's, PUBLIC_ORIGINS
# (default http://127.0.0.1:8080,http://localhost:8080, nginx-cluster.conf's):
# the nodes refuse WebSockets and state changes from any other origin.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
ensure_build_tools
ensure_nats_server
cd "$ROOT"
NATS_PORT="${NATS_PORT:-4222}"
say "building (cargo leptos build --release --precompress)"
cargo leptos build --release --precompress
mkdir -p target/cluster/nats
pids=()
stop() {
  trap - EXIT INT TERM
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM
say "nats-server with JetStream on 127.0.0.1:$NATS_PORT (log: target/cluster/nats.log)"
nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd target/cluster/nats > target/cluster/nats.log 2>&1 &
pids+=($!)
export LEPTOS_SITE_ROOT="${LEPTOS_SITE_ROOT:-target/site}"
PUBLIC_ORIGINS="${PUBLIC_ORIGINS:-http://127.0.0.1:8080,http://localhost:8080}"
for port in 4001 4002 4003; do
  PUBSUB_PUBLIC_ORIGINS="$PUBLIC_ORIGINS,http://127.0.0.1:$port,http://localhost:$port" \
  ./target/release/pubsub-server --addr "127.0.0.1:$port" \
    --cluster-nats "nats://127.0.0.1:$NATS_PORT" "$@" > "target/cluster/node-$port.log" 2>&1 &
  pids+=($!)
done
say "three nodes: http://127.0.0.1:4001/ http://127.0.0.1:4002/ http://127.0.0.1:4003/ (Ctrl-C stops all)"
# When any of them stops, stop the others.
wait -n
