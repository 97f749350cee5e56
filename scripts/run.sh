#!/usr/bin/env bash
# Builds the release server with its web UI and runs it on the in-memory
# default. Flags are passed on: scripts/run.sh --addr 0.0.0.0:4000
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
ensure_build_tools
cd "$ROOT"
say "building (cargo leptos build --release --precompress)"
cargo leptos build --release --precompress
say "starting target/release/pubsub-server $*"
export LEPTOS_SITE_ROOT="${LEPTOS_SITE_ROOT:-target/site}"
exec ./target/release/pubsub-server "$@"
