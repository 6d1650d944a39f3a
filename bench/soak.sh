#!/usr/bin/env bash
# bench/soak.sh: does gatehouse leak under a long run of mixed traffic?
#
# Starts, on loopback and ephemeral ports:
#   - bench/soak_upstream.py   an upstream that answers plain HTTP (JSON echo of the
#                              identity headers) and echoes WebSockets
#   - gatehouse demo           dev IdP + gatehouse in one process, in front of it, with a
#                              short --token-ttl so session refreshes happen all along
#   - bench/soak.py drive      the traffic, all kinds at once: logins through the dev IdP
#                              form with fresh cookie jars, authenticated requests with
#                              long-lived sessions, short and long WebSockets (long ones are
#                              closed by gatehouse with code 4001 when their session's token
#                              expires, and reconnect), slow-loris connections that
#                              gatehouse's header-read timeout cuts, continuously replaced
# and, while the traffic runs, kills the upstream every SOAK_RESTART_MIN..MAX seconds and
# starts it again on the same port (requests in the gap get 502: expected, counted).
#
# Every SOAK_SAMPLE_EVERY seconds it records the gatehouse process's VmRSS, VmHWM, open
# files (ls /proc/<pid>/fd | wc -l), threads and open client connections into a CSV in
# the temp dir. "start" is the first sample after SOAK_WARMUP seconds of traffic; "end" is
# taken after the traffic stops and gatehouse's client connections have drained (at most
# SOAK_SETTLE_MAX seconds). The run is flat when
#     end open files <= start open files + SOAK_FD_SLACK
#     end RSS        <= start RSS * (1 + SOAK_RSS_PCT/100) + SOAK_RSS_SLACK_KIB
# It exits 1 when it is not flat, when any unexpected answer was seen (a request status
# other than 200/502, a failed login, a lost session, a wrong echo, a slow client not
# cut, a WebSocket close code other than 4001, a panic or ERROR in gatehouse's log), or
# when some kind of traffic never happened (e.g. zero successful logins).
#
# Settings (environment):
#   SOAK_SECONDS         traffic duration, warm-up included            (default 600)
#   SOAK_WARMUP          seconds of traffic before the "start" sample   (default 120:
#                        longer than gatehouse's fill-up windows, the 60 s it keeps
#                        refresh results and the per-thread session caches filling;
#                        at 30 s RSS was still climbing to its plateau)
#   SOAK_SAMPLE_EVERY    seconds between samples                        (default 10)
#   SOAK_TOKEN_TTL       gatehouse demo --token-ttl (min 30)            (default 30)
#   SOAK_RESTART_MIN/MAX upstream restart interval, seconds             (default 30/60)
#   SOAK_OUTAGE          seconds the upstream stays down per restart    (default 1)
#   SOAK_SETTLE_MAX      max seconds to wait for connections to drain   (default 10)
#   SOAK_LOGIN_RATE      logins per second (2 threads)                  (default 3)
#   SOAK_SESSIONS        long-lived sessions for requests               (default 4)
#   SOAK_SESSION_THREADS request threads per session (share its jar)    (default 2)
#   SOAK_REQ_RATE        requests per second per request thread         (default 10)
#   SOAK_WS_SHORT        short WebSocket loops                          (default 4)
#   SOAK_WS_LONG         long-lived WebSockets                          (default 4)
#   SOAK_SLOW            slow-loris connections held open               (default 40)
#   SOAK_FD_SLACK        open-files slack                               (default 5)
#   SOAK_RSS_PCT         RSS slack, percent of start                    (default 10)
#   SOAK_RSS_SLACK_KIB   RSS slack, KiB on top                          (default 2048)
#   GATEHOUSE_BIN        gatehouse binary; unset = `cargo build --release`
#   KEEP_TMP             1 = keep the temp dir (CSV, logs, summary) even on success
#
# See bench/README.md, "Soak run".
set -euo pipefail
umask 077   # the temp dir holds session cookies in the driver's memory only, but logs too

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
BENCH_TAG=soak
KEPT_WHAT="samples, logs and summary"
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

