//! Tests of `forwarded.rs`: which client is believed and what the upstream is told.

use super::*;

use crate::headers::test_map as map;

#[test]
fn forwarded_headers_believed_only_from_trusted_proxies() {
    let h = map(&[
        ("X-Forwarded-For", "1.2.3.4"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil"),
        ("Host", "app"),
    ]);
    let peer: SocketAddr = "10.0.0.5:999".parse().unwrap();
    let untrusted = Forwarded::read(&h, peer, &[]);
    assert_eq!(
        (
            untrusted.for_chain.as_str(),
            untrusted.proto.as_str(),
            untrusted.host.as_deref()
        ),
        ("10.0.0.5", "http", Some("app"))
    );
    let trusted = Forwarded::read(&h, peer, &["10.0.0.0/8".parse().unwrap()]);
    assert_eq!(trusted.for_chain, "1.2.3.4, 10.0.0.5");
    assert_eq!(trusted.proto, "https");
    assert_eq!(trusted.host.as_deref(), Some("evil"));
}

#[test]
fn scheme_and_host_are_what_the_nearest_trusted_proxy_set() {
    // An appending load balancer: the client's words come first.
    let peer: SocketAddr = "10.0.0.5:999".parse().unwrap();
    let nets = ["10.0.0.0/8".parse().unwrap()];
    for (proto, host, want) in [
        (
            "https, http",
            "evil.example, app.example.com",
            ("http", "app.example.com"),
        ),
        (
            "http,https",
            "evil.example,app.example.com",
            ("https", "app.example.com"),
        ),
        ("https", "app.example.com", ("https", "app.example.com")),
    ] {
        let h = map(&[("X-Forwarded-Proto", proto), ("X-Forwarded-Host", host)]);
        let f = Forwarded::read(&h, peer, &nets);
        assert_eq!(
            (f.proto.as_str(), f.host.as_deref()),
            (want.0, Some(want.1))
        );
    }
    // Two lines: the last one is the nearest proxy's.
    let h = map(&[
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Host", "app.example.com"),
    ]);
    let f = Forwarded::read(&h, peer, &nets);
    assert_eq!(f.host.as_deref(), Some("app.example.com"));
}

/// Over TLS (`tls_cert_file`) the connection's own scheme is https: the upstream is told
/// so, a client's X-Forwarded-Proto is still not believed, a trusted proxy's still wins,
/// and the per-thread values of one address are kept apart by scheme.
#[test]
fn the_scheme_of_a_tls_connection_is_https_unless_a_trusted_proxy_says_otherwise() {
    let peer: SocketAddr = "192.0.2.9:5".parse().unwrap();
    let spoof = map(&[("X-Forwarded-Proto", "http")]);
    let tls = Forwarded::read_on(&spoof, peer, &[], true);
    assert_eq!(tls.proto, "https");
    let scheme = |f: &Forwarded| {
        let mut out = HeaderMap::new();
        f.apply(&mut out);
        let fwd = out.get("forwarded").unwrap().to_str().unwrap().to_string();
        (
            out.get("x-forwarded-proto")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string(),
            fwd,
        )
    };
    // The same address over plain http (auth_listen) and TLS, in turn on one thread.
    let plain = Forwarded::read_on(&spoof, peer, &[], false);
    for _ in 0..2 {
        assert_eq!(
            scheme(&tls),
            ("https".into(), "for=192.0.2.9;proto=https".into())
        );
        assert_eq!(
            scheme(&plain),
            ("http".into(), "for=192.0.2.9;proto=http".into())
        );
    }
    let nets = ["192.0.2.0/24".parse().unwrap()];
    let trusted = Forwarded::read_on(&spoof, peer, &nets, true);
    assert_eq!(trusted.proto, "http", "a trusted proxy's word wins");
    let trusted = Forwarded::read_on(&HeaderMap::new(), peer, &nets, true);
    assert_eq!(trusted.proto, "https", "a trusted proxy that says nothing");
}

#[test]
fn the_believed_client_goes_into_x_real_ip_and_forwarded() {
    let h = map(&[
        ("X-Forwarded-For", "203.0.113.7, 10.0.0.9"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "app.example.com"),
    ]);
    let peer: SocketAddr = "10.0.0.5:999".parse().unwrap();
    let trusted = Forwarded::read(&h, peer, &["10.0.0.0/8".parse().unwrap()]);
    let mut out = HeaderMap::new();
    trusted.apply(&mut out);
    assert_eq!(out.get("x-real-ip").unwrap(), "203.0.113.7");
    assert_eq!(out.get("forwarded").unwrap(), "for=203.0.113.7;proto=https");
    let v6: SocketAddr = "[2001:db8::1]:80".parse().unwrap();
    let untrusted = Forwarded::read(&h, v6, &[]);
    let mut out = HeaderMap::new();
    untrusted.apply(&mut out);
    assert_eq!(out.get("x-real-ip").unwrap(), "2001:db8::1");
    assert!(out
        .get("forwarded")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("for=\"[2001:db8::1]\";proto=http"));
    // Another untrusted client on the same thread gets its own values, not the last.
    for (peer, ip) in [("192.0.2.1:5", "192.0.2.1"), ("192.0.2.2:5", "192.0.2.2")] {
        let f = Forwarded::read(&h, peer.parse().unwrap(), &[]);
        let mut out = HeaderMap::new();
        f.apply(&mut out);
        assert_eq!(out.get("x-forwarded-for").unwrap(), ip);
        assert_eq!(out.get("x-real-ip").unwrap(), ip);
        assert_eq!(
            out.get("forwarded").unwrap(),
            &format!("for={ip};proto=http")
        );
    }
}

/// The client believed for `lines` of `X-Forwarded-For` from `peer`, with the
/// trusted proxies 10.0.0.0/8 and 2001:db8:ffff::/48.
fn client_of(lines: &[&[u8]], peer: &str) -> String {
    let mut h = HeaderMap::new();
    for l in lines {
        h.append(X_FORWARDED_FOR, HeaderValue::from_bytes(l).unwrap());
    }
    let trusted = [
        "10.0.0.0/8".parse().unwrap(),
        "2001:db8:ffff::/48".parse().unwrap(),
    ];
    let f = Forwarded::read(&h, peer.parse().unwrap(), &trusted);
    assert!(f.trusted, "{peer} is a trusted proxy in these cases");
    f.client.to_string()
}

#[test]
fn the_client_is_the_rightmost_address_no_trusted_proxy_vouches_for() {
    let p = "10.0.0.1:4711";
    let cases: &[(&[&[u8]], &str, &str)] = &[
        // A client's own X-Forwarded-For, appended to by the load balancer.
        (&[b"6.6.6.6, 203.0.113.9"], p, "203.0.113.9"),
        (&[b"203.0.113.9"], p, "203.0.113.9"),
        (&[], p, "10.0.0.1"),
        // Several trusted hops.
        (
            &[b"6.6.6.6, 203.0.113.9, 10.0.0.7, 10.9.9.9"],
            p,
            "203.0.113.9",
        ),
        // Spoofed entries left of the client, trusted-looking or not.
        (&[b"10.0.0.99, 6.6.6.6"], p, "6.6.6.6"),
        (
            &[b"10.0.0.99, 1.1.1.1, 10.0.0.98, 203.0.113.9"],
            p,
            "203.0.113.9",
        ),
        // Several header lines are one chain, in order.
        (&[b"6.6.6.6", b"203.0.113.9, 10.0.0.7"], p, "203.0.113.9"),
        (&[b"6.6.6.6, 203.0.113.9", b"10.0.0.7"], p, "203.0.113.9"),
        (
            &[b"203.0.113.9", b"10.0.0.7", b"10.0.0.8"],
            p,
            "203.0.113.9",
        ),
        // Everything trusted: the leftmost.
        (&[b"10.0.0.3, 10.0.0.2"], p, "10.0.0.3"),
        (&[b"10.0.0.3", b"10.0.0.2"], p, "10.0.0.3"),
        // Garbage stops the walk at the last trusted hop, never left of it.
        (&[b"203.0.113.9, garbage, 10.0.0.7"], p, "10.0.0.7"),
        (&[b"6.6.6.6, unknown, 10.0.0.7"], p, "10.0.0.7"),
        (&[b"6.6.6.6, _hidden"], p, "10.0.0.1"),
        (&[b"unknown"], p, "10.0.0.1"),
        (&[b"6.6.6.6", b"garbage", b"10.0.0.7"], p, "10.0.0.7"),
        (
            &[b"6.6.6.6", b"203.0.113.9 \xff", b"10.0.0.7"],
            p,
            "10.0.0.7",
        ),
        (&[b"203.0.113.9, 010.0.0.7"], p, "10.0.0.1"),
        (&[b"203.0.113.9, fe80::1%eth0"], p, "10.0.0.1"),
        (&[b"203.0.113.9, \"[2001:db8::1]\""], p, "10.0.0.1"),
        // ... but garbage left of the client is never reached.
        (&[b"garbage, 203.0.113.9"], p, "203.0.113.9"),
        // Empty elements stop the walk like garbage.
        (&[b"6.6.6.6, , 10.0.0.7"], p, "10.0.0.7"),
        (&[b"6.6.6.6,,10.0.0.7"], p, "10.0.0.7"),
        (&[b"203.0.113.9,"], p, "10.0.0.1"),
        (&[b""], p, "10.0.0.1"),
        (&[b"", b"203.0.113.9"], p, "203.0.113.9"),
        // Whitespace around elements.
        (&[b"6.6.6.6 ,\t203.0.113.9\t, 10.0.0.7 "], p, "203.0.113.9"),
        // IPv6, and IPv6 proxies.
        (&[b"6.6.6.6, 2001:db8::1"], p, "2001:db8::1"),
        (
            &[b"2001:db8::66, 2001:db8::1, 2001:db8:ffff::7"],
            "[2001:db8:ffff::1]:80",
            "2001:db8::1",
        ),
        (
            &[b"2001:db8:ffff::9, 2001:db8:ffff::7"],
            "[2001:db8:ffff::1]:80",
            "2001:db8:ffff::9",
        ),
        // IPv4-mapped IPv6 is IPv4, in the chain and as the peer.
        (&[b"::ffff:203.0.113.9"], p, "203.0.113.9"),
        (
            &[b"6.6.6.6, 203.0.113.9, ::ffff:10.0.0.7"],
            p,
            "203.0.113.9",
        ),
        (
            &[b"6.6.6.6, 203.0.113.9"],
            "[::ffff:10.0.0.1]:80",
            "203.0.113.9",
        ),
        // Ports, as some load balancers write them.
        (&[b"6.6.6.6, 203.0.113.9:51234"], p, "203.0.113.9"),
        (&[b"6.6.6.6, 203.0.113.9, 10.0.0.7:8080"], p, "203.0.113.9"),
        (&[b"6.6.6.6, [2001:db8::1]:443"], p, "2001:db8::1"),
        (&[b"6.6.6.6, [2001:db8::1]"], p, "2001:db8::1"),
        (
            &[b"6.6.6.6, 203.0.113.9, [2001:db8:ffff::7]:8080"],
            p,
            "203.0.113.9",
        ),
        (&[b"6.6.6.6, 203.0.113.9:99999"], p, "10.0.0.1"),
        (&[b"6.6.6.6, 203.0.113.9:"], p, "10.0.0.1"),
        (&[b"6.6.6.6, 203.0.113.9:+80"], p, "10.0.0.1"),
        (&[b"6.6.6.6, [2001:db8::1]x"], p, "10.0.0.1"),
        (&[b"6.6.6.6, [2001:db8::1"], p, "10.0.0.1"),
        (&[b"6.6.6.6, [203.0.113.9]"], p, "10.0.0.1"),
    ];
    for (lines, peer, want) in cases {
        let shown: Vec<String> = lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        assert_eq!(client_of(lines, peer), *want, "{shown:?} from {peer}");
    }
}

/// What the upstream is told for `lines` of `X-Forwarded-For` from `peer`, with the
/// trusted proxies of [`client_of`]: `X-Forwarded-For`, `X-Real-IP` and `Forwarded`.
fn sent(lines: &[&[u8]], peer: &str) -> (String, String, String) {
    let mut h = HeaderMap::new();
    for l in lines {
        h.append(X_FORWARDED_FOR, HeaderValue::from_bytes(l).unwrap());
    }
    h.append(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    let trusted = [
        "10.0.0.0/8".parse().unwrap(),
        "2001:db8:ffff::/48".parse().unwrap(),
    ];
    let f = Forwarded::read(&h, peer.parse().unwrap(), &trusted);
    let mut out = HeaderMap::new();
    f.apply(&mut out);
    let get = |n: &str| out.get(n).unwrap().to_str().unwrap().to_string();
    (get("x-forwarded-for"), get("x-real-ip"), get("forwarded"))
}

#[test]
fn the_chain_sent_on_starts_at_the_believed_client() {
    let p = "10.0.0.1:4711";
    let cases: &[(&[&[u8]], &str, &str)] = &[
        // The client's own entries, left of the address the load balancer saw, go.
        (&[b"6.6.6.6, 203.0.113.9"], p, "203.0.113.9, 10.0.0.1"),
        (
            &[b"10.0.0.99, 1.1.1.1, 10.0.0.98, 203.0.113.9"],
            p,
            "203.0.113.9, 10.0.0.1",
        ),
        (&[b"203.0.113.9"], p, "203.0.113.9, 10.0.0.1"),
        (&[], p, "10.0.0.1"),
        // The trusted hops right of the client stay, in order.
        (
            &[b"6.6.6.6, 203.0.113.9, 10.0.0.7, 10.9.9.9"],
            p,
            "203.0.113.9, 10.0.0.7, 10.9.9.9, 10.0.0.1",
        ),
        // Several lines are one chain.
        (
            &[b"6.6.6.6", b"203.0.113.9, 10.0.0.7"],
            p,
            "203.0.113.9, 10.0.0.7, 10.0.0.1",
        ),
        (
            &[b"6.6.6.6, 203.0.113.9", b"10.0.0.7"],
            p,
            "203.0.113.9, 10.0.0.7, 10.0.0.1",
        ),
        // Everything trusted: all of it.
        (&[b"10.0.0.3, 10.0.0.2"], p, "10.0.0.3, 10.0.0.2, 10.0.0.1"),
        // Garbage: the chain starts at the last trusted hop, nothing of or left of the
        // garbage goes on.
        (
            &[b"6.6.6.6, 203.0.113.9", b"garbage", b"10.0.0.7"],
            p,
            "10.0.0.7, 10.0.0.1",
        ),
        (&[b"6.6.6.6, unknown, 10.0.0.7"], p, "10.0.0.7, 10.0.0.1"),
        (&[b"6.6.6.6, _hidden"], p, "10.0.0.1"),
        (&[b"203.0.113.9,"], p, "10.0.0.1"),
        (&[b"6.6.6.6,,10.0.0.7"], p, "10.0.0.7, 10.0.0.1"),
        (
            &[b"6.6.6.6", b"203.0.113.9 \xff", b"10.0.0.7"],
            p,
            "10.0.0.7, 10.0.0.1",
        ),
        (&[b"203.0.113.9, 010.0.0.7"], p, "10.0.0.1"),
        // Each address as gatehouse read it: no port, no brackets, no padding,
        // IPv4-mapped IPv6 as IPv4.
        (
            &[b"6.6.6.6 ,\t203.0.113.9:51234\t, [2001:db8:ffff::7]:8080 "],
            p,
            "203.0.113.9, 2001:db8:ffff::7, 10.0.0.1",
        ),
        (
            &[b"6.6.6.6, ::ffff:203.0.113.9, ::FFFF:10.0.0.7"],
            p,
            "203.0.113.9, 10.0.0.7, 10.0.0.1",
        ),
        (
            &[b"[2001:DB8::1]:443"],
            "[::ffff:10.0.0.1]:80",
            "2001:db8::1, 10.0.0.1",
        ),
        (
            &[b"2001:db8::66, 2001:db8::1, 2001:db8:ffff:0:0:0:0:7"],
            "[2001:db8:ffff::1]:80",
            "2001:db8::1, 2001:db8:ffff::7, 2001:db8:ffff::1",
        ),
        // A bare IPv6 address has no port: `2001:db8::1:80` is one address.
        (&[b"6.6.6.6, 2001:db8::1:80"], p, "2001:db8::1:80, 10.0.0.1"),
    ];
    for (lines, peer, want) in cases {
        let shown: Vec<String> = lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        let (xff, real_ip, forwarded) = sent(lines, peer);
        assert_eq!(xff, *want, "{shown:?} from {peer}");
        let first = xff.split(", ").next().unwrap();
        assert_eq!(real_ip, first, "{shown:?} from {peer}");
        let quoted = if first.contains(':') {
            format!("\"[{first}]\"")
        } else {
            first.to_string()
        };
        assert_eq!(forwarded, format!("for={quoted};proto=https"), "{shown:?}");
    }
}

#[test]
fn a_long_run_of_trusted_looking_addresses_is_kept_whole_in_order() {
    // A client inside trusted_proxies can write as many trusted-looking addresses as it
    // likes; past the ones kept on the stack the order must hold all the same.
    let p = "10.0.0.1:4711";
    let hops: Vec<String> = (1..=20).map(|i| format!("10.0.1.{i}")).collect();
    let all = hops.join(", ");
    let (xff, real_ip, _) = sent(&[all.as_bytes()], p);
    assert_eq!(xff, format!("{all}, 10.0.0.1"));
    assert_eq!(real_ip, "10.0.1.1");
    let with_client = format!("6.6.6.6, 203.0.113.9, {all}");
    let (xff, real_ip, _) = sent(&[with_client.as_bytes()], p);
    assert_eq!(xff, format!("203.0.113.9, {all}, 10.0.0.1"));
    assert_eq!(real_ip, "203.0.113.9");
    let garbage = format!("6.6.6.6, garbage, {all}");
    let (xff, real_ip, _) = sent(&[garbage.as_bytes()], p);
    assert_eq!(xff, format!("{all}, 10.0.0.1"));
    assert_eq!(real_ip, "10.0.1.1");
}

mod chains {
    use super::*;
    use proptest::prelude::*;

    /// Chain elements: trusted and untrusted addresses, with ports and in IPv4-mapped
    /// form, and what stops the walk.
    fn element() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u8..4).prop_map(|i| format!("10.0.0.{i}")),
            (0u8..4).prop_map(|i| format!("203.0.113.{i}")),
            (0u8..4).prop_map(|i| format!("203.0.113.{i}:5{i}")),
            (0u8..4).prop_map(|i| format!("::ffff:10.0.0.{i}")),
            (0u8..4).prop_map(|i| format!("[2001:db8:ffff::{i}]")),
            (0u8..4).prop_map(|i| format!("2001:db8::{i}")),
            Just("unknown".to_string()),
            Just(String::new()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Whatever the chain: `X-Forwarded-For` ends with the peer, starts with the
        /// client of `X-Real-IP`, is a suffix of the chain as received (address by
        /// address), and holds nothing but trusted hops between the two; the element
        /// left of what it kept is untrusted-garbage or absent, never a trusted hop.
        #[test]
        fn the_upstream_gets_only_the_vouched_end_of_the_chain(
            lines in proptest::collection::vec(
                proptest::collection::vec(element(), 1..5).prop_map(|e| e.join(", ")),
                0..4,
            ),
        ) {
            let raw: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
            let (xff, real_ip, _) = sent(&raw, "10.0.0.9:1");
            let trusted = |ip: &IpAddr| {
                ["10.0.0.0/8", "2001:db8:ffff::/48"]
                    .iter()
                    .any(|n| n.parse::<IpNet>().unwrap().contains(ip))
            };
            let got: Vec<IpAddr> = xff.split(", ").map(|e| e.parse().unwrap()).collect();
            prop_assert_eq!(got.last().copied(), Some("10.0.0.9".parse().unwrap()));
            prop_assert_eq!(got[0].to_string(), real_ip.clone());
            let kept = &got[..got.len() - 1];
            let chain: Vec<Option<IpAddr>> = lines
                .iter()
                .flat_map(|l| l.split(','))
                .map(element_ip)
                .collect();
            prop_assert!(kept.len() <= chain.len());
            let cut = chain.len() - kept.len();
            let tail: Vec<Option<IpAddr>> = kept.iter().copied().map(Some).collect();
            prop_assert_eq!(&chain[cut..], &tail[..], "{:?} sent as {}", lines, xff);
            if let Some((_, hops)) = kept.split_first() {
                prop_assert!(hops.iter().all(trusted), "{:?} sent as {}", lines, xff);
            }
            // Stopped where it had to: at an untrusted client, at garbage, or the end.
            let stopped_right = match (kept.first(), cut.checked_sub(1).map(|i| chain[i])) {
                (_, None) => true,
                (Some(client), Some(_)) if !trusted(client) => true,
                (_, Some(None)) => true,
                (_, Some(Some(_))) => false,
            };
            prop_assert!(stopped_right, "{:?} sent as {}", lines, xff);
        }
    }
}
