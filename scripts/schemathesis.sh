#!/usr/bin/env bash
# Fuzzes the REST API against its own OpenAPI document (schemathesis, from
# PyPI, pinned in scripts/setup.sh): starts the release server on a free
# port with authentication on, runs schemathesis on /api/openapi.json with
# a bounded number of examples (one to two minutes), stops the server, and
# fails when schemathesis found a server error or a request or response
# that does not match the document. Needs the release build
# (`cargo leptos build --release`, as scripts/test.sh does first).
#
# SCHEMATHESIS_MAX_EXAMPLES (default 300) bounds the examples per
# operation; SCHEMATHESIS_SEED replays a run (schemathesis prints its seed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
ensure_schemathesis
cd "$ROOT"

SERVER=target/release/pubsub-server
if [ ! -x "$SERVER" ]; then
  echo "no $SERVER: build it first (cargo leptos build --release)" >&2
  exit 2
fi
PYTHON="$SCHEMATHESIS_VENV/bin/python"
PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
# A key with every role: schemathesis sends it with every request, and its
# ignored_auth check sends requests without it or with a wrong one.
KEY="schemathesis-$("$PYTHON" -c 'import secrets; print(secrets.token_hex(8))')"
WORK="$(mktemp -d)"

PUBSUB_API_KEYS="$KEY=admin,publish,subscribe" LEPTOS_SITE_ROOT=target/site RUST_LOG=warn \
  "$SERVER" --addr "127.0.0.1:$PORT" 2>"$WORK/server.log" &
PID=$!
stop_server() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap stop_server EXIT

# Waits for the server, then saves its document: schemathesis loaded from
# a URL leaves out the operation that serves the document; from a file it
# tests all of them, GET /api/openapi.json included.
"$PYTHON" - "$BASE/api/openapi.json" "$WORK/openapi.json" <<'PY'
import sys, time, urllib.request
for _ in range(100):
    try:
        document = urllib.request.urlopen(sys.argv[1], timeout=1).read()
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("the server did not start")
open(sys.argv[2], "wb").write(document)
PY

# The checks: no 5xx; every status, content type, header and body as the
# document says; invalid input refused with a 4xx; wrong methods 405 with
# an Allow header; a created topic readable, a deleted one gone; every
# secured operation refuses a missing or wrong key. Not positive_data_acceptance:
# `last_n` together with `since_seq` is schema-valid (OpenAPI cannot say
# "not both") and the contract answers it with 400.
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance
CHECKS+=,response_headers_conformance,response_schema_conformance
CHECKS+=,negative_data_rejection,unsupported_method,allow_header_conformance
CHECKS+=,use_after_free,ensure_resource_availability,ignored_auth

# The two event streams (GET /api/topics/{name}/events, GET /api/events)
# are left out: a request schemathesis gets right opens a stream that never
# ends by design, so every valid example would wait for a body until a
# timeout, which schemathesis reports as a failure. Their refusals (bad
# names, Last-Event-ID, last_n, topics, keys) are covered by
# server/tests/sse.rs, and their documentation by server/tests/openapi.rs.
EXCLUDE_STREAMS='/events$'

seed=()
if [ -n "${SCHEMATHESIS_SEED:-}" ]; then seed=(--seed "$SCHEMATHESIS_SEED"); fi
started=$SECONDS
status=0
# From the scratch directory: schemathesis keeps a cache (.schemathesis/)
# in its working directory, which has no place in the repository.
(cd "$WORK" && "$SCHEMATHESIS_VENV/bin/schemathesis" run "$WORK/openapi.json" \
  --url "$BASE" \
  --header "Authorization: Bearer $KEY" \
  --checks "$CHECKS" \
  --exclude-path-regex "$EXCLUDE_STREAMS" \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-300}" \
  --workers 1 \
  --generation-database none \
  --no-color \
  "${seed[@]}") || status=$?

if ! kill -0 "$PID" 2>/dev/null; then
  echo "the server died during the run; its log:" >&2
  cat "$WORK/server.log" >&2
  status=1
fi
echo "schemathesis: exit $status after $((SECONDS - started)) s"
exit "$status"
