#!/usr/bin/env bash
# bench/ws.sh: many open WebSockets through gatehouse: its memory and open files with
# 1,000 of them open and echoing, and after they close; and the echo round trip through
# gatehouse next to the same echo straight to the upstream.
#
#   1. starts a WebSocket echo upstream (bench/ws_echo.py server, Python stdlib) and
#      `gatehouse demo --upstream <it> --token-ttl <TOKEN_TTL>`, and logs in through the
#      dev IdP with curl (a WebSocket closes when its session expires: the token lifetime
#      is far longer than the run)
#   2. checks: with the cookie a plain GET reaches the upstream with the user's identity;
#      without it gatehouse does not answer 200, and refuses the upgrade
#   3. direct: WS_COUNT WebSockets straight to the upstream, each sending a small message
#      every INTERVAL_MIN..INTERVAL_MAX seconds (own interval, random start: staggered),
#      round trips measured for HOLD seconds once all are open, then closed
#   4. gatehouse: the same through gatehouse with the session cookie; gatehouse's VmRSS
#      and open files are read idle (before), with all open after HOLD seconds of echoing,
#      and 1, 10, 30 and AFTER_CLOSE seconds after all have closed
#
# Settings (environment):
#   WS_COUNT       WebSockets held open at once                  (default 1000)
#   HOLD           seconds of echoing measured with all open      (default 20)
#   AFTER_CLOSE    seconds to watch gatehouse's memory after the close (default 60)
#   INTERVAL_MIN   / INTERVAL_MAX   seconds between one connection's messages (default 1 / 2)
#   MSG_SIZE       message size in bytes                          (default 32)
#   HANDSHAKES     upgrades in flight at once while opening       (default 64)
#   DIRECT         1 = also measure the echo straight to the upstream (default 1)
#   WAVES          times the gatehouse part is repeated on the same gatehouse
#                  (default 1; 2 tells memory kept for reuse from a leak)
#   TOKEN_TTL      ID token lifetime at the dev IdP, seconds      (default 3600)
#   GATEHOUSE_BIN  gatehouse binary; unset = `cargo build --release`
#   KEEP_TMP       1 = keep the temp dir (logs, raw results)
#
# With the defaults it takes about 2.5 minutes (plus the build). Only 127.0.0.1 is
# contacted; every process started is stopped by pid on exit.
set -euo pipefail
umask 077   # the temp dir holds a session cookie jar

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
BENCH_TAG=ws
KEPT_WHAT="logs"
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

WS_COUNT="${WS_COUNT:-1000}"
HOLD="${HOLD:-20}"
AFTER_CLOSE="${AFTER_CLOSE:-60}"
INTERVAL_MIN="${INTERVAL_MIN:-1}"
INTERVAL_MAX="${INTERVAL_MAX:-2}"
MSG_SIZE="${MSG_SIZE:-32}"
HANDSHAKES="${HANDSHAKES:-64}"
DIRECT="${DIRECT:-1}"
WAVES="${WAVES:-1}"
TOKEN_TTL="${TOKEN_TTL:-3600}"
GATEHOUSE_BIN="${GATEHOUSE_BIN:-}"
KEEP_TMP="${KEEP_TMP:-0}"

BENCH_USER="bench"
BENCH_GROUPS="admins"
COOKIE_NAME="_gatehouse"
HOST="127.0.0.1"
STARTED_AT=$SECONDS

TMP=""
PIDS=()
GATEHOUSE_PID="" ECHO_PORT="" GATEHOUSE_PORT="" SESSION_COOKIE=""

