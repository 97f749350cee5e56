#!/usr/bin/env bash
# The whole comparison in one go: pubsub-server, nats-server (TCP and
# WebSocket), redis-server and the no-logic floor, each alone and pinned to
# CPU 0, driven by pubsub-bench pinned to CPU 1, then the core
# microbenchmark (criterion, pinned to CPU 0). Writes BENCHMARKS.md and
# bench/results/ (bench-results.jsonl, benchmarks.svg; a few minutes), and
# keeps a copy of each run's results as bench/results/runs/<UTC time>.jsonl.
# BENCHMARKS.md's issue-16 targets table is computed from the one run.
#
#   scripts/bench.sh           full run, rewrites BENCHMARKS.md
#   scripts/bench.sh --runs N  N full runs back to back, then one report: the
#                              tables from the last run, and per target the
#                              min / median / max over the N runs and how many
#                              met it (the files of the N runs are listed in
#                              bench/results/runs/spread.txt; later --soak,
#                              --attack and --chaos reports keep that spread)
#   scripts/bench.sh --smoke   seconds, small numbers, writes to a temp dir, no
#                              core microbenchmark (the test command runs this so
#                              the harness keeps working)
#   scripts/bench.sh --soak [--duration 10m]
#                              the soak (pubsub only): half the maximum rate of the
#                              last full run, abrupt disconnects and resumes, the
#                              counter invariant, then SIGTERM under load; appends
#                              to bench/results/soak-results.jsonl and rewrites BENCHMARKS.md
#                              (the main tables come from bench-results.jsonl)
#   scripts/bench.sh --attack [--quick]
#                              the attack suite: each attack on the resource bounds
#                              against a fresh server with default limits (RSS, queued
#                              and history bytes against the bound, a bystander that
#                              must get every event); writes bench/results/attacks.md
#                              and rewrites BENCHMARKS.md; --quick (about 40 s, in the
#                              test command) uses fewer attackers and writes to a temp dir
#   scripts/bench.sh --chaos [--duration 60 | --quick]
#                              the cluster chaos soak: three instances and their
#                              nats-server under load, nodes SIGKILLed and restarted,
#                              NATS restarted; writes bench/results/chaos.md and
#                              rewrites BENCHMARKS.md; --quick (about 25 s, in the test
#                              command): 16 s, a node killed every 4 s, to a temp dir
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Every result file lives here; BENCHMARKS.md (at the root) is made from them.
RES="$ROOT/bench/results"
cd "$ROOT"
MODE=full
DURATION=10m
QUICK=
RUNS=1
while [ $# -gt 0 ]; do
  case $1 in
    --smoke|--soak|--attack|--chaos) MODE=$1;;
    --quick) QUICK=--quick;;
    --duration) DURATION=${2:?--duration needs a value, e.g. 10m}; shift;;
    --duration=*) DURATION=${1#--duration=};;
    --runs) RUNS=${2:?--runs needs a count, e.g. 3}; shift;;
    --runs=*) RUNS=${1#--runs=};;
    *) echo "usage: scripts/bench.sh [--runs N | --smoke | --soak [--duration 10m] | --attack [--quick] | --chaos [--duration SECS]]" >&2; exit 2;;
  esac
  shift
done
case $RUNS in ''|*[!0-9]*|0) echo "--runs needs a positive count" >&2; exit 2;; esac
if [ "$RUNS" -gt 1 ] && [ "$MODE" != full ]; then echo "--runs goes with a full run only" >&2; exit 2; fi
say() { printf '\033[1m== %s\033[0m\n' "$*"; }
BENCH="$ROOT/target/release/pubsub-bench"
CPU_MODEL="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
MACHINE="$(nproc) vCPU, $(free -g | awk '/Mem:/{print $2}') GiB"