SOAK_SECONDS="${SOAK_SECONDS:-600}"
SOAK_WARMUP="${SOAK_WARMUP:-120}"
SOAK_SAMPLE_EVERY="${SOAK_SAMPLE_EVERY:-10}"
SOAK_TOKEN_TTL="${SOAK_TOKEN_TTL:-30}"
SOAK_RESTART_MIN="${SOAK_RESTART_MIN:-30}"
SOAK_RESTART_MAX="${SOAK_RESTART_MAX:-60}"
SOAK_OUTAGE="${SOAK_OUTAGE:-1}"
SOAK_SETTLE_MAX="${SOAK_SETTLE_MAX:-10}"
SOAK_LOGIN_RATE="${SOAK_LOGIN_RATE:-3}"
SOAK_SESSIONS="${SOAK_SESSIONS:-4}"
SOAK_SESSION_THREADS="${SOAK_SESSION_THREADS:-2}"
SOAK_REQ_RATE="${SOAK_REQ_RATE:-10}"
SOAK_WS_SHORT="${SOAK_WS_SHORT:-4}"
SOAK_WS_LONG="${SOAK_WS_LONG:-4}"
SOAK_SLOW="${SOAK_SLOW:-40}"
SOAK_FD_SLACK="${SOAK_FD_SLACK:-5}"
SOAK_RSS_PCT="${SOAK_RSS_PCT:-10}"
SOAK_RSS_SLACK_KIB="${SOAK_RSS_SLACK_KIB:-2048}"
GATEHOUSE_BIN="${GATEHOUSE_BIN:-}"
KEEP_TMP="${KEEP_TMP:-0}"

HOST="127.0.0.1"
HEADER_READ_TIMEOUT=10   # gatehouse's default header_read_timeout_secs (the demo keeps it)

TMP=""
PIDS=()   # every process we started, stopped by pid in cleanup()
UPSTREAM_PORT="" GATEHOUSE_PORT="" IDP_PORT="" UPSTREAM_PID="" GATEHOUSE_PID="" DRIVER_PID=""
declare -A FD_KINDS   # idle/end -> what the open files are
T0=""     # epoch seconds (fractional) when the traffic started
RESTARTS=0
OUTAGES=()

# ---------------------------------------------------------------- helpers --

forget_pid() {
    local i
    for i in "${!PIDS[@]}"; do
        [[ "${PIDS[$i]}" == "$1" ]] && unset 'PIDS[i]'
    done
    return 0
}

now() { date +%s.%N; }
elapsed() { awk -v a="$(now)" -v b="$T0" 'BEGIN { printf "%d", a - b }'; }
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# Connection counts from /proc/net/tcp (ESTABLISHED only), printed as
# "<client> <upstream> <idp>": client connections to gatehouse (local port = gatehouse's),
# gatehouse's connections to the upstream (remote port = upstream's) and sockets of the
# in-process dev IdP (either end: gatehouse's token/JWKS client and the IdP's server side
# are both in the demo process).
conn_counts() {
    awk -v g="$(printf '%04X' "$GATEHOUSE_PORT")" -v u="$(printf '%04X' "$UPSTREAM_PORT")" \
        -v i="$(printf '%04X' "${IDP_PORT:-0}")" '
        NR > 1 && $4 == "01" {
            split($2, l, ":"); split($3, r, ":")
            if (l[2] == g) c++
            if (r[2] == u) up++
            if (l[2] == i || r[2] == i) idp++
        }
        END { print c + 0, up + 0, idp + 0 }' /proc/net/tcp
}
client_conns() { local c _u _i; read -r c _u _i < <(conn_counts); echo "$c"; }

# What the open files are, e.g. "socket:34 anon_inode:[eventpoll]:3 /dev/null:1 ...".
fd_kinds() {
    find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null \
        | sed -E 's/^(socket|pipe):\[[0-9]+\]$/\1/' | sort | uniq -c | sort -rn \
        | awk '{ printf "%s%s:%s", (NR > 1 ? " " : ""), $2, $1 }'
}

