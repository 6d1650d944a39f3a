#!/usr/bin/env bash
# bench/run.sh: requests/second and latency of gatehouse next to nginx and Apache
# httpd + mod_auth_openidc, for three response bodies and two connection counts.
#
# The upstream of the proxy targets is an nginx serving three fixed bodies from memory
# or a file (the cheapest upstream there is, the same for every target):
#   small  /api/status                        ~100 B of JSON (`return 200`)
#   k8s    /api/v1/namespaces/default/pods    ~2 KB of JSON, a Kubernetes PodList (`return 200`)
#   log    /logs/app.log                      256 KiB text file (sendfile), a log download
#
#   (a) upstream   that nginx, hit directly
#   (b) nginx      nginx proxy_pass (with upstream keepalive) in front of (a)
#   (c) gatehouse  `gatehouse demo --upstream <(a)>` in front of (a), with a valid
#                  session cookie obtained through the dev IdP login
#   (g) gatehouse-redis  `gatehouse serve` with `session_store = redis`, in front of (a),
#                  against a redis-server the script starts (Debian's, on a free loopback
#                  port, `--save '' --appendonly no`), signed in at the dev IdP of (c)
#                  (an extra client there, as Apache is), one session: what the redis
#                  store costs when, as for a browser, its per-thread cache answers
#   (h) gatehouse-redis-miss  the same gatehouse and Redis, but wrk cycles through
#                  MISS_SESSIONS sessions (each wrk thread from its own place in the
#                  list), more than a worker thread caches (1024): nearly every request
#                  fetches its session from Redis and opens it (the count of Redis GETs
#                  per request is printed, so the miss rate is measured, not assumed)
#   (m) gatehouse-metrics  (c) with Prometheus metrics on: a second `gatehouse demo`
#                  (its own dev IdP, the same settings) with --metrics-listen, scraped
#                  every second for as long as the script runs (curl, like a Prometheus
#                  with scrape_interval 1s), so its req/s beside (c)'s in the same round
#                  is what metrics cost (measured only when named, or with `metrics`)
#   (f) apache     Apache httpd (event MPM, as Debian ships it) + mod_auth_openidc +
#                  mod_proxy_http in front of (a), with a real mod_auth_openidc session
#                  cookie obtained through a curl login (see "Apache + mod_auth_openidc"
#                  in bench/README.md for which IdP it signs in at, and why)
#
# and the forward-auth case, where gatehouse only gives the verdict (these keep the
# `gatehouse whoami` upstream they were designed against, one body):
#
#   (d) nginx-fa       nginx with `auth_request` to gatehouse's /oauth2/auth on its
#                      forward-auth listener (demo --auth-listen; keepalive),
#                      copying the identity headers of the auth answer to the request
#                      it proxies to `gatehouse whoami`
#   (e) nginx-ceiling  the same nginx config, but the auth server behind its auth
#                      location is nginx itself (a second server block that answers
#                      `return 200` with the same identity headers)
#       gatehouse /oauth2/auth  the auth endpoint alone, hit directly
#
# All of them run on loopback in one go; wrk drives the load, with the same settings
# for every target. Rounds interleave every run (connection set x body x target), and
# the median round of each is reported. Every process the script starts is stopped
# again, by pid, on exit. No traffic leaves 127.0.0.1. With (g) or (h), a table sets the
# redis store beside the cookie store (c): req/s and p99 of each round paired, and the
# CPU that gatehouse and redis-server spent per 1000 requests (utime + stime from
# /proc/<pid>/stat around each measured run).
#
# Settings (environment):
#   DURATION         measured run, wrk syntax                         (default 5s)
#   WARMUP           unmeasured warm-up run just before it            (default 1s)
#   CONNECTION_SETS  wrk connection counts, each a table   (default "32 256";
#                    CONNECTIONS=N alone is the same as CONNECTION_SETS=N)
#   BODIES           bodies for (a),(b),(c),(f),(g),(h), comma- or space-separated
#                    (default "small,k8s,log")
#   THREADS          wrk threads                                      (default 2)
#   ROUNDS           rounds, interleaved; the median round (by req/s) of each
#                    run is reported                                  (default 3)
#   TARGETS          what to measure, comma-separated                 (default all)
#                      all    = proxy + fa
#                      proxy  = (a),(b),(c),(g),(f)
#                      fa     = forward auth: (d),(e) and /oauth2/auth alone
#                      redis  = (c),(g),(h): the two session stores side by side
#                      metrics = (c),(m): metrics off and on side by side
#                    or single targets: upstream nginx gatehouse gatehouse-metrics
#                    gatehouse-redis gatehouse-redis-miss apache nginx-fa nginx-ceiling
#                    gatehouse-auth
#                    ((h) logs in MISS_SESSIONS sessions first: only when named, or
#                    with `redis`)
#   MISS_SESSIONS    sessions (h) cycles through; above 1024, what one worker thread
#                    caches                                           (default 3000)
#   REDIS_BIN        redis-server for (g),(h)  (default /usr/bin/redis-server, else PATH)
#   QUIET_OTHERS     (g) against (c) is also summed up over the rounds in which both
#                    runs had "others" at or below this many percent      (default 5)
#   GATEHOUSE_BIN    gatehouse binary; unset = `cargo build --release` and use
#                    target/release/gatehouse
#   TOKEN_TTL        ID token lifetime at the dev IdP, seconds; longer than the run,
#                    so no refresh happens under load                 (default 7200)
#   APACHE_BIN       the httpd binary (default: apache2, else httpd, from PATH)
#   APACHE_MODULES   directory of the httpd modules      (default /usr/lib/apache2/modules)
#   APACHE_SESSION_TYPE  mod_auth_openidc OIDCSessionType: server-cache (its default:
#                    the cookie holds an id, the session is in shared memory) or
#                    client-cookie (the session is sealed into the cookie, like
#                    gatehouse's)                                (default server-cache)
#   APACHE_MPM       shipped: the event MPM's settings as Debian ships them (2 child
#                    processes at start, 150 worker threads at most, idle children
#                    stopped past 75 spare threads; stopping one closes its kept-alive
#                    connections, which wrk counts as read errors at 256 connections);
#                    sized: all 16 children from the start, 400 threads, none stopped
#                                                                    (default shipped)
#   KEEP_TMP         1 = keep the temp dir (configs, logs, raw wrk output)
#
# With the defaults, a run takes about 10 minutes on a 2-core machine (plus the build).
# See bench/README.md for how to read the figures.
#
# `bench/run.sh tls` runs bench/tls.sh instead: gatehouse terminating TLS (HTTP/1.1 and
# h2) next to nginx terminating TLS, with the same certificate and the same upstream (a);
# its settings are in its own header. It sources this file for these functions.
set -euo pipefail
umask 077   # the temp dir holds session cookie jars

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
BENCH_TAG=bench
KEPT_WHAT="logs and configs"
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

DURATION="${DURATION:-5s}"
WARMUP="${WARMUP:-1s}"
CONNECTION_SETS="${CONNECTION_SETS:-${CONNECTIONS:-32 256}}"
CONNECTIONS=""    # the set being measured
BODIES="${BODIES:-small,k8s,log}"
THREADS="${THREADS:-2}"
KEEP_TMP="${KEEP_TMP:-0}"
ROUNDS="${ROUNDS:-3}"
ROUND=1
GATEHOUSE_BIN="${GATEHOUSE_BIN:-}"
TARGETS="${TARGETS:-all}"
TOKEN_TTL="${TOKEN_TTL:-7200}"
APACHE_BIN="${APACHE_BIN:-}"
APACHE_MODULES="${APACHE_MODULES:-/usr/lib/apache2/modules}"
APACHE_SESSION_TYPE="${APACHE_SESSION_TYPE:-server-cache}"
APACHE_MPM="${APACHE_MPM:-shipped}"
MISS_SESSIONS="${MISS_SESSIONS:-3000}"
QUIET_OTHERS="${QUIET_OTHERS:-5}"
REDIS_BIN="${REDIS_BIN:-}"

BENCH_USER="bench"
BENCH_GROUPS="admins"
COOKIE_NAME="_gatehouse"
APACHE_COOKIE_NAME="mod_auth_openidc_session"
APACHE_CLIENT_ID="apache-bench"
APACHE_CLIENT_SECRET=""  # set when the dev IdP is started with Apache's client
EXTRA_CLIENTS=()         # more --extra-client arguments for (c)'s dev IdP (bench/tls.sh's)
REDIS_CLIENT_ID="gatehouse-redis"  # (g)'s client at (c)'s dev IdP
REDIS_CLIENT_SECRET=""   # set when the dev IdP is started with it
HOST="127.0.0.1"
STARTED_AT=$SECONDS

TMP=""
PIDS=()           # every process we started, stopped by pid in cleanup()
declare -A RES    # results: RES[<target>|<body>|<connections>|<round>.<field>], medians without the round

# every target, in the order of a round; SELECTED: those TARGETS asked for
ALL_TARGETS=(upstream nginx gatehouse gatehouse-metrics gatehouse-redis gatehouse-redis-miss apache nginx-fa nginx-ceiling gatehouse-auth)
PROXY_TARGETS=(upstream nginx gatehouse gatehouse-metrics gatehouse-redis gatehouse-redis-miss apache)
FA_TARGETS=(nginx-fa nginx-ceiling gatehouse-auth)
# the groups TARGETS may name (all = PROXY_GROUP + FA_TARGETS)
PROXY_GROUP=(upstream nginx gatehouse gatehouse-redis apache)
REDIS_GROUP=(gatehouse gatehouse-redis gatehouse-redis-miss)
METRICS_GROUP=(gatehouse gatehouse-metrics)
SELECTED=()
declare -A WANTED
CONN_LIST=()      # CONNECTION_SETS, parsed
BODY_LIST=()      # BODIES, parsed
FA_BODY="whoami"  # the forward-auth targets' one "body": whoami's page

# the bodies: URL path, size (filled in by make_bodies) and a description
declare -A BODY_PATH=([small]=/api/status [k8s]=/api/v1/namespaces/default/pods [log]=/logs/app.log)
declare -A BODY_BYTES
declare -A BODY_WHAT=([small]="JSON status object, nginx return 200"
                      [k8s]="JSON Kubernetes PodList (2 pods), nginx return 200"
                      [log]="text log file, nginx sendfile")
KNOWN_BODIES=(small k8s log)

UPSTREAM_PORT="" NGINX_PORT="" GATEHOUSE_PORT="" APACHE_PORT="" IDP_PORT=""
WHOAMI_PORT="" NGINX_FA_PORT="" NGINX_CEILING_PORT="" AUTH_STUB_PORT="" GATEHOUSE_AUTH_PORT=""
REDIS_PORT="" GATEHOUSE_REDIS_PORT=""
METRICS_GH_PORT="" METRICS_IDP_PORT="" METRICS_PORT=""
METRICS_GH_PID="" METRICS_SESSION_COOKIE=""  # (m): its demo, and its session
GATEHOUSE_PID="" APACHE_PID="" REDIS_PID="" GATEHOUSE_REDIS_PID=""
SESSION_COOKIE=""     # gatehouse's session, one Cookie header value
REDIS_SESSION_COOKIE=""  # (g)'s session (a ticket), one Cookie header value
MISS_COOKIES=""       # (h): a file of MISS_SESSIONS Cookie header values, one a line
APACHE_COOKIE=""      # mod_auth_openidc's session, one Cookie header value
IDENTITY_HEADERS=()   # what gatehouse injects, replayed to (a) and (b): same request size
declare -A IDENTITY   # the same, name (lower case) -> value
IDENTITY_NAMES=(x-forwarded-user x-forwarded-email x-forwarded-group x-forwarded-groups
                x-forwarded-preferred-username x-forwarded-id-token)