# The spread of the last full run (or --runs N): its results files, one a
# line, relative to the root; every report of the full results keeps it.
SPREAD_LIST="$RES/runs/spread.txt"
report() { # results out chart command [extra report flags]
  local spread=()
  if [ "$1" = "$RES/bench-results.jsonl" ] && [ -f "$SPREAD_LIST" ]; then
    while read -r f; do [ -f "$ROOT/$f" ] && spread+=("$ROOT/$f"); done < "$SPREAD_LIST"
  fi
  if [ ${#spread[@]} -gt 0 ]; then set -- "$@" --spread "${spread[@]}"; fi
  "$BENCH" report "$1" --out "$2" --chart "$3" --command "$4" "${@:5}"
}

# The command that made the full results: with the spread of N runs, --runs N.
last_command() {
  local n=0
  [ -f "$SPREAD_LIST" ] && n=$(grep -c . "$SPREAD_LIST" || true)
  if [ "$n" -gt 1 ]; then echo "scripts/bench.sh --runs $n"; else echo "scripts/bench.sh"; fi
}

# The soak: the generator on CPU 1 starts the server itself on CPU 0 (it
# must be its parent to see the exit code after SIGTERM).
soak() { # results-file server-log command-for-the-report [extra pubsub-bench soak flags]
  local results=$1 log=$2 command=$3; shift 3
  taskset -c 1 "$BENCH" soak --server "$ROOT/target/release/pubsub-server" --server-cpu 0 \
    --addr 127.0.0.1:4426 --server-log "$log" --out "$results" \
    --max-from "$RES/bench-results.jsonl" --command "$command" \
    --date "$(date -u +%Y-%m-%dT%H:%MZ)" --version "$(git describe --always --dirty 2>/dev/null || echo '?')" \
    --machine "$MACHINE, $CPU_MODEL" "$@" > /dev/null
}

if [ "$MODE" = "--soak" ]; then
  say "building release binaries"
  cargo build --release -p pubsub-server -p pubsub-bench
  ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  COMMAND="scripts/bench.sh --soak --duration $DURATION"
  say "soak for $DURATION, then SIGTERM under load (log: target/soak-server.log)"
  soak "$RES/soak-results.jsonl" "$ROOT/target/soak-server.log" "$COMMAND" --duration "$DURATION"
  report "$RES/bench-results.jsonl" "$ROOT/BENCHMARKS.md" "$RES/benchmarks.svg" "$(last_command)" \
    --soak "$RES/soak-results.jsonl"
  say "wrote BENCHMARKS.md (soak section) and soak-results.jsonl"
  exit 0
fi

if [ "$MODE" = "--attack" ]; then
  say "building release binaries"
  cargo build --release -p pubsub-server -p pubsub-bench
  ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  if [ -n "$QUICK" ]; then OUT="$(mktemp -d)"; else OUT="$ROOT/bench/results"; mkdir -p "$OUT"; fi
  say "attack suite $QUICK (server logs: target/attack-*.log)"
  "$BENCH" attack --server "$ROOT/target/release/pubsub-server" --logs "$ROOT/target" \
    --out "$OUT/attacks.md" $QUICK
  if [ -z "$QUICK" ] && [ -f "$RES/bench-results.jsonl" ]; then
    report "$RES/bench-results.jsonl" "$ROOT/BENCHMARKS.md" "$RES/benchmarks.svg" "$(last_command)" \
      --soak "$RES/soak-results.jsonl"
    say "wrote bench/results/attacks.md and BENCHMARKS.md"
  fi
  exit 0
fi

if [ "$MODE" = "--chaos" ]; then
  source "$ROOT/scripts/setup.sh"
  ensure_nats_server
  say "building release binaries"
  cargo build --release -p pubsub-server -p pubsub-bench
  SECS="${DURATION%s}"; [ "$SECS" = 10m ] && SECS=60
  if [ -n "$QUICK" ]; then
    say "cluster chaos soak, short form: 16 s, a node killed every 4 s (logs: target/chaos-*.log)"
    "$BENCH" chaos --server "$ROOT/target/release/pubsub-server" --logs "$ROOT/target" \
      --secs 16 --kill-every 4 --out "$(mktemp -d)/chaos.md"
    exit 0
  fi
  mkdir -p "$ROOT/bench/results"
  say "cluster chaos soak for $SECS s (logs: target/chaos-*.log)"
  "$BENCH" chaos --server "$ROOT/target/release/pubsub-server" --logs "$ROOT/target" \
    --secs "$SECS" --out "$ROOT/bench/results/chaos.md"
  if [ -f "$RES/bench-results.jsonl" ]; then
    report "$RES/bench-results.jsonl" "$ROOT/BENCHMARKS.md" "$RES/benchmarks.svg" "$(last_command)" \
      --soak "$RES/soak-results.jsonl"
  fi
  say "wrote bench/results/chaos.md and BENCHMARKS.md"
  exit 0
fi

if ! command -v nats-server >/dev/null || ! command -v redis-server >/dev/null; then
  say "installing nats-server (2.9, with JetStream) and redis-server (Debian)"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y nats-server redis-server
fi
say "building release binaries"
cargo build --release -p pubsub-server -p pubsub-bench
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ "$MODE" = "--smoke" ]; then
  OUT="$(mktemp -d)"
  FANOUT=(--subscribers 50 --step-secs 0.3 --start-rate 200 --max-rate 600)
  TOPICS=(--topics 10 --subscribers 50 --publishers 2 --step-secs 0.3 --start-rate 200 --max-rate 600)
  LATENCY=(--subscribers 20 --rate 500 --secs 0.5)
  IDLE=(--connections 300)
else
  OUT="$RES"
  FANOUT=(--subscribers 1000 --step-secs 2)
  TOPICS=(--topics 1000 --subscribers 10000 --publishers 10 --step-secs 2 --start-rate 5000)
  LATENCY=(--subscribers 100 --rate 5000 --secs 5)
  IDLE=(--connections 19000)
fi
mkdir -p "$OUT"
RESULTS="$OUT/bench-results.jsonl"

PID=""
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; fi; }
# Cluster mode: instances A and B and their nats-server (JetStream) share
# CPU 0; the publisher talks to A, the subscribers to B. A fresh cluster
# (and JetStream store) per scenario.
CLUSTER_PIDS=()
cluster_up() {
  CLUSTER_STORE="$(mktemp -d)"
  taskset -c 0 nats-server -a 127.0.0.1 -p 4427 -js -sd "$CLUSTER_STORE" >/dev/null 2>&1 &
  CLUSTER_PIDS=($!)
  wait_port 4427
  for port in 4428 4429; do
    taskset -c 0 env RUST_LOG=warn "$ROOT/target/release/pubsub-server" --addr "127.0.0.1:$port" \
      --cluster-nats nats://127.0.0.1:4427 --heartbeat-interval 1h --publish-rate 0 >/dev/null 2>&1 &
    CLUSTER_PIDS+=($!)
    wait_port "$port"
  done
}
cluster_down() {
  if [ ${#CLUSTER_PIDS[@]} -gt 0 ]; then
    kill "${CLUSTER_PIDS[@]}" 2>/dev/null || true
    wait "${CLUSTER_PIDS[@]}" 2>/dev/null || true
  fi
  CLUSTER_PIDS=()
  rm -rf "${CLUSTER_STORE:-}"
}
trap 'stop; cluster_down' EXIT

source "$ROOT/scripts/wait-port.sh"

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

# The core microbenchmark (full runs): criterion pinned to CPU 0 with a
# short measurement; each bench's median and the allocation counts become
# result lines ("core", "core-allocations").
core_bench() {
  local log="$ROOT/target/core-bench.log" mark="$ROOT/target/core-bench.start"
  touch "$mark"
  if taskset -c 0 env CRITERION_HOME="$ROOT/target/criterion" cargo bench -p pubsub-server --bench core -- \
      --measurement-time 3 --warm-up-time 1 fanout > "$log" 2>&1; then
    "$BENCH" core-results --criterion "$ROOT/target/criterion/fanout" --log "$log" --since "$mark" >> "$RESULTS"
  else
    echo '{"scenario":"note","text":"core microbenchmark failed: see target/core-bench.log"}' >> "$RESULTS"
  fi
}

# One run of everything into $RESULTS.
one_run() {
  : > "$RESULTS"
  VERSIONS="pubsub-server $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nats-server --version), $(redis-server --version | cut -d' ' -f1-3), rustc $(rustc --version | cut -d' ' -f2)"
  printf '{"scenario":"meta","machine":"%s","cpu":"%s","date":"%s","versions":"%s","server_cpu":"0","generator_cpu":"1"}\n' \
    "$MACHINE" "$CPU_MODEL" "$(date -u +%Y-%m-%dT%H:%MZ)" "$VERSIONS" >> "$RESULTS"

  say "pubsub-server"
  start 4421 env RUST_LOG=warn "$ROOT/target/release/pubsub-server" --addr 127.0.0.1:4421 --heartbeat-interval 1h --publish-rate 0
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

  say "pubsub cluster: instances A and B with nats-server (JetStream), all on CPU 0"
  for scenario in fanout latency; do
    args=()
    case $scenario in
      fanout) args=("${FANOUT[@]}");;
      latency) args=("${LATENCY[@]}");;
    esac
    cluster_up
    taskset -c 1 "$BENCH" "$scenario" --target pubsub --addr 127.0.0.1:4429 --publish-addr 127.0.0.1:4428 \
      --server-pid "${CLUSTER_PIDS[2]}" "${args[@]}" >> "$RESULTS" \
      || echo "{\"scenario\":\"note\",\"text\":\"cluster $scenario failed: see the run's log\"}" >> "$RESULTS"
    cluster_down
  done
  if [ "$MODE" != "--smoke" ]; then
    say "core microbenchmark (criterion, CPU 0; log: target/core-bench.log)"
    core_bench
  fi
}

