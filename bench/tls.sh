#!/usr/bin/env bash
# bench/tls.sh (also `bench/run.sh tls`): gatehouse terminating TLS next to nginx
# terminating TLS, with the same certificate, in front of the same upstream (a) of
# bench/run.sh, which this script sources for its functions (upstream, nginx config,
# dev IdP login, wrk runs, medians).
#
#   certificate    a throwaway CA and a server certificate for 127.0.0.1 and localhost,
#                  ECDSA P-256 (openssl), made in the temp dir; both servers get the same
#                  leaf and key files
#   nginx-tls      nginx `listen ... ssl http2`, proxy_pass with upstream keepalive to (a)
#                  (run.sh's (b) proxying), keepalive_requests raised so that no kept-alive
#                  connection is closed (and handshaken again) under load
#   gatehouse-tls  `gatehouse serve` with tls_cert_file/tls_key_file in front of (a), a
#                  client of (c)'s dev IdP (run.sh's `gatehouse demo` runs as that IdP),
#                  with a valid session cookie; its redirect_url is plain http on an
#                  http_redirect_listen port (the dev IdP takes http redirect URIs only),
#                  which sends the callback on to https
#
# Both servers speak TLS 1.2 and 1.3 (nginx 1.22 needs `ssl_protocols TLSv1.2 TLSv1.3`:
# its default has no TLS 1.3) and keep their other TLS defaults (nginx: OpenSSL's
# suites, session tickets; gatehouse: rustls's, ring provider, a session cache). Worker
# counts: nginx `worker_processes auto`, gatehouse its default (GATEHOUSE_WORKERS unset:
# one worker thread per CPU): the same on any machine. What is measured, in interleaved
# rounds (the median round reported, and gatehouse/nginx paired by round):
#
#   tls  HTTP/1.1 keep-alive req/s: wrk over https (wrk offers no ALPN: HTTP/1.1)
#   h2   h2 req/s: h2load, H2_CLIENTS connections x H2_STREAMS streams each
#   hs   full TLS handshakes per second: HANDSHAKE_CLIENTS `openssl s_time -new` at
#        once, each a loop of connect, full handshake (ECDHE + the server's ECDSA
#        signature; -new never offers a session), close, with no request; and the
#        server's CPU time per handshake (utime + stime, nginx's workers summed). wrk
#        and h2load cannot do this: both offer the previous connection's session when
#        they reconnect (seen in nginx's $ssl_session_reused)
#   conn new connections per second as wrk makes them: `Connection: close`, one request
#        (the small body) per connection, wrk offering the previous session (whether
#        each server resumes it is checked and printed: bench/tls_resume.py)
#   idle RSS per idle TLS connection, once, before the load: IDLE_CONNECTIONS
#        connections that finished their handshake and sent nothing (bench/tls_idle.py),
#        first without ALPN (HTTP/1.1), then, with those still open, as many with h2
#        (preface and SETTINGS exchanged); VmRSS of gatehouse, and the sum of nginx's
#        workers' VmRSS, before and after each set, the difference over the count
#
# Settings (environment), besides run.sh's DURATION, WARMUP, ROUNDS, THREADS, BODIES,
# GATEHOUSE_BIN, TOKEN_TTL and KEEP_TMP:
#   CONNECTION_SETS        wrk connections for h1, each a table          (default 64)
#   H2_CLIENTS             h2load connections for h2                      (default 16)
#   H2_STREAMS             h2load streams in flight per connection        (default 10)
#   HANDSHAKE_CLIENTS      `openssl s_time` processes at once for hs     (default 8)
#   HANDSHAKE_CONNECTIONS  wrk connections for conn                      (default 32)
#   IDLE_CONNECTIONS       connections of each idle set                 (default 1000)
#   IDLE_TIMEOUT_SECS      how long both servers let a connection wait for a request
#                          (gatehouse header_read_timeout_secs, nginx client_header_timeout
#                          and keepalive_timeout), so the idle sets outlive their
#                          measurement                                   (default 300)
#
# Needs wrk, h2load (Debian: apt-get install -y nghttp2-client), nginx, openssl, curl
# and python3. With the defaults it takes about 6 minutes on 2 cores (plus the build).
# Only 127.0.0.1 is contacted; every process started is stopped by pid on exit.
set -euo pipefail

