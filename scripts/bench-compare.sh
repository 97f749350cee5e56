#!/usr/bin/env bash
# Compares this checkout's server with an earlier revision's, side by side
# in one run: the fan-out to 1,000 subscribers and the idle connections
# scenario of scripts/bench.sh, in alternating rounds (old, new, old, new,
# ...) so that the machine's drift hits both alike, each server pinned to
# CPU 0 and the load generator (this checkout's pubsub-bench) to CPU 1.
# Prints each round and the medians; writes the raw results to
# target/bench-compare/.
#
#   scripts/bench-compare.sh REV [ROUNDS]      e.g. scripts/bench-compare.sh 559a970 3
#
# The old revision is built in a git worktree under target/bench-compare/
# (release profile; minutes the first time).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REV=${1:?usage: scripts/bench-compare.sh REV [ROUNDS]}
ROUNDS=${2:-3}
OUT="$ROOT/target/bench-compare"
OLD="$OUT/old-$REV"
say() { printf '\033[1m== %s\033[0m\n' "$*"; }
mkdir -p "$OUT"
cd "$ROOT"

say "building this checkout's server and load generator"
cargo build --release -p pubsub-server -p pubsub-bench
if [ ! -x "$OLD/target/release/pubsub-server" ]; then
  say "building $REV's server (in $OLD)"
  git worktree add --force --detach "$OLD" "$REV" >/dev/null 2>&1 || true
  (cd "$OLD" && cargo build --release -p pubsub-server)
fi
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
BENCH="$ROOT/target/release/pubsub-bench"
PORT=4431
RESULTS="$OUT/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl"

source "$ROOT/scripts/wait-port.sh"

one() { # label server-binary scenario args...
  local label=$1 server=$2 scenario=$3; shift 3
  taskset -c 0 env RUST_LOG=warn LEPTOS_SITE_ROOT="$ROOT/target/site" "$server" \
    --addr "127.0.0.1:$PORT" --heartbeat-interval 1h --publish-rate 0 >/dev/null 2>&1 &
  local pid=$!
  wait_port "$PORT"
  taskset -c 1 "$BENCH" "$scenario" --target pubsub --addr "127.0.0.1:$PORT" --server-pid "$pid" "$@" \
    | sed "s/^{/{\"build\":\"$label\",/" >> "$RESULTS"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

for round in $(seq 1 "$ROUNDS"); do
  for label in old new; do
    server="$ROOT/target/release/pubsub-server"
    [ "$label" = old ] && server="$OLD/target/release/pubsub-server"
    say "round $round: $label"
    one "$label" "$server" fanout --subscribers 1000 --step-secs 2
    one "$label" "$server" idle --connections 19000
  done
done

say "medians over $ROUNDS rounds ($RESULTS)"
python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def pick(build, scenario, key):
    vals = []
    for r in rows:
        if r.get("build") != build or r.get("scenario") != scenario:
            continue
        v = r
        for k in key.split("."):
            v = v.get(k) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            vals.append(v)
    return vals
def show(scenario, key, what):
    old, new = pick("old", scenario, key), pick("new", scenario, key)
    if not old or not new:
        print(f"{what}: no figures ({scenario}.{key})")
        return
    mo, mn = statistics.median(old), statistics.median(new)
    print(f"{what}: old {old} median {mo:,.0f}; new {new} median {mn:,.0f}; new/old {mn / mo:.3f}")
show("fanout", "best.deliveries_per_sec", "fan-out to 1,000, best deliveries/s")
show("fanout", "best.server_cpu", "fan-out to 1,000, server CPU at the best step")
show("idle", "rss_per_connection_bytes", "idle RSS per connection, bytes")
show("idle", "broadcast_ms", "broadcast to every idle connection, ms")
EOF