RSS_IDLE_KIB="" RSS_FINAL_KIB="" HWM_FINAL_KIB=""
REDIS_RSS_IDLE_KIB="" REDIS_RSS_FINAL_KIB="" REDIS_HWM_FINAL_KIB=""
CLK_TCK=""            # clock ticks per second, for /proc/<pid>/stat

# ---------------------------------------------------------------- helpers --

hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# A random token of URL-safe characters (secrets for the Apache set-up).
random_token() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }

# ---------------------------------------------------------------- set-up --

wanted() { [[ -n "${WANTED[$1]:-}" ]]; }
wanted_any() { local t; for t in "$@"; do wanted "$t" && return 0; done; return 1; }

# TARGETS -> WANTED/SELECTED (always in the order of ALL_TARGETS).
select_targets() {
    local entries=() e t
    IFS=', ' read -r -a entries <<<"$TARGETS"
    for e in "${entries[@]}"; do
        case "$e" in
            '') ;;
            all) for t in "${PROXY_GROUP[@]}" "${FA_TARGETS[@]}"; do WANTED[$t]=1; done ;;
            proxy) for t in "${PROXY_GROUP[@]}"; do WANTED[$t]=1; done ;;
            fa) for t in "${FA_TARGETS[@]}"; do WANTED[$t]=1; done ;;
            redis) for t in "${REDIS_GROUP[@]}"; do WANTED[$t]=1; done ;;
            metrics) for t in "${METRICS_GROUP[@]}"; do WANTED[$t]=1; done ;;
            upstream | nginx | gatehouse | gatehouse-metrics | gatehouse-redis | gatehouse-redis-miss | apache | nginx-fa | nginx-ceiling | gatehouse-auth)
                WANTED[$e]=1 ;;
            *) die "TARGETS: unknown entry '$e' (use all, proxy, fa, redis, metrics, or: ${ALL_TARGETS[*]})" ;;
        esac
    done
    for t in "${ALL_TARGETS[@]}"; do
        if wanted "$t"; then SELECTED+=("$t"); fi
    done
    ((${#SELECTED[@]})) || die "TARGETS selects nothing: '$TARGETS'"
    log "targets: ${SELECTED[*]}"
}

parse_settings() {
    local e
    IFS=', ' read -r -a CONN_LIST <<<"$CONNECTION_SETS"
    ((${#CONN_LIST[@]})) || die "CONNECTION_SETS is empty"
    for e in "${CONN_LIST[@]}"; do
        [[ "$e" =~ ^[1-9][0-9]*$ ]] || die "CONNECTION_SETS: '$e' is not a whole number"
        ((e >= THREADS)) || die "CONNECTION_SETS: $e is below THREADS=$THREADS (wrk needs at least one connection per thread)"
    done
    IFS=', ' read -r -a BODY_LIST <<<"$BODIES"
    ((${#BODY_LIST[@]})) || die "BODIES is empty"
    for e in "${BODY_LIST[@]}"; do
        [[ -n "${BODY_PATH[$e]:-}" ]] || die "BODIES: unknown body '$e' (use: ${KNOWN_BODIES[*]})"
    done
    log "connection sets: ${CONN_LIST[*]}; bodies: ${BODY_LIST[*]}"
}

require_tools() {
    local missing=() t
    [[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a whole number >= 1"
    [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a whole number >= 1"
    [[ "$TOKEN_TTL" =~ ^[1-9][0-9]*$ ]] || die "TOKEN_TTL must be a whole number of seconds"
    [[ "$QUIET_OTHERS" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "QUIET_OTHERS must be a percentage, e.g. 5"
    for t in wrk nginx curl python3 awk; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    if ((${#missing[@]})); then
        die "missing tools: ${missing[*]}. On Debian/Ubuntu: apt-get install -y wrk nginx-light curl python3"
    fi
    if wanted apache; then
        if [[ -z "$APACHE_BIN" ]]; then
            APACHE_BIN="$(command -v apache2 || command -v httpd || true)"
        fi
        if [[ -z "$APACHE_BIN" || ! -x "$APACHE_BIN" || ! -f "$APACHE_MODULES/mod_auth_openidc.so" ]]; then
            die "target apache needs Apache httpd and mod_auth_openidc (Debian/Ubuntu: apt-get install -y apache2 libapache2-mod-auth-openidc; else set APACHE_BIN and APACHE_MODULES), or leave it out: TARGETS=upstream,nginx,gatehouse,fa"
        fi
        [[ "$APACHE_SESSION_TYPE" == server-cache || "$APACHE_SESSION_TYPE" == client-cookie ]] \
            || die "APACHE_SESSION_TYPE must be server-cache or client-cookie"
        [[ "$APACHE_MPM" == shipped || "$APACHE_MPM" == sized ]] || die "APACHE_MPM must be shipped or sized"
    fi
    if wanted_any gatehouse-redis gatehouse-redis-miss; then
        if [[ -z "$REDIS_BIN" ]]; then
            REDIS_BIN=/usr/bin/redis-server
            [[ -x "$REDIS_BIN" ]] || REDIS_BIN="$(command -v redis-server || true)"
        fi
        if [[ -z "$REDIS_BIN" || ! -x "$REDIS_BIN" ]] || ! command -v redis-cli >/dev/null 2>&1; then
            die "targets gatehouse-redis and gatehouse-redis-miss need redis-server and redis-cli (Debian/Ubuntu: apt-get install -y redis-server; else set REDIS_BIN), or leave them out: TARGETS=upstream,nginx,gatehouse,apache,fa"
        fi
    fi
    if wanted gatehouse-redis-miss; then
        [[ "$MISS_SESSIONS" =~ ^[1-9][0-9]*$ ]] || die "MISS_SESSIONS must be a whole number >= 1"
        ((MISS_SESSIONS > 1024)) \
            || log "note: MISS_SESSIONS=$MISS_SESSIONS fits in a worker thread's cache (1024 sessions): (h) will mostly hit it"
    fi
    CLK_TCK="$(getconf CLK_TCK)"
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
    # (h): the same report, and requests that cycle through a file of Cookie header
    # values (args: the file, wrk's thread count). Every request is built once, in
    # init; each wrk thread starts at its own place in the list, so the threads do not
    # send the same session at about the same time.
    {
        cat <<'LUA'
-- Cycles through the sessions of a file, one Cookie header value a line.
local requests, count, at = {}, 0, 0
local threads_set_up = 0

setup = function(thread)
  thread:set("thread_index", threads_set_up)
  threads_set_up = threads_set_up + 1
end

init = function(args)
  local threads = tonumber(args[2]) or 1
  for line in io.lines(args[1]) do
    if line ~= "" then
      local headers = {}
      for name, value in pairs(wrk.headers) do headers[name] = value end
      headers["Cookie"] = line
      count = count + 1
      requests[count] = wrk.format(nil, nil, headers)
    end
  end
  assert(count > 0, "no sessions in " .. args[1])
  at = math.floor((thread_index or 0) * count / threads)
end

request = function()
  at = at % count + 1
  return requests[at]
end

LUA
        cat "$TMP/report.lua"
    } >"$TMP/rotate.lua"
}

allocate_ports() {
    read -r UPSTREAM_PORT NGINX_PORT GATEHOUSE_PORT APACHE_PORT IDP_PORT WHOAMI_PORT \
        NGINX_FA_PORT NGINX_CEILING_PORT AUTH_STUB_PORT GATEHOUSE_AUTH_PORT \
        REDIS_PORT GATEHOUSE_REDIS_PORT METRICS_GH_PORT METRICS_IDP_PORT METRICS_PORT < <(free_ports 15)
    log "ports: upstream=$UPSTREAM_PORT nginx=$NGINX_PORT gatehouse=$GATEHOUSE_PORT apache=$APACHE_PORT" \
        "dev-idp=$IDP_PORT whoami=$WHOAMI_PORT nginx-fa=$NGINX_FA_PORT" \
        "nginx-ceiling=$NGINX_CEILING_PORT auth-stub=$AUTH_STUB_PORT gatehouse-auth=$GATEHOUSE_AUTH_PORT" \
        "redis=$REDIS_PORT gatehouse-redis=$GATEHOUSE_REDIS_PORT" \
        "gatehouse-metrics=$METRICS_GH_PORT (idp $METRICS_IDP_PORT, /metrics $METRICS_PORT)"
}

# nginx_dir NAME: a fresh directory under $TMP that nginx's (and httpd's) workers can read.
nginx_dir() {
    local dir="$TMP/$1"
    mkdir -p "$dir"
    # When run as root, nginx workers drop to an unprivileged user; let them
    # reach the temp directories below (traverse only for $TMP itself).
    chmod 711 "$TMP"
    chmod 755 "$dir"
    printf '%s\n' "$dir"
}

# The three bodies, generated (deterministic) into $TMP/upstream/www: small.json,
# k8s.json, app.log. Sizes go to BODY_BYTES.
make_bodies() {
    local www="$1" b
    mkdir -p "$www"
    python3 - "$www" <<'PY'
import json, os, sys
www = sys.argv[1]
small = {"status": "ok", "service": "orders", "version": "1.4.2", "region": "eu-west-1",
         "uptime_seconds": 86400}

def pod(name, ip, node, rv):
    return {
        "metadata": {"name": name, "namespace": "default",
                     "uid": "7c1e0d7a-3f5b-4c8e-9a51-2f0b6c9d4e1a", "resourceVersion": rv,
                     "creationTimestamp": "2024-05-01T12:00:00Z",
                     "labels": {"app": "orders", "pod-template-hash": "5d9c7b8f6"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": "orders-5d9c7b8f6",
                                          "uid": "0b6a2e4f-8c1d-4f3a-b7e9-5a2c1d0e9f8b",
                                          "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"containers": [{"name": "orders", "image": "registry.example.test/orders:1.4.2",
                                 "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                 "resources": {"limits": {"cpu": "500m", "memory": "256Mi"},
                                               "requests": {"cpu": "100m", "memory": "128Mi"}},
                                 "imagePullPolicy": "IfNotPresent"}],
                 "restartPolicy": "Always", "serviceAccountName": "default", "nodeName": node},
        "status": {"phase": "Running", "podIP": ip, "hostIP": "10.0.0.12",
                   "startTime": "2024-05-01T12:00:01Z",
                   "containerStatuses": [{"name": "orders", "ready": True, "restartCount": 0,
                                          "image": "registry.example.test/orders:1.4.2",
                                          "started": True}]}}

k8s = {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "4815162342"},
       "items": [pod("orders-5d9c7b8f6-x2lqz", "10.244.1.17", "worker-1", "4815162301"),
                 pod("orders-5d9c7b8f6-k8mfp", "10.244.2.23", "worker-2", "4815162317")]}
for name, obj in (("small.json", small), ("k8s.json", k8s)):
    with open(os.path.join(www, name), "w") as f:
        f.write(json.dumps(obj, separators=(",", ":")))

# 256 KiB of access-log lines, cut to the exact size.
paths = ["/api/v1/orders", "/api/v1/orders/4711", "/healthz", "/api/v1/customers/17/orders",
         "/static/app.3f9a1c.js", "/api/v1/search?q=widgets&page=2"]
lines, n, i = [], 0, 0
while n < 262144:
    line = (f"2024-05-01T12:{i // 60 % 60:02d}:{i % 60:02d}.{i * 37 % 1000:03d}Z INFO  "
            f"[req-{i * 2654435761 % 16**8:08x}] 10.244.{i % 7}.{i % 251} "
            f"GET {paths[i % len(paths)]} -> {(200, 200, 200, 304, 404)[i % 5]} "
            f"in {i * 7 % 97 + 1}ms ua=\"kubectl/v1.29.3\"\n")
    lines.append(line)
    n += len(line)
    i += 1
with open(os.path.join(www, "app.log"), "w") as f:
    f.write("".join(lines)[:262144])
PY
    BODY_BYTES[small]="$(wc -c <"$www/small.json")"
    BODY_BYTES[k8s]="$(wc -c <"$www/k8s.json")"
    BODY_BYTES[log]="$(wc -c <"$www/app.log")"
    for b in small k8s; do
        # they go into a single-quoted nginx string: nothing that needs escaping there
        ! grep -q "['\\\\\$]" "$www/$b.json" || die "the $b body has characters nginx would need escaped"
    done
    chmod 755 "$www"
    chmod 644 "$www"/*
}

# (a) the upstream: an nginx that answers the three bodies (small, k8s from memory with
# `return 200`, log from a file with sendfile), keepalive towards every proxy, and
# /_identity, which echoes the identity headers it received as JSON (used by the checks,
# never measured).
start_upstream() {
    local dir echo="" n var
    dir="$(nginx_dir upstream)"
    make_bodies "$dir/www"
    for n in "${IDENTITY_NAMES[@]}"; do
        var="http_${n//-/_}"
        echo+="${echo:+,}\"$n\":\"\$$var\""
    done
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
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    open_file_cache max=16 inactive=1h;
    open_file_cache_valid 1h;

    server {
        listen $HOST:$UPSTREAM_PORT;
        default_type application/json;

        location = ${BODY_PATH[small]} {
            return 200 '$(cat "$dir/www/small.json")';
        }
        location = ${BODY_PATH[k8s]} {
            return 200 '$(cat "$dir/www/k8s.json")';
        }
        location = ${BODY_PATH[log]} {
            default_type text/plain;
            alias $dir/www/app.log;
        }
        location = /_identity {
            return 200 '{$echo}';
        }
        location / {
            return 200 '$(cat "$dir/www/small.json")';
        }
    }
}
EOF
    launch_nginx upstream "$dir" "$UPSTREAM_PORT"
}

# (forward auth only) the upstream of (d) and (e): gatehouse whoami
start_whoami() {
    log "starting whoami upstream on $HOST:$WHOAMI_PORT (forward-auth targets)"
    "$GATEHOUSE_BIN" whoami --listen "$HOST:$WHOAMI_PORT" \
        >"$TMP/whoami.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_for_http "http://$HOST:$WHOAMI_PORT/" "$pid" whoami "$TMP/whoami.log"
}

# keepalive pool size for every nginx proxy: the largest connection set, at least 16
# (at least KEEPALIVE_MIN: bench/tls.sh's h2 runs have more requests in flight than
# connections)
max_keepalive() {
    local k="${KEEPALIVE_MIN:-16}" c
    for c in "${CONN_LIST[@]}"; do ((c > k)) && k=$c; done
    printf '%s\n' "$k"
}

# nginx_conf DIR PORT WITH_GATEHOUSE SERVER_BODY [EXTRA]: writes DIR/nginx.conf. (b),
# (d) and (e) share all of it (workers, events, temp paths, the keepalive upstreams)
# and differ only in the locations of their server block; WITH_GATEHOUSE=1 adds a
# keepalive upstream `gatehouse` for (d)'s auth subrequests. `app` is (a), `whoami`
# the forward-auth targets' upstream.
nginx_conf() {
    local dir="$1" port="$2" with_gatehouse="$3" body="$4" extra="${5:-}" keepalive
    keepalive="$(max_keepalive)"
    local gatehouse_upstream=""
    if [[ "$with_gatehouse" == 1 ]]; then
        gatehouse_upstream="
    upstream gatehouse {
        server $HOST:$GATEHOUSE_AUTH_PORT;
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

    upstream app {
        server $HOST:$UPSTREAM_PORT;
        keepalive $keepalive;
    }

    upstream whoami {
        server $HOST:${WHOAMI_PORT};
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
# The proxying part of (b): (a) over HTTP/1.1 keepalive. proxy_max_temp_file_size 0:
# a large body streams through nginx's memory buffers, like gatehouse and httpd stream
# it, instead of being spooled to a temp file.
NGINX_PROXY_TO_APP='            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_max_temp_file_size 0;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;'

# shellcheck disable=SC2016
# The proxying part of (d) and (e): whoami over HTTP/1.1 keepalive.
NGINX_PROXY_TO_WHOAMI='            proxy_pass http://whoami;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;'

# shellcheck disable=SC2016
# (d) and (e) hand the identity to whoami in these headers, from the $fa_* variables
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

# (b) nginx proxy_pass to the upstream, everything under $TMP/nginx
start_nginx() {
    local dir
    dir="$(nginx_dir nginx)"
    nginx_conf "$dir" "$NGINX_PORT" 0 "        location / {
$NGINX_PROXY_TO_APP
        }"
    launch_nginx nginx "$dir" "$NGINX_PORT"
}

# fa_locations UPSTREAM: the two locations (d) and (e) share, byte for byte: auth_request
# to UPSTREAM's /oauth2/auth, the identity copied from its answer, proxy_pass to whoami.
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
            proxy_set_header X-Forwarded-Uri \$request_uri;
            proxy_set_header X-Forwarded-Method \$request_method;
        }
CONF
}

# (d) nginx auth_request to gatehouse's /oauth2/auth (keepalive), then proxy_pass to
# whoami with the identity headers of gatehouse's answer. Everything under $TMP/nginx-fa.
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
# values (login_gatehouse) as response headers. whoami then does the same work, and
# nginx makes the same subrequest over loopback: the ceiling of any auth_request
# set-up, with the fastest possible auth server. Everything under $TMP/nginx-ceiling.
start_nginx_ceiling() {
    local dir n bad='["\\$[:cntrl:]]' keepalive
    keepalive="$(max_keepalive)"
    for n in "${IDENTITY_NAMES[@]}"; do
        if [[ "${IDENTITY[$n]:-}" =~ $bad ]]; then
            die "the $n value has characters a fixed nginx string would need escaped: '${IDENTITY[$n]}'"
        fi
    done
    dir="$(nginx_dir nginx-ceiling)"
    local stub_headers="" h
    for h in "${IDENTITY_NAMES[@]}"; do
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

# (c) gatehouse demo (dev IdP + gatehouse) in front of the upstream (a). With (f), the
# dev IdP also knows Apache's client, with (g)/(h) the redis gatehouse's, so every
# peer signs in at the same provider.
start_gatehouse() {
    local i extra=("${EXTRA_CLIENTS[@]}")
    if wanted apache; then
        APACHE_CLIENT_SECRET="$(random_token)"
        extra+=(--extra-client "$APACHE_CLIENT_ID:$APACHE_CLIENT_SECRET:$(apache_redirect)")
    fi
    if wanted_any gatehouse-redis gatehouse-redis-miss; then
        REDIS_CLIENT_SECRET="$(random_token)"
        extra+=(--extra-client "$REDIS_CLIENT_ID:$REDIS_CLIENT_SECRET:$(redis_gatehouse_redirect)")
    fi
    log "starting gatehouse demo on $HOST:$GATEHOUSE_PORT, its dev IdP on $HOST:$IDP_PORT (token TTL ${TOKEN_TTL}s)"
    "$GATEHOUSE_BIN" demo \
        --listen "$HOST:$GATEHOUSE_PORT" \
        --auth-listen "$HOST:$GATEHOUSE_AUTH_PORT" \
        --idp-listen "$HOST:$IDP_PORT" \
        --upstream "http://$HOST:$UPSTREAM_PORT" \
        --token-ttl "$TOKEN_TTL" \
        "${extra[@]}" \
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

# (m) the same demo as (c), its own dev IdP, with --metrics-listen; a scraper asks its
# /metrics every second until the script ends (and checks it answers the exposition).
start_gatehouse_metrics() {
    local i ready_re='^[[:space:]]*gatehouse:[[:space:]]+http://'
    log "starting gatehouse demo with metrics on $HOST:$METRICS_GH_PORT (/metrics on $HOST:$METRICS_PORT)"
    "$GATEHOUSE_BIN" demo \
        --listen "$HOST:$METRICS_GH_PORT" \
        --idp-listen "$HOST:$METRICS_IDP_PORT" \
        --metrics-listen "$HOST:$METRICS_PORT" \
        --upstream "http://$HOST:$UPSTREAM_PORT" \
        --token-ttl "$TOKEN_TTL" \
        >"$TMP/demo-metrics.out" 2>"$TMP/demo-metrics.err" &
    METRICS_GH_PID=$!
    PIDS+=("$METRICS_GH_PID")
    for ((i = 0; i < 150; i++)); do
        grep -Eq "$ready_re" "$TMP/demo-metrics.out" 2>/dev/null && break
        if ! kill -0 "$METRICS_GH_PID" 2>/dev/null; then
            cat "$TMP/demo-metrics.out" "$TMP/demo-metrics.err" >&2 || true
            die "gatehouse demo (metrics) exited during start-up"
        fi
        sleep 0.2
    done
    wait_for_http "http://$HOST:$METRICS_GH_PORT/healthz" "$METRICS_GH_PID" gatehouse-metrics "$TMP/demo-metrics.err"
    local ct
    ct="$(lcurl -o /dev/null -w '%{content_type}' "http://$HOST:$METRICS_PORT/metrics")"
    [[ "$ct" == "text/plain; version=0.0.4"* ]] || die "gatehouse-metrics: /metrics answered content-type '$ct'"
    (
        while kill -0 "$METRICS_GH_PID" 2>/dev/null; do
            # Quiet: at the end gatehouse stops before this loop sees it.
            lcurl -o /dev/null "http://$HOST:$METRICS_PORT/metrics" 2>/dev/null || true
            sleep 1
        done
    ) &
    PIDS+=("$!")
}

login_gatehouse_metrics() {
    METRICS_SESSION_COOKIE="$(oidc_login gatehouse-metrics "http://$HOST:$METRICS_GH_PORT/" "$TMP/metrics-cookies.txt" "$COOKIE_NAME")"
    check_identity_at_upstream gatehouse-metrics "http://$HOST:$METRICS_GH_PORT" "$METRICS_SESSION_COOKIE"
}

is_redirect() { [[ "$1" =~ ^30[12378]$ ]]; }

# oidc_login NAME START_URL JAR COOKIE_NAME [CURL ARGS]: logs in as a script would with
# curl, the same three steps for gatehouse and Apache (both at the dev IdP): GET START_URL
# as a browser (302 to the authorize URL), POST the username/groups form there (302 to
# the relying party's callback), GET the callback with the jar (the session cookie is
# set), with CURL ARGS added to that last request (bench/tls.sh: --location, to follow
# its http callback's redirect to https).
# Prints the session cookie(s) COOKIE_NAME, COOKIE_NAME_<n> / COOKIE_NAME_chunks, as
# one Cookie header value.
oidc_login() {
    local name="$1" start="$2" jar="$3" cname="$4" out code authorize_url callback_url cookie
    : >"$jar"
    log "logging in to $name as '$BENCH_USER' (groups: $BENCH_GROUPS)"
    out="$(lcurl -o /dev/null -c "$jar" -b "$jar" -H 'Accept: text/html' \
        -w '%{http_code} %{redirect_url}' "$start")"
    code="${out%% *}" authorize_url="${out#* }"
    is_redirect "$code" || die "$name login step 1: expected a redirect (302) from $start, got $code"
    require_loopback_url "$authorize_url" "authorize URL"

    out="$(lcurl -o /dev/null -X POST \
        --data-urlencode "username=$BENCH_USER" --data-urlencode "groups=$BENCH_GROUPS" \
        -w '%{http_code} %{redirect_url}' "$authorize_url")"
    code="${out%% *}" callback_url="${out#* }"
    is_redirect "$code" || die "$name login step 2: expected a redirect (302/303) from the IdP, got $code"
    require_loopback_url "$callback_url" "callback URL"

    code="$(lcurl -o /dev/null -c "$jar" -b "$jar" -w '%{http_code}' "${@:5}" "$callback_url")"
    [[ "$code" =~ ^[23] ]] || die "$name login step 3: callback answered $code"

    # Netscape jar: 7 tab-separated fields, name in $6, value in $7.
    # HttpOnly cookies are written with a "#HttpOnly_" prefix.
    cookie="$(awk -F'\t' -v name="$cname" '
        /^#HttpOnly_/ { sub(/^#HttpOnly_/, "") }
        /^#/ || NF < 7 { next }
        $6 == name || $6 ~ ("^" name "_([0-9]+|chunks)$") { print $6 "=" $7 }
    ' "$jar" | sort -V | paste -sd ';' | sed 's/;/; /g')"
    [[ -n "$cookie" ]] || die "$name: no '$cname' cookie in the jar after login (jar: $jar)"
    log "$name session cookie: ${#cookie} bytes in the Cookie header"
    printf '%s\n' "$cookie"
}

login_gatehouse() {
    SESSION_COOKIE="$(oidc_login gatehouse "http://$HOST:$GATEHOUSE_PORT/" "$TMP/cookies.txt" "$COOKIE_NAME")"
    capture_identity_headers
}

# The identity gatehouse injects, as the upstream received it (/_identity echoes it).
# (a) and (b) get these very headers with every request, so the upstream parses
# requests of the same size; (e) answers with them; (d) and (f) are checked against them.
capture_identity_headers() {
    local json line
    json="$(lcurl -H "Cookie: $SESSION_COOKIE" "http://$HOST:$GATEHOUSE_PORT/_identity")" \
        || die "could not read the identity headers through gatehouse"
    while IFS= read -r line; do
        [[ -n "$line" ]] || continue
        IDENTITY_HEADERS+=(--header "$line")
        IDENTITY["${line%%: *}"]="${line#*: }"
    done < <(python3 -c '
import json, sys
h = json.load(sys.stdin)
for name in sys.argv[1:]:
    if h.get(name):
        print(f"{name}: {h[name]}")
' "${IDENTITY_NAMES[@]}" <<<"$json")
    ((${#IDENTITY_HEADERS[@]} >= 12)) || die "gatehouse injected too few identity headers: $json"
    log "replaying $((${#IDENTITY_HEADERS[@]} / 2)) identity headers to the upstream and nginx runs"
}

apache_redirect() { printf 'http://%s:%s/oauth2/callback' "$HOST" "$APACHE_PORT"; }

# ---------------------------------------------------------------- redis store --

redis_gatehouse_redirect() { printf 'http://%s:%s/oauth2/callback' "$HOST" "$GATEHOUSE_REDIS_PORT"; }

redis_version() { "$REDIS_BIN" --version | awk '{ sub(/^v=/, "", $3); print $3 }'; }

# rcli ARGS...: redis-cli against the bench's redis-server.
rcli() { redis-cli -h "$HOST" -p "$REDIS_PORT" "$@"; }

# The redis-server behind (g) and (h): in the foreground (so it is ours, stopped by pid,
# and its CPU is never counted as "others"), on loopback, nothing written to disk.
start_redis() {
    local dir="$TMP/redis" i
    mkdir -p "$dir"
    log "starting redis-server $(redis_version) ($REDIS_BIN) on $HOST:$REDIS_PORT"
    "$REDIS_BIN" --bind "$HOST" --port "$REDIS_PORT" --save '' --appendonly no \
        --daemonize no --dir "$dir" --logfile "" >"$dir/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for ((i = 0; i < 150; i++)); do
        if ! kill -0 "$REDIS_PID" 2>/dev/null; then
            tail -n 30 "$dir/redis.log" >&2 || true
            die "redis-server exited during start-up (log above)"
        fi
        [[ "$(rcli ping 2>/dev/null)" == PONG ]] && return 0
        sleep 0.2
    done
    die "redis-server did not answer PING on $HOST:$REDIS_PORT within 30s"
}

# serve_gatehouse NAME PORT CLIENT_ID CLIENT_SECRET REDIRECT_URL HEALTH_URL [EXTRA]:
# `gatehouse serve` on PORT in front of (a), as client CLIENT_ID of (c)'s dev IdP, with
# the settings `gatehouse demo` gives (c), plus the config lines EXTRA, in
# $TMP/NAME.toml (it holds secrets: the script's umask is 077); waits until HEALTH_URL
# answers and sets LAUNCHED_PID. The caller's GATEHOUSE_* configuration variables are
# left out, as the demo leaves them out; GATEHOUSE_WORKERS, which both read, is kept.
serve_gatehouse() {
    local name="$1" port="$2" redirect="$5" health="$6" conf="$TMP/$1.toml" env_clean=() n
    cat >"$conf" <<CONF
# generated by bench/run.sh; deleted on exit
listen = "$HOST:$port"
upstream = "http://$HOST:$UPSTREAM_PORT"
issuer_url = "http://$HOST:$IDP_PORT"
client_id = "$3"
client_secret = "$4"
cookie_secret = "$("$GATEHOUSE_BIN" secret)"
cookie_secure = false
redirect_url = "$redirect"
post_logout_redirect_url = "${redirect%/oauth2/callback}/"
${7:-}
CONF
    while IFS= read -r n; do env_clean+=(-u "$n"); done < <(compgen -e | grep '^GATEHOUSE_' | grep -vx GATEHOUSE_WORKERS || true)
    log "starting gatehouse serve ($name) on $HOST:$port"
    env "${env_clean[@]}" "$GATEHOUSE_BIN" serve --config "$conf" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    LAUNCHED_PID=$!
    PIDS+=("$LAUNCHED_PID")
    wait_for_http "$health" "$LAUNCHED_PID" "$name" "$TMP/$name.err"
}

# (g) `gatehouse serve` with the redis store, in front of (a), as client $REDIS_CLIENT_ID
# of (c)'s dev IdP (serve_gatehouse), plus session_store and redis_url.
start_gatehouse_redis() {
    local i
    [[ -n "$REDIS_CLIENT_SECRET" ]] || die "internal: the redis gatehouse's client was not registered at the dev IdP"
    serve_gatehouse gatehouse-redis "$GATEHOUSE_REDIS_PORT" "$REDIS_CLIENT_ID" "$REDIS_CLIENT_SECRET" \
        "$(redis_gatehouse_redirect)" "http://$HOST:$GATEHOUSE_REDIS_PORT/healthz" \
        "session_store = \"redis\"
redis_url = \"redis://$HOST:$REDIS_PORT\""
    GATEHOUSE_REDIS_PID=$LAUNCHED_PID
    # ready: it has reached Redis
    for ((i = 0; i < 150; i++)); do
        [[ "$(lcurl -o /dev/null -w '%{http_code}' "http://$HOST:$GATEHOUSE_REDIS_PORT/readyz" 2>/dev/null)" == 200 ]] \
            && return 0
        if ! kill -0 "$GATEHOUSE_REDIS_PID" 2>/dev/null; then
            tail -n 30 "$TMP/gatehouse-redis.err" >&2 || true
            die "gatehouse-redis exited during start-up (log above)"
        fi
        sleep 0.2
    done
    tail -n 30 "$TMP/gatehouse-redis.err" >&2 || true
    die "gatehouse-redis did not become ready (/readyz) within 30s"
}

# (g)'s session, logged in as (c)'s and checked the way (c)'s is: the upstream gets the
# same identity through it.
login_gatehouse_redis() {
    local base="http://$HOST:$GATEHOUSE_REDIS_PORT"
    check_refused gatehouse-redis "$base/"
    REDIS_SESSION_COOKIE="$(oidc_login gatehouse-redis "$base/" "$TMP/redis-cookies.txt" "$COOKIE_NAME")"
    check_identity_at_upstream gatehouse-redis "$base" "$REDIS_SESSION_COOKIE"
    log "redis holds $(rcli dbsize) keys after the login"
}

# (h)'s sessions: MISS_SESSIONS logins at (g), the same three steps as oidc_login, by a
# python3 client over kept-alive connections (a curl per step would take minutes).
# Writes one Cookie header value a line to MISS_COOKIES, then checks the first, the
# middle and the last as (g)'s session is checked.
login_miss_sessions() {
    local started=$SECONDS n line
    MISS_COOKIES="$TMP/miss-cookies.txt"
    log "logging in $MISS_SESSIONS sessions at gatehouse-redis for (h) ..."
    python3 - "$HOST" "$GATEHOUSE_REDIS_PORT" "$COOKIE_NAME" "$BENCH_USER" "$BENCH_GROUPS" \
        "$MISS_SESSIONS" "$MISS_COOKIES" <<'PY' || die "the logins for gatehouse-redis-miss failed"
import http.client, sys, threading
from urllib.parse import urlsplit, urlencode
host, port, cname, user, groups, n, out = sys.argv[1:8]
port, n = int(port), int(n)

class Client:
    """Kept-alive connections, one per host:port, to loopback only."""
    def __init__(self):
        self.conns = {}
    def request(self, method, url, body=None, headers=None):
        u = urlsplit(url)
        if u.scheme != "http" or u.hostname not in ("127.0.0.1", "localhost"):
            raise RuntimeError(f"refusing to contact {url!r}")
        key = (u.hostname, u.port)
        conn = self.conns.get(key)
        if conn is None:
            conn = self.conns[key] = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        path = u.path + ("?" + u.query if u.query else "")
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        r.read()
        return r

def set_cookies(r):
    out = {}
    for k, v in r.getheaders():
        pair = v.split(";", 1)[0]
        if k.lower() == "set-cookie" and "=" in pair:
            name, value = pair.split("=", 1)
            out[name.strip()] = value.strip()
    return out

def login(c):
    r = c.request("GET", f"http://{host}:{port}/", headers={"Accept": "text/html"})
    if r.status not in (302, 303, 307):
        raise RuntimeError(f"login step 1 answered {r.status}")
    jar = set_cookies(r)
    form = urlencode({"username": user, "groups": groups})
    r = c.request("POST", r.getheader("Location"), body=form,
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    if r.status not in (302, 303, 307):
        raise RuntimeError(f"login step 2 answered {r.status}")
    sent = "; ".join(f"{k}={v}" for k, v in jar.items())
    r = c.request("GET", r.getheader("Location"), headers={"Cookie": sent})
    if r.status >= 400:
        raise RuntimeError(f"login step 3 (callback) answered {r.status}")
    got = set_cookies(r)
    if not got.get(cname):
        raise RuntimeError(f"no {cname} cookie after the callback")
    return f"{cname}={got[cname]}"

WORKERS = 4
results, failed = [None] * n, []
def worker(k):
    c = Client()
    try:
        for i in range(k, n, WORKERS):
            results[i] = login(c)
    except Exception as e:  # reported below
        failed.append(f"{type(e).__name__}: {e}")
threads = [threading.Thread(target=worker, args=(k,)) for k in range(WORKERS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if failed or any(r is None for r in results):
    sys.exit("[bench] error: " + (failed[0] if failed else "some logins did not finish"))
if len(set(results)) != n:
    sys.exit("[bench] error: two logins got the same session cookie")
with open(out, "w") as f:
    f.write("\n".join(results) + "\n")
PY
    n="$(wc -l <"$MISS_COOKIES")"
    ((n == MISS_SESSIONS)) || die "expected $MISS_SESSIONS sessions for (h), got $n"
    log "$n sessions logged in, in $((SECONDS - started)) s; redis holds $(rcli dbsize) keys"
    for line in 1 $(((n + 1) / 2)) "$n"; do
        check_identity_at_upstream gatehouse-redis-miss "http://$HOST:$GATEHOUSE_REDIS_PORT" \
            "$(sed -n "${line}p" "$MISS_COOKIES")"
    done
    log "sessions 1, $(((n + 1) / 2)) and $n of (h) reach the upstream with the identity of (c)"
}

# (f) Apache httpd + mod_auth_openidc + mod_proxy_http in front of (a), signing in at
# gatehouse demo's dev IdP as client $APACHE_CLIENT_ID (start_gatehouse registered it).
# Everything under $TMP/apache.
start_apache() {
    local dir passphrase run_as="" m="$APACHE_MODULES" redirect
    dir="$(nginx_dir apache)"
    passphrase="$(random_token)"
    redirect="$(apache_redirect)"
    [[ -n "$APACHE_CLIENT_SECRET" ]] || die "internal: Apache's client was not registered at the dev IdP"
    # a client-cookie session drops the raw ID token unless told to keep it (gatehouse's
    # cookie carries it, and X-Forwarded-Id-Token needs it)
    local oidc_session_type="$APACHE_SESSION_TYPE" mpm
    if [[ "$APACHE_MPM" == shipped ]]; then
        mpm="# the event MPM as Debian ships it (mods-available/mpm_event.conf)
StartServers            2
MinSpareThreads         25
MaxSpareThreads         75
ThreadLimit             64
ThreadsPerChild         25
MaxRequestWorkers       150
MaxConnectionsPerChild  0"
    else
        mpm="# the event MPM sized for the load (APACHE_MPM=sized): every child (ServerLimit 16)
# started at once and never stopped for being idle, 16 x 25 = 400 worker threads
StartServers            16
MinSpareThreads         25
MaxSpareThreads         400
ThreadLimit             64
ThreadsPerChild         25
MaxRequestWorkers       400
MaxConnectionsPerChild  0"
    fi
    [[ "$oidc_session_type" == client-cookie ]] && oidc_session_type="client-cookie:store_id_token"

    if [[ "$(id -u)" == 0 ]]; then
        # httpd refuses to serve as root; its children drop to this user
        if getent passwd www-data >/dev/null; then
            run_as="User www-data
Group www-data"
        else
            run_as="User nobody
Group $(id -gn nobody 2>/dev/null || echo nogroup)"
        fi
    fi
    cat >"$dir/httpd.conf" <<EOF
# generated by bench/run.sh; deleted on exit
ServerRoot $dir
ServerName $HOST
Listen $HOST:$APACHE_PORT
PidFile $dir/httpd.pid
DefaultRuntimeDir $dir
ErrorLog $dir/error.log
LogLevel warn
$run_as

LoadModule mpm_event_module $m/mod_mpm_event.so
LoadModule authn_core_module $m/mod_authn_core.so
LoadModule authz_core_module $m/mod_authz_core.so
LoadModule authz_user_module $m/mod_authz_user.so
LoadModule headers_module $m/mod_headers.so
LoadModule proxy_module $m/mod_proxy.so
LoadModule proxy_http_module $m/mod_proxy_http.so
LoadModule auth_openidc_module $m/mod_auth_openidc.so

$mpm

# keep-alive as Debian's apache2.conf, but 1000 requests per connection like nginx's
# default keepalive_requests (Debian's 100 would make wrk reconnect 10x as often)
KeepAlive On
MaxKeepAliveRequests 1000
KeepAliveTimeout 5

OIDCProviderMetadataURL http://$HOST:$IDP_PORT/.well-known/openid-configuration
OIDCClientID $APACHE_CLIENT_ID
OIDCClientSecret $APACHE_CLIENT_SECRET
OIDCRedirectURI $redirect
OIDCCryptoPassphrase $passphrase
OIDCPKCEMethod S256
OIDCScope "openid email profile"
OIDCSessionType $oidc_session_type
OIDCSessionInactivityTimeout $TOKEN_TTL
OIDCRemoteUserClaim email
# claims as environment variables only; the headers below carry them, under gatehouse's names
OIDCPassClaimsAs environment
OIDCPassIDTokenAs claims serialized
OIDCStripCookies $APACHE_COOKIE_NAME ${APACHE_COOKIE_NAME}_chunks ${APACHE_COOKIE_NAME}_0 ${APACHE_COOKIE_NAME}_1 ${APACHE_COOKIE_NAME}_2 ${APACHE_COOKIE_NAME}_3

<Location />
    AuthType openid-connect
    Require valid-user
    RequestHeader set X-Forwarded-User "%{OIDC_CLAIM_email}e"
    RequestHeader set X-Forwarded-Email "%{OIDC_CLAIM_email}e"
    RequestHeader set X-Forwarded-Group "%{OIDC_CLAIM_groups}e"
    RequestHeader set X-Forwarded-Groups "%{OIDC_CLAIM_groups}e"
    RequestHeader set X-Forwarded-Preferred-Username "%{OIDC_CLAIM_preferred_username}e"
    RequestHeader set X-Forwarded-Id-Token "%{OIDC_id_token}e"
</Location>

# mod_proxy_http reuses its connections to (a) (a pool per child process)
ProxyPass /oauth2/callback !
ProxyPass / http://$HOST:$UPSTREAM_PORT/
EOF
    "$APACHE_BIN" -t -f "$dir/httpd.conf" >"$dir/configtest.log" 2>&1 \
        || { cat "$dir/configtest.log" >&2; die "generated httpd.conf is invalid ($dir/httpd.conf)"; }
    log "starting apache ($APACHE_BIN, event MPM $APACHE_MPM, mod_auth_openidc $APACHE_SESSION_TYPE) on $HOST:$APACHE_PORT"
    "$APACHE_BIN" -f "$dir/httpd.conf" -D FOREGROUND >"$dir/stdout.log" 2>&1 &
    APACHE_PID=$!
    PIDS+=("$APACHE_PID")
    wait_for_http "http://$HOST:$APACHE_PORT/" "$APACHE_PID" apache "$dir/error.log"
}

login_apache() {
    local code
    code="$(lcurl -o /dev/null -w '%{http_code}' "http://$HOST:$APACHE_PORT/")"
    [[ "$code" == 302 ]] || die "apache without a session cookie answered $code, expected 302 to the IdP"
    log "apache without a cookie answers 302 (good)"
    APACHE_COOKIE="$(oidc_login apache "http://$HOST:$APACHE_PORT/" "$TMP/apache-cookies.txt" "$APACHE_COOKIE_NAME")"
    check_identity_at_upstream apache "http://$HOST:$APACHE_PORT" "$APACHE_COOKIE"
}

# ---------------------------------------------------------------- checks --

# check_identity_at_upstream NAME BASE_URL COOKIE: through NAME, with COOKIE, /_identity
# must answer 200 and the upstream must have received gatehouse's identity values under
# gatehouse's header names: the user, email, group(s) and preferred username equal, and
# an ID token for the same subject (gatehouse's own token for gatehouse; Apache's comes
# from its own IdP).
check_identity_at_upstream() {
    local name="$1" base="$2" cookie="$3" body="$TMP/check-identity-$1.json" code n args=()
    code="$(lcurl -o "$body" -w '%{http_code}' -H "Cookie: $cookie" "$base/_identity")" \
        || die "$name: request to $base/_identity failed"
    [[ "$code" == 200 ]] || die "$name: expected 200 from $base/_identity with the session cookie, got $code (session lost?)"
    for n in "${IDENTITY_NAMES[@]}"; do args+=("$n" "${IDENTITY[$n]:-}"); done
    python3 - "$body" "$name" "$BENCH_USER" "${args[@]}" <<'PY' || die "$name: the upstream did not get the expected identity (page: $body)"
import base64, json, sys
body, name, user, pairs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with open(body) as f:
    got = json.load(f)
want = dict(zip(pairs[::2], pairs[1::2]))
bad = [n for n in want if n != "x-forwarded-id-token" and got.get(n, "") != want[n]]
if bad:
    sys.exit(f"[bench] error: {name}: identity headers at the upstream differ from gatehouse's: "
             + ", ".join(f"{n}={got.get(n)!r} (gatehouse: {want[n]!r})" for n in bad))
try:
    payload = got["x-forwarded-id-token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
except (KeyError, IndexError, ValueError) as e:
    sys.exit(f"[bench] error: {name}: no readable ID token reached the upstream ({e})")
if claims.get("sub") != user:
    sys.exit(f"[bench] error: {name}: the ID token at the upstream is for {claims.get('sub')!r}, not {user!r}")
PY
}

# check_body NAME URL BODY [curl args]: 200 and exactly BODY_BYTES[BODY] bytes.
check_body() {
    local name="$1" url="$2" body="$3" out
    out="$(lcurl -o /dev/null -w '%{http_code} %{size_download}' "${@:4}" "$url")" \
        || die "$name: request to $url failed"
    [[ "$out" == "200 ${BODY_BYTES[$body]}" ]] \
        || die "$name: $url answered '$out' (status, bytes), expected '200 ${BODY_BYTES[$body]}'"
}

# check_refused NAME URL: without a cookie, URL must not answer 200.
check_refused() {
    local name="$1" url="$2" code
    code="$(lcurl -o /dev/null -w '%{http_code}' "$url")" || die "$name: request to $url failed"
    [[ "$code" != 200 ]] || die "$name answered 200 without a session cookie: $url"
    log "$name without a cookie answers $code (good: not 200)"
}

# check_identity_through NAME URL: (d)/(e) with the session cookie must answer 200, and
# whoami must have received, through NAME, exactly the identity headers gatehouse
# injects itself. whoami echoes them.
check_identity_through() {
    local name="$1" url="$2" body="$TMP/check-$1.json" code n args=()
    [[ -n "${IDENTITY[x-forwarded-user]:-}" ]] || die "gatehouse injected no X-Forwarded-User to compare with"
    code="$(lcurl -o "$body" -w '%{http_code}' -H 'Accept: application/json' \
        -H "Cookie: $SESSION_COOKIE" "$url")" || die "$name: request to $url failed"
    [[ "$code" == 200 ]] || die "$name: expected 200 from $url with the session cookie, got $code (see $TMP/$name/error.log)"
    for n in "${IDENTITY_NAMES[@]}"; do args+=("$n" "${IDENTITY[$n]:-}"); done
    python3 - "$body" "$name" "${IDENTITY[x-forwarded-user]}" "${args[@]}" <<'PY' || die "$name: whoami did not get gatehouse's identity headers (page: $body)"
import json, sys
body, name, user, pairs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with open(body) as f:
    got = json.load(f)["headers"]
if got.get("x-forwarded-user") != user:
    sys.exit(f"[bench] error: {name}: whoami received X-Forwarded-User "
             f"{got.get('x-forwarded-user')!r}, expected {user!r}")
bad = [n for n, want in zip(pairs[::2], pairs[1::2]) if got.get(n, "") != want]
if bad:
    sys.exit(f"[bench] error: {name}: identity headers at whoami differ from gatehouse's: {', '.join(bad)}")
PY
}

# check_auth_endpoint: gatehouse's /oauth2/auth must answer 200 with the cookie, with the
# user gatehouse injects as a proxy in X-Auth-Request-User and X-Forwarded-User.
check_auth_endpoint() {
    local url="http://$HOST:$GATEHOUSE_AUTH_PORT/oauth2/auth" hdrs="$TMP/check-gatehouse-auth.headers" code h
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

# ---------------------------------------------------------------- measuring --

# cpu_ticks: "total steal" CPU ticks from /proc/stat. Steal is time a VM's host gave
# to others: when it is high, the figures of that run say more about the host.
cpu_ticks() {
    awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $9 }' /proc/stat
}

# cpu_snapshot FILE: the CPU ticks of every process now (pid, parent, utime+stime) and
# the machine's total, for cpu_others.
cpu_snapshot() {
    python3 - "$1" <<'PY'
import os, sys
with open("/proc/stat") as f:
    total = sum(int(x) for x in f.readline().split()[1:])
lines = [f"total {total}"]
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            with open(f"/proc/{pid}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
            lines.append(f"{pid} {st[1]} {int(st[11]) + int(st[12])}")
        except (OSError, IndexError, ValueError):
            pass
with open(sys.argv[1], "w") as f:
    f.write("\n".join(lines) + "\n")
PY
}

# cpu_others BEFORE AFTER: the share (%) of the whole machine's CPU that processes
# outside this script's process tree used between two snapshots: other work on the
# machine (a build, another benchmark) that competed with this run. Processes that
# ended between the snapshots are not seen, so it can only err low.
cpu_others() {
    python3 - "$1" "$2" "$$" <<'PY'
import sys
def load(p):
    procs, total = {}, 0
    for line in open(p):
        f = line.split()
        if f[0] == "total":
            total = int(f[1])
        else:
            procs[f[0]] = (f[1], int(f[2]))
    return procs, total
before, t0 = load(sys.argv[1])
after, t1 = load(sys.argv[2])
me = sys.argv[3]
def ours(pid):
    seen = 0
    while pid in after and seen < 64:
        if pid == me:
            return True
        pid, seen = after[pid][0], seen + 1
    return False
others = sum(t - before.get(pid, (None, 0))[1] for pid, (_, t) in after.items() if not ours(pid))
print(f"{100 * max(others, 0) / (t1 - t0):.1f}" if t1 > t0 else "0.0")
PY
}

# proc_cpu_ticks PID: the CPU time PID has used, all its threads, user + system
# (utime + stime of /proc/PID/stat), in clock ticks.
proc_cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# redis_gets: GET commands redis-server has run since it started.
redis_gets() {
    rcli info commandstats | tr -d '\r' | awk -F '[:=,]' '$1 == "cmdstat_get" { n = $3 } END { print n + 0 }'
}

# gatehouse_pid_of TARGET: the gatehouse process serving TARGET, if it is one.
gatehouse_pid_of() {
    case "$1" in
        gatehouse) printf '%s' "$GATEHOUSE_PID" ;;
        gatehouse-metrics) printf '%s' "$METRICS_GH_PID" ;;
        gatehouse-redis | gatehouse-redis-miss) printf '%s' "$GATEHOUSE_REDIS_PID" ;;
    esac
}

# run_wrk TARGET BODY URL [COOKIE] [EXTRA WRK ARGS...]: warm up, measure at CONNECTIONS,
# store the results in RES[TARGET|BODY|CONNECTIONS|ROUND.*]. With ROTATE_FILE set (a
# file of Cookie header values), wrk cycles through those sessions instead (rotate.lua).
# For the gatehouse targets it also stores the CPU the gatehouse process used during the
# measured run (gh_cpu_ms), and for the redis ones redis-server's (redis_cpu_ms) and the
# GETs redis-server ran (redis_gets).
run_wrk() {
    local name="$1" body="$2" url="$3" cookie="${4:-}" line kv
    local key="$name|$body|$CONNECTIONS|$ROUND" out="$TMP/wrk-$name-$body-c$CONNECTIONS-r$ROUND.txt"
    local args=(--threads "$THREADS" --connections "$CONNECTIONS" --timeout 5s)
    local script="$TMP/report.lua" warm_script=() script_args=() gh_pid redis=0
    [[ -n "$cookie" ]] && args+=(--header "Cookie: $cookie")
    args+=("${@:5}")
    if [[ -n "${ROTATE_FILE:-}" ]]; then
        script="$TMP/rotate.lua" warm_script=(--script "$TMP/rotate.lua")
        script_args=(-- "$ROTATE_FILE" "$THREADS")
    fi
    gh_pid="$(gatehouse_pid_of "$name")"
    if [[ "$name" == gatehouse-redis* ]]; then redis=1; fi
    require_loopback_url "$url" "benchmark URL"

    log "$name $body c=$CONNECTIONS: warm-up $WARMUP"
    run_child wrk "${args[@]}" "${warm_script[@]}" --duration "$WARMUP" "$url" "${script_args[@]}" >/dev/null \
        || die "$name: wrk warm-up failed"
    log "$name $body c=$CONNECTIONS: measuring $DURATION ($THREADS threads)"
    local before after gh_before="" redis_before="" gets_before=""
    if ((redis)); then gets_before="$(redis_gets)"; fi
    cpu_snapshot "$TMP/cpu-before"
    before="$(cpu_ticks)"
    if [[ -n "$gh_pid" ]]; then gh_before="$(proc_cpu_ticks "$gh_pid")"; fi
    if ((redis)); then redis_before="$(proc_cpu_ticks "$REDIS_PID")"; fi
    run_child wrk "${args[@]}" --duration "$DURATION" --latency --script "$script" "$url" "${script_args[@]}" >"$out" \
        || die "$name: wrk failed (see $out)"
    if [[ -n "$gh_pid" ]]; then
        RES["$key.gh_cpu_ms"]=$((($(proc_cpu_ticks "$gh_pid") - gh_before) * 1000 / CLK_TCK))
    fi
    if ((redis)); then
        RES["$key.redis_cpu_ms"]=$((($(proc_cpu_ticks "$REDIS_PID") - redis_before) * 1000 / CLK_TCK))
    fi
    after="$(cpu_ticks)"
    cpu_snapshot "$TMP/cpu-after"
    if ((redis)); then RES["$key.redis_gets"]=$(($(redis_gets) - gets_before)); fi
    RES["$key.others"]="$(cpu_others "$TMP/cpu-before" "$TMP/cpu-after")"
    sed -n '/^Running/,/^WRK_RESULT/p' "$out" | grep -v '^WRK_RESULT' | sed 's/^/[bench]   /' >&2

    line="$(grep '^WRK_RESULT ' "$out")" || die "$name: wrk printed no result (see $out)"
    for kv in ${line#WRK_RESULT }; do
        RES["$key.${kv%%=*}"]="${kv#*=}"
    done
    RES["$key.steal"]="$(awk -v b="$before" -v a="$after" 'BEGIN {
        split(b, x, " "); split(a, y, " "); t = y[1] - x[1]; printf "%.1f", (t > 0 ? 100 * (y[2] - x[2]) / t : 0) }')"
    RES["$key.rss"]=""
}

# first_time TARGET BODY: true on the first run of this pair (checks are done once).
declare -A CHECKED
first_time() { [[ -z "${CHECKED[$1|$2]:-}" ]] && CHECKED[$1|$2]=1; }

bench_proxy() {
    local t="$1" body="$2" base
    case "$t" in
        upstream) base="http://$HOST:$UPSTREAM_PORT" ;;
        nginx) base="http://$HOST:$NGINX_PORT" ;;
        gatehouse) base="http://$HOST:$GATEHOUSE_PORT" ;;
        gatehouse-metrics) base="http://$HOST:$METRICS_GH_PORT" ;;
        gatehouse-redis | gatehouse-redis-miss) base="http://$HOST:$GATEHOUSE_REDIS_PORT" ;;
        apache) base="http://$HOST:$APACHE_PORT" ;;
    esac
    local url="$base${BODY_PATH[$body]}"
    case "$t" in
        upstream | nginx)
            if first_time "$t" "$body"; then check_body "$t" "$url" "$body"; fi
            run_wrk "$t" "$body" "$url" "$SESSION_COOKIE" "${IDENTITY_HEADERS[@]}"
            ;;
        gatehouse)
            if first_time "$t" "$body"; then
                check_refused gatehouse "$url"
                check_body gatehouse "$url" "$body" -H "Cookie: $SESSION_COOKIE"
            fi
            run_wrk "$t" "$body" "$url" "$SESSION_COOKIE"
            RES["$t|$body|$CONNECTIONS|$ROUND.rss"]="$(rss_kib "$GATEHOUSE_PID")"
            log "gatehouse RSS after this run: $(kib_to_mib "${RES[$t|$body|$CONNECTIONS|$ROUND.rss]}") MiB (peak $(kib_to_mib "$(hwm_kib "$GATEHOUSE_PID")") MiB)"
            # the session must still be good after the run (a 302 mid-run is no wrk error)
            check_identity_at_upstream gatehouse "$base" "$SESSION_COOKIE"
            ;;
        gatehouse-metrics)
            if first_time "$t" "$body"; then
                check_refused gatehouse-metrics "$url"
                check_body gatehouse-metrics "$url" "$body" -H "Cookie: $METRICS_SESSION_COOKIE"
            fi
            run_wrk "$t" "$body" "$url" "$METRICS_SESSION_COOKIE"
            RES["$t|$body|$CONNECTIONS|$ROUND.rss"]="$(rss_kib "$METRICS_GH_PID")"
            check_identity_at_upstream gatehouse-metrics "$base" "$METRICS_SESSION_COOKIE"
            ;;
        gatehouse-redis)
            if first_time "$t" "$body"; then
                check_refused gatehouse-redis "$url"
                check_body gatehouse-redis "$url" "$body" -H "Cookie: $REDIS_SESSION_COOKIE"
            fi
            run_wrk "$t" "$body" "$url" "$REDIS_SESSION_COOKIE"
            RES["$t|$body|$CONNECTIONS|$ROUND.rss"]="$(rss_kib "$GATEHOUSE_REDIS_PID")"
            log "gatehouse-redis RSS after this run: $(kib_to_mib "${RES[$t|$body|$CONNECTIONS|$ROUND.rss]}") MiB (peak $(kib_to_mib "$(hwm_kib "$GATEHOUSE_REDIS_PID")") MiB)"
            check_identity_at_upstream gatehouse-redis "$base" "$REDIS_SESSION_COOKIE"
            ;;
        gatehouse-redis-miss)
            if first_time "$t" "$body"; then
                check_body gatehouse-redis-miss "$url" "$body" -H "Cookie: $(tail -n 1 "$MISS_COOKIES")"
            fi
            ROTATE_FILE="$MISS_COOKIES" run_wrk "$t" "$body" "$url"
            RES["$t|$body|$CONNECTIONS|$ROUND.rss"]="$(rss_kib "$GATEHOUSE_REDIS_PID")"
            log "gatehouse-redis RSS after this run: $(kib_to_mib "${RES[$t|$body|$CONNECTIONS|$ROUND.rss]}") MiB; Redis GETs per request: $(awk -v g="${RES[$t|$body|$CONNECTIONS|$ROUND.redis_gets]}" -v n="${RES[$t|$body|$CONNECTIONS|$ROUND.requests]}" 'BEGIN { printf "%.3f", (n > 0 ? g / n : 0) }')"
            check_identity_at_upstream gatehouse-redis-miss "$base" "$(head -n 1 "$MISS_COOKIES")"
            ;;
        apache)
            if first_time "$t" "$body"; then
                check_refused apache "$url"
                check_body apache "$url" "$body" -H "Cookie: $APACHE_COOKIE"
            fi
            run_wrk "$t" "$body" "$url" "$APACHE_COOKIE"
            check_identity_at_upstream apache "$base" "$APACHE_COOKIE"
            ;;
    esac
}

bench_fa() {
    local t="$1" url
    case "$t" in
        nginx-fa)
            url="http://$HOST:$NGINX_FA_PORT/"
            if first_time "$t" "$FA_BODY"; then check_refused nginx-fa "$url"; fi
            check_identity_through nginx-fa "$url"
            run_wrk "$t" "$FA_BODY" "$url" "$SESSION_COOKIE"
            check_identity_through nginx-fa "$url"
            ;;
        nginx-ceiling)
            url="http://$HOST:$NGINX_CEILING_PORT/"
            check_identity_through nginx-ceiling "$url"
            run_wrk "$t" "$FA_BODY" "$url" "$SESSION_COOKIE"
            ;;
        gatehouse-auth)
            url="http://$HOST:$GATEHOUSE_AUTH_PORT/oauth2/auth"
            if first_time "$t" "$FA_BODY"; then check_refused "gatehouse /oauth2/auth" "$url"; fi
            check_auth_endpoint
            run_wrk "$t" "$FA_BODY" "$url" "$SESSION_COOKIE"
            check_auth_endpoint
            ;;
    esac
}

# ---------------------------------------------------------------- report --

# pick_median TARGET BODY CONNECTIONS: the round with the median req/s supplies every
# figure of RES[TARGET|BODY|CONNECTIONS.*] (errors are summed over all rounds).
pick_median() {
    local k="$1|$2|$3" r med f
    med="$(for ((r = 1; r <= ROUNDS; r++)); do printf '%s %s\n' "${RES[$k|$r.rps]}" "$r"; done \
        | sort -n | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2) { print $2 }')"
    for f in rps p50_us p90_us p99_us max_us steal others rss requests gh_cpu_ms redis_cpu_ms redis_gets; do
        RES["$k.$f"]="${RES[$k|$med.$f]:-}"
    done
    RES["$k.errors"]=0
    for ((r = 1; r <= ROUNDS; r++)); do
        RES["$k.errors"]=$((${RES[$k.errors]} + ${RES[$k|$r.errors]} + ${RES[$k|$r.status_errors]}))
    done
}

pick_medians() {
    local c b t
    for c in "${CONN_LIST[@]}"; do
        for t in "${SELECTED[@]}"; do
            if [[ " ${FA_TARGETS[*]} " == *" $t "* ]]; then
                pick_median "$t" "$FA_BODY" "$c"
            else
                for b in "${BODY_LIST[@]}"; do pick_median "$t" "$b" "$c"; done
            fi
        done
    done
}

# round_ratios NUM DEN BODY CONNECTIONS: rps(NUM)/rps(DEN) of each round, space-separated.
round_ratios() {
    local r line=""
    for ((r = 1; r <= ROUNDS; r++)); do
        line+="$(awk -v c="${RES[$1|$3|$4|$r.rps]}" -v b="${RES[$2|$3|$4|$r.rps]}" \
            'BEGIN { printf " %.2f", (b > 0 ? c / b : 0) }')"
    done
    printf '%s' "${line# }"
}

# round_p99_deltas A B BODY CONNECTIONS: p99(A) - p99(B) in ms for each round (the two
# ran back to back in that round, so they saw the same machine), space-separated, then
# " median X": the median of those differences. Pairing by round keeps one noisy round
# from deciding the comparison, which the p99 of the median-by-req/s round can do.
round_p99_deltas() {
    local r line=""
    for ((r = 1; r <= ROUNDS; r++)); do
        line+="$(awk -v a="${RES[$1|$3|$4|$r.p99_us]}" -v b="${RES[$2|$3|$4|$r.p99_us]}" \
            'BEGIN { printf " %+.2f", (a - b) / 1000 }')"
    done
    printf '%s  median %s' "${line# }" "$(tr ' ' '\n' <<<"${line# }" | sort -g \
        | awk '{ v[NR] = $1 } END { m = (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2); printf "%+.2f", m }')"
}

# median: the median of the numbers on stdin, one a line (printf format $1, default %.2f).
median() {
    sort -g | awk -v f="${1:-%.2f}" '{ v[NR] = $1 } END {
        if (NR == 0) { print "-"; exit }
        printf f, (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# paired_ratio NUM DEN BODY CONNECTIONS: the median over the rounds of rps(NUM)/rps(DEN)
# in the same round.
paired_ratio() {
    round_ratios "$@" | tr ' ' '\n' | median
}

# paired_p99_delta A B BODY CONNECTIONS: the median over the rounds of p99(A) - p99(B)
# in the same round, ms.
paired_p99_delta() {
    local out
    out="$(round_p99_deltas "$@")"
    printf '%s' "${out##* }"
}

# quiet_pairs A B BODY CONNECTIONS: A against B over the rounds in which neither run
# competed with other work (others <= QUIET_OTHERS %): "N of ROUNDS: RATIO, P99DIFF ms"
# (medians of those rounds), or "N of ROUNDS" when none was quiet.
quiet_pairs() {
    local r n=0 ratios="" deltas=""
    for ((r = 1; r <= ROUNDS; r++)); do
        if awk -v a="${RES[$1|$3|$4|$r.others]}" -v b="${RES[$2|$3|$4|$r.others]}" -v q="$QUIET_OTHERS" \
            'BEGIN { exit !(a <= q && b <= q) }'; then
            n=$((n + 1))
            ratios+="$(awk -v a="${RES[$1|$3|$4|$r.rps]}" -v b="${RES[$2|$3|$4|$r.rps]}" \
                'BEGIN { printf "%.4f", (b > 0 ? a / b : 0) }')"$'\n'
            deltas+="$(awk -v a="${RES[$1|$3|$4|$r.p99_us]}" -v b="${RES[$2|$3|$4|$r.p99_us]}" \
                'BEGIN { printf "%.3f", (a - b) / 1000 }')"$'\n'
        fi
    done
    if ((n == 0)); then
        printf '0 of %s' "$ROUNDS"
    else
        printf '%s of %s: %s, %s ms' "$n" "$ROUNDS" "$(printf '%s' "$ratios" | median)" \
            "$(printf '%s' "$deltas" | median %+.2f)"
    fi
}

# per_1k TARGET BODY CONNECTIONS FIELD: the median over the rounds of FIELD per 1000
# requests of that round (FIELD in ms: ms per 1000 requests), or - when not measured.
per_1k() {
    local r v out=""
    for ((r = 1; r <= ROUNDS; r++)); do
        v="${RES[$1|$2|$3|$r.$4]:-}"
        [[ -n "$v" ]] || continue
        out+="$(awk -v v="$v" -v n="${RES[$1|$2|$3|$r.requests]}" 'BEGIN { printf "%.6f", (n > 0 ? 1000 * v / n : 0) }')"$'\n'
    done
    printf '%s' "$out" | sed '/^$/d' | median "${5:-%.2f}"
}

# ratio NUM DEN BODY CONNECTIONS: median rps(NUM)/rps(DEN), or n/a when one was not measured.
ratio() {
    if wanted "$1" && wanted "$2"; then
        awk -v c="${RES[$1|$3|$4.rps]}" -v b="${RES[$2|$3|$4.rps]}" 'BEGIN { printf "%.2f", (b > 0 ? c / b : 0) }'
    else
        printf 'n/a'
    fi
}

human_bytes() {
    awk -v b="$1" 'BEGIN { if (b >= 1048576) printf "%.0f MiB", b / 1048576;
        else if (b >= 10240) printf "%.0f KiB", b / 1024;
        else if (b >= 1024) printf "%.1f KiB", b / 1024; else printf "%d B", b }'
}

label() {
    case "$1" in
        upstream) printf '(a) upstream direct' ;;
        nginx) printf '(b) nginx proxy_pass' ;;
        gatehouse) printf '(c) gatehouse' ;;
        gatehouse-metrics) printf '(m) gatehouse, metrics on' ;;
        gatehouse-redis) printf '(g) gatehouse, redis' ;;
        gatehouse-redis-miss) printf '(h) redis, %s sessions' "$MISS_SESSIONS" ;;
        apache) printf '(f) apache+mod_auth_oidc' ;;
        nginx-fa) printf '(d) nginx-fa' ;;
        nginx-ceiling) printf '(e) nginx-ceiling' ;;
        gatehouse-auth) printf 'gatehouse /oauth2/auth' ;;
    esac
}

RULE='-------------------------------------------------------------------------------------------------------------'
WIDE_RULE='------------------------------------------------------------------------------------------------------------------------'

# The redis store (g), and (h), beside the cookie store (c), for CONNECTIONS=$1: req/s,
# p50, p99 of the median round (as above); /cookie and p99 Δ paired by round; CPU per
# 1000 requests (gatehouse's process, redis-server's) and Redis GETs per request, each
# the median over the rounds; then the per-round figures and the verdict.
print_store_table() {
    local c="$1" b t shown k rel d line verdict
    printf '\nsession stores, %s connections: the redis store (g) beside the cookie store (c); target: (g)/(c) >= 0.95, p99 (g)-(c) <= +0.30 ms\n' "$c"
    printf '%s\n' "$WIDE_RULE"
    printf '%-13s %-25s %9s %7s %8s %8s %8s %10s %10s %8s\n' body target 'req/s' '/cookie' 'p50 ms' 'p99 ms' 'p99 diff' 'gh CPU ms' 'Redis CPU' 'GET/req'
    printf '%-13s %-25s %9s %7s %8s %8s %8s %10s %10s %8s\n' '' '' '' '' '' '' 'ms' '/1k req' 'ms/1k req' ''
    printf '%s\n' "$WIDE_RULE"
    for b in "${BODY_LIST[@]}"; do
        shown="$b ($(human_bytes "${BODY_BYTES[$b]}"))"
        for t in "${REDIS_GROUP[@]}"; do
            wanted "$t" || continue
            k="$t|$b|$c" rel="-" d="-"
            if [[ "$t" != gatehouse ]] && wanted gatehouse; then
                rel="$(paired_ratio "$t" gatehouse "$b" "$c")"
                d="$(paired_p99_delta "$t" gatehouse "$b" "$c")"
            fi
            awk -v body="$shown" -v l="$(label "$t")" -v rps="${RES[$k.rps]}" -v rel="$rel" \
                -v p50="${RES[$k.p50_us]}" -v p99="${RES[$k.p99_us]}" -v d="$d" \
                -v gh="$(per_1k "$t" "$b" "$c" gh_cpu_ms)" -v rc="$(per_1k "$t" "$b" "$c" redis_cpu_ms %.3f)" \
                -v gets="$(per_1k "$t" "$b" "$c" redis_gets %.0f)" \
                'BEGIN { if (gets != "-") gets = sprintf("%.3f", gets / 1000);
                         printf "%-13s %-25s %9.0f %7s %8.2f %8.2f %8s %10s %10s %8s\n",
                         body, l, rps, rel, p50 / 1000, p99 / 1000, d, gh, rc, gets }'
            shown=""
        done
    done
    printf '%s\n' "$WIDE_RULE"
    wanted gatehouse || return 0
    local short
    for t in gatehouse-redis gatehouse-redis-miss; do
        wanted "$t" || continue
        short="$(label "$t")" short="${short%% *}"
        line=""
        for b in "${BODY_LIST[@]}"; do line+="  $b: $(round_ratios "$t" gatehouse "$b" "$c")"; done
        printf '%s/(c) in each round:%s\n' "$short" "$line"
        for b in "${BODY_LIST[@]}"; do
            printf 'p99 %s-(c), ms, %-5s %s\n' "$short" "$b:" "$(round_p99_deltas "$t" gatehouse "$b" "$c")"
        done
    done
    if wanted gatehouse-redis && wanted gatehouse-redis-miss; then
        line=""
        for b in "${BODY_LIST[@]}"; do line+="  $b: $(round_ratios gatehouse-redis-miss gatehouse-redis "$b" "$c")"; done
        printf '(h)/(g) in each round:%s\n' "$line"
    fi
    if wanted gatehouse-redis; then
        line=""
        for b in "${BODY_LIST[@]}"; do
            rel="$(paired_ratio gatehouse-redis gatehouse "$b" "$c")"
            d="$(paired_p99_delta gatehouse-redis gatehouse "$b" "$c")"
            verdict="$(awk -v r="$rel" -v d="$d" 'BEGIN { print (r >= 0.95 && d <= 0.30 ? "meets the target" : "MISSES the target") }')"
            line+="${line:+; }$b: $rel, $d ms, $verdict"
        done
        printf 'verdict (g) against (c), medians over the rounds: %s\n' "$line"
        line=""
        for b in "${BODY_LIST[@]}"; do line+="${line:+; }$b: $(quiet_pairs gatehouse-redis gatehouse "$b" "$c")"; done
        printf 'the same over the quiet rounds only (others <= %s%% in both runs): %s\n' "$QUIET_OTHERS" "$line"
    fi
}


# row TARGET BODY CONNECTIONS SHOWN_BODY: one table row.
row() {
    local k="$1|$2|$3" rel="-" rss="-"
    if wanted nginx && [[ " ${PROXY_TARGETS[*]} " == *" $1 "* ]]; then rel="$(ratio "$1" nginx "$2" "$3")"; fi
    [[ -n "${RES[$k.rss]:-}" ]] && rss="$(kib_to_mib "${RES[$k.rss]}")"
    awk -v body="$4" -v l="$(label "$1")" -v rps="${RES[$k.rps]}" -v rel="$rel" \
        -v p50="${RES[$k.p50_us]}" -v p99="${RES[$k.p99_us]}" -v st="${RES[$k.steal]}" \
        -v ot="${RES[$k.others]}" -v err="${RES[$k.errors]}" -v rss="$rss" \
        'BEGIN { printf "%-13s %-25s %9.0f %7s %8.2f %8.2f %6.1f%% %6.1f%% %7d %8s\n",
                 body, l, rps, rel, p50 / 1000, p99 / 1000, st, ot, err, rss }'
}

table_head() {
    printf '%s\n' "$RULE"
    printf '%-13s %-25s %9s %7s %8s %8s %7s %7s %7s %8s\n' body target 'req/s' '/nginx' 'p50 ms' 'p99 ms' steal others errors 'RSS MiB'
    printf '%s\n' "$RULE"
}

print_report() {
    local c b t shown failed=0 line any_proxy=0 any_fa=0
    wanted_any "${PROXY_TARGETS[@]}" && any_proxy=1
    wanted_any "${FA_TARGETS[@]}" && any_fa=1
    printf '\n'
    printf 'gatehouse bench: %s rounds of %s per run (+%s warm-up), %s wrk threads, %s CPUs, connection sets: %s\n' \
        "$ROUNDS" "$DURATION" "$WARMUP" "$THREADS" "$(nproc)" "${CONN_LIST[*]}"
    printf 'figures: the median round (by req/s) of each run; /nginx = req/s over (b) for the same body and connections;\n'
    printf 'steal = CPU steal during that run (high: the VM host was busy); others = CPU share of processes outside\n'
    printf 'this benchmark during that run (high: something else on the machine competed; rerun); RSS = gatehouse after that run\n'
    if ((any_proxy)); then
        printf 'upstream (a): nginx, keepalive; bodies:\n'
        for b in "${BODY_LIST[@]}"; do
            printf '  %-6s %-37s %7s bytes, %s\n' "$b" "GET ${BODY_PATH[$b]}" "${BODY_BYTES[$b]}" "${BODY_WHAT[$b]}"
        done
    fi
    for c in "${CONN_LIST[@]}"; do
        if ((any_proxy)); then
            printf '\n== %s connections ==\n' "$c"
            table_head
            for b in "${BODY_LIST[@]}"; do
                shown="$b ($(human_bytes "${BODY_BYTES[$b]}"))"
                for t in "${PROXY_TARGETS[@]}"; do
                    wanted "$t" || continue
                    row "$t" "$b" "$c" "$shown"
                    shown=""
                done
            done
            printf '%s\n' "$RULE"
            if wanted gatehouse && wanted nginx; then
                line=""
                for b in "${BODY_LIST[@]}"; do line+="  $b: $(round_ratios gatehouse nginx "$b" "$c")"; done
                printf 'gatehouse/nginx in each round:%s\n' "$line"
                for b in "${BODY_LIST[@]}"; do
                    printf 'p99 gatehouse-nginx, ms, %-5s %s\n' "$b:" "$(round_p99_deltas gatehouse nginx "$b" "$c")"
                done
            fi
            if wanted apache && wanted nginx; then
                line=""
                for b in "${BODY_LIST[@]}"; do line+="  $b: $(round_ratios apache nginx "$b" "$c")"; done
                printf 'apache/nginx in each round:   %s\n' "$line"
            fi
            if wanted gatehouse && wanted apache; then
                line=""
                for b in "${BODY_LIST[@]}"; do line+="  $b: $(ratio gatehouse apache "$b" "$c")"; done
                printf 'gatehouse/apache (median):    %s\n' "$line"
            fi
            if wanted gatehouse && wanted gatehouse-metrics; then
                line=""
                for b in "${BODY_LIST[@]}"; do line+="  $b: $(round_ratios gatehouse-metrics gatehouse "$b" "$c")"; done
                printf '(m)/(c), metrics on over off, in each round:%s\n' "$line"
                line=""
                for b in "${BODY_LIST[@]}"; do
                    line+="${line:+; }$b: $(paired_ratio gatehouse-metrics gatehouse "$b" "$c"), p99 $(paired_p99_delta gatehouse-metrics gatehouse "$b" "$c") ms, CPU/1k req $(per_1k gatehouse-metrics "$b" "$c" gh_cpu_ms) against $(per_1k gatehouse "$b" "$c" gh_cpu_ms) ms"
                done
                printf '(m) against (c), medians over the rounds (target: >= 0.98): %s\n' "$line"
            fi
            if wanted_any gatehouse-redis gatehouse-redis-miss; then print_store_table "$c"; fi
        fi
        if ((any_fa)); then
            printf '\nforward auth, %s connections: nginx auth_request in front of gatehouse whoami; same session cookie\n' "$c"
            table_head
            for t in "${FA_TARGETS[@]}"; do
                wanted "$t" || continue
                row "$t" "$FA_BODY" "$c" "whoami page"
            done
            printf '%s\n' "$RULE"
            if wanted nginx-fa && wanted nginx-ceiling; then
                local de verdict
                de="$(ratio nginx-fa nginx-ceiling "$FA_BODY" "$c")"
                verdict="$(awk -v r="$de" 'BEGIN { print (r >= 0.85 ? "meets the target" : "BELOW the target") }')"
                printf 'rps ratio nginx-fa/ceiling (d/e):  %s   (%s: at least 0.85 of the ceiling)\n' "$de" "$verdict"
                printf 'd/e in each round:                 %s\n' "$(round_ratios nginx-fa nginx-ceiling "$FA_BODY" "$c")"
            fi
        fi
    done
    if wanted_any gatehouse gatehouse-auth; then
        printf '\ngatehouse RSS idle (after start and login):  %s MiB\n' "$(kib_to_mib "$RSS_IDLE_KIB")"
        printf 'gatehouse RSS after all the load:            %s MiB (peak VmHWM %s MiB)\n' \
            "$(kib_to_mib "$RSS_FINAL_KIB")" "$(kib_to_mib "$HWM_FINAL_KIB")"
        printf '%s\n' '(RSS is of the whole "gatehouse demo" process, embedded dev IdP included)'
    fi
    if [[ -n "$GATEHOUSE_REDIS_PID" ]]; then
        printf 'gatehouse-redis (serve, redis store) RSS idle after the login: %s MiB; after all the load: %s MiB (peak VmHWM %s MiB)\n' \
            "$(kib_to_mib "$REDIS_RSS_IDLE_KIB")" "$(kib_to_mib "$REDIS_RSS_FINAL_KIB")" "$(kib_to_mib "$REDIS_HWM_FINAL_KIB")"
        printf 'redis-server %s (%s), --save '"''"' --appendonly no%s\n' \
            "$(redis_version)" "$REDIS_BIN" \
            "$(wanted gatehouse-redis-miss && printf '; (h) cycles through %s sessions' "$MISS_SESSIONS")"
    fi
    if wanted apache; then
        printf 'apache: event MPM %s, mod_auth_openidc %s sessions,\n' \
            "$([[ "$APACHE_MPM" == shipped ]] && echo "as Debian ships it (MaxRequestWorkers 150)" || echo "sized (400 threads)")" \
            "$APACHE_SESSION_TYPE"
        printf '        signed in at the dev IdP of gatehouse demo, the provider gatehouse uses (client %s)\n' \
            "$APACHE_CLIENT_ID"
    fi
    printf 'run time: %dm%02ds\n' $(((SECONDS - STARTED_AT) / 60)) $(((SECONDS - STARTED_AT) % 60))
    local where="" bodies n
    for c in "${CONN_LIST[@]}"; do
        for t in "${SELECTED[@]}"; do
            bodies=("${BODY_LIST[@]}")
            [[ " ${FA_TARGETS[*]} " == *" $t "* ]] && bodies=("$FA_BODY")
            for b in "${bodies[@]}"; do
                n="${RES[$t|$b|$c.errors]}"
                if ((n > 0)); then
                    failed=$((failed + n))
                    where+="${where:+, }$t $b c=$c: $n"
                fi
            done
        done
    done
    if ((failed > 0)); then
        printf 'WARNING: some requests failed (socket errors or HTTP >= 400), over all rounds: %s\n' "$where"
        printf '         raw wrk output in %s\n' "$TMP"
        KEEP_TMP=1
    fi
}

main() {
    local t b
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    select_targets
    require_tools
    parse_settings
    resolve_gatehouse_bin
    STARTED_AT=$SECONDS
    make_tmp
    allocate_ports
    start_upstream
    if wanted_any "${FA_TARGETS[@]}"; then start_whoami; fi
    if wanted nginx; then start_nginx; fi
    start_gatehouse
    login_gatehouse
    RSS_IDLE_KIB="$(rss_kib "$GATEHOUSE_PID")"
    if wanted gatehouse-metrics; then
        start_gatehouse_metrics
        login_gatehouse_metrics
    fi
    if wanted_any gatehouse-redis gatehouse-redis-miss; then
        start_redis
        start_gatehouse_redis
        login_gatehouse_redis
        REDIS_RSS_IDLE_KIB="$(rss_kib "$GATEHOUSE_REDIS_PID")"
    fi
    if wanted gatehouse-redis-miss; then login_miss_sessions; fi
    if wanted apache; then
        start_apache
        login_apache
    fi
    if wanted nginx-fa; then start_nginx_fa; fi
    if wanted nginx-ceiling; then start_nginx_ceiling; fi
    for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
        for CONNECTIONS in "${CONN_LIST[@]}"; do
            log "round $ROUND of $ROUNDS, $CONNECTIONS connections"
            for b in "${BODY_LIST[@]}"; do
                for t in "${PROXY_TARGETS[@]}"; do
                    if wanted "$t"; then bench_proxy "$t" "$b"; fi
                done
            done
            for t in "${FA_TARGETS[@]}"; do
                if wanted "$t"; then bench_fa "$t"; fi
            done
        done
    done
    RSS_FINAL_KIB="$(rss_kib "$GATEHOUSE_PID")"
    HWM_FINAL_KIB="$(hwm_kib "$GATEHOUSE_PID")"
    if [[ -n "$GATEHOUSE_REDIS_PID" ]]; then
        REDIS_RSS_FINAL_KIB="$(rss_kib "$GATEHOUSE_REDIS_PID")"
        REDIS_HWM_FINAL_KIB="$(hwm_kib "$GATEHOUSE_REDIS_PID")"
    fi
    pick_medians
    print_report
}

# Run only when executed; bench/tls.sh sources this file for its functions.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    if [[ "${1:-}" == tls ]]; then exec "$SCRIPT_DIR/tls.sh" "${@:2}"; fi
    main "$@"
fi