CONNECTION_SETS="${CONNECTION_SETS:-${CONNECTIONS:-64}}"  # before run.sh sets its own default
# shellcheck source=bench/run.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/run.sh"
BENCH_TAG=tls
KEPT_WHAT="logs, configs and the throwaway certificates"

H2_CLIENTS="${H2_CLIENTS:-16}"
H2_STREAMS="${H2_STREAMS:-10}"
HANDSHAKE_CLIENTS="${HANDSHAKE_CLIENTS:-8}"
HANDSHAKE_CONNECTIONS="${HANDSHAKE_CONNECTIONS:-32}"
IDLE_CONNECTIONS="${IDLE_CONNECTIONS:-1000}"
IDLE_TIMEOUT_SECS="${IDLE_TIMEOUT_SECS:-300}"
TLS_CLIENT_ID="gatehouse-tls"
CERTS=""                    # the temp dir's certificates
NGINX_TLS_PORT="" GATEHOUSE_TLS_PORT="" TLS_REDIRECT_PORT=""
NGINX_TLS_PID="" GATEHOUSE_TLS_PID=""
TLS_SESSION_COOKIE=""       # gatehouse-tls's session, one Cookie header value
H2_SET=""                   # the h2 runs' "connections" key: CLIENTSxSTREAMS
declare -A IDLE             # IDLE[<server>.<field>]: the idle sets' figures
declare -A NEGOTIATED       # NEGOTIATED[<server>]: protocol, cipher, key exchange (h2load's)
declare -A RESUMES          # RESUMES[<server>]: bench/tls_resume.py's answer

# The CPU time of gatehouse-tls's process, for run_wrk (run.sh's names its own targets).
gatehouse_pid_of() { if [[ "$1" == gatehouse-* ]]; then printf '%s' "$GATEHOUSE_TLS_PID"; fi; }