check_settings() {
    local v
    for v in WS_COUNT HOLD AFTER_CLOSE MSG_SIZE HANDSHAKES TOKEN_TTL WAVES; do
        [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number"
    done
    ((WS_COUNT >= 1 && MSG_SIZE >= 16 && WAVES >= 1)) || die "need WS_COUNT >= 1, MSG_SIZE >= 16, WAVES >= 1"
    for v in INTERVAL_MIN INTERVAL_MAX; do
        [[ "${!v}" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "$v must be a number of seconds"
    done
    for v in curl python3 awk; do
        command -v "$v" >/dev/null 2>&1 || die "missing tool: $v"
    done
}

# wait_for_line FILE REGEX PID NAME: until FILE has a line matching REGEX.
wait_for_line() {
    local i
    for ((i = 0; i < 150; i++)); do
        grep -Eq "$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || { cat "$1" "$1.err" >&2 2>/dev/null || true; die "$4 exited during start-up"; }
        sleep 0.2
    done
    die "$4 did not start within 30s (see $1)"
}

start_echo() {
    python3 "$SCRIPT_DIR/ws_echo.py" server --listen "$HOST:0" >"$TMP/echo.out" 2>"$TMP/echo.out.err" &
    local pid=$!
    PIDS+=("$pid")
    wait_for_line "$TMP/echo.out" '^listening: [0-9]+$' "$pid" "echo upstream"
    ECHO_PORT="$(awk '/^listening:/ {print $2}' "$TMP/echo.out")"
    log "WebSocket echo upstream on $HOST:$ECHO_PORT"
}

start_gatehouse() {
    GATEHOUSE_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    log "starting gatehouse demo on $HOST:$GATEHOUSE_PORT (token TTL ${TOKEN_TTL}s)"
    "$GATEHOUSE_BIN" demo --listen "$HOST:$GATEHOUSE_PORT" --idp-listen "$HOST:0" \
        --upstream "http://$HOST:$ECHO_PORT" --token-ttl "$TOKEN_TTL" \
        >"$TMP/demo.out" 2>"$TMP/demo.out.err" &
    GATEHOUSE_PID=$!
    PIDS+=("$GATEHOUSE_PID")
    wait_for_line "$TMP/demo.out" '^[[:space:]]*gatehouse:[[:space:]]+http://' "$GATEHOUSE_PID" "gatehouse demo"
    local i
    for ((i = 0; i < 50; i++)); do
        lcurl --max-time 1 -o /dev/null "http://$HOST:$GATEHOUSE_PORT/healthz" 2>/dev/null && return 0
        sleep 0.2
    done
    die "gatehouse did not answer /healthz"
}

is_redirect() { [[ "$1" =~ ^30[12378]$ ]]; }

# The dev IdP login with curl, as bench/run.sh does it: GET / as a browser, POST the
# login form to the authorize URL, GET the callback; the session cookie(s) end up in
# SESSION_COOKIE.
login() {
    local jar="$TMP/cookies.txt" out code authorize_url callback_url
    : >"$jar"
    log "logging in to gatehouse as '$BENCH_USER'"
    out="$(lcurl -o /dev/null -c "$jar" -b "$jar" -H 'Accept: text/html' -w '%{http_code} %{redirect_url}' \
        "http://$HOST:$GATEHOUSE_PORT/")"
    code="${out%% *}" authorize_url="${out#* }"
    is_redirect "$code" || die "login step 1: expected a redirect from gatehouse, got $code"
    require_loopback_url "$authorize_url" "authorize URL"
    out="$(lcurl -o /dev/null -X POST --data-urlencode "username=$BENCH_USER" \
        --data-urlencode "groups=$BENCH_GROUPS" -w '%{http_code} %{redirect_url}' "$authorize_url")"
    code="${out%% *}" callback_url="${out#* }"
    is_redirect "$code" || die "login step 2: expected a redirect from the dev IdP, got $code"
    require_loopback_url "$callback_url" "callback URL"
    code="$(lcurl -o /dev/null -c "$jar" -b "$jar" -w '%{http_code}' "$callback_url")"
    [[ "$code" =~ ^[23] ]] || die "login step 3: callback answered $code"
    SESSION_COOKIE="$(awk -F'\t' -v name="$COOKIE_NAME" '
        /^#HttpOnly_/ { sub(/^#HttpOnly_/, "") }
        /^#/ || NF < 7 { next }
        $6 == name || $6 ~ ("^" name "_[0-9]+$") { print $6 "=" $7 }
    ' "$jar" | sort -V | paste -sd ';' | sed 's/;/; /g')"
    [[ -n "$SESSION_COOKIE" ]] || die "no '$COOKIE_NAME' cookie after login"
}

checks() {
    local body code
    body="$(lcurl -H "Cookie: $SESSION_COOKIE" "http://$HOST:$GATEHOUSE_PORT/check")" \
        || die "GET through gatehouse failed"
    python3 -c 'import json,sys; u=json.loads(sys.argv[1]).get("x-forwarded-user",""); sys.exit(0 if u.startswith(sys.argv[2]) else 1)' \
        "$body" "$BENCH_USER" || die "the upstream did not receive the user's identity through gatehouse: $body"
    code="$(lcurl -o /dev/null -w '%{http_code}' "http://$HOST:$GATEHOUSE_PORT/check")"
    [[ "$code" != 200 ]] || die "gatehouse answered 200 without a session cookie"
    code="$(lcurl -o /dev/null -w '%{http_code}' -H 'Upgrade: websocket' -H 'Connection: Upgrade' \
        -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' \
        "http://$HOST:$GATEHOUSE_PORT/ws" || true)"
    [[ "$code" != 101 ]] || die "gatehouse upgraded a WebSocket without a session cookie"
    log "checks: identity reaches the upstream; without a cookie: $code, no upgrade (good)"
}

# client LABEL URL [client args...]: runs the driver, keeps its WS_RESULT line.
client() {
    local label="$1" url="$2"
    run_child python3 "$SCRIPT_DIR/ws_echo.py" client --label "$label" --url "$url" \
        --count "$WS_COUNT" --hold "$HOLD" --interval-min "$INTERVAL_MIN" --interval-max "$INTERVAL_MAX" \
        --size "$MSG_SIZE" --handshakes "$HANDSHAKES" "${@:3}" >"$TMP/result-$label.txt" \
        || die "the WebSocket client failed ($label)"
    grep -q '^WS_RESULT ' "$TMP/result-$label.txt" || die "no result from the client ($label)"
}

report() {
    local idle_rss="$1" idle_fds="$2"
    python3 - "$TMP" "$idle_rss" "$idle_fds" "$WS_COUNT" "$HOLD" "$INTERVAL_MIN" "$INTERVAL_MAX" \
        "$MSG_SIZE" "$(nproc)" "$((SECONDS - STARTED_AT))" "$WAVES" <<'PY'
import json, os, sys
tmp, idle_rss, idle_fds, count, hold, imin, imax, size, cpus, secs, waves = sys.argv[1:]
def load(label):
    p = os.path.join(tmp, f"result-{label}.txt")
    if not os.path.exists(p):
        return None
    for line in open(p):
        if line.startswith("WS_RESULT "):
            return json.loads(line[len("WS_RESULT "):])
mib = lambda k: "-" if k is None else f"{int(k) / 1024:.1f}"
rows = [("direct to upstream", load("direct")), ("through gatehouse", load("gatehouse"))]
rows += [(f"gatehouse, wave {w}", load(f"gatehouse-{w}")) for w in range(2, int(waves) + 1)]
rule = "-" * 104
print()
print(f"gatehouse WebSocket bench: {count} WebSockets, a {size}-byte message every {imin}-{imax} s on each "
      f"(staggered), round trips measured for {hold} s with all open; {cpus} CPUs")
print(rule)
print(f"{'path':<20} {'opened':>7} {'open in':>8} {'failed':>7} {'ended early':>12} {'round trips':>12} "
      f"{'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
print(rule)
for name, r in rows:
    if r is None:
        continue
    f = lambda v: "-" if v is None else f"{v:.2f}"
    print(f"{name:<20} {r['opened']:>7} {r['open_secs']:>7.2f}s {r['open_failed']:>7} {r['closed_early']:>12} "
          f"{r['samples']:>12} {f(r['p50_ms']):>8} {f(r['p90_ms']):>8} {f(r['p99_ms']):>8} {f(r['max_ms']):>8}")
print(rule)
g = rows[1][1]
d = rows[0][1]
if d and g and d["p50_ms"] and g["p50_ms"]:
    print(f"gatehouse minus direct: p50 {g['p50_ms'] - d['p50_ms']:+.2f} ms, p99 {g['p99_ms'] - d['p99_ms']:+.2f} ms")
bad = sum(r["open_failed"] + r["closed_early"] + r["mismatched"] for _, r in rows if r)
for name, r in rows[1:]:
    if r is None:
        continue
    wave = "" if name == "through gatehouse" else f" ({name.split(', ')[1]})"
    before = f"idle {mib(idle_rss)} MiB" if not wave else f"before {mib(r['rss_before_kib'])} MiB"
    print(f"gatehouse RSS{wave}:   {before} | {r['opened']} open, after {hold} s of echoing: "
          f"{mib(r['rss_open_kib'])} MiB | after all closed: "
          + ", ".join(f"{s['secs']:g} s {mib(s['rss_kib'])}" for s in r["after_close"]) + " MiB")
    fbefore = f"idle {idle_fds}" if not wave else f"before {r['fds_before']}"
    print(f"gatehouse files{wave}: {fbefore} | {r['opened']} open: {r['fds_open']} | after all closed: "
          + ", ".join(f"{s['secs']:g} s {s['fds']}" for s in r["after_close"]))
    print(f"echoes{wave}: {r['echoed']} of {r['sent']} messages sent through gatehouse came back; "
          f"{r['mismatched']} differed; {r['clean_closes']} clean close handshakes")
if g:
    print("(RSS is of the whole \"gatehouse demo\" process, embedded dev IdP included)")
print(f"run time: {int(secs) // 60}m{int(secs) % 60:02d}s")
if bad:
    print(f"WARNING: {bad} failed upgrades, early ends or wrong echoes; see the log above")
PY
}

main() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    check_settings
    # Each WebSocket through gatehouse costs a descriptor in the client, two in gatehouse
    # and one in the echo server, all children of this shell.
    raise_nofile $((3 * WS_COUNT + 1024)) $((2 * WS_COUNT + 256)) "WS_COUNT=$WS_COUNT"
    resolve_gatehouse_bin
    STARTED_AT=$SECONDS
    TMP="$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-ws.XXXXXX")"
    start_echo
    start_gatehouse
    login
    checks
    if [[ "$DIRECT" == 1 ]]; then
        log "direct: $WS_COUNT WebSockets to the echo upstream"
        client direct "ws://$HOST:$ECHO_PORT/ws"
    fi
    local idle_rss idle_fds
    idle_rss="$(rss_kib "$GATEHOUSE_PID")" idle_fds="$(fd_count "$GATEHOUSE_PID")"
    log "gatehouse idle: RSS ${idle_rss} KiB, $idle_fds open files"
    local w label
    for ((w = 1; w <= WAVES; w++)); do
        label=gatehouse
        ((w > 1)) && label="gatehouse-$w"
        log "$label: $WS_COUNT WebSockets through gatehouse, then ${AFTER_CLOSE}s after closing them"
        client "$label" "ws://$HOST:$GATEHOUSE_PORT/ws" --cookie "$SESSION_COOKIE" \
            --pid "$GATEHOUSE_PID" --after-close "$AFTER_CLOSE"
    done
    kill -0 "$GATEHOUSE_PID" 2>/dev/null || die "gatehouse exited during the run (see $TMP/demo.out.err)"
    report "$idle_rss" "$idle_fds"
}

main "$@"
