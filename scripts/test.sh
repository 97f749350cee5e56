#!/usr/bin/env bash
# Runs every test from a fresh machine: installs what is missing, checks
# formatting and lints, runs the Rust tests (unit and over real sockets),
# builds the release site and runs the browser tests against it, and
# fuzzes the REST API against its OpenAPI document (schemathesis).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
ensure_build_tools
ensure_chromium
ensure_nats_server
cd "$ROOT"
# Incremental caches of every test binary took tens of GB here; a test run
# gains nothing from them.
export CARGO_INCREMENTAL=0

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (protocol, UI, server, client library, CLI and bench crates, then the wasm frontend)"
cargo clippy -p protocol -p app -p pubsub-server -p pubsub-client -p pubsub-cli -p pubsub-bench --all-targets -- -D warnings
cargo clippy -p frontend --target wasm32-unknown-unknown -- -D warnings

say "cargo test (the cluster tests start nats-server with JetStream and three instances)"
cargo test -p protocol -p app -p pubsub-server -p pubsub-client -p pubsub-cli -p pubsub-bench

say "release build (cargo leptos build --release --precompress)"
cargo leptos build --release --precompress
cargo build --release -p pubsub-cli
ls -l target/site/pkg/

say "the Docker image's runtime stage, replayed without Docker"
./scripts/check-image-layout.sh

say "browser tests (Playwright, Debian's chromium)"
(cd end2end && npx playwright test)

say "the REST API against its OpenAPI document (schemathesis, 1-2 minutes)"
./scripts/schemathesis.sh

say "benchmark harness smoke run (seconds; no timed assertions)"
./scripts/bench.sh --smoke

say "attack suite, short form (about 40 s): every attack on the resource bounds against the release server"
./scripts/bench.sh --attack --quick

say "cluster chaos soak, short form (about 25 s): nodes SIGKILLed and NATS restarted under load"
./scripts/bench.sh --chaos --quick

say "all tests passed"