check_tls_settings() {
    local v
    for v in H2_CLIENTS H2_STREAMS HANDSHAKE_CLIENTS HANDSHAKE_CONNECTIONS IDLE_CONNECTIONS IDLE_TIMEOUT_SECS; do
        [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a whole number >= 1"
    done
    ((H2_CLIENTS >= THREADS && HANDSHAKE_CONNECTIONS >= THREADS)) \
        || die "H2_CLIENTS and HANDSHAKE_CONNECTIONS must be at least THREADS=$THREADS"
    ((IDLE_TIMEOUT_SECS <= 3600)) || die "IDLE_TIMEOUT_SECS: at most 3600 (gatehouse's header_read_timeout_secs limit)"
    [[ "$DURATION" =~ ^[1-9][0-9]*s?$ ]] || die "DURATION: whole seconds here, e.g. 5s (openssl s_time counts in seconds)"
    for v in h2load openssl; do
        command -v "$v" >/dev/null 2>&1 \
            || die "missing tool: $v (Debian/Ubuntu: apt-get install -y nghttp2-client openssl)"
    done
    H2_SET="${H2_CLIENTS}x${H2_STREAMS}"
    # nginx keeps as many idle upstream connections per worker as gatehouse does (256
    # per worker thread), and at least one for each request h2 has in flight: no
    # request waits for a new upstream connection on either side.
    KEEPALIVE_MIN=$((H2_CLIENTS * H2_STREAMS > 256 ? H2_CLIENTS * H2_STREAMS : 256))
    # Two idle sets open at once: a descriptor each in the client and in the server.
    raise_nofile $((4 * IDLE_CONNECTIONS + 1024)) $((4 * IDLE_CONNECTIONS + 256)) "IDLE_CONNECTIONS=$IDLE_CONNECTIONS"
}

# A throwaway CA and a server certificate (127.0.0.1, localhost) signed by it, ECDSA
# P-256, valid two days; lcurl trusts the CA (CURL_CA_BUNDLE), wrk and h2load check
# nothing. nginx's master reads the key as root before its workers drop privileges.
make_certs() {
    CERTS="$TMP/certs"
    mkdir -p "$CERTS"
    (
        cd "$CERTS"
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
        openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=gatehouse bench throwaway CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" -out ca.pem
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key
        openssl req -new -key server.key -subj "/CN=127.0.0.1" -out server.csr
        printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
            "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -sha256 \
            -extfile server.ext -out server.pem
    ) >"$TMP/openssl.log" 2>&1 || die "openssl could not make the certificates (see $TMP/openssl.log)"
    export CURL_CA_BUNDLE="$CERTS/ca.pem"
    log "certificate: $(openssl x509 -in "$CERTS/server.pem" -noout -subject -ext subjectAltName | tr '\n' ' ')(ECDSA P-256)"
}

# nginx-tls: run.sh's nginx config for (b) (keepalive upstream `app`, the same proxying),
# its server block also listening with TLS and h2 on NGINX_TLS_PORT (NGINX_PORT, plain,
# answers the readiness check only).
start_nginx_tls() {
    local dir
    dir="$(nginx_dir nginx-tls)"
    nginx_conf "$dir" "$NGINX_PORT" 0 "        listen $HOST:$NGINX_TLS_PORT ssl http2;
        ssl_certificate $CERTS/server.pem;
        ssl_certificate_key $CERTS/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        keepalive_requests 1000000000;
        keepalive_timeout ${IDLE_TIMEOUT_SECS}s;
        client_header_timeout ${IDLE_TIMEOUT_SECS}s;
        location / {
$NGINX_PROXY_TO_APP
        }"
    launch_nginx nginx-tls "$dir" "$NGINX_PORT"
    NGINX_TLS_PID=$LAUNCHED_PID
    wait_for_http "https://$HOST:$NGINX_TLS_PORT/" "$NGINX_TLS_PID" nginx-tls "$dir/error.log"
}

# gatehouse-tls: `gatehouse serve` (run.sh's serve_gatehouse) with the certificate; its
# client at (c)'s dev IdP was registered through EXTRA_CLIENTS before (c) started.
start_gatehouse_tls() {
    serve_gatehouse gatehouse-tls "$GATEHOUSE_TLS_PORT" "$TLS_CLIENT_ID" "$1" "$2" \
        "https://$HOST:$GATEHOUSE_TLS_PORT/healthz" \
        "tls_cert_file = \"$CERTS/server.pem\"
tls_key_file = \"$CERTS/server.key\"
http_redirect_listen = \"$HOST:$TLS_REDIRECT_PORT\"
header_read_timeout_secs = $IDLE_TIMEOUT_SECS"
    GATEHOUSE_TLS_PID=$LAUNCHED_PID
}

# gatehouse-tls's session: the dev IdP login of (c), its callback followed from the
# redirect listener to https; then checked the way run.sh checks (c)'s.
login_gatehouse_tls() {
    local base="https://$HOST:$GATEHOUSE_TLS_PORT"
    check_refused gatehouse-tls "$base/"
    TLS_SESSION_COOKIE="$(oidc_login gatehouse-tls "$base/" "$TMP/tls-cookies.txt" "$COOKIE_NAME" \
        --location --max-redirs 3)"
    check_identity_at_upstream gatehouse-tls "$base" "$TLS_SESSION_COOKIE"
}

# worker_rss_kib PID: the VmRSS of PID's children (nginx's workers), summed.
worker_rss_kib() {
    local p sum=0
    for p in $(ps --ppid "$1" -o pid=); do sum=$((sum + $(rss_kib "$p"))); done
    printf '%s\n' "$sum"
}

server_rss_kib() {
    case "$1" in
        nginx) worker_rss_kib "$NGINX_TLS_PID" ;;
        gatehouse) rss_kib "$GATEHOUSE_TLS_PID" ;;
    esac
}

# server_cpu_ticks SERVER: the CPU time (utime + stime) of gatehouse, or of nginx's
# workers summed, in clock ticks.
server_cpu_ticks() {
    local p sum=0
    case "$1" in
        nginx) for p in $(ps --ppid "$NGINX_TLS_PID" -o pid=); do sum=$((sum + $(proc_cpu_ticks "$p"))); done ;;
        gatehouse) sum="$(proc_cpu_ticks "$GATEHOUSE_TLS_PID")" ;;
    esac
    printf '%s\n' "$sum"
}

