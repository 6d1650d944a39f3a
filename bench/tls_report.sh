# shellcheck shell=bash
# bench/tls_report.sh: the report of bench/tls.sh (sourced by it, after bench/run.sh, whose
# medians and ratios it uses): one table of req/s, gatehouse beside nginx, and the memory
# of idle TLS connections.

TLS_RULE='------------------------------------------------------------------------------------------------------------------------------'

# tls_row MODE BODY CONNECTIONS FIGURE: one row, nginx-MODE beside gatehouse-MODE; the
# verdict against 0.95 for HTTP/1.1 and h2 (new connections have no target). FIGURE: p99
# (ms, wrk's median round), mean (ms, h2load's, the median over the rounds) or cpu (the
# server's CPU per handshake, us, the median over the rounds).
tls_row() {
    local mode="$1" b="$2" c="$3" lat="$4" n="nginx-$1" g="gatehouse-$1" shown what ratio verdict ln lg r
    case "$mode" in
        tls) what="HTTP/1.1 keep-alive, $c conns" ;;
        h2) what="h2, ${c/x/ conns x } streams" ;;
        hs) what="full handshakes/s, $c s_time" ;;
        conn) what="new conns/s (wrk), $c at once" ;;
    esac
    shown="$b ($(human_bytes "${BODY_BYTES[$b]}"))"
    ratio="$(paired_ratio "$g" "$n" "$b" "$c")"
    verdict="-"
    if [[ "$mode" == tls || "$mode" == h2 ]]; then
        verdict="$(awk -v r="$ratio" 'BEGIN { print (r >= 0.95 ? "meets >= 0.95" : "BELOW 0.95") }')"
    fi
    if [[ "$lat" == p99 ]]; then
        ln="${RES[$n|$b|$c.p99_us]}" lg="${RES[$g|$b|$c.p99_us]}"
    else
        # the median over the rounds of mean_us (ms below) or cpu_us (shown in us)
        ln="$(for ((r = 1; r <= ROUNDS; r++)); do printf '%s\n' "${RES[$n|$b|$c|$r.${lat}_us]}"; done | median %.0f)"
        lg="$(for ((r = 1; r <= ROUNDS; r++)); do printf '%s\n' "${RES[$g|$b|$c|$r.${lat}_us]}"; done | median %.0f)"
        if [[ "$lat" == cpu ]]; then ln=$((ln * 1000)) lg=$((lg * 1000)) lat="cpu us"; fi
    fi
    awk -v what="$what" -v body="$shown" -v rn="${RES[$n|$b|$c.rps]}" -v rg="${RES[$g|$b|$c.rps]}" \
        -v ratio="$ratio" -v rounds="$(round_ratios "$g" "$n" "$b" "$c")" -v lat="$lat" -v ln="$ln" -v lg="$lg" \
        -v on="${RES[$n|$b|$c.others]}" -v og="${RES[$g|$b|$c.others]}" \
        -v err="$((${RES[$n|$b|$c.errors]} + ${RES[$g|$b|$c.errors]}))" -v verdict="$verdict" \
        'BEGIN { printf "%-31s %-13s %9.0f %9.0f %6s  %-16s %6s %6.2f/%-6.2f %4.0f/%-4.0f %5d  %s\n",
                 what, body, rn, rg, ratio, rounds, lat, ln / 1000, lg / 1000, on, og, err, verdict }'
}

print_tls_report() {
    local c b s workers
    workers="$(ps --ppid "$NGINX_TLS_PID" -o pid= | wc -l)"
    printf '\ngatehouse TLS bench: %s rounds of %s per run (+%s warm-up), %s client threads, %s CPUs; %s\n' \
        "$ROUNDS" "$DURATION" "$WARMUP" "$THREADS" "$(nproc)" "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf 'certificate: ECDSA P-256 from a throwaway CA, the same files for both servers; upstream: (a) of bench/run.sh\n'
    printf 'nginx %s: worker_processes auto (%s workers); gatehouse %s: GATEHOUSE_WORKERS %s\n' \
        "$(nginx -v 2>&1 | sed 's|.*/||')" "$workers" "$("$GATEHOUSE_BIN" --version 2>/dev/null | awk '{ print $2 }')" \
        "${GATEHOUSE_WORKERS:-unset (one worker thread per CPU)}"
    for s in nginx gatehouse; do
        printf 'negotiated with %-9s (h2load): %s\n' "$s" "${NEGOTIATED[$s]:-?}"
    done
    printf 'figures: req/s of the median round (by req/s) of each run; gh/ng and "each round": gatehouse/nginx in the same\n'
    printf 'round (gh/ng: their median); others: CPU share of processes outside this benchmark (nginx/gatehouse run, %%)\n'
    printf '%s\n' "$TLS_RULE"
    printf '%-31s %-13s %9s %9s %6s  %-16s %6s %13s %9s %5s  %s\n' mode body 'nginx' 'gatehouse' 'gh/ng' 'each round' '' \
        'latency ms' 'others %' errors verdict
    printf '%s\n' "$TLS_RULE"
    for c in "${CONN_LIST[@]}"; do
        for b in "${BODY_LIST[@]}"; do tls_row tls "$b" "$c" p99; done
    done
    for b in "${BODY_LIST[@]}"; do tls_row h2 "$b" "$H2_SET" mean; done
    tls_row hs small "$HANDSHAKE_CLIENTS" cpu
    tls_row conn small "$HANDSHAKE_CONNECTIONS" p99
    printf '%s\n' "$TLS_RULE"
    printf 'latency: p99 for wrk (HTTP/1.1, new conns), the mean for h2load (h2); for full handshakes the server'"'"'s CPU time\n'
    printf 'per handshake (us; nginx: its workers summed). full handshakes: openssl s_time -new, no request, no session offered.\n'
    printf 'new conns (wrk): Connection: close, one request each, wrk offering the previous session; offered one, nginx: %s,\n' \
        "${RESUMES[nginx]:-?}"
    printf 'gatehouse: %s\n' "${RESUMES[gatehouse]:-?}"
    printf '\nidle TLS connections: %s per set, handshake done, no request; RSS they added, KiB per connection\n' "$IDLE_CONNECTIONS"
    printf '%-10s %20s %26s   %s\n' '' 'HTTP/1.1 (no ALPN)' 'h2 (preface + SETTINGS)' 'RSS MiB: before, with both sets open, after they closed'
    for s in nginx gatehouse; do
        printf '%-10s %20s %26s   %s, %s, %s%s\n' "$s" "${IDLE[$s.none]}" "${IDLE[$s.h2]}" \
            "$(kib_to_mib "${IDLE[$s.none.before]}")" "$(kib_to_mib "${IDLE[$s.h2.after]}")" \
            "$(kib_to_mib "${IDLE[$s.closed]}")" "$([[ "$s" == nginx ]] && printf ' (its workers, summed)')"
    done
    printf 'run time: %dm%02ds\n' $(((SECONDS - STARTED_AT) / 60)) $(((SECONDS - STARTED_AT) % 60))
}
