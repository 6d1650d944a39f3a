#!/usr/bin/env bash
# bench/run.sh: requests/second and latency of gatehouse next to two baselines.
#
#   (a) upstream   `gatehouse whoami` alone, hit directly
#   (b) nginx      nginx proxy_pass (with upstream keepalive) in front of (a)
#   (c) gatehouse  `gatehouse demo --upstream <(a)>` in front of (a), with a
#                  valid session cookie obtained through the dev IdP login
#
# and the forward-auth case, where gatehouse only gives the verdict:
#
#   (d) nginx-fa       nginx (config as (b)) with `auth_request` to gatehouse's
#                      /oauth2/auth (keepalive), copying the identity headers of
#                      the auth answer to the request it proxies to (a)
#   (e) nginx-ceiling  the same nginx config, but the auth server behind its
#                      auth location is nginx itself (a second server block that
#                      answers `return 200` with the same identity headers):
#                      the ceiling of the auth_request architecture
#       gatehouse /oauth2/auth  the auth endpoint alone, hit directly
#
# All of them run on loopback in one go; wrk drives the load, with the same
# settings and the same session cookie for every target. Every process the
# script starts is stopped again on exit. No traffic leaves 127.0.0.1.
#
# Settings (environment):
#   DURATION       measured run per target, wrk syntax       (default 10s)
#   WARMUP         unmeasured warm-up run per target          (default 2s)
#   CONNECTIONS    open connections held by wrk               (default 32)
#   THREADS        wrk threads                                (default 2)
#   GATEHOUSE_BIN  gatehouse binary; unset = `cargo build --release`
#                  and use target/release/gatehouse
#   ROUNDS         rounds of all targets, interleaved; the median round
#                  (by req/s) of each target is reported          (default 3)
#   TARGETS        what to measure, comma-separated                (default all)
#                    all    = proxy + fa
#                    proxy  = (a),(b),(c)
#                    fa     = forward auth: (d),(e) and /oauth2/auth alone
#                  or single targets: upstream nginx gatehouse nginx-fa
#                  nginx-ceiling gatehouse-auth (e.g. TARGETS=fa,nginx for
#                  the forward-auth part plus the (e)/(b) context ratio)
#   KEEP_TMP       1 = keep the temp dir (configs, logs, raw wrk output)
#
# See bench/README.md for how to read the figures.
set -euo pipefail
umask 077   # the temp dir holds a session cookie jar

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"

DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-2}"
KEEP_TMP="${KEEP_TMP:-0}"
ROUNDS="${ROUNDS:-3}"
ROUND=1
GATEHOUSE_BIN="${GATEHOUSE_BIN:-}"
TARGETS="${TARGETS:-all}"

BENCH_USER="bench"
BENCH_GROUPS="admins"
COOKIE_NAME="_gatehouse"
HOST="127.0.0.1"

TMP=""
PIDS=()           # every process we started, stopped by pid in cleanup()
declare -A RES    # results: RES[<target>.<field>]

# every target, in the order of a round; SELECTED: those TARGETS asked for
ALL_TARGETS=(upstream nginx gatehouse nginx-fa nginx-ceiling gatehouse-auth)
SELECTED=()
declare -A WANTED

WHOAMI_PORT="" NGINX_PORT="" GATEHOUSE_PORT="" NGINX_FA_PORT="" NGINX_CEILING_PORT="" AUTH_STUB_PORT=""
WHOAMI_PID=""  GATEHOUSE_PID=""
SESSION_COOKIE=""
IDENTITY_HEADERS=()   # what gatehouse injects, replayed to (a) and (b): same upstream work
declare -A IDENTITY   # the same, name (lower case) -> value: (e)'s fixed strings, (d)'s check
IDENTITY_NAMES=(x-forwarded-user x-forwarded-email x-forwarded-group x-forwarded-groups
                x-forwarded-preferred-username x-forwarded-id-token)
RSS_IDLE_KIB="" RSS_AFTER_KIB="" HWM_AFTER_KIB=""

# ---------------------------------------------------------------- helpers --

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "$TMP" && -d "$TMP" ]]; then
        if [[ "$KEEP_TMP" == 1 || ( $rc -ne 0 && $rc -ne 130 && $rc -ne 143 ) ]]; then
            log "logs and configs kept in $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}

# curl that only ever talks to loopback and never goes through a proxy.
lcurl() { curl --noproxy '*' --silent --show-error --max-time 10 "$@"; }

# Refuse anything that is not an http URL on a loopback address.
require_loopback_url() {
    local url="$1" what="$2"
    if [[ ! "$url" =~ ^http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?(/|$) ]]; then
        die "$what is not a loopback http URL, refusing to contact it: '$url'"
    fi
}

# Print N distinct free TCP ports on 127.0.0.1 (all sockets held open until
# every port is chosen, so the N ports differ).
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