# sample PHASE: one CSV row (and a log line) for the gatehouse process.
sample() {
    local phase="$1" t rss hwm fds thr conns up idp
    kill -0 "$GATEHOUSE_PID" 2>/dev/null || die "gatehouse (pid $GATEHOUSE_PID) is gone (log: $TMP/demo.err)"
    t=0
    [[ -n "$T0" ]] && t="$(elapsed)"
    rss="$(status_kib "$GATEHOUSE_PID" VmRSS)"
    hwm="$(status_kib "$GATEHOUSE_PID" VmHWM)"
    thr="$(status_kib "$GATEHOUSE_PID" Threads)"
    fds="$(fd_count "$GATEHOUSE_PID")"
    read -r conns up idp < <(conn_counts)
    printf '%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$t" "$phase" "$rss" "$hwm" "$fds" "$thr" "$conns" "$up" "$idp" \
        >>"$TMP/samples.csv"
    log "$(printf 'sample t=%4ss %-6s rss=%6s KiB fds=%4s threads=%2s conns: client=%3s upstream=%3s idp=%3s' \
        "$t" "$phase" "$rss" "$fds" "$thr" "$conns" "$up" "$idp")"
    if [[ "$phase" == idle || "$phase" == end ]]; then
        FD_KINDS[$phase]="$(fd_kinds "$GATEHOUSE_PID")"
    fi
}

# ---------------------------------------------------------------- set-up --

