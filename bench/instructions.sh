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
# With REDIS=1, also gatehouse with the redis store (`gatehouse serve`, session_store =
# redis, against a redis-server started here, signed in at a `gatehouse demo`'s dev IdP
# that is not under callgrind): once with one session (the per-thread cache answers, as
# for a browser), once with a new session on every request (every request fetches its
# session from Redis and opens it: the cost of a cache miss). Redis's GETs are counted,
# so the miss rate is measured, not assumed.
#
# With METRICS=1, also gatehouse with Prometheus metrics on (`demo --metrics-listen`):
# the recording's cost per request (a scrape, once a second in use, is not counted).
#
# Settings (environment): N1 (default 200), N2 (default 1200), REDIS (default 0),
# METRICS (default 0),
# GATEHOUSE_BIN (default: cargo build --release, target/release/gatehouse). Needs
# valgrind, nginx, curl, python3, and with REDIS=1 redis-server and redis-cli.
# Only 127.0.0.1 is contacted; every process started is stopped by pid.
set -euo pipefail
umask 077

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N1="${N1:-200}"
N2="${N2:-1200}"
REDIS="${REDIS:-0}"
METRICS="${METRICS:-0}"
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
if [[ "$REDIS" == 1 ]]; then
    for t in redis-server redis-cli; do
        command -v "$t" >/dev/null || die "REDIS=1: missing $t (Debian: apt-get install -y redis-server)"
    done
fi
if [[ -z "$GATEHOUSE_BIN" ]]; then
    log "building gatehouse (cargo build --release)"
    (cd "$ROOT" && cargo build --release --quiet)
    GATEHOUSE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/gatehouse"
fi

UP_PORT="$(free_port)"
"$GATEHOUSE_BIN" whoami --listen "127.0.0.1:$UP_PORT" >/dev/null 2>&1 &
PIDS+=($!)
wait_ok "http://127.0.0.1:$UP_PORT/"

