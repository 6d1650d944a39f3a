//! The `traceparent` parser against the cases of W3C Trace Context §3.2 and §3.2.4, and
//! what the upstream is sent for each kind of request.

use super::*;

const TID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PID: &str = "00f067aa0ba902b7";

fn ok(v: &str) -> (TraceParent, u8) {
    parse(v.as_bytes()).unwrap_or_else(|| panic!("{v} should be valid"))
}

#[test]
fn valid_values_are_read_and_version_00_round_trips() {
    for v in [
        format!("00-{TID}-{PID}-01"),
        format!("00-{TID}-{PID}-00"),
        // Flags gatehouse does not know are still a valid version-00 value: forwarded.
        format!("00-{TID}-{PID}-ff"),
        format!("00-{TID}-{PID}-09"),
        // Only all-zero ids are forbidden, not zero bytes in them.
        "00-0000000000000000000000000000000a-000000000000000b-01".to_string(),
    ] {
        let (tp, version) = ok(&v);
        assert_eq!(version, 0);
        assert_eq!(tp.encode().as_slice(), v.as_bytes(), "{v}");
    }
    let (tp, _) = ok(&format!("00-{TID}-{PID}-01"));
    assert_eq!(tp.trace_id.to_string(), TID);
    assert_eq!(tp.flags, 1);
}

#[test]
fn a_higher_version_is_continued_as_version_00_with_only_the_sampled_flag() {
    for (v, flags) in [
        (format!("01-{TID}-{PID}-01"), 1),
        (format!("cc-{TID}-{PID}-01-what-the-future-holds"), 1),
        (format!("fe-{TID}-{PID}-0b-"), 1),
        (format!("02-{TID}-{PID}-fe"), 0),
    ] {
        let (tp, version) = ok(&v);
        assert_ne!(version, 0, "{v}");
        assert_eq!(tp.flags, flags, "{v}");
        let sent = String::from_utf8(tp.encode().to_vec()).unwrap();
        assert_eq!(sent, format!("00-{TID}-{PID}-0{flags}"), "{v}");
    }
}

#[test]
fn invalid_values_are_refused() {
    let upper_tid = TID.to_ascii_uppercase();
    let cases = [
        ("empty", String::new()),
        ("version ff", format!("ff-{TID}-{PID}-01")),
        ("version ff, longer", format!("ff-{TID}-{PID}-01-x")),
        ("uppercase version", format!("0A-{TID}-{PID}-01")),
        ("one-digit version", format!("0-{TID}-{PID}-01")),
        (
            "version 00 with a field more",
            format!("00-{TID}-{PID}-01-00"),
        ),
        ("version 00, trailing space", format!("00-{TID}-{PID}-01 ")),
        ("version 00 one short", format!("00-{TID}-{PID}-1")),
        ("higher version, short", format!("01-{TID}-{PID}-1")),
        (
            "higher version, no dash after flags",
            format!("01-{TID}-{PID}-011"),
        ),
        ("trace-id one short", format!("00-{}-{PID}-01", &TID[1..])),
        ("trace-id one long", format!("00-{TID}0-{PID}-01")),
        ("parent-id one short", format!("00-{TID}-{}-01", &PID[1..])),
        ("uppercase trace-id", format!("00-{upper_tid}-{PID}-01")),
        (
            "uppercase parent-id",
            format!("00-{TID}-00F067AA0BA902B7-01"),
        ),
        ("uppercase flags", format!("00-{TID}-{PID}-0A")),
        ("non-hex trace-id", format!("00-{}g-{PID}-01", &TID[1..])),
        ("non-hex parent-id", format!("00-{TID}-{}z-01", &PID[1..])),
        ("non-hex flags", format!("00-{TID}-{PID}-0x")),
        (
            "all-zero trace-id",
            format!("00-{}-{PID}-01", "0".repeat(32)),
        ),
        (
            "all-zero parent-id",
            format!("00-{TID}-{}-01", "0".repeat(16)),
        ),
        (
            "all-zero both, higher version",
            format!("01-{}-{}-01", "0".repeat(32), "0".repeat(16)),
        ),
        ("underscores for dashes", format!("00_{TID}_{PID}_01")),
        (
            "a sign in the trace-id",
            format!("00-+{}-{PID}-01", &TID[1..]),
        ),
        ("spaces around", format!(" 00-{TID}-{PID}-01")),
        ("non-ASCII", format!("00-{}é-{PID}-01", &TID[2..])),
    ];
    for (what, v) in cases {
        assert!(parse(v.as_bytes()).is_none(), "{what}: {v:?}");
    }
}

