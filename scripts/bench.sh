#!/usr/bin/env bash
# The whole comparison in one go: pubsub-server, nats-server (TCP and
# WebSocket), redis-server and the no-logic floor, each alone and pinned to
# CPU 0, driven by pubsub-bench pinned to CPU 1. Writes BENCHMARKS.md and
# benchmarks.svg (a few minutes).
#
#   scripts/bench.sh           full run, rewrites BENCHMARKS.md
#   scripts/bench.sh --smoke   seconds, small numbers, writes to a temp dir
#                              (the test command runs this so the harness keeps working)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MODE="${1:-full}"
say() { printf '\033[1m== %s\033[0m\n' "$*"; }

if ! command -v nats-server >/dev/null || ! command -v redis-server >/dev/null; then
  say "installing nats-server and redis-server (Debian)"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y nats-server redis-server
fi
say "building release binaries"
cargo build --release -p pubsub-server -p pubsub-bench
BENCH="$ROOT/target/release/pubsub-bench"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ "$MODE" = "--smoke" ]; then
  OUT="$(mktemp -d)"
  FANOUT=(--subscribers 50 --step-secs 0.3 --start-rate 200 --max-rate 600)
  TOPICS=(--topics 10 --subscribers 50 --publishers 2 --step-secs 0.3 --start-rate 200 --max-rate 600)
  LATENCY=(--subscribers 20 --rate 500 --secs 0.5)
  IDLE=(--connections 300)
else
  OUT="$ROOT"
  FANOUT=(--subscribers 1000 --step-secs 2)
  TOPICS=(--topics 1000 --subscribers 10000 --publishers 10 --step-secs 2 --start-rate 5000)
  LATENCY=(--subscribers 100 --rate 5000 --secs 5)
  IDLE=(--connections 19000)
fi
RESULTS="$OUT/bench-results.jsonl"
: > "$RESULTS"

PID=""
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; fi; }
trap stop EXIT

wait_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2; return 1
}

BROKER=()
PORT=""
start() { # port, command... — remembered so that every scenario gets a fresh broker
  PORT=$1; shift
  BROKER=("$@")
}

launch() {
  taskset -c 0 "${BROKER[@]}" >/dev/null 2>&1 &
  PID=$!
  wait_port "$PORT"
}

run() { # target addr [extra args]
  local target=$1 addr=$2; shift 2
  for scenario in fanout topics latency idle; do
    local args=() command=$scenario
    case $scenario in
      fanout) args=("${FANOUT[@]}");;
      topics) args=("${TOPICS[@]}"); command=fanout;;
      latency) args=("${LATENCY[@]}");;
      idle) args=("${IDLE[@]}");;
    esac
    launch
    taskset -c 1 "$BENCH" "$command" --target "$target" --addr "$addr" --server-pid "$PID" "${args[@]}" "$@" >> "$RESULTS" \
      || echo "{\"scenario\":\"note\",\"text\":\"$target $scenario failed: see the run's log\"}" >> "$RESULTS"
    stop
  done
}

CPU_MODEL="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
VERSIONS="pubsub-server $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nats-server --version), $(redis-server --version | cut -d' ' -f1-3), rustc $(rustc --version | cut -d' ' -f2)"
printf '{"scenario":"meta","machine":"%s","cpu":"%s","date":"%s","versions":"%s","server_cpu":"0","generator_cpu":"1"}\n' \
  "$(nproc) vCPU, $(free -g | awk '/Mem:/{print $2}') GiB" "$CPU_MODEL" "$(date -u +%Y-%m-%dT%H:%MZ)" "$VERSIONS" >> "$RESULTS"

say "pubsub-server"
start 4421 env RUST_LOG=warn "$ROOT/target/release/pubsub-server" --addr 127.0.0.1:4421 --heartbeat-interval 1h
run pubsub 127.0.0.1:4421

say "nats-server (TCP, then WebSocket)"
start 4422 nats-server -c "$ROOT/bench/config/nats.conf"
run nats-tcp 127.0.0.1:4422
start 4423 nats-server -c "$ROOT/bench/config/nats.conf"
run nats-ws 127.0.0.1:4423

say "redis-server"
start 4424 redis-server "$ROOT/bench/config/redis.conf"
run redis 127.0.0.1:4424

say "floor"
start 4425 "$BENCH" floor --addr 127.0.0.1:4425
run floor 127.0.0.1:4425

COMMAND="scripts/bench.sh"
[ "$MODE" = "--smoke" ] && COMMAND="scripts/bench.sh --smoke"
"$BENCH" report "$RESULTS" --out "$OUT/BENCHMARKS.md" --chart "$OUT/benchmarks.svg" --command "$COMMAND"
say "wrote $OUT/BENCHMARKS.md"
if [ "$MODE" = "--smoke" ]; then
  # The harness worked if every broker produced a result for every scenario.
  for t in pubsub nats-tcp nats-ws redis floor; do
    for s in fanout topics latency idle; do
      grep -q "\"scenario\":\"$s\",\"target\":\"$t\"" "$RESULTS" || { echo "no $s result for $t" >&2; exit 1; }
    done
  done
  echo "bench smoke: 20 results, report written"
fi
