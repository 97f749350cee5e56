#!/usr/bin/env bash
# Fan-out to 1,000 subscribers (scenario (a) of scripts/bench.sh) for
# pubsub-server with the contract's default slow-consumer bound (1,024
# events per followed topic) and with a bound near the peers' defaults
# (65,536 events; the 16 MiB byte bound applies to both), and for
# nats-server over TCP (64 MB pending per client by default), in
# alternating rounds, each broker alone on CPU 0 and the generator on CPU 1.
# Writes bench/results/bound.md (a table per round and the medians).
#
#   scripts/bench-bound.sh [ROUNDS]     (default 3; about 2 minutes a round)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS=${1:-3}
source "$ROOT/scripts/wait-port.sh"
cargo build --release -p pubsub-server -p pubsub-bench
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
BENCH="$ROOT/target/release/pubsub-bench"
OUT="$ROOT/bench/results/bound.jsonl"
: > "$OUT"
one() { # name target port command...
  local name=$1 target=$2 port=$3; shift 3
  taskset -c 0 "$@" >/dev/null 2>&1 &
  local pid=$!
  wait_port "$port"
  taskset -c 1 "$BENCH" fanout --target "$target" --addr "127.0.0.1:$port" --server-pid "$pid" \
    --subscribers 1000 --step-secs 2 --label "$name" >> "$OUT" || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS"
  one "pubsub, bound 1,024 events (default)" pubsub 4431 env RUST_LOG=warn target/release/pubsub-server \
    --addr 127.0.0.1:4431 --heartbeat-interval 1h --publish-rate 0
  one "pubsub, bound 65,536 events" pubsub 4432 env RUST_LOG=warn target/release/pubsub-server \
    --addr 127.0.0.1:4432 --heartbeat-interval 1h --publish-rate 0 --subscriber-queue 65536
  one "nats-server (TCP)" nats-tcp 4422 nats-server -c bench/config/nats.conf
done
python3 - "$OUT" "$ROOT/bench/results/bound.md" "$ROUNDS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    b = r["best"]
    by.setdefault(r["label"], []).append(b)
out = ["| broker | best deliveries/s per round | median | broker CPU at best | p50 at best (median) |", "|---|---|---:|---|---:|"]
for label, bs in by.items():
    d = [b["deliveries_per_sec"] for b in bs]
    out.append("| %s | %s | **%s** | %s | %.0f ms |" % (
        label, ", ".join("%.2f M" % (x / 1e6) for x in d), "%.2f M" % (statistics.median(d) / 1e6),
        ", ".join("%d %%" % round(b["server_cpu"] * 100) for b in bs),
        statistics.median(b["p50_us"] for b in bs) / 1000))
text = "Measured with `scripts/bench-bound.sh %s` (alternating rounds, one run).\n\n" % sys.argv[3] + "\n".join(out) + "\n"
open(sys.argv[2], "w").write(text)
print(text)
PY