# idle_sets SERVER PORT: the two idle sets (none, then h2 with the first still open),
# RSS before and after each; IDLE[SERVER.<alpn>] = KiB per connection.
idle_sets() {
    local server="$1" port="$2" alpn before after pid out pids=() outs=() n
    for alpn in none h2; do
        out="$TMP/idle-$server-$alpn.txt"
        before="$(server_rss_kib "$server")"
        log "$server: opening $IDLE_CONNECTIONS idle TLS connections (ALPN $alpn)"
        python3 "$SCRIPT_DIR/tls_idle.py" "$HOST" "$port" "$IDLE_CONNECTIONS" "$alpn" "$CERTS/ca.pem" \
            >"$out" 2>"$out.err" &
        pid=$!
        PIDS+=("$pid")
        pids+=("$pid") outs+=("$out")
        until grep -q '^OPEN ' "$out"; do
            kill -0 "$pid" 2>/dev/null || { cat "$out.err" >&2; die "$server: the idle client (ALPN $alpn) failed"; }
            sleep 0.2
        done
        sleep 2  # the last handshakes' tickets written, the server's buffers settled
        after="$(server_rss_kib "$server")"
        IDLE["$server.$alpn.before"]=$before IDLE["$server.$alpn.after"]=$after
        IDLE["$server.$alpn"]="$(awk -v a="$after" -v b="$before" -v n="$IDLE_CONNECTIONS" 'BEGIN { printf "%.1f", (a - b) / n }')"
        log "$server: RSS $before -> $after KiB with $IDLE_CONNECTIONS more idle connections (ALPN $alpn): ${IDLE[$server.$alpn]} KiB each"
    done
    for n in "${!pids[@]}"; do
        kill -USR1 "${pids[$n]}"
        wait "${pids[$n]}" || die "$server: the idle client ${outs[$n]} failed"
        forget_pid "${pids[$n]}"
        grep -qx "ALIVE $IDLE_CONNECTIONS" "${outs[$n]}" \
            || die "$server closed idle connections during the measurement: $(tail -n 1 "${outs[$n]}") of $IDLE_CONNECTIONS"
    done
    sleep 1
    IDLE["$server.closed"]="$(server_rss_kib "$server")"
}

# run_h2load TARGET BODY URL [H2LOAD ARGS...]: h2load over h2 with H2_CLIENTS x
# H2_STREAMS, WARMUP then DURATION; RES[TARGET|BODY|H2_SET|ROUND.*] as run_wrk stores
# its figures (rps, requests, errors, status_errors: not 2xx, others, steal), plus
# mean_us, the mean time of a request.
run_h2load() {
    local name="$1" body="$2" url="$3" key="$1|$2|$H2_SET|$ROUND" out="$TMP/h2load-$1-$2-r$ROUND.txt"
    local before after
    require_loopback_url "$url" "benchmark URL"
    log "$name $body $H2_SET: h2load warm-up $WARMUP, measuring $DURATION"
    cpu_snapshot "$TMP/cpu-before"
    before="$(cpu_ticks)"
    run_child h2load --threads "$THREADS" --clients "$H2_CLIENTS" --max-concurrent-streams "$H2_STREAMS" \
        --warm-up-time "$WARMUP" --duration "$DURATION" "${@:4}" "$url" >"$out" 2>&1 \
        || die "$name: h2load failed (see $out)"
    after="$(cpu_ticks)"
    cpu_snapshot "$TMP/cpu-after"
    RES["$key.others"]="$(cpu_others "$TMP/cpu-before" "$TMP/cpu-after")"
    RES["$key.steal"]="$(awk -v b="$before" -v a="$after" 'BEGIN {
        split(b, x, " "); split(a, y, " "); t = y[1] - x[1]; printf "%.1f", (t > 0 ? 100 * (y[2] - x[2]) / t : 0) }')"
    grep -q '^Application protocol: h2$' "$out" || die "$name: h2load did not speak h2 (see $out)"
    NEGOTIATED[${name%%-*}]="$(awk -F': ' '/^TLS Protocol|^Cipher|^Server Temp Key/ { printf "%s%s", sep, $2; sep = ", " }' "$out")"
    local kv
    kv="$(awk '
        function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; return v * 1e6 }
        /^finished in/ { rps = $4 }
        /^requests:/ { ok = $10; bad = $12 + $14 + $16 }
        /^status codes:/ { other = $5 + $7 + $9 }
        /^time for request:/ { mean = us($6) }
        END { printf "rps=%s requests=%d errors=%d status_errors=%d mean_us=%.0f", rps, ok, bad, other, mean }' "$out")"
    for kv in $kv; do RES["$key.${kv%%=*}"]="${kv#*=}"; done
    [[ -n "${RES[$key.rps]}" ]] || die "$name: no req/s in h2load's output (see $out)"
    sed -n '/^finished in/,/^time for request/p' "$out" | sed 's/^/[tls]   /' >&2
}

