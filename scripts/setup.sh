#!/usr/bin/env bash
# Installs what building and testing need, skipping whatever is already
# there, so it is safe to run again. Sourced by scripts/run.sh and
# scripts/test.sh; `scripts/setup.sh browser` also installs Chromium,
# `scripts/setup.sh schemathesis` the API fuzzer (schemathesis, pinned, in
# .venv-schemathesis/).
#
# Versions are those of shared TOOLCHAIN.md: cargo-leptos 0.3.10 (0.3.11
# needs a newer rustc), wasm-bindgen-cli equal to the pinned crate, and
# npm's binaryen@132 for wasm-opt (Debian's binaryen breaks hydration).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARGO_LEPTOS_VERSION=0.3.10
WASM_BINDGEN_VERSION=0.2.130
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV="$ROOT/.venv-schemathesis"

say() { printf '\033[1m== %s\033[0m\n' "$*"; }

export PATH="$HOME/.cargo/bin:$PATH"

ensure_wasm_target() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
}

ensure_cargo_leptos() {
  if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
    say "installing cargo-leptos $CARGO_LEPTOS_VERSION (once; about 13 minutes on 2 cores)"
    cargo install cargo-leptos --locked --version "$CARGO_LEPTOS_VERSION"
  fi
}

ensure_wasm_bindgen() {
  if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
    say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION"
    # Not --locked: its lock file pins a crate version the index no longer serves.
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
  fi
}

ensure_npm_packages() {
  if [ ! -x "$ROOT/end2end/node_modules/.bin/wasm-opt" ] || [ ! -d "$ROOT/end2end/node_modules/@playwright/test" ] \
     || [ "$ROOT/end2end/package-lock.json" -nt "$ROOT/end2end/node_modules/.package-lock.json" ]; then
    say "installing npm packages (Playwright, binaryen's wasm-opt)"
    (cd "$ROOT/end2end" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
  fi
  # cargo-leptos takes wasm-opt from PATH (it would download one otherwise).
  export PATH="$ROOT/end2end/node_modules/.bin:$PATH"
}

ensure_chromium() {
  if ! command -v chromium >/dev/null 2>&1; then
    say "installing Debian's chromium"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
  fi
}

# Debian's nats-server (2.9, with JetStream): the cluster tests start their
# own on loopback, and the benchmarks compare against it.
ensure_nats_server() {
  if ! command -v nats-server >/dev/null 2>&1; then
    say "installing Debian's nats-server"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y nats-server
  fi
}

# schemathesis (PyPI) in a venv under the repository, for scripts/schemathesis.sh.
# Debian's python3 needs python3-venv for `python3 -m venv` to bring pip.
ensure_schemathesis() {
  if "$SCHEMATHESIS_VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    return
  fi
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    say "installing Debian's python3-venv and python3-pip"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv python3-pip
  fi
  say "installing schemathesis $SCHEMATHESIS_VERSION into .venv-schemathesis/"
  rm -rf "$SCHEMATHESIS_VENV"
  python3 -m venv "$SCHEMATHESIS_VENV"
  "$SCHEMATHESIS_VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
}

ensure_build_tools() {
  ensure_wasm_target
  ensure_cargo_leptos
  ensure_wasm_bindgen
  ensure_npm_packages
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  ensure_build_tools
  if [ "${1:-}" = "browser" ]; then ensure_chromium; fi
  if [ "${1:-}" = "schemathesis" ]; then ensure_schemathesis; fi
fi
