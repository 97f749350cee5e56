#!/usr/bin/env bash
# Replays the Dockerfile's runtime stage without a Docker engine: the two
# binaries and the site copied to a fresh directory, started with the
# image's environment from another working directory as an unprivileged
# user when possible, then checked with the image's HEALTHCHECK command and
# a request for the UI and its WASM. Needs the release build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APP="$(mktemp -d)"
PORT="${CHECK_PORT:-4199}"
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$APP"' EXIT

mkdir -p "$APP/bin"
cp "$ROOT/target/release/pubsub-server" "$ROOT/target/release/pubsub" "$APP/bin/"
cp -r "$ROOT/target/site" "$APP/site"
chmod -R a+rX "$APP"

run_as=()
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then run_as=(setpriv --reuid=nobody --regid=nogroup --clear-groups); fi
(cd / && PUBSUB_ADDR="0.0.0.0:$PORT" LEPTOS_SITE_ROOT="$APP/site" RUST_LOG=warn "${run_as[@]}" "$APP/bin/pubsub-server") &
PID=$!

for _ in $(seq 1 100); do
  if "$APP/bin/pubsub" --server "http://127.0.0.1:$PORT" health >/dev/null 2>&1; then break; fi
  sleep 0.1
done
"$APP/bin/pubsub" --server "http://127.0.0.1:$PORT" health
python3 - "$PORT" <<'PY'
import sys, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
page = urllib.request.urlopen(base + "/").read().decode()
assert "/pkg/pubsub.js" in page, "the UI page references its script"
wasm = urllib.request.urlopen(base + "/pkg/pubsub.wasm").read()
assert wasm[:4] == b"\0asm", "the WASM is served from the copied site"
PY
kill -TERM "$PID"
wait "$PID"
echo "image layout: healthy, UI served from $APP/site, clean exit on SIGTERM"