# run_handshakes SERVER PORT: HANDSHAKE_CLIENTS `openssl s_time -new` for DURATION (no
# warm-up: a full handshake has nothing to warm); RES[SERVER-hs|small|HANDSHAKE_CLIENTS|
# ROUND.*]: rps (handshakes per second of wall time), requests (handshakes), others,
# steal, cpu_us (the server's CPU time per handshake, microseconds).
run_handshakes() {
    local server="$1" port="$2" key="$1-hs|small|$HANDSHAKE_CLIENTS|$ROUND" out="$TMP/s_time-$1-r$ROUND"
    local i p pids=() t0 t1 cpu0 cpu1 before after n
    log "$server-hs: $HANDSHAKE_CLIENTS openssl s_time -new for $DURATION"
    cpu_snapshot "$TMP/cpu-before"
    before="$(cpu_ticks)" cpu0="$(server_cpu_ticks "$server")" t0="$(date +%s%N)"
    for ((i = 1; i <= HANDSHAKE_CLIENTS; i++)); do
        openssl s_time -connect "$HOST:$port" -new -time "${DURATION%s}" >"$out.$i" 2>&1 &
        pids+=("$!")
        PIDS+=("$!")
    done
    for p in "${pids[@]}"; do
        wait "$p" || die "$server-hs: openssl s_time failed (see $out.*)"
        forget_pid "$p"
    done
    t1="$(date +%s%N)" cpu1="$(server_cpu_ticks "$server")" after="$(cpu_ticks)"
    cpu_snapshot "$TMP/cpu-after"
    n="$(cat "$out".* | awk '/connections in [0-9]+ real seconds/ { n += $1 } END { print n + 0 }')"
    ((n > 0)) || die "$server-hs: openssl s_time made no connection (see $out.*)"
    RES["$key.requests"]=$n RES["$key.errors"]=0 RES["$key.status_errors"]=0
    RES["$key.rps"]="$(awk -v n="$n" -v t="$((t1 - t0))" 'BEGIN { printf "%.2f", n / (t / 1e9) }')"
    RES["$key.cpu_us"]="$(awk -v c="$((cpu1 - cpu0))" -v k="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.0f", c * 1e6 / k / n }')"
    RES["$key.others"]="$(cpu_others "$TMP/cpu-before" "$TMP/cpu-after")"
    RES["$key.steal"]="$(awk -v b="$before" -v a="$after" 'BEGIN {
        split(b, x, " "); split(a, y, " "); t = y[1] - x[1]; printf "%.1f", (t > 0 ? 100 * (y[2] - x[2]) / t : 0) }')"
    log "$server-hs: $n full handshakes, ${RES[$key.rps]}/s, the server's CPU ${RES[$key.cpu_us]} us each"
}

