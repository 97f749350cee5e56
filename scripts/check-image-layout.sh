#!/usr/bin/env bash
# Replays the Dockerfile's runtime stage without a Docker engine: the two
# binaries and the site copied to a fresh directory, started with the
# image's environment from another working directory as an unprivileged
# user when possible, then checked with the image's HEALTHCHECK command and
# the UI bundle as a browser gets it: versioned path, long cache, brotli,
# within the WASM budget. Needs the release build (--precompress).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APP="$(mktemp -d)"
PORT="${CHECK_PORT:-4199}"
# The UI's WASM as browsers receive it (brotli), in bytes: a page's first
# visit downloads it.
WASM_BUDGET_BYTES="${WASM_BUDGET_BYTES:-350000}"
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
python3 - "$PORT" "$WASM_BUDGET_BYTES" <<'PY'
import gzip, re, sys, urllib.request
base, budget = f"http://127.0.0.1:{sys.argv[1]}", int(sys.argv[2])

def get(path, **headers):
    request = urllib.request.Request(base + path, headers=headers)
    try:
        with urllib.request.urlopen(request) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()

_, _, page = get("/")
page = page.decode()
links = re.findall(r'(?:href|src)="(/pkg/[^"]+)"', page)
wasm = next(l for l in links if l.endswith("/pubsub.wasm"))
assert any(l.endswith("/pubsub.js") for l in links), "the page references its script"
assert any(l.endswith("/pubsub.css") for l in links), "the page references its stylesheet"
assert re.fullmatch(r"/pkg/v-[0-9a-f]{16}/pubsub.wasm", wasm), f"the bundle's path carries its version: {wasm}"

status, headers, raw = get(wasm, **{"Accept-Encoding": "identity"})
assert status == 200 and raw[:4] == b"\0asm", "the WASM is served from the copied site"
assert headers["Cache-Control"] == "public, max-age=31536000, immutable", headers
_, headers, br = get(wasm, **{"Accept-Encoding": "gzip, deflate, br"})
assert headers["Content-Encoding"] == "br", "brotli is served to browsers that take it"
assert headers["Vary"].lower() == "accept-encoding"
_, headers, gz = get(wasm, **{"Accept-Encoding": "gzip"})
assert headers["Content-Encoding"] == "gzip" and gzip.decompress(gz) == raw, "gzip holds the same bytes"
assert len(br) <= budget, f"WASM over the wire: {len(br)} bytes, budget {budget}"

status, headers, _ = get("/pkg/pubsub.wasm")
assert status == 200 and headers["Cache-Control"] == "no-cache", "the plain path is revalidated"
status, _, _ = get("/pkg/pubsub.wasm", **{"If-Modified-Since": headers["Last-Modified"]})
assert status == 304, f"revalidation answers 304, got {status}"
print(f"UI bundle: WASM {len(raw):,} bytes, {len(br):,} brotli (budget {budget:,}), {len(gz):,} gzip; {wasm}")
PY
kill -TERM "$PID"
wait "$PID"
echo "image layout: healthy, UI served from $APP/site, clean exit on SIGTERM"