# Wait until URL answers any HTTP status; fail early if PID died.
wait_for_http() {
    local url="$1" pid="$2" name="$3" logfile="$4" i
    for ((i = 0; i < 150; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$logfile" >&2 || true
            die "$name exited before it answered on $url (log above: $logfile)"
        fi
        if lcurl --max-time 1 -o /dev/null "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    tail -n 30 "$logfile" >&2 || true
    die "$name did not answer on $url within 30s"
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# Run a command as a tracked child and wait for it. Unlike a plain foreground
# command, `wait` returns as soon as a signal arrives, so Ctrl-C stops the run
# at once and cleanup() stops the child too.
run_child() {
    local pid rc=0 i
    "$@" &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    for i in "${!PIDS[@]}"; do
        [[ "${PIDS[$i]}" == "$pid" ]] && unset 'PIDS[i]'
    done
    return "$rc"
}

kib_to_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# ---------------------------------------------------------------- set-up --

require_tools() {
    local missing=() t
    for t in wrk nginx curl python3 awk; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    if ((${#missing[@]})); then
        die "missing tools: ${missing[*]}. On Debian/Ubuntu: apt-get install -y wrk nginx-light curl python3"
    fi
    [[ "$CONNECTIONS" =~ ^[0-9]+$ && "$THREADS" =~ ^[0-9]+$ ]] \
        || die "CONNECTIONS and THREADS must be whole numbers"
    ((THREADS >= 1 && CONNECTIONS >= THREADS)) \
        || die "need THREADS >= 1 and CONNECTIONS >= THREADS (wrk requirement)"
    [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a whole number >= 1"
}

wanted() { [[ -n "${WANTED[$1]:-}" ]]; }

# TARGETS -> WANTED/SELECTED (always in the order of ALL_TARGETS).
select_targets() {
    local entries=() e t
    IFS=', ' read -r -a entries <<<"$TARGETS"
    for e in "${entries[@]}"; do
        case "$e" in
            '') ;;
            all) for t in "${ALL_TARGETS[@]}"; do WANTED[$t]=1; done ;;
            proxy) WANTED[upstream]=1 WANTED[nginx]=1 WANTED[gatehouse]=1 ;;
            fa) WANTED[nginx-fa]=1 WANTED[nginx-ceiling]=1 WANTED[gatehouse-auth]=1 ;;
            upstream | nginx | gatehouse | nginx-fa | nginx-ceiling | gatehouse-auth) WANTED[$e]=1 ;;
            *) die "TARGETS: unknown entry '$e' (use all, proxy, fa, or: ${ALL_TARGETS[*]})" ;;
        esac
    done
    for t in "${ALL_TARGETS[@]}"; do
        if wanted "$t"; then SELECTED+=("$t"); fi
    done
    ((${#SELECTED[@]})) || die "TARGETS selects nothing: '$TARGETS'"
    log "targets: ${SELECTED[*]}"
}

resolve_gatehouse_bin() {
    if [[ -z "$GATEHOUSE_BIN" ]]; then
        command -v cargo >/dev/null 2>&1 \
            || die "cargo not found; install Rust or set GATEHOUSE_BIN=/path/to/gatehouse"
        log "building gatehouse (cargo build --release) ..."
        run_child cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2 \
            || die "cargo build --release failed"
        GATEHOUSE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/gatehouse"
    fi
    [[ -x "$GATEHOUSE_BIN" ]] || die "GATEHOUSE_BIN is not an executable file: $GATEHOUSE_BIN"
    log "gatehouse binary: $GATEHOUSE_BIN"
}

make_tmp() {
    TMP="$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-bench.XXXXXX")"
    cat >"$TMP/report.lua" <<'LUA'
-- Called once by wrk after the run: one machine-readable line.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d rps=%.2f p50_us=%.0f p90_us=%.0f p99_us=%.0f max_us=%.0f errors=%d status_errors=%d\n",
    summary.requests, summary.duration,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
LUA
}

allocate_ports() {
    read -r WHOAMI_PORT NGINX_PORT GATEHOUSE_PORT NGINX_FA_PORT NGINX_CEILING_PORT AUTH_STUB_PORT < <(free_ports 6)
    log "ports: whoami=$WHOAMI_PORT nginx=$NGINX_PORT gatehouse=$GATEHOUSE_PORT nginx-fa=$NGINX_FA_PORT nginx-ceiling=$NGINX_CEILING_PORT auth-stub=$AUTH_STUB_PORT"
}

# (a) the upstream: gatehouse whoami
start_whoami() {
    log "starting whoami upstream on $HOST:$WHOAMI_PORT"
    "$GATEHOUSE_BIN" whoami --listen "$HOST:$WHOAMI_PORT" \
        >"$TMP/whoami.log" 2>&1 &
    WHOAMI_PID=$!
    PIDS+=("$WHOAMI_PID")
    wait_for_http "http://$HOST:$WHOAMI_PORT/" "$WHOAMI_PID" whoami "$TMP/whoami.log"
}

# nginx_conf DIR PORT WITH_GATEHOUSE SERVER_BODY: writes DIR/nginx.conf. (b), (d) and
# (e) share all of it (workers, events, temp paths, the keepalive upstream (a)) and
# differ only in the locations of their server block; WITH_GATEHOUSE=1 adds a keepalive
# upstream `gatehouse` for (d)'s auth subrequests.
nginx_conf() {
    local dir="$1" port="$2" with_gatehouse="$3" body="$4" extra="${5:-}" keepalive=$((CONNECTIONS > 16 ? CONNECTIONS : 16))
    local gatehouse_upstream=""
    if [[ "$with_gatehouse" == 1 ]]; then
        gatehouse_upstream="
    upstream gatehouse {
        server $HOST:$GATEHOUSE_PORT;
        keepalive $keepalive;
    }
"
    fi
    cat >"$dir/nginx.conf" <<EOF
# generated by bench/run.sh; deleted on exit
daemon off;
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/error.log warn;

events {
    worker_connections 4096;
}

http {
    access_log off;
    client_body_temp_path $dir/client_body;
    proxy_temp_path       $dir/proxy;
    fastcgi_temp_path     $dir/fastcgi;
    uwsgi_temp_path       $dir/uwsgi;
    scgi_temp_path        $dir/scgi;

    upstream whoami {
        server $HOST:$WHOAMI_PORT;
        keepalive $keepalive;
    }
$gatehouse_upstream$extra
    server {
        listen $HOST:$port;
$body
    }
}
EOF
}

# shellcheck disable=SC2016  # nginx variables, not shell ones
# The proxying part of every nginx target: (a) over HTTP/1.1 keepalive.
NGINX_PROXY_TO_WHOAMI='            proxy_pass http://whoami;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;'

# shellcheck disable=SC2016
# (d) and (e) hand the identity to (a) in these headers, from the $fa_* variables
# that auth_request_set fills (an empty value sends no header, as gatehouse would).
NGINX_IDENTITY_TO_WHOAMI='            proxy_set_header X-Forwarded-User $fa_user;
            proxy_set_header X-Forwarded-Email $fa_email;
            proxy_set_header X-Forwarded-Group $fa_group;
            proxy_set_header X-Forwarded-Groups $fa_groups;
            proxy_set_header X-Forwarded-Preferred-Username $fa_preferred_username;
            proxy_set_header X-Forwarded-Id-Token $fa_id_token;'

# launch_nginx NAME DIR PORT: checks DIR/nginx.conf, starts nginx, waits until it answers;
# sets LAUNCHED_PID.
launch_nginx() {
    local name="$1" dir="$2" port="$3"
    nginx -t -q -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" \
        || die "generated nginx.conf for $name is invalid (see $dir/error.log)"
    log "starting $name on $HOST:$port"
    nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 &
    LAUNCHED_PID=$!
    PIDS+=("$LAUNCHED_PID")
    wait_for_http "http://$HOST:$port/" "$LAUNCHED_PID" "$name" "$dir/error.log"
}

# nginx_dir NAME: a fresh directory under $TMP that nginx's workers can read.
nginx_dir() {
    local dir="$TMP/$1"
    mkdir -p "$dir"
    # When run as root, nginx workers drop to an unprivileged user; let them
    # reach the temp directories below (traverse only for $TMP itself).
    chmod 711 "$TMP"
    chmod 755 "$dir"
    printf '%s\n' "$dir"
}

# (b) nginx proxy_pass to the upstream, everything under $TMP/nginx
start_nginx() {
    local dir
    dir="$(nginx_dir nginx)"
    nginx_conf "$dir" "$NGINX_PORT" 0 "        location / {
$NGINX_PROXY_TO_WHOAMI
        }"
    launch_nginx nginx "$dir" "$NGINX_PORT"
}

# fa_locations UPSTREAM: the two locations (d) and (e) share, byte for byte: auth_request
# to UPSTREAM's /oauth2/auth, the identity copied from its answer, proxy_pass to (a).
fa_locations() {
    cat <<CONF
        location / {
            auth_request /_auth;
            auth_request_set \$fa_user \$upstream_http_x_forwarded_user;
            auth_request_set \$fa_email \$upstream_http_x_forwarded_email;
            auth_request_set \$fa_group \$upstream_http_x_forwarded_group;
            auth_request_set \$fa_groups \$upstream_http_x_forwarded_groups;
            auth_request_set \$fa_preferred_username \$upstream_http_x_forwarded_preferred_username;
            auth_request_set \$fa_id_token \$upstream_http_x_forwarded_id_token;
$NGINX_PROXY_TO_WHOAMI
$NGINX_IDENTITY_TO_WHOAMI
        }

        location = /_auth {
            internal;
            proxy_pass http://$1/oauth2/auth;
            proxy_pass_request_body off;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI \$request_uri;
        }
CONF
}

# (d) nginx auth_request to gatehouse's /oauth2/auth (keepalive), then proxy_pass to (a)
# with the identity headers of gatehouse's answer. Everything under $TMP/nginx-fa.
start_nginx_fa() {
    local dir
    dir="$(nginx_dir nginx-fa)"
    nginx_conf "$dir" "$NGINX_FA_PORT" 1 "$(fa_locations gatehouse)"
    launch_nginx nginx-fa "$dir" "$NGINX_FA_PORT"
}

# nginx_string VALUE: VALUE as a double-quoted nginx string (start_nginx_ceiling has
# refused values that would need escaping).
nginx_string() { printf '"%s"' "$1"; }

# (e) the same config as (d), byte for byte in its proxy and auth locations, but the
# auth server behind /_auth is nginx itself: a second server block (same process, own
# port, keepalive like (d)) that answers `return 200` with gatehouse's very identity
# values (login_gatehouse) as response headers. (a) then does the same work, and nginx
# makes the same subrequest over loopback: the ceiling of any auth_request set-up, with
# the fastest possible auth server. Everything under $TMP/nginx-ceiling.
start_nginx_ceiling() {
    local dir n bad='["\\$[:cntrl:]]' keepalive=$((CONNECTIONS > 16 ? CONNECTIONS : 16))
    for n in "${IDENTITY_NAMES[@]}"; do
        if [[ "${IDENTITY[$n]:-}" =~ $bad ]]; then
            die "the $n value has characters a fixed nginx string would need escaped: '${IDENTITY[$n]}'"
        fi
    done
    dir="$(nginx_dir nginx-ceiling)"
    local stub_headers="" h
    for h in x-forwarded-user x-forwarded-email x-forwarded-group x-forwarded-groups \
             x-forwarded-preferred-username x-forwarded-id-token; do
        if [[ -n "${IDENTITY[$h]:-}" ]]; then
            stub_headers+="
                add_header $h $(nginx_string "${IDENTITY[$h]}") always;"
        fi
    done
    nginx_conf "$dir" "$NGINX_CEILING_PORT" 0 "$(fa_locations authstub)" "
    upstream authstub {
        server $HOST:$AUTH_STUB_PORT;
        keepalive $keepalive;
    }

    server {
        listen $HOST:$AUTH_STUB_PORT;
        location / {$stub_headers
            return 200;
        }
    }
"
    launch_nginx nginx-ceiling "$dir" "$NGINX_CEILING_PORT"
}

# (c) gatehouse demo (dev IdP + gatehouse) in front of the same upstream
start_gatehouse() {
    local i
    log "starting gatehouse demo on $HOST:$GATEHOUSE_PORT"
    "$GATEHOUSE_BIN" demo \
        --listen "$HOST:$GATEHOUSE_PORT" \
        --idp-listen "$HOST:0" \
        --upstream "http://$HOST:$WHOAMI_PORT" \
        >"$TMP/demo.out" 2>"$TMP/demo.err" &
    GATEHOUSE_PID=$!
    PIDS+=("$GATEHOUSE_PID")
    # demo prints a "gatehouse: <url>" line (possibly indented) once it listens
    local ready_re='^[[:space:]]*gatehouse:[[:space:]]+http://'
    for ((i = 0; i < 150; i++)); do
        grep -Eq "$ready_re" "$TMP/demo.out" 2>/dev/null && break
        if ! kill -0 "$GATEHOUSE_PID" 2>/dev/null; then
            cat "$TMP/demo.out" "$TMP/demo.err" >&2 || true
            die "gatehouse demo exited during start-up"
        fi
        sleep 0.2
    done
    grep -Eq "$ready_re" "$TMP/demo.out" || die "gatehouse demo printed no 'gatehouse: http://...' line within 30s"
    sed 's/^/[bench]   demo | /' "$TMP/demo.out" >&2
    wait_for_http "http://$HOST:$GATEHOUSE_PORT/healthz" "$GATEHOUSE_PID" gatehouse "$TMP/demo.err"
}

is_redirect() { [[ "$1" =~ ^30[12378]$ ]]; }

# Log in through the dev IdP exactly as a script would with curl, then turn
# the session cookie(s) from the jar into one Cookie header for wrk.
login_gatehouse() {
    local jar="$TMP/cookies.txt" out code authorize_url callback_url
    : >"$jar"
    log "logging in to gatehouse as '$BENCH_USER' (groups: $BENCH_GROUPS)"

    out="$(lcurl -o /dev/null -c "$jar" -b "$jar" -H 'Accept: text/html' \
        -w '%{http_code} %{redirect_url}' "http://$HOST:$GATEHOUSE_PORT/")"
    code="${out%% *}" authorize_url="${out#* }"
    is_redirect "$code" || die "login step 1: expected a redirect (302) from gatehouse, got $code"
    require_loopback_url "$authorize_url" "authorize URL"

    out="$(lcurl -o /dev/null -X POST \
        --data-urlencode "username=$BENCH_USER" --data-urlencode "groups=$BENCH_GROUPS" \
        -w '%{http_code} %{redirect_url}' "$authorize_url")"
    code="${out%% *}" callback_url="${out#* }"
    is_redirect "$code" || die "login step 2: expected a redirect (302/303) from the dev IdP, got $code"
    require_loopback_url "$callback_url" "callback URL"

    code="$(lcurl -o /dev/null -c "$jar" -b "$jar" -w '%{http_code}' "$callback_url")"
    [[ "$code" =~ ^[23] ]] || die "login step 3: callback answered $code"

    # Netscape jar: 7 tab-separated fields, name in $6, value in $7.
    # HttpOnly cookies are written with a "#HttpOnly_" prefix.
    SESSION_COOKIE="$(awk -F'\t' -v name="$COOKIE_NAME" '
        /^#HttpOnly_/ { sub(/^#HttpOnly_/, "") }
        /^#/ || NF < 7 { next }
        $6 == name || $6 ~ ("^" name "_[0-9]+$") { print $6 "=" $7 }
    ' "$jar" | sort -V | paste -sd ';' | sed 's/;/; /g')"
    [[ -n "$SESSION_COOKIE" ]] \
        || die "no '$COOKIE_NAME' cookie in the jar after login (jar: $jar)"
    log "session cookie: ${#SESSION_COOKIE} bytes in the Cookie header"
    capture_identity_headers
}

# The upstream renders the identity it receives (whoami decodes the ID token), so
# (a) and (b) get the very headers gatehouse injects: all three targets then cost the
# upstream the same, and the comparison measures the proxies, not the page.
capture_identity_headers() {
    local json line
    json="$(lcurl -H 'Accept: application/json' -H "Cookie: $SESSION_COOKIE" "http://$HOST:$GATEHOUSE_PORT/")" \
        || die "could not read the identity headers through gatehouse"
    while IFS= read -r line; do
        [[ -n "$line" ]] || continue
        IDENTITY_HEADERS+=(--header "$line")
        IDENTITY["${line%%: *}"]="${line#*: }"
    done < <(python3 -c '
import json, sys
h = json.load(sys.stdin)["headers"]
for name in ("x-forwarded-user", "x-forwarded-email", "x-forwarded-group", "x-forwarded-groups",
             "x-forwarded-preferred-username", "x-forwarded-id-token"):
    if h.get(name):
        print(f"{name}: {h[name]}")
' <<<"$json")
    ((${#IDENTITY_HEADERS[@]} >= 6)) || die "gatehouse injected too few identity headers: $json"
    log "replaying $((${#IDENTITY_HEADERS[@]} / 2)) identity headers to the upstream and nginx runs"
}

# ---------------------------------------------------------------- measuring --

# check_target NAME URL [COOKIE] [NEEDLE]: 200 expected, NEEDLE in the body.
check_target() {
    local name="$1" url="$2" cookie="${3:-}" needle="${4:-}" code body="$TMP/check-$1.html"
    local args=(-o "$body" -w '%{http_code}')
    [[ -n "$cookie" ]] && args+=(-H "Cookie: $cookie")
    code="$(lcurl "${args[@]}" "$url")" || die "$name: request to $url failed"
    [[ "$code" == 200 ]] || die "$name: expected 200 from $url, got $code"
    if [[ -n "$needle" ]] && ! grep -qF "$needle" "$body"; then
        die "$name: answered 200 but '$needle' is not in the page, so the request did not come through an authenticated session (page: $body)"
    fi
}

# Sanity check that gatehouse really enforces the session: without a cookie
# the same URL must not come back 200.
check_unauthenticated_refused() {
    local code
    code="$(lcurl -o /dev/null -w '%{http_code}' "http://$HOST:$GATEHOUSE_PORT/")"
    [[ "$code" != 200 ]] || die "gatehouse answered 200 without a session cookie"
    log "gatehouse without a cookie answers $code (good: not 200)"
}

# cpu_ticks: "total steal" CPU ticks from /proc/stat. Steal is time a VM's host gave
# to others: when it is high, the figures of that run say more about the host.
cpu_ticks() {
    awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $9 }' /proc/stat
}

# run_wrk NAME URL [COOKIE] [EXTRA WRK ARGS...]: warm up, measure, store results in RES.
run_wrk() {
    local name="$1" url="$2" cookie="${3:-}" out="$TMP/wrk-$1-$ROUND.txt" line kv
    local args=(--threads "$THREADS" --connections "$CONNECTIONS" --timeout 5s)
    [[ -n "$cookie" ]] && args+=(--header "Cookie: $cookie")
    args+=("${@:4}")
    require_loopback_url "$url" "benchmark URL"

    log "$name: warm-up $WARMUP"
    run_child wrk "${args[@]}" --duration "$WARMUP" "$url" >/dev/null \
        || die "$name: wrk warm-up failed"
    log "$name: measuring $DURATION ($CONNECTIONS connections, $THREADS threads)"
    local before after
    before="$(cpu_ticks)"
    run_child wrk "${args[@]}" --duration "$DURATION" --latency --script "$TMP/report.lua" "$url" >"$out" \
        || die "$name: wrk failed (see $out)"
    sed -n '/^Running/,/^WRK_RESULT/p' "$out" | grep -v '^WRK_RESULT' | sed 's/^/[bench]   /' >&2

    line="$(grep '^WRK_RESULT ' "$out")" || die "$name: wrk printed no result (see $out)"
    for kv in ${line#WRK_RESULT }; do
        RES["$name.$ROUND.${kv%%=*}"]="${kv#*=}"
    done
    after="$(cpu_ticks)"
    RES["$name.$ROUND.steal"]="$(awk -v b="$before" -v a="$after" 'BEGIN {
        split(b, x, " "); split(a, y, " "); t = y[1] - x[1]; printf "%.0f", (t > 0 ? 100 * (y[2] - x[2]) / t : 0) }')"
}

bench_upstream() {
    check_target upstream "http://$HOST:$WHOAMI_PORT/"
    run_wrk upstream "http://$HOST:$WHOAMI_PORT/" "$SESSION_COOKIE" "${IDENTITY_HEADERS[@]}"
}

bench_nginx() {
    check_target nginx "http://$HOST:$NGINX_PORT/"
    run_wrk nginx "http://$HOST:$NGINX_PORT/" "$SESSION_COOKIE" "${IDENTITY_HEADERS[@]}"
}

bench_gatehouse() {
    check_unauthenticated_refused
    check_target gatehouse "http://$HOST:$GATEHOUSE_PORT/" "$SESSION_COOKIE" "$BENCH_USER"
    [[ -n "$RSS_IDLE_KIB" ]] || RSS_IDLE_KIB="$(rss_kib "$GATEHOUSE_PID")"
    run_wrk gatehouse "http://$HOST:$GATEHOUSE_PORT/" "$SESSION_COOKIE"
    RSS_AFTER_KIB="$(rss_kib "$GATEHOUSE_PID")"
    HWM_AFTER_KIB="$(hwm_kib "$GATEHOUSE_PID")"
    # the session must still be good after the run (a 302/401 mid-run would
    # not show up as a wrk error)
    check_target gatehouse "http://$HOST:$GATEHOUSE_PORT/" "$SESSION_COOKIE" "$BENCH_USER"
}

# check_identity_through NAME URL: a request with the session cookie must answer 200, and
# the upstream must have received, through NAME, exactly the identity headers gatehouse
# injects itself (so the upstream's work equals that of (a)-(c)). whoami echoes them.
check_identity_through() {
    local name="$1" url="$2" body="$TMP/check-$1.json" code n args=()
    [[ -n "${IDENTITY[x-forwarded-user]:-}" ]] || die "gatehouse injected no X-Forwarded-User to compare with"
    code="$(lcurl -o "$body" -w '%{http_code}' -H 'Accept: application/json' \
        -H "Cookie: $SESSION_COOKIE" "$url")" || die "$name: request to $url failed"
    [[ "$code" == 200 ]] || die "$name: expected 200 from $url with the session cookie, got $code (see $TMP/$name/error.log)"
    for n in "${IDENTITY_NAMES[@]}"; do args+=("$n" "${IDENTITY[$n]:-}"); done
    python3 - "$body" "$name" "${IDENTITY[x-forwarded-user]}" "${args[@]}" <<'PY' || die "$name: the upstream did not get gatehouse's identity headers (page: $body)"
import json, sys
body, name, user, pairs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with open(body) as f:
    got = json.load(f)["headers"]
if got.get("x-forwarded-user") != user:
    sys.exit(f"[bench] error: {name}: the upstream received X-Forwarded-User "
             f"{got.get('x-forwarded-user')!r}, expected {user!r}")
bad = [n for n, want in zip(pairs[::2], pairs[1::2]) if got.get(n, "") != want]
if bad:
    sys.exit(f"[bench] error: {name}: identity headers at the upstream differ from gatehouse's: {', '.join(bad)}")
PY
}

# check_refused NAME URL: without a cookie, URL must not answer 200.
check_refused() {
    local name="$1" url="$2" code
    code="$(lcurl -o /dev/null -w '%{http_code}' "$url")" || die "$name: request to $url failed"
    [[ "$code" != 200 ]] || die "$name answered 200 without a session cookie: $url"
    log "$name without a cookie answers $code (good: not 200)"
}

# check_auth_endpoint: gatehouse's /oauth2/auth must answer 200 with the cookie, with the
# user gatehouse injects as a proxy in X-Auth-Request-User and X-Forwarded-User.
check_auth_endpoint() {
    local url="http://$HOST:$GATEHOUSE_PORT/oauth2/auth" hdrs="$TMP/check-gatehouse-auth.headers" code h
    local user="${IDENTITY[x-forwarded-user]:-}"
    [[ -n "$user" ]] || die "gatehouse injected no X-Forwarded-User to compare with"
    code="$(lcurl -o /dev/null -D "$hdrs" -w '%{http_code}' -H "Cookie: $SESSION_COOKIE" "$url")" \
        || die "gatehouse /oauth2/auth: request to $url failed"
    [[ "$code" == 200 ]] \
        || die "gatehouse /oauth2/auth answered $code with a valid session cookie, expected 200 ($url)"
    for h in x-auth-request-user x-forwarded-user; do
        tr -d '\r' <"$hdrs" | grep -qixF "$h: $user" \
            || die "gatehouse /oauth2/auth answered 200 without '$h: $user' (headers: $hdrs)"
    done
}

# (d) nginx auth_request -> gatehouse /oauth2/auth, then (a)
bench_nginx_fa() {
    local url="http://$HOST:$NGINX_FA_PORT/"
    check_refused nginx-fa "$url"
    check_identity_through nginx-fa "$url"
    run_wrk nginx-fa "$url" "$SESSION_COOKIE"
    check_identity_through nginx-fa "$url"
}

# (e) the same nginx, auth location `return 200`
bench_nginx_ceiling() {
    local url="http://$HOST:$NGINX_CEILING_PORT/"
    check_identity_through nginx-ceiling "$url"
    run_wrk nginx-ceiling "$url" "$SESSION_COOKIE"
}

# gatehouse's /oauth2/auth alone
bench_gatehouse_auth() {
    local url="http://$HOST:$GATEHOUSE_PORT/oauth2/auth"
    check_refused "gatehouse /oauth2/auth" "$url"
    check_auth_endpoint
    run_wrk gatehouse-auth "$url" "$SESSION_COOKIE"
    check_auth_endpoint
}

# ---------------------------------------------------------------- report --

# pick_medians: for each target, the round with the median req/s supplies every figure
# (errors are summed over all rounds); the per-round ratios show the spread.
pick_medians() {
    local t r med f
    for t in "${SELECTED[@]}"; do
        med="$(for ((r = 1; r <= ROUNDS; r++)); do printf '%s %s\n' "${RES[$t.$r.rps]}" "$r"; done \
            | sort -n | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2) { print $2 }')"
        for f in rps p50_us p90_us p99_us max_us steal; do RES["$t.$f"]="${RES[$t.$med.$f]}"; done
        RES["$t.errors"]=0 RES["$t.status_errors"]=0
        for ((r = 1; r <= ROUNDS; r++)); do
            RES["$t.errors"]=$((RES[$t.errors] + RES[$t.$r.errors]))
            RES["$t.status_errors"]=$((RES[$t.status_errors] + RES[$t.$r.status_errors]))
        done
    done
    round_ratios rounds gatehouse nginx
    round_ratios fa_rounds nginx-fa nginx-ceiling
}

# round_ratios KEY NUM DEN: rps(NUM)/rps(DEN) of each round in RES[KEY], their median in
# RES[KEY_median]; nothing when either target was not measured.
round_ratios() {
    local key="$1" num="$2" den="$3" r line=""
    wanted "$num" && wanted "$den" || return 0
    for ((r = 1; r <= ROUNDS; r++)); do
        line+="$(awk -v c="${RES[$num.$r.rps]}" -v b="${RES[$den.$r.rps]}" 'BEGIN { printf " %.2f", (b > 0 ? c / b : 0) }')"
    done
    RES[$key]="$line"
    RES[${key}_median]="$(tr ' ' '\n' <<<"$line" | grep . | sort -n | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2)')"
}

# ratio NUM DEN: rps(NUM)/rps(DEN) with two decimals, or n/a when one was not measured.
ratio() {
    if wanted "$1" && wanted "$2"; then
        awk -v c="${RES[$1.rps]}" -v b="${RES[$2.rps]}" 'BEGIN { printf "%.2f", (b > 0 ? c / b : 0) }'
    else
        printf 'n/a'
    fi
}

# steal TARGET: "N%" of the target's median round, or n/a.
steal() { if wanted "$1"; then printf '%s%%' "${RES[$1.steal]}"; else printf 'n/a'; fi; }

RULE='-------------------------------------------------------------------------------'

# table_rows TARGET...: one row per measured target.
table_rows() {
    local t label
    printf '%s\n' "$RULE"
    printf '%-24s %11s %9s %9s %9s %9s\n' target 'req/s' 'p50 ms' 'p90 ms' 'p99 ms' 'errors'
    printf '%s\n' "$RULE"
    for t in "$@"; do
        wanted "$t" || continue
        case "$t" in
            upstream) label="(a) upstream (whoami)" ;;
            nginx) label="(b) nginx proxy_pass" ;;
            gatehouse) label="(c) gatehouse + session" ;;
            nginx-fa) label="(d) nginx-fa" ;;
            nginx-ceiling) label="(e) nginx-ceiling" ;;
            gatehouse-auth) label="gatehouse /oauth2/auth" ;;
        esac
        awk -v l="$label" -v rps="${RES[$t.rps]}" -v p50="${RES[$t.p50_us]}" \
            -v p90="${RES[$t.p90_us]}" -v p99="${RES[$t.p99_us]}" \
            -v err="$((${RES[$t.errors]} + ${RES[$t.status_errors]}))" \
            'BEGIN { printf "%-24s %11.0f %9.2f %9.2f %9.2f %9d\n", l, rps, p50/1000, p90/1000, p99/1000, err }'
    done
    printf '%s\n' "$RULE"
}

