//! The scrape: the shards' sum written in the Prometheus text exposition format 0.0.4
//! (`# HELP` and `# TYPE` before each family's samples, one family per name, histograms
//! with cumulative `_bucket{le=...}` ending in `+Inf`, `_sum` and `_count`).
//!
//! Small label sets are written in full, zeros included, so that `rate()` and alerts see
//! a series from the first scrape; the status codes and login failure codes only once
//! they have been seen.

use super::layout as l;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Whether a family's zero series are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Show {
    All,
    Seen,
}

/// The whole exposition, now.
pub fn render() -> String {
    let t = super::shard::sum();
    let mut out = String::with_capacity(16 * 1024);
    http(&mut out, &t);
    histogram(
        &mut out,
        &t,
        "gatehouse_http_request_duration_seconds",
        "Time from a request's head to gatehouse's response head, by how it was handled (a proxied response's body streams after).",
        l::HTTP_SECONDS,
        Some(("mode", l::MODES)),
        (l::LATENCY_LE, l::LATENCY_NS.len()),
    );
    histogram(
        &mut out,
        &t,
        "gatehouse_upstream_duration_seconds",
        "Time from sending a request to the upstream (connecting included when no idle connection was free) to its response head.",
        l::UPSTREAM_SECONDS,
        None,
        (l::LATENCY_LE, l::LATENCY_NS.len()),
    );
    counters(
        &mut out,
        &t,
        "gatehouse_upstream_errors_total",
        "Exchanges with the upstream that failed, by kind (the client got a 502 or 504).",
        l::UPSTREAM_ERROR,
        &[("kind", l::UPSTREAM_ERRORS)],
        Show::All,
    );
    counters(
        &mut out,
        &t,
        "gatehouse_logins_total",
        "Sign-in callbacks, by result: ok, or the error code of the failure.",
        l::LOGINS,
        &[("result", l::LOGIN_RESULTS)],
        Show::Seen,
    );
    // `ok` is always written, so that a failure ratio has a denominator from the start.
    if t[l::LOGINS] == 0 {
        out.push_str("gatehouse_logins_total{result=\"ok\"} 0\n");
    }
    counters(&mut out, &t, "gatehouse_refreshes_total", "Token refreshes, by result (joined: shared one in flight in this replica; reused: another replica's result).", l::REFRESHES, &[("result", l::REFRESH_RESULTS)], Show::All);
    counters(
        &mut out,
        &t,
        "gatehouse_denials_total",
        "Signed-in users refused by an access rule, by the rule's setting and where it was set.",
        l::DENIALS,
        &[("rule", l::DENIAL_RULES), ("source", l::DENIAL_SOURCES)],
        Show::All,
    );
    counters(
        &mut out,
        &t,
        "gatehouse_bearer_tokens_total",
        "Bearer tokens presented, by result: accepted, or why they were refused.",
        l::BEARER,
        &[("result", l::BEARER_RESULTS)],
        Show::All,
    );
    counters(&mut out, &t, "gatehouse_provider_requests_total", "Calls to the identity provider, by endpoint and result (the status class, or the kind of failure).", l::PROVIDER_REQUESTS, &[("endpoint", l::PROVIDER_ENDPOINTS), ("result", l::PROVIDER_RESULTS)], Show::All);
    histogram(
        &mut out,
        &t,
        "gatehouse_provider_request_duration_seconds",
        "Time from sending a call to the identity provider to its response head, by endpoint.",
        l::PROVIDER_SECONDS,
        Some(("endpoint", l::PROVIDER_ENDPOINTS)),
        (l::LATENCY_LE, l::LATENCY_NS.len()),
    );
    let open = |opened: usize, closed: usize| t[opened].saturating_sub(t[closed]);
    gauge(
        &mut out,
        "gatehouse_open_connections",
        "Client connections open now (upgraded ones excluded).",
        open(l::CONNECTIONS_OPENED, l::CONNECTIONS_CLOSED),
    );
    single(
        &mut out,
        "gatehouse_connections_total",
        "Client connections accepted.",
        "counter",
        t[l::CONNECTIONS_OPENED],
    );
    single(
        &mut out,
        "gatehouse_connections_refused_total",
        "Client connections refused at max_connections (answered 503).",
        "counter",
        t[l::CONNECTIONS_REFUSED],
    );
    gauge(
        &mut out,
        "gatehouse_open_websockets",
        "Upgraded connections (WebSockets) open now.",
        open(l::WEBSOCKETS_OPENED, l::WEBSOCKETS_CLOSED),
    );
    single(
        &mut out,
        "gatehouse_websockets_total",
        "Upgraded connections (WebSockets) opened.",
        "counter",
        t[l::WEBSOCKETS_OPENED],
    );
    store(&mut out, &t);
    config(&mut out);
    let _ = write!(
        out,
        "# HELP gatehouse_build_info The running gatehouse's version.\n# TYPE gatehouse_build_info gauge\ngatehouse_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    );
    super::process::render(&mut out);
    out
}

fn help(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

fn single(out: &mut String, name: &str, text: &str, kind: &str, v: u64) {
    help(out, name, text, kind);
    let _ = writeln!(out, "{name} {v}");
}

fn gauge(out: &mut String, name: &str, text: &str, v: u64) {
    single(out, name, text, "gauge", v);
}

/// `{a="x",b="y"}` for the series at `k` of a family with `labels`, last label fastest.
fn label_set(labels: &[(&str, &[&str])], mut k: usize) -> String {
    let mut parts = Vec::with_capacity(labels.len());
    for (name, values) in labels.iter().rev() {
        let n = values.len().max(1);
        parts.push(format!("{name}=\"{}\"", values.get(k % n).unwrap_or(&"")));
        k /= n;
    }
    parts.reverse();
    format!("{{{}}}", parts.join(","))
}

fn counters(
    out: &mut String,
    t: &[u64],
    name: &str,
    text: &str,
    offset: usize,
    labels: &[(&str, &[&str])],
    show: Show,
) {
    help(out, name, text, "counter");
    let series: usize = labels.iter().map(|(_, v)| v.len()).product();
    for k in 0..series {
        let v = t.get(offset + k).copied().unwrap_or(0);
        if v > 0 || show == Show::All {
            let _ = writeln!(out, "{name}{} {v}", label_set(labels, k));
        }
    }
}

/// `gatehouse_http_requests_total{mode,code}`: codes as they are seen.
fn http(out: &mut String, t: &[u64]) {
    let name = "gatehouse_http_requests_total";
    help(out, name, "Requests answered, by how they were handled (proxy, forward_auth, endpoint) and status code.", "counter");
    for (m, mode) in l::MODES.iter().enumerate() {
        for c in 0..l::CODES {
            let v = t
                .get(l::HTTP_REQUESTS + m * l::CODES + c)
                .copied()
                .unwrap_or(0);
            if v == 0 {
                continue;
            }
            if c == l::CODES - 1 {
                let _ = writeln!(out, "{name}{{mode=\"{mode}\",code=\"other\"}} {v}");
            } else {
                let _ = writeln!(out, "{name}{{mode=\"{mode}\",code=\"{}\"}} {v}", c + 100);
            }
        }
    }
}

/// A histogram family, with one label or none. `le`: the bounds' texts and how many.
fn histogram(
    out: &mut String,
    t: &[u64],
    name: &str,
    text: &str,
    offset: usize,
    label: Option<(&str, &[&str])>,
    (le, buckets): (&[&str], usize),
) {
    help(out, name, text, "histogram");
    let width = buckets + 2;
    let values: &[&str] = label.map_or(&[""], |(_, v)| v);
    for (i, value) in values.iter().enumerate() {
        let at = |j: usize| t.get(offset + i * width + j).copied().unwrap_or(0);
        let (open, sep) = match label {
            Some((lname, _)) => (format!("{lname}=\"{value}\""), ","),
            None => (String::new(), ""),
        };
        let mut cumulative = 0u64;
        for (j, bound) in le.iter().enumerate().take(buckets) {
            cumulative = cumulative.wrapping_add(at(j));
            let _ = writeln!(
                out,
                "{name}_bucket{{{open}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative = cumulative.wrapping_add(at(buckets));
        let _ = writeln!(out, "{name}_bucket{{{open}{sep}le=\"+Inf\"}} {cumulative}");
        let braces = if open.is_empty() {
            String::new()
        } else {
            format!("{{{open}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", seconds(at(buckets + 1)));
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

/// Nanoseconds as seconds, in the format's float syntax.
fn seconds(ns: u64) -> String {
    format!("{}", ns as f64 / 1e9)
}

fn store(out: &mut String, t: &[u64]) {
    let kind = match super::STORE_KIND.load(Ordering::Relaxed) {
        1 => Some("cookie"),
        2 => Some("redis"),
        _ => None,
    };
    if let Some(kind) = kind {
        help(out, "gatehouse_session_store_up", "Whether the session store answers (the cookie store always does; Redis by the health check every half second).", "gauge");
        let up = u8::from(super::STORE_UP.load(Ordering::Relaxed));
        let _ = writeln!(out, "gatehouse_session_store_up{{store=\"{kind}\"}} {up}");
    }
    counters(out, t, "gatehouse_session_store_operations_total", "Session store operations, by operation and result (error: the store could not answer, or the session could not be kept, e.g. too large for cookies).", l::STORE_OPERATIONS, &[("op", l::STORE_OPS), ("result", l::STORE_RESULTS)], Show::All);
    counters(out, t, "gatehouse_session_cache_lookups_total", "Looks in the per-thread cache of opened sessions (a redis store's miss costs a round trip to Redis).", l::CACHE_LOOKUPS, &[("result", l::CACHE_RESULTS)], Show::All);
    counters(out, t, "gatehouse_session_ends_total", "Session ends asked for, by cause (one sign-out everywhere or back-channel logout may end several sessions).", l::SESSION_ENDS, &[("cause", l::END_CAUSES)], Show::All);
    counters(
        out,
        t,
        "gatehouse_redis_commands_total",
        "Redis commands sent for requests (the health check's PING excluded), by result.",
        l::REDIS_COMMANDS,
        &[("result", l::REDIS_RESULTS)],
        Show::All,
    );
    histogram(
        out,
        t,
        "gatehouse_redis_command_duration_seconds",
        "Time a Redis command took, connecting included, bounded by redis_timeout_ms.",
        l::REDIS_SECONDS,
        None,
        (l::FAST_LE, l::FAST_NS.len()),
    );
}

fn config(out: &mut String) {
    help(
        out,
        "gatehouse_config_reloads_total",
        "Configuration reloads, by result (failed: the previous configuration stays in use).",
        "counter",
    );
    let _ = writeln!(
        out,
        "gatehouse_config_reloads_total{{result=\"ok\"}} {}",
        super::RELOADS_OK.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "gatehouse_config_reloads_total{{result=\"failed\"}} {}",
        super::RELOADS_FAILED.load(Ordering::Relaxed)
    );
    gauge(
        out,
        "gatehouse_config_last_reload_successful",
        "Whether the last configuration reload succeeded (1 before any reload).",
        u64::from(!super::LAST_RELOAD_FAILED.load(Ordering::Relaxed)),
    );
    let at = match super::LAST_RELOAD_OK.load(Ordering::Relaxed) {
        0 => super::process::start_secs(),
        at => at,
    };
    gauge(out, "gatehouse_config_last_reload_success_timestamp_seconds", "When the configuration in use was loaded (Unix seconds; the start-up load before any reload).", at);
    match super::TLS_CERT_EXPIRY.load(Ordering::Relaxed) {
        0 => {}
        t => gauge(out, "gatehouse_tls_certificate_expiry_timestamp_seconds", "When the certificate served on listen expires (its notAfter, Unix seconds); follows a reload of the certificate files.", t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family has HELP and TYPE once, before its samples; histograms are cumulative
    /// and end in +Inf, with _count equal to the +Inf bucket.
    #[test]
    fn exposition_is_well_formed() {
        crate::metrics::enable();
        crate::metrics::request(
            crate::metrics::Mode::Proxy,
            200,
            crate::metrics::Timer::start(),
        );
        crate::metrics::request(
            crate::metrics::Mode::Endpoint,
            1000,
            crate::metrics::Timer::start(),
        );
        let text = render();
        let mut declared = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(declared.insert(name.clone()), "{name} declared twice");
                current = name;
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| *f == current))
                .unwrap_or(name);
            assert_eq!(family, current, "sample outside its family: {line}");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert!(text.contains("gatehouse_http_requests_total{mode=\"proxy\",code=\"200\"} "));
        assert!(text.contains("gatehouse_http_requests_total{mode=\"endpoint\",code=\"other\"} "));
        assert!(
            !text.contains("code=\"201\""),
            "unseen codes are not written"
        );
        let inf = text
            .lines()
            .find(|l| {
                l.starts_with(
                    "gatehouse_http_request_duration_seconds_bucket{mode=\"proxy\",le=\"+Inf\"}",
                )
            })
            .unwrap();
        let count = text
            .lines()
            .find(|l| {
                l.starts_with("gatehouse_http_request_duration_seconds_count{mode=\"proxy\"}")
            })
            .unwrap();
        assert_eq!(inf.rsplit(' ').next(), count.rsplit(' ').next());
        assert!(text.contains("gatehouse_build_info{version=\""));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut t = vec![0u64; l::SLOTS];
        let base = l::UPSTREAM_SECONDS;
        t[base] = 2; // <= 0.5 ms
        t[base + 3] = 1; // <= 5 ms
        t[base + l::LATENCY_NS.len()] = 1; // over a minute
        t[base + l::LATENCY_NS.len() + 1] = 1_500_000_000;
        let mut out = String::new();
        histogram(
            &mut out,
            &t,
            "h",
            "x",
            base,
            None,
            (l::LATENCY_LE, l::LATENCY_NS.len()),
        );
        assert!(out.contains("h_bucket{le=\"0.0005\"} 2\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"0.0025\"} 2\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"0.005\"} 3\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"60\"} 3\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("h_sum 1.5\n"), "{out}");
        assert!(out.contains("h_count 4\n"), "{out}");
    }

    #[test]
    fn buckets_take_their_upper_bound() {
        assert_eq!(l::bucket(l::LATENCY_NS, 0), 0);
        assert_eq!(l::bucket(l::LATENCY_NS, 500_000), 0);
        assert_eq!(l::bucket(l::LATENCY_NS, 500_001), 1);
        assert_eq!(l::bucket(l::LATENCY_NS, u64::MAX), l::LATENCY_NS.len());
        assert_eq!(l::LATENCY_LE.len(), l::LATENCY_NS.len());
        assert_eq!(l::FAST_LE.len(), l::FAST_NS.len());
    }

    /// The reload hook other code calls: counted by result, and the timestamp and the
    /// "last reload successful" gauge follow.
    #[test]
    fn config_reloads_are_counted_and_stamped() {
        crate::metrics::config_reloaded(false);
        let text = render();
        assert!(
            text.contains("gatehouse_config_reloads_total{result=\"failed\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("gatehouse_config_last_reload_successful 0\n"));
        crate::metrics::config_reloaded(true);
        let text = render();
        assert!(text.contains("gatehouse_config_reloads_total{result=\"ok\"} 1\n"));
        assert!(text.contains("gatehouse_config_last_reload_successful 1\n"));
        let stamp: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("gatehouse_config_last_reload_success_timestamp_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(stamp.abs_diff(crate::util::now_secs()) <= 2);
    }
}