# login PORT: logs in through the dev IdP gatehouse on PORT signs in at; prints the
# Cookie header value.
login() {
    local port="$1" jar="$TMP/jar" authorize callback cookie
    : >"$jar"
    authorize="$(lcurl -o /dev/null -c "$jar" -b "$jar" -H 'Accept: text/html' -w '%{redirect_url}' "http://127.0.0.1:$port/")"
    [[ "$authorize" == http://127.0.0.1:* ]] || die "unexpected authorize URL: $authorize"
    callback="$(lcurl -o /dev/null -X POST --data 'username=bench&groups=admins' -w '%{redirect_url}' "$authorize")"
    [[ "$callback" == http://127.0.0.1:* ]] || die "unexpected callback URL: $callback"
    lcurl -o /dev/null -c "$jar" -b "$jar" "$callback"
    cookie="$(awk -F'\t' '{ sub(/^#HttpOnly_/, "", $1) } NF >= 7 && $6 ~ /^_gatehouse(_[0-9]+)?$/ { print $6 "=" $7 }' "$jar" \
        | paste -sd ';' | sed 's/;/; /g')"
    [[ -n "$cookie" ]] || die "no session cookie after login"
    printf '%s\n' "$cookie"
}

# login_and_headers PORT: logs in through the demo's dev IdP; writes the Cookie header to
# $TMP/cookie and gatehouse's injected identity headers (curl -H lines) to $TMP/headers.
login_and_headers() {
    local port="$1"
    login "$port" >"$TMP/cookie"
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

# requests_each URL FILE N: N keep-alive GETs over one connection, request i with the
# Cookie header value on line i of FILE (from the top again when N is longer); all
# must be 200.
requests_each() {
    local url="$1" file="$2" n="$3" codes
    python3 - "$url" "$file" "$n" >"$TMP/curl-each.cfg" <<'PY'
import sys
url, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
cookies = [line.strip() for line in open(path) if line.strip()]
parts = []
for i in range(n):
    parts.append(f'url = "{url}"\noutput = "/dev/null"\nheader = "Cookie: {cookies[i % len(cookies)]}"\n'
                 'write-out = "%{http_code}\\n"')
print("\nnext\n".join(parts))
PY
    codes="$(lcurl -K "$TMP/curl-each.cfg" | sort | uniq -c)"
    [[ "$codes" =~ ^\ *$n\ 200$ ]] || die "expected $n answers 200 from $url, got: $codes"
}

# total_instructions OUTPREFIX: sums callgrind's totals over the files of one run. (Each
# file states its total twice, as `summary:` and `totals:`; only one is counted. Until
# November 2026 both were, which doubled every figure, gatehouse's and nginx's alike.)
total_instructions() {
    grep -h '^totals:' "$1".* | awk '{ s += $2 } END { print s }'
}

# measure_gatehouse N [DEMO ARGS...]: instructions of a `gatehouse demo` that serves N
# requests after login.
measure_gatehouse() {
    local n="$1" port pid out="$TMP/cg-gh-$1-$#"
    shift
    port="$(free_port)"
    GATEHOUSE_WORKERS=1 valgrind --tool=callgrind --callgrind-out-file="$out.%p" \
        "$GATEHOUSE_BIN" demo --listen "127.0.0.1:$port" --upstream "http://127.0.0.1:$UP_PORT" "$@" \
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

stop_run_pids() {
    local p
    for p in "${RUN_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}

# measure_redis N MODE: instructions of a `gatehouse serve` with the redis store (one
# worker) that serves N requests after login, and the GETs Redis ran meanwhile, as
# "INSTRUCTIONS GETS". MODE hit: one session for all N; miss: N sessions, one a request.
# Its redis-server and the demo whose dev IdP it signs in at run outside callgrind. It
# runs in a command substitution, a subshell: what it starts is stopped by pid when that
# subshell ends, however it ends (RUN_PIDS is the subshell's own).
measure_redis() {
    local n="$1" mode="$2"
    local out="$TMP/cg-redis-$mode-$n" port rport dport iport secret pid i gets total
    RUN_PIDS=()
    trap stop_run_pids EXIT
    port="$(free_port)" rport="$(free_port)" dport="$(free_port)" iport="$(free_port)"
    secret="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
    redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --daemonize no \
        >"$TMP/redis-$mode-$n.log" 2>&1 &
    RUN_PIDS+=($!)
    for ((i = 0; i < 100; i++)); do
        [[ "$(redis-cli -p "$rport" ping 2>/dev/null)" == PONG ]] && break
        sleep 0.1
    done
    "$GATEHOUSE_BIN" demo --listen "127.0.0.1:$dport" --idp-listen "127.0.0.1:$iport" \
        --upstream "http://127.0.0.1:$UP_PORT" \
        --extra-client "gatehouse-redis:$secret:http://127.0.0.1:$port/oauth2/callback" \
        >"$TMP/idp-$mode-$n.log" 2>&1 &
    RUN_PIDS+=($!)
    wait_ok "http://127.0.0.1:$dport/readyz"
    cat >"$TMP/redis-$mode-$n.toml" <<CONF
listen = "127.0.0.1:$port"
upstream = "http://127.0.0.1:$UP_PORT"
issuer_url = "http://127.0.0.1:$iport"
client_id = "gatehouse-redis"
client_secret = "$secret"
cookie_secret = "$("$GATEHOUSE_BIN" secret)"
cookie_secure = false
redirect_url = "http://127.0.0.1:$port/oauth2/callback"
session_store = "redis"
redis_url = "redis://127.0.0.1:$rport"
CONF
    GATEHOUSE_WORKERS=1 valgrind --tool=callgrind --callgrind-out-file="$out.%p" \
        "$GATEHOUSE_BIN" serve --config "$TMP/redis-$mode-$n.toml" >"$TMP/serve-$mode-$n.log" 2>&1 &
    pid=$!
    RUN_PIDS=("$pid" "${RUN_PIDS[@]}")
    wait_ok "http://127.0.0.1:$port/readyz"
    : >"$TMP/cookies-$mode-$n"
    local logins=1
    [[ "$mode" == miss ]] && logins="$n"
    for ((i = 0; i < logins; i++)); do login "$port" >>"$TMP/cookies-$mode-$n"; done
    redis-cli -p "$rport" config resetstat >/dev/null
    callgrind_control -z "$pid" >/dev/null
    requests_each "http://127.0.0.1:$port/" "$TMP/cookies-$mode-$n" "$n"
    gets="$(redis-cli -p "$rport" info commandstats | tr -d '\r' \
        | awk -F '[:=,]' '$1 == "cmdstat_get" { g = $3 } END { print g + 0 }')"
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    RUN_PIDS=("${RUN_PIDS[@]:1}")
    total="$(total_instructions "$out")"
    printf '%s %s\n' "$total" "$gets"
}

log "gatehouse under callgrind: $N1 then $N2 requests (slow: valgrind runs it ~50x slower)"
g1="$(measure_gatehouse "$N1")"
g2="$(measure_gatehouse "$N2")"
log "nginx under callgrind: $N1 then $N2 requests, with gatehouse's identity headers"
n1="$(measure_nginx "$N1")"
n2="$(measure_nginx "$N2")"
rh1="0 0" rh2="0 0" rm1="0 0" rm2="0 0" m1=0 m2=0
if [[ "$METRICS" == 1 ]]; then
    log "gatehouse with metrics on under callgrind: $N1 then $N2 requests"
    m1="$(measure_gatehouse "$N1" --metrics-listen "127.0.0.1:$(free_port)")"
    m2="$(measure_gatehouse "$N2" --metrics-listen "127.0.0.1:$(free_port)")"
fi
if [[ "$REDIS" == 1 ]]; then
    log "gatehouse with the redis store under callgrind, one session: $N1 then $N2 requests"
    rh1="$(measure_redis "$N1" hit)"
    rh2="$(measure_redis "$N2" hit)"
    log "gatehouse with the redis store under callgrind, a new session every request: $N1 then $N2 (logs in $((N1 + N2)) sessions first)"
    rm1="$(measure_redis "$N1" miss)"
    rm2="$(measure_redis "$N2" miss)"
fi

# shellcheck disable=SC2086  # "INSTRUCTIONS GETS" pairs, split on purpose
python3 - "$g1" "$g2" "$n1" "$n2" "$N1" "$N2" "$REDIS" $rh1 $rh2 $rm1 $rm2 "$m1" "$m2" <<'PY'
import sys
g1, g2, n1, n2, a, b, redis, rh1, rhg1, rh2, rhg2, rm1, rmg1, rm2, rmg2, m1, m2 = map(int, sys.argv[1:])
g, n = (g2 - g1) / (b - a), (n2 - n1) / (b - a)
print(f"instructions per proxied request (callgrind, {b - a} requests counted)")
print(f"  nginx proxy_pass          {n:10.0f}")
print(f"  gatehouse + session       {g:10.0f}")
print(f"  nginx/gatehouse           {n / g:10.2f}   (1.00 = as cheap as nginx)")
if m2:
    m = (m2 - m1) / (b - a)
    print(f"  gatehouse, metrics on     {m:10.0f}   (+{m - g:.0f}, {100 * (m - g) / g:+.2f} % over metrics off)")
if redis:
    h, m = (rh2 - rh1) / (b - a), (rm2 - rm1) / (b - a)
    print(f"  redis store, cache hit    {h:10.0f}   ({h / g:.2f} of the cookie store; Redis GETs per request {(rhg2 - rhg1) / (b - a):.3f})")
    print(f"  redis store, cache miss   {m:10.0f}   (a miss adds {m - h:.0f}; Redis GETs per request {(rmg2 - rmg1) / (b - a):.3f})")
PY
