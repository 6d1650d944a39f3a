//! W3C Trace Context through the real binary: what the upstream (the echo upstream)
//! receives for a valid, an absent and each kind of invalid `traceparent`, and that
//! gatehouse's log line for the request names the trace id the upstream saw.

use crate::support::idp::TestIdp;
use crate::support::redis::free_port;
use crate::support::upstream::{seen, Upstream};
use crate::support::{Browser, Captured, RealGatehouse};
use serde_json::Value;

const TID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A version-00 `traceparent` as gatehouse writes one: its trace id.
fn trace_id_of(tp: &str) -> &str {
    let ok = tp.len() == 55
        && tp.starts_with("00-")
        && tp.bytes().enumerate().all(|(i, b)| {
            matches!(i, 2 | 35 | 52) && b == b'-'
                || b.is_ascii_digit()
                || (b'a'..=b'f').contains(&b)
        })
        && tp[3..35] != "0".repeat(32)
        && tp[36..52] != "0".repeat(16);
    assert!(ok, "not a valid traceparent: {tp}");
    &tp[3..35]
}

/// The log line (JSON) naming `request_id`; its `trace_id`.
async fn logged_trace_id(err: &Captured, request_id: &str) -> String {
    let line = err
        .line(&format!("with request_id {request_id}"), |l| {
            l.contains(&format!("\"request_id\":\"{request_id}\""))
        })
        .await;
    let v: Value = serde_json::from_str(&line).unwrap();
    v["fields"]["trace_id"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// GET `path` with `headers`; the upstream's echo.
async fn through(gh: &RealGatehouse, path: &str, headers: &[(&str, &str)]) -> Value {
    let r = Browser::new()
        .send(reqwest::Method::GET, &format!("{}{path}", gh.url), headers)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    serde_json::from_str(&r.body).unwrap()
}

#[tokio::test]
async fn trace_context_is_continued_or_started_afresh_and_logged_with_the_request_id() {
    let idp = TestIdp::start().await;
    let up = Upstream::start().await;
    let flags = [
        "--log-level",
        "debug",
        "--log-format",
        "json",
        "--skip-auth-routes",
        "/public/**",
    ];
    let (gh, err) = RealGatehouse::start_capturing(free_port(), &up.url, &idp.issuer, &flags).await;

    // A valid one goes on as it came, with its tracestate; the log line has its trace id.
    let echo = through(
        &gh,
        "/public/a",
        &[("traceparent", VALID), ("tracestate", "congo=t61rcWkgMzE")],
    )
    .await;
    assert_eq!(seen(&echo, "traceparent"), [VALID]);
    assert_eq!(seen(&echo, "tracestate"), ["congo=t61rcWkgMzE"]);
    let rid = &seen(&echo, "x-request-id")[0];
    assert_eq!(logged_trace_id(&err, rid).await, TID);

    // A higher version: the same trace, written as version 00 (W3C §3.2.4).
    let echo = through(
        &gh,
        "/public/b",
        &[
            (
                "traceparent",
                &format!("cc-{TID}-00f067aa0ba902b7-01-later-field"),
            ),
            ("tracestate", "rojo=1"),
        ],
    )
    .await;
    assert_eq!(seen(&echo, "traceparent"), [VALID]);
    assert_eq!(seen(&echo, "tracestate"), ["rojo=1"]);

    // None: a fresh one, which the log line names too.
    let echo = through(&gh, "/public/c", &[]).await;
    let sent = seen(&echo, "traceparent");
    assert_eq!(sent.len(), 1, "{echo}");
    let fresh = trace_id_of(&sent[0]).to_string();
    let rid = &seen(&echo, "x-request-id")[0];
    assert_eq!(logged_trace_id(&err, rid).await, fresh);

    // Invalid ones are replaced, and their tracestate dropped (W3C §4.3, §3.3).
    let zero_tid = format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32));
    let zero_pid = format!("00-{TID}-{}-01", "0".repeat(16));
    let upper = VALID.to_ascii_uppercase();
    let long = format!("{VALID}-00");
    let short = &VALID[..54];
    let nonhex = VALID.replace("4bf9", "4bg9");
    let ff = VALID.replacen("00-", "ff-", 1);
    let mut fresh_ids = Vec::new();
    for bad in [
        &ff,
        &upper,
        &zero_tid,
        &zero_pid,
        &long,
        &short.to_string(),
        &nonhex,
    ] {
        let echo = through(
            &gh,
            "/public/d",
            &[("traceparent", bad), ("tracestate", "congo=1")],
        )
        .await;
        let sent = seen(&echo, "traceparent");
        assert_eq!(sent.len(), 1, "{bad}: {echo}");
        let id = trace_id_of(&sent[0]).to_string();
        assert_ne!(id, TID, "{bad}");
        assert!(
            seen(&echo, "tracestate").is_empty(),
            "{bad}: tracestate kept: {echo}"
        );
        fresh_ids.push(id);
    }
    // Several header lines: which would the caller mean? A fresh trace.
    let r = crate::support::raw_http(
        gh.url.trim_start_matches("http://").parse().unwrap(),
        format!("GET /public/e HTTP/1.1\r\nHost: x\r\ntraceparent: {VALID}\r\ntraceparent: {VALID}\r\ntracestate: a=1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    let body = String::from_utf8_lossy(&r);
    let echo: Value = serde_json::from_str(&body[body.find('{').unwrap()..]).unwrap();
    let sent = seen(&echo, "traceparent");
    assert_eq!(sent.len(), 1, "{echo}");
    assert_ne!(trace_id_of(&sent[0]), TID);
    assert!(seen(&echo, "tracestate").is_empty());
    fresh_ids.sort();
    fresh_ids.dedup();
    assert_eq!(fresh_ids.len(), 7, "every fresh trace is a new one");

    // A refused request's log line carries the caller's trace id beside the request id.
    let r = Browser::new()
        .send(
            reqwest::Method::GET,
            &format!("{}/private", gh.url),
            &[("traceparent", VALID), ("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, 401);
    let rid = r.json()["request_id"].as_str().unwrap().to_string();
    assert_eq!(logged_trace_id(&err, &rid).await, TID);
    // Forward-auth answers carry no traceparent: the ingress owns propagation.
    let r = Browser::new()
        .send(
            reqwest::Method::GET,
            &format!("{}/oauth2/auth", gh.url),
            &[("traceparent", VALID)],
        )
        .await;
    assert!(r.headers.get("traceparent").is_none(), "{r:?}");
}