print_report() {
    local t failed verdict
    printf '\n'
    printf 'gatehouse bench: %s rounds of %s per target (+%s warm-up), %s connections, %s wrk threads, %s CPUs\n' \
        "$ROUNDS" "$DURATION" "$WARMUP" "$CONNECTIONS" "$THREADS" "$(nproc)"
    printf 'figures: the median round of each target\n' 
    if wanted upstream || wanted nginx || wanted gatehouse; then
        table_rows upstream nginx gatehouse
        printf 'rps ratio gatehouse/nginx (c/b):     %s\n' "$(ratio gatehouse nginx)"
        printf 'rps ratio gatehouse/upstream (c/a):  %s\n' "$(ratio gatehouse upstream)"
        if [[ -n "${RES[rounds]:-}" ]]; then
            printf 'c/b in each round:                  %s   (median %s: each round pairs runs close in time)\n' \
                "${RES[rounds]}" "${RES[rounds_median]}"
        fi
        printf 'CPU steal during (a) (b) (c):        %s %s %s (high steal: the VM host was busy; rerun)\n' \
            "$(steal upstream)" "$(steal nginx)" "$(steal gatehouse)"
        if wanted gatehouse; then
            printf 'gatehouse RSS idle (after login):    %s MiB\n' "$(kib_to_mib "$RSS_IDLE_KIB")"
            printf 'gatehouse RSS right after load:      %s MiB (peak VmHWM %s MiB)\n' \
                "$(kib_to_mib "$RSS_AFTER_KIB")" "$(kib_to_mib "$HWM_AFTER_KIB")"
            printf '%s\n' '(RSS is of the whole "gatehouse demo" process, embedded dev IdP included)'
        fi
    fi
    if wanted nginx-fa || wanted nginx-ceiling || wanted gatehouse-auth; then
        printf '\n'
        printf 'forward auth: nginx auth_request in front of (a); same settings, same session cookie\n'
        table_rows nginx-fa nginx-ceiling gatehouse-auth
        verdict=""
        if wanted nginx-fa && wanted nginx-ceiling; then
            verdict="$(awk -v d="${RES[nginx-fa.rps]}" -v e="${RES[nginx-ceiling.rps]}" \
                'BEGIN { print (e > 0 && d / e >= 0.85 ? "meets the target" : "BELOW the target") }')"
            verdict="   ($verdict: at least 0.85 of the ceiling)"
        fi
        printf 'rps ratio nginx-fa/ceiling (d/e):    %s%s\n' "$(ratio nginx-fa nginx-ceiling)" "$verdict"
        if [[ -n "${RES[fa_rounds]:-}" ]]; then
            printf 'd/e in each round:                  %s   (median %s)\n' "${RES[fa_rounds]}" "${RES[fa_rounds_median]}"
        fi
        printf 'rps ratio ceiling/nginx (e/b):       %s   (context: the cost of auth_request itself)\n' \
            "$(ratio nginx-ceiling nginx)"
        printf 'CPU steal during (d) (e) (auth):     %s %s %s\n' \
            "$(steal nginx-fa)" "$(steal nginx-ceiling)" "$(steal gatehouse-auth)"
    fi
    failed=0
    for t in "${SELECTED[@]}"; do
        failed=$((failed + ${RES[$t.errors]} + ${RES[$t.status_errors]}))
    done
    if ((failed > 0)); then
        printf 'WARNING: some requests failed (socket errors or HTTP >= 400); raw wrk output in %s\n' "$TMP"
        KEEP_TMP=1
    fi
}

main() {
    local t
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    require_tools
    select_targets
    resolve_gatehouse_bin
    make_tmp
    allocate_ports
    start_whoami
    if wanted nginx; then start_nginx; fi
    start_gatehouse
    login_gatehouse
    if wanted nginx-fa; then start_nginx_fa; fi
    if wanted nginx-ceiling; then start_nginx_ceiling; fi
    for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
        log "round $ROUND of $ROUNDS"
        for t in "${SELECTED[@]}"; do
            case "$t" in
                upstream) bench_upstream ;;
                nginx) bench_nginx ;;
                gatehouse) bench_gatehouse ;;
                nginx-fa) bench_nginx_fa ;;
                nginx-ceiling) bench_nginx_ceiling ;;
                gatehouse-auth) bench_gatehouse_auth ;;
            esac
        done
    done
    pick_medians
    print_report
}

main "$@"