check_settings() {
    local v
    for v in SOAK_SECONDS SOAK_WARMUP SOAK_SAMPLE_EVERY SOAK_TOKEN_TTL SOAK_RESTART_MIN \
             SOAK_RESTART_MAX SOAK_SETTLE_MAX SOAK_SESSIONS SOAK_SESSION_THREADS SOAK_WS_SHORT \
             SOAK_WS_LONG SOAK_SLOW SOAK_FD_SLACK SOAK_RSS_SLACK_KIB; do
        [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
    done
    for v in SOAK_OUTAGE SOAK_LOGIN_RATE SOAK_REQ_RATE SOAK_RSS_PCT; do
        [[ "${!v}" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "$v must be a number, got '${!v}'"
    done
    ((SOAK_SAMPLE_EVERY >= 1)) || die "SOAK_SAMPLE_EVERY must be >= 1"
    ((SOAK_SECONDS > SOAK_WARMUP)) || die "SOAK_SECONDS ($SOAK_SECONDS) must exceed SOAK_WARMUP ($SOAK_WARMUP)"
    ((SOAK_TOKEN_TTL >= 30)) || die "SOAK_TOKEN_TTL: the demo's minimum is 30"
    ((SOAK_RESTART_MIN >= 5 && SOAK_RESTART_MAX >= SOAK_RESTART_MIN)) \
        || die "need 5 <= SOAK_RESTART_MIN <= SOAK_RESTART_MAX"
    local t missing=()
    for t in curl python3 awk; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]}"
}

start_upstream() {
    python3 "$SCRIPT_DIR/soak_upstream.py" --listen "$HOST:$UPSTREAM_PORT" >>"$TMP/upstream.log" 2>&1 &
    UPSTREAM_PID=$!
    PIDS+=("$UPSTREAM_PID")
    wait_for_http "http://$HOST:$UPSTREAM_PORT/healthz" "$UPSTREAM_PID" upstream "$TMP/upstream.log"
}

# Kill the upstream (SIGKILL: a crash, no goodbye to gatehouse's pooled connections),
# keep it down for SOAK_OUTAGE seconds, start it again on the same port and wait until it
# answers. The outage window (kill -> answering) is recorded to classify 502s.
restart_upstream() {
    local down up
    down="$(now)"
    kill -KILL "$UPSTREAM_PID" 2>/dev/null || true
    wait "$UPSTREAM_PID" 2>/dev/null || true
    forget_pid "$UPSTREAM_PID"
    sleep "$SOAK_OUTAGE"   # the outage itself, on purpose
    start_upstream
    up="$(now)"
    RESTARTS=$((RESTARTS + 1))
    OUTAGES+=("$down-$up")
    log "upstream restarted ($RESTARTS), down for $(awk -v a="$down" -v b="$up" 'BEGIN { printf "%.1f", b - a }')s, new pid $UPSTREAM_PID"
}

start_gatehouse() {
    local i ready_re='^[[:space:]]*gatehouse:[[:space:]]+http://'
    log "starting gatehouse demo on $HOST:$GATEHOUSE_PORT (token TTL ${SOAK_TOKEN_TTL}s) -> upstream $HOST:$UPSTREAM_PORT"
    "$GATEHOUSE_BIN" demo \
        --listen "$HOST:$GATEHOUSE_PORT" \
        --idp-listen "$HOST:0" \
        --upstream "http://$HOST:$UPSTREAM_PORT" \
        --token-ttl "$SOAK_TOKEN_TTL" \
        >"$TMP/demo.out" 2>"$TMP/demo.err" &
    GATEHOUSE_PID=$!
    PIDS+=("$GATEHOUSE_PID")
    for ((i = 0; i < 150; i++)); do
        grep -Eq "$ready_re" "$TMP/demo.out" 2>/dev/null && break
        if ! kill -0 "$GATEHOUSE_PID" 2>/dev/null; then
            cat "$TMP/demo.out" "$TMP/demo.err" >&2 || true
            die "gatehouse demo exited during start-up"
        fi
        sleep 0.2
    done
    grep -Eq "$ready_re" "$TMP/demo.out" || die "gatehouse demo printed no 'gatehouse: http://...' line within 30s"
    sed 's/^/[soak]   demo | /' "$TMP/demo.out" >&2
    IDP_PORT="$(sed -nE 's|^[[:space:]]*identity provider:[[:space:]]+http://127\.0\.0\.1:([0-9]+).*|\1|p' "$TMP/demo.out")"
    [[ "$IDP_PORT" =~ ^[0-9]+$ ]] || die "could not read the dev IdP's port from the demo's output"
    wait_for_http "http://$HOST:$GATEHOUSE_PORT/healthz" "$GATEHOUSE_PID" gatehouse "$TMP/demo.err"
}

start_driver() {
    log "starting traffic for ${SOAK_SECONDS}s: logins ${SOAK_LOGIN_RATE}/s, $SOAK_SESSIONS sessions x" \
        "$SOAK_SESSION_THREADS threads x ${SOAK_REQ_RATE} req/s, WebSockets $SOAK_WS_SHORT short +" \
        "$SOAK_WS_LONG long, $SOAK_SLOW slow clients"
    python3 "$SCRIPT_DIR/soak.py" drive \
        --gatehouse "http://$HOST:$GATEHOUSE_PORT" \
        --duration "$SOAK_SECONDS" \
        --summary "$TMP/summary.json" \
        --ready-file "$TMP/driver.ready" \
        --token-ttl "$SOAK_TOKEN_TTL" \
        --login-rate "$SOAK_LOGIN_RATE" \
        --sessions "$SOAK_SESSIONS" \
        --session-threads "$SOAK_SESSION_THREADS" \
        --req-rate "$SOAK_REQ_RATE" \
        --ws-short "$SOAK_WS_SHORT" \
        --ws-long "$SOAK_WS_LONG" \
        --slow "$SOAK_SLOW" \
        --slow-give-up $((3 * HEADER_READ_TIMEOUT)) &
    DRIVER_PID=$!
    PIDS+=("$DRIVER_PID")
    local i
    for ((i = 0; i < 300; i++)); do
        [[ -s "$TMP/driver.ready" ]] && break
        kill -0 "$DRIVER_PID" 2>/dev/null || die "the traffic driver exited during start-up"
        sleep 0.1
    done
    [[ -s "$TMP/driver.ready" ]] || die "the traffic driver did not start its traffic within 30s"
    T0="$(cat "$TMP/driver.ready")"
}

# ---------------------------------------------------------------- the run --

next_restart_in() { echo $((SOAK_RESTART_MIN + RANDOM % (SOAK_RESTART_MAX - SOAK_RESTART_MIN + 1))); }

# While the driver runs: a sample every SOAK_SAMPLE_EVERY seconds (the first one at or
# after the warm-up is "start"), an upstream restart every SOAK_RESTART_MIN..MAX seconds
# (none in the last 10 s, so the end is not measured right after one).
run_loop() {
    local next_sample=0 next_restart t started=0 phase
    next_restart="$(next_restart_in)"
    while kill -0 "$DRIVER_PID" 2>/dev/null; do
        t="$(elapsed)"
        if ((t >= next_sample)); then
            if ((t < SOAK_WARMUP)); then
                phase=warmup
            elif ((started == 0)); then
                phase=start started=1
            else
                phase=run
            fi
            sample "$phase"
            next_sample=$((next_sample + SOAK_SAMPLE_EVERY))
            ((next_sample > t)) || next_sample=$((t + 1))
        fi
        if ((t >= next_restart && t < SOAK_SECONDS - 10)); then
            restart_upstream
            next_restart=$(($(elapsed) + $(next_restart_in)))
        fi
        sleep 0.2
    done
    ((started)) || die "the traffic ended before the warm-up was over (no start sample)"
    local rc=0
    wait "$DRIVER_PID" || rc=$?
    forget_pid "$DRIVER_PID"
    ((rc == 0)) || die "the traffic driver failed (exit $rc)"
}

# After the traffic: wait until gatehouse's client connections have drained (at most
# SOAK_SETTLE_MAX seconds), then the "end" sample.
settle_and_sample_end() {
    local i limit=$((SOAK_SETTLE_MAX * 5)) conns
    for ((i = 0; i < limit; i++)); do
        conns="$(client_conns)"
        ((conns == 0)) && break
        sleep 0.2
    done
    log "settled after $(awk -v n="$i" 'BEGIN { printf "%.1f", n / 5 }')s (client connections now $(client_conns))"
    sample end
}

# Facts for the report: run settings, restarts, what gatehouse logged.
write_facts() {
    local plain="$TMP/demo.err.plain" alive=0
    lcurl --max-time 5 --fail -o /dev/null "http://$HOST:$GATEHOUSE_PORT/healthz" 2>/dev/null \
        && kill -0 "$GATEHOUSE_PID" 2>/dev/null && alive=1
    sed 's/\x1b\[[0-9;]*m//g' "$TMP/demo.err" >"$plain"
    {
        echo "pid=$GATEHOUSE_PID"
        echo "warmup=$SOAK_WARMUP"
        echo "sample_every=$SOAK_SAMPLE_EVERY"
        echo "token_ttl=$SOAK_TOKEN_TTL"
        echo "restarts=$RESTARTS"
        echo "outage_s=$SOAK_OUTAGE"
        echo "outages=$(IFS=,; echo "${OUTAGES[*]}")"
        echo "alive_at_end=$alive"
        echo "samples_file=$TMP/samples.csv"
        echo "fd_kinds_idle=${FD_KINDS[idle]:-}"
        echo "fd_kinds_end=${FD_KINDS[end]:-}"
        echo "log_lines=$(wc -l <"$plain")"
        echo "log_warn=$(grep -c ' WARN ' "$plain" || true)"
        echo "log_error=$(grep -c ' ERROR ' "$plain" || true)"
        echo "log_panic=$(grep -c 'panicked' "$plain" || true)"
        echo "log_refreshes=$(grep -c "refreshed the session's tokens" "$plain" || true)"
        echo "log_logins=$(grep -c 'user logged in' "$plain" || true)"
        # the distinct WARN/ERROR messages (fields dropped), most frequent first
        echo "log_warn_kinds=$(grep -E ' (WARN|ERROR) ' "$plain" \
            | sed -E 's/^[^ ]+ +(WARN|ERROR) +//; s/ [a-z_.]+=.*$//' \
            | sort | uniq -c | sort -rn | head -n 8 | sed -E 's/^ +//' | paste -sd '|' || true)"
    } >"$TMP/facts.txt"
}

main() {
    check_settings
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    resolve_gatehouse_bin
    TMP="$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-soak.XXXXXX")"
    echo "t_s,phase,rss_kib,hwm_kib,fds,threads,client_conns,upstream_conns,idp_conns" >"$TMP/samples.csv"
    read -r UPSTREAM_PORT GATEHOUSE_PORT < <(free_ports 2)
    log "temp dir $TMP; ports: upstream=$UPSTREAM_PORT gatehouse=$GATEHOUSE_PORT"
    start_upstream
    start_gatehouse
    sample idle
    start_driver
    run_loop
    settle_and_sample_end
    write_facts
    local rc=0
    python3 "$SCRIPT_DIR/soak.py" report \
        --summary "$TMP/summary.json" --samples "$TMP/samples.csv" --facts "$TMP/facts.txt" \
        --fd-slack "$SOAK_FD_SLACK" --rss-pct "$SOAK_RSS_PCT" --rss-slack-kib "$SOAK_RSS_SLACK_KIB" \
        --slow-give-up $((3 * HEADER_READ_TIMEOUT)) --token-ttl "$SOAK_TOKEN_TTL" || rc=$?
    return "$rc"
}

main "$@"
