#!/usr/bin/env bash
# bench/instructions.sh: CPU instructions per proxied request, gatehouse next to nginx,
# counted by valgrind's callgrind. Unlike requests/second (bench/run.sh), an instruction
# count does not move with the machine's load or a VM host's steal time, so it is the
# figure to compare across changes of the hot path.
#
# Method: each proxy runs under callgrind (one worker) in front of the same
# `gatehouse whoami` upstream, serves N1 and then, in a second run, N2 keep-alive
# requests over one connection (curl), and the difference of the two totals divided by
# N2-N1 is the cost of one request, start-up and login excluded (gatehouse's counters are
# also zeroed after its login: its start-up cost varies from run to run). nginx gets the very
# identity headers gatehouse injects, so the upstream's answer is the same size.
#
# Settings (environment): N1 (default 200), N2 (default 1200), GATEHOUSE_BIN (default:
# cargo build --release, target/release/gatehouse). Needs valgrind, nginx, curl, python3.
# Only 127.0.0.1 is contacted; every process started is stopped by pid.
set -euo pipefail
umask 077

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N1="${N1:-200}"
N2="${N2:-1200}"
GATEHOUSE_BIN="${GATEHOUSE_BIN:-}"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-instr.XXXXXX")"
PIDS=()

log() { printf '[instructions] %s\n' "$*" >&2; }
die() { printf '[instructions] error: %s\n' "$*" >&2; exit 1; }
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