if [ "$MODE" != "--smoke" ]; then
  say "building the core microbenchmark"
  # Not fatal: a run without it reports its rows as missing.
  cargo bench -p pubsub-server --bench core --no-run || say "the core microbenchmark did not build"
fi
RUN_FILES=()
for ((run = 1; run <= RUNS; run++)); do
  [ "$RUNS" -gt 1 ] && say "run $run of $RUNS"
  STAMP="$(date -u +%Y-%m-%dT%H-%M-%SZ)"
  one_run
  if [ "$MODE" != "--smoke" ]; then
    # Every full run is kept for the spread over runs.
    mkdir -p "$RES/runs"
    cp "$RESULTS" "$RES/runs/$STAMP.jsonl"
    RUN_FILES+=("bench/results/runs/$STAMP.jsonl")
  fi
done
[ "$MODE" != "--smoke" ] && printf '%s\n' "${RUN_FILES[@]}" > "$SPREAD_LIST"

COMMAND="scripts/bench.sh"
[ "$RUNS" -gt 1 ] && COMMAND="scripts/bench.sh --runs $RUNS"
[ "$MODE" = "--smoke" ] && COMMAND="scripts/bench.sh --smoke"
if [ "$MODE" = "--smoke" ]; then
  say "soak (a few seconds)"
  soak "$OUT/soak-results.jsonl" "$OUT/soak-server.log" "$COMMAND" --duration 3s --rate 400 --topics 4 --subscribers 40 --publishers 2 \
    --mean-lifetime 1s --heartbeat 500ms --shutdown-after 1s --sample-every 1s