# One round: h1 and h2 for every body (nginx, then gatehouse), then the handshakes.
bench_round() {
    local b url_n url_g
    for CONNECTIONS in "${CONN_LIST[@]}"; do
        for b in "${BODY_LIST[@]}"; do
            url_n="https://$HOST:$NGINX_TLS_PORT${BODY_PATH[$b]}" url_g="https://$HOST:$GATEHOUSE_TLS_PORT${BODY_PATH[$b]}"
            if first_time tls "$b"; then
                check_body nginx-tls "$url_n" "$b" -H "Cookie: $SESSION_COOKIE" "${IDENTITY_HEADERS[@]}"
                check_body gatehouse-tls "$url_g" "$b" -H "Cookie: $TLS_SESSION_COOKIE"
                check_body gatehouse-tls "$url_g" "$b" --http2 -H "Cookie: $TLS_SESSION_COOKIE"
            fi
            run_wrk nginx-tls "$b" "$url_n" "$SESSION_COOKIE" "${IDENTITY_HEADERS[@]}"
            run_wrk gatehouse-tls "$b" "$url_g" "$TLS_SESSION_COOKIE"
            check_identity_at_upstream gatehouse-tls "https://$HOST:$GATEHOUSE_TLS_PORT" "$TLS_SESSION_COOKIE"
        done
    done
    for b in "${BODY_LIST[@]}"; do
        run_h2load nginx-h2 "$b" "https://$HOST:$NGINX_TLS_PORT${BODY_PATH[$b]}" \
            --header "cookie: $SESSION_COOKIE" "${IDENTITY_HEADERS[@]}"
        run_h2load gatehouse-h2 "$b" "https://$HOST:$GATEHOUSE_TLS_PORT${BODY_PATH[$b]}" \
            --header "cookie: $TLS_SESSION_COOKIE"
    done
    run_handshakes nginx "$NGINX_TLS_PORT"
    run_handshakes gatehouse "$GATEHOUSE_TLS_PORT"
    CONNECTIONS="$HANDSHAKE_CONNECTIONS"
    run_wrk nginx-conn small "https://$HOST:$NGINX_TLS_PORT${BODY_PATH[small]}" "$SESSION_COOKIE" \
        "${IDENTITY_HEADERS[@]}" --header "Connection: close"
    run_wrk gatehouse-conn small "https://$HOST:$GATEHOUSE_TLS_PORT${BODY_PATH[small]}" "$TLS_SESSION_COOKIE" \
        --header "Connection: close"
    check_identity_at_upstream gatehouse-tls "https://$HOST:$GATEHOUSE_TLS_PORT" "$TLS_SESSION_COOKIE"
}

# shellcheck source=bench/tls_report.sh
source "$SCRIPT_DIR/tls_report.sh"

tls_main() {
    local secret r b
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    require_tools
    parse_settings
    check_tls_settings
    resolve_gatehouse_bin
    STARTED_AT=$SECONDS
    make_tmp
    read -r UPSTREAM_PORT NGINX_PORT NGINX_TLS_PORT GATEHOUSE_PORT GATEHOUSE_AUTH_PORT IDP_PORT \
        WHOAMI_PORT GATEHOUSE_TLS_PORT TLS_REDIRECT_PORT < <(free_ports 9)
    log "ports: upstream=$UPSTREAM_PORT nginx-tls=$NGINX_TLS_PORT (plain $NGINX_PORT)" \
        "gatehouse-tls=$GATEHOUSE_TLS_PORT (redirect $TLS_REDIRECT_PORT) dev-idp=$IDP_PORT (demo $GATEHOUSE_PORT)"
    make_certs
    start_upstream
    start_nginx_tls
    secret="$(random_token)"
    EXTRA_CLIENTS=(--extra-client "$TLS_CLIENT_ID:$secret:http://$HOST:$TLS_REDIRECT_PORT/oauth2/callback")
    start_gatehouse
    login_gatehouse
    start_gatehouse_tls "$secret" "http://$HOST:$TLS_REDIRECT_PORT/oauth2/callback"
    login_gatehouse_tls
    for r in nginx gatehouse; do
        RESUMES[$r]="$(python3 "$SCRIPT_DIR/tls_resume.py" "$HOST" "$([[ $r == nginx ]] && echo "$NGINX_TLS_PORT" || echo "$GATEHOUSE_TLS_PORT")" \
            "$CERTS/ca.pem")" || die "$r: the resumption check failed"
        log "$r, offered the session of a previous connection: ${RESUMES[$r]}"
    done
    idle_sets nginx "$NGINX_TLS_PORT"
    idle_sets gatehouse "$GATEHOUSE_TLS_PORT"
    for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
        log "round $ROUND of $ROUNDS"
        bench_round
    done
    for r in nginx gatehouse; do
        for CONNECTIONS in "${CONN_LIST[@]}"; do
            for b in "${BODY_LIST[@]}"; do pick_median "$r-tls" "$b" "$CONNECTIONS"; done
        done
        for b in "${BODY_LIST[@]}"; do pick_median "$r-h2" "$b" "$H2_SET"; done
        pick_median "$r-hs" small "$HANDSHAKE_CLIENTS"
        pick_median "$r-conn" small "$HANDSHAKE_CONNECTIONS"
    done
    print_tls_report
}

tls_main "$@"
