#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine, then runs
# every test (unit, in-process integration, and interop against a real OpenID Provider
# and headless Chromium). Safe to run again: installed pieces are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "need root (or sudo) for: $*" >&2; return 1
  fi
}

# Debian packages: Chromium for the browser login test.
if [ ! -x "${GATEHOUSE_CHROMIUM:-/usr/bin/chromium}" ]; then
  log "installing chromium (apt-get)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# The real OpenID Provider (oidc-provider) and playwright-core, pinned by package-lock.json.
command -v node >/dev/null || { echo "node is required (Debian: apt-get install nodejs npm)" >&2; exit 1; }
log "installing the interop test peers (npm ci in tests/interop)"
npm ci --prefix tests/interop --no-audit --no-fund --loglevel=error

if cargo nextest --version >/dev/null 2>&1; then
  log "running all tests (cargo nextest)"
  cargo nextest run --no-fail-fast "$@"
else
  log "running all tests (cargo test; install cargo-nextest for nicer output)"
  cargo test --no-fail-fast "$@"
fi