fi
# The soak section comes from soak-results.jsonl, so this run keeps it.
if [ "$OUT" = "$RES" ]; then REPORT="$ROOT/BENCHMARKS.md"; else REPORT="$OUT/BENCHMARKS.md"; fi
report "$RESULTS" "$REPORT" "$OUT/benchmarks.svg" "$COMMAND" --soak "$OUT/soak-results.jsonl"
say "wrote $REPORT"
if [ "$MODE" = "--smoke" ]; then
  # The harness worked if every broker produced a result for every scenario.
  for t in pubsub nats-tcp nats-ws redis floor; do
    for s in fanout topics latency idle; do
      grep -q "\"scenario\":\"$s\",\"target\":\"$t\"" "$RESULTS" || { echo "no $s result for $t" >&2; exit 1; }
    done
  done
  for s in cluster-fanout cluster-latency; do
    grep -q "\"scenario\":\"$s\"" "$RESULTS" || { echo "no $s result" >&2; exit 1; }
  done
  grep -q 'Cluster mode (issue 7)' "$REPORT" || { echo "no cluster section in the report" >&2; exit 1; }
  grep -q 'Fan-out at the floor (issue 16): targets' "$REPORT" || { echo "no issue-16 targets in the report" >&2; exit 1; }
  # The soak's checks are reported, not asserted: it may find server bugs.
  grep -q '"scenario":"soak"' "$OUT/soak-results.jsonl" || { echo "no soak result" >&2; exit 1; }
  grep -q 'Soak and chaos' "$REPORT" || { echo "no soak section in the report" >&2; exit 1; }
  echo "bench smoke: 20 results, 2 cluster results and a soak, report written"
fi
