# shellcheck shell=bash
# bench/lib.sh: helpers the bench scripts share (run.sh, ws.sh, soak.sh source it).
# The sourcing script sets, before sourcing:
#   BENCH_TAG   prefix of its log lines, e.g. "bench"
#   KEPT_WHAT   what cleanup() says it keeps in $TMP on failure, e.g. "logs"
# and uses the globals PIDS (every process it started, stopped by pid in cleanup()),
# TMP (its temp directory), KEEP_TMP (1 = keep TMP), ROOT and GATEHOUSE_BIN.

log() { printf '[%s] %s\n' "$BENCH_TAG" "$*" >&2; }
die() { printf '[%s] error: %s\n' "$BENCH_TAG" "$*" >&2; exit 1; }

# The EXIT trap: stops every started process by pid (TERM, then KILL after 5 s) and
# removes TMP, unless KEEP_TMP=1 or the script failed.
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
            log "$KEPT_WHAT kept in $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}

# curl that only ever talks to loopback and never goes through a proxy.
lcurl() { curl --noproxy '*' --silent --show-error --max-time 10 "$@"; }

# Refuse anything that is not an http or https URL on a loopback address.
require_loopback_url() {
    local url="$1" what="$2"
    if [[ ! "$url" =~ ^https?://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?(/|$) ]]; then
        die "$what is not a loopback http(s) URL, refusing to contact it: '$url'"
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

# wait_for_http URL PID NAME LOGFILE: until URL answers any HTTP status (30 s at
# most); fails at once, with the log's tail, if PID exits first.
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

# raise_nofile NEED LEAST WHAT: raises the soft limit of open files to NEED (the
# processes this shell starts inherit it), or to the hard limit when that is lower; dies
# when even that is below LEAST. WHAT names the setting that asks for so many, e.g.
# "WS_COUNT=1000".
raise_nofile() {
    local need="$1" least="$2" what="$3" soft hard
    soft="$(ulimit -Sn)" hard="$(ulimit -Hn)"
    if [[ "$soft" != unlimited ]] && ((soft < need)); then
        if [[ "$hard" == unlimited ]] || ((hard >= need)); then
            ulimit -Sn "$need"
        else
            ulimit -Sn "$hard"
            ((hard >= least)) \
                || die "open files: hard limit $hard is too low for $what (need about $need); raise it or lower ${what%%=*}"
        fi
    fi
    log "open files limit (soft): $(ulimit -Sn) (was $soft; hard $hard)"
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
kib_to_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# Run a command as a tracked child and wait for it. Unlike a plain foreground
# command, `wait` returns as soon as a signal arrives, so Ctrl-C stops the run
# at once and cleanup() stops the child too.
run_child() {
    local pid rc=0
    "$@" &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    return "$rc"
}

# forget_pid PID: takes PID, a child that has ended and been waited for, out of PIDS, so
# that cleanup() never signals its number again (the kernel may give it to another).
forget_pid() {
    local i
    for i in "${!PIDS[@]}"; do
        if [[ "${PIDS[$i]}" == "$1" ]]; then unset 'PIDS[i]'; fi
    done
}

# GATEHOUSE_BIN, or `cargo build --release` and the binary it makes.
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