#[test]
fn no_byte_sequence_panics() {
    let base = format!("00-{TID}-{PID}-01").into_bytes();
    for i in 0..base.len() {
        for b in [0u8, b'-', b'0', b'F', 0x80, 0xff] {
            let mut v = base.clone();
            v[i] = b;
            let _ = parse(&v);
            let _ = parse(&v[..i]);
        }
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[test]
fn a_valid_header_goes_on_as_sent_with_its_tracestate() {
    let sent = format!("00-{TID}-{PID}-01");
    let mut h = headers(&[("traceparent", &sent), ("tracestate", "congo=t61rcWkgMzE")]);
    let t = Trace::read(&h);
    assert_eq!(t.origin, Origin::AsSent);
    assert_eq!(t.trace_id().to_string(), TID);
    assert_eq!(
        t.propagate(&mut h),
        None,
        "nothing to add: the client's goes on"
    );
    assert_eq!(h.get("traceparent").unwrap(), sent.as_str());
    assert_eq!(h.get("tracestate").unwrap(), "congo=t61rcWkgMzE");
}

#[test]
fn a_higher_version_is_rewritten_and_keeps_its_tracestate() {
    let mut h = headers(&[
        ("traceparent", &format!("01-{TID}-{PID}-03-extra")),
        ("tracestate", "rojo=1"),
    ]);
    let t = Trace::read(&h);
    assert_eq!(t.origin, Origin::Continued);
    let v = t.propagate(&mut h).unwrap();
    assert_eq!(v, format!("00-{TID}-{PID}-01").as_str());
    assert!(
        h.get("traceparent").is_none(),
        "the client's copy is replaced"
    );
    assert_eq!(h.get("tracestate").unwrap(), "rojo=1");
}

#[test]
fn no_or_an_invalid_header_starts_a_fresh_trace_without_tracestate() {
    let valid = format!("00-{TID}-{PID}-01");
    let cases: [&[(&str, &str)]; 5] = [
        &[("tracestate", "congo=1")],
        &[
            (
                "traceparent",
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "congo=1"),
        ],
        &[
            ("traceparent", &valid),
            ("traceparent", &valid),
            ("tracestate", "congo=1"),
        ],
        &[
            (
                "traceparent",
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "a=1"),
            ("tracestate", "b=2"),
        ],
        &[],
    ];
    for pairs in cases {
        let mut h = headers(pairs);
        let t = Trace::read(&h);
        assert_eq!(t.origin, Origin::Fresh, "{pairs:?}");
        assert_ne!(t.trace_id().to_string(), TID);
        let v = t.propagate(&mut h).unwrap();
        assert!(
            h.get("traceparent").is_none() && h.get("tracestate").is_none(),
            "{pairs:?}"
        );
        let (parsed, version) = parse(v.as_bytes()).expect("gatehouse's own header is valid");
        assert_eq!((version, parsed), (0, t.parent));
        assert_eq!(parsed.flags, 1, "sampled: see the module header");
    }
}

#[test]
fn fresh_traces_differ() {
    let (a, b) = (Trace::fresh(), Trace::fresh());
    assert_ne!(a.trace_id(), b.trace_id());
    assert_ne!(a.parent.parent_id, b.parent.parent_id);
}