lcurl() { curl --noproxy '*' -s "$@"; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_ok() { # URL
    local i
    for i in $(seq 1 300); do
        lcurl -f -o /dev/null "$1" && return 0
        sleep 0.1
    done
    die "$1 never answered"
}

for t in valgrind nginx curl python3; do
    command -v "$t" >/dev/null || die "missing $t (Debian: apt-get install -y valgrind nginx-light curl python3)"
done
if [[ -z "$GATEHOUSE_BIN" ]]; then
    log "building gatehouse (cargo build --release)"
    (cd "$ROOT" && cargo build --release --quiet)
    GATEHOUSE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/gatehouse"
fi

UP_PORT="$(free_port)"
"$GATEHOUSE_BIN" whoami --listen "127.0.0.1:$UP_PORT" >/dev/null 2>&1 &
PIDS+=($!)
wait_ok "http://127.0.0.1:$UP_PORT/"

# login_and_headers PORT: logs in through the demo's dev IdP; writes the Cookie header to
# $TMP/cookie and gatehouse's injected identity headers (curl -H lines) to $TMP/headers.
login_and_headers() {
    local port="$1" jar="$TMP/jar" authorize callback
    authorize="$(lcurl -o /dev/null -c "$jar" -b "$jar" -H 'Accept: text/html' -w '%{redirect_url}' "http://127.0.0.1:$port/")"
    [[ "$authorize" == http://127.0.0.1:* ]] || die "unexpected authorize URL: $authorize"
    callback="$(lcurl -o /dev/null -X POST --data 'username=bench&groups=admins' -w '%{redirect_url}' "$authorize")"
    [[ "$callback" == http://127.0.0.1:* ]] || die "unexpected callback URL: $callback"
    lcurl -o /dev/null -c "$jar" -b "$jar" "$callback"
    awk -F'\t' '{ sub(/^#HttpOnly_/, "", $1) } NF >= 7 && $6 ~ /^_gatehouse(_[0-9]+)?$/ { print $6 "=" $7 }' "$jar" \
        | paste -sd ';' | sed 's/;/; /g' >"$TMP/cookie"
    [[ -s "$TMP/cookie" ]] || die "no session cookie after login"
    lcurl -H 'Accept: application/json' -H "Cookie: $(cat "$TMP/cookie")" "http://127.0.0.1:$port/" | python3 -c '
import json, sys
h = json.load(sys.stdin)["headers"]
for n in ("x-forwarded-user", "x-forwarded-email", "x-forwarded-group", "x-forwarded-groups",
          "x-forwarded-preferred-username", "x-forwarded-id-token"):
    if h.get(n):
        print(f"{n}: {h[n]}")' >"$TMP/headers"
    [[ "$(wc -l <"$TMP/headers")" -ge 6 ]] || die "gatehouse injected too few identity headers"
}

# requests URL N [extra curl args...]: N keep-alive GETs over one connection; all must be 200.
requests() {
    local url="$1" n="$2" i
    shift 2
    for ((i = 0; i < n; i++)); do printf 'url = "%s"\noutput = "/dev/null"\n' "$url"; done >"$TMP/curl.cfg"
    local codes
    codes="$(lcurl -H "Cookie: $(cat "$TMP/cookie")" "$@" -w '%{http_code}\n' -K "$TMP/curl.cfg" | sort | uniq -c)"
    [[ "$codes" =~ ^\ *$n\ 200$ ]] || die "expected $n answers 200 from $url, got: $codes"
}

# total_instructions OUTPREFIX: sums callgrind's totals over the files of one run. (Each
# file states its total twice, as `summary:` and `totals:`; only one is counted. Until
# November 2026 both were, which doubled every figure, gatehouse's and nginx's alike.)
total_instructions() {
    grep -h '^totals:' "$1".* | awk '{ s += $2 } END { print s }'
}

# measure_gatehouse N: instructions of a `gatehouse demo` that serves N requests after login.
measure_gatehouse() {
    local n="$1" port pid out="$TMP/cg-gh-$1"
    port="$(free_port)"
    GATEHOUSE_WORKERS=1 valgrind --tool=callgrind --callgrind-out-file="$out.%p" \
        "$GATEHOUSE_BIN" demo --listen "127.0.0.1:$port" --upstream "http://127.0.0.1:$UP_PORT" \
        >"$TMP/demo.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_ok "http://127.0.0.1:$port/readyz"
    login_and_headers "$port"
    # Start-up is not the same twice (the dev IdP generates an RSA key: a random prime
    # search worth tens of millions of instructions), so the counters are zeroed here,
    # after start-up and login; what is left is the requests and the shutdown.
    callgrind_control -z "$pid" >/dev/null
    requests "http://127.0.0.1:$port/" "$n"
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    total_instructions "$out"
}

# measure_nginx N: instructions of nginx (one process, no master) serving N requests.
measure_nginx() {
    local n="$1" port pid out="$TMP/cg-ngx-$1" dir="$TMP/nginx-$1" args=()
    port="$(free_port)"
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir;
    uwsgi_temp_path $dir; scgi_temp_path $dir;
    upstream up { server 127.0.0.1:$UP_PORT; keepalive 16; }
    server {
        listen 127.0.0.1:$port;
        location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
NGINX
    valgrind --tool=callgrind --callgrind-out-file="$out.%p" nginx -c "$dir/nginx.conf" -p "$dir" \
        >"$dir/valgrind.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_ok "http://127.0.0.1:$port/"
    while IFS= read -r line; do args+=(-H "$line"); done <"$TMP/headers"
    requests "http://127.0.0.1:$port/" "$n" "${args[@]}"
    kill -QUIT "$pid"
    wait "$pid" 2>/dev/null || true
    total_instructions "$out"
}

log "gatehouse under callgrind: $N1 then $N2 requests (slow: valgrind runs it ~50x slower)"
g1="$(measure_gatehouse "$N1")"
g2="$(measure_gatehouse "$N2")"
log "nginx under callgrind: $N1 then $N2 requests, with gatehouse's identity headers"
n1="$(measure_nginx "$N1")"
n2="$(measure_nginx "$N2")"

python3 - "$g1" "$g2" "$n1" "$n2" "$N1" "$N2" <<'PY'
import sys
g1, g2, n1, n2, a, b = map(int, sys.argv[1:])
g, n = (g2 - g1) / (b - a), (n2 - n1) / (b - a)
print(f"instructions per proxied request (callgrind, {b - a} requests counted)")
print(f"  nginx proxy_pass          {n:10.0f}")
print(f"  gatehouse + session       {g:10.0f}")
print(f"  nginx/gatehouse           {n / g:10.2f}   (1.00 = as cheap as nginx)")
PY
