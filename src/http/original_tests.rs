//! Tests of `original.rs`: every fact from the ingress, or unknown.

use super::*;
use axum::http::{HeaderName, HeaderValue};

fn map(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v).unwrap(),
        );
    }
    h
}

fn read(
    h: &HeaderMap,
    trusted: bool,
    client: ForwardAuthClient,
    below: Option<&str>,
) -> Result<Original, Unknown> {
    Original::read(&Call {
        headers: h,
        trusted,
        client,
        own_method: &Method::GET,
        below,
    })
}

use ForwardAuthClient as C;

const NGINX_SET: &[(&str, &[u8])] = &[
    ("x-forwarded-uri", b"/admin?x=1"),
    ("x-forwarded-method", b"GET"),
    ("x-forwarded-host", b"app.example.com"),
    ("x-forwarded-proto", b"https"),
];

#[test]
fn what_the_ingress_sets_is_believed_from_a_trusted_peer() {
    let h = map(NGINX_SET);
    for client in [C::Auto, C::Nginx, C::Traefik, C::Caddy] {
        let o = read(&h, true, client, None).unwrap();
        assert_eq!(o.path.as_deref(), Some("/admin?x=1"), "{client:?}");
        assert_eq!(o.method, Method::GET);
        assert_eq!(o.url.as_deref(), Some("https://app.example.com/admin?x=1"));
    }
    assert_eq!(read(&h, false, C::Auto, None), Err(Unknown::Untrusted));
}

#[test]
fn the_critical_bypass_a_byte_over_0x7f_no_longer_lets_the_clients_copy_win() {
    // nginx: X-Forwarded-Uri is $request_uri with a raw 0xff; the client's X-Original-URI
    // names a public path. Once the unreadable value was dropped, the client's won.
    let h = map(&[
        ("x-forwarded-uri", b"/admin?\xff"),
        ("x-forwarded-method", b"GET"),
        ("x-original-uri", b"/public/x"),
    ]);
    assert_eq!(
        read(&h, true, C::Auto, None),
        Err(Unknown::Disagree("path"))
    );
    // Named: only X-Forwarded-Uri counts, and its byte is kept (percent-encoded).
    let o = read(&h, true, C::Nginx, None).unwrap();
    assert_eq!(o.path.as_deref(), Some("/admin?%FF"));
}

#[test]
fn unparsable_x_original_url_makes_the_request_unknown() {
    // ingress-nginx with Host: app.example.com:99999 and a client's X-Forwarded-Uri.
    let h = map(&[
        ("x-original-url", b"https://app.example.com:99999/admin"),
        ("x-original-method", b"GET"),
        ("x-forwarded-uri", b"/public/x"),
        ("x-forwarded-method", b"GET"),
    ]);
    for client in [C::Auto, C::IngressNginx] {
        assert_eq!(
            read(&h, true, client, None),
            Err(Unknown::Unreadable("x-original-url")),
            "{client:?}"
        );
    }
    for bad in [
        &b"https://user@app/x"[..],
        b"javascript://app/x",
        b"https://app",
        b"https://app?x",
        b"https://app:0/x",
        b"https://app:/x",
        b"https://[::1/x",
        b"https://a pp/x",
        b"https://app/a b",
        b"ftp://app/x",
    ] {
        let h = map(&[("x-original-url", bad), ("x-original-method", b"GET")]);
        assert!(
            read(&h, true, C::IngressNginx, None).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn x_original_url_is_never_normalised() {
    let h = map(&[
        (
            "x-original-url",
            b"https://App.Example.com:8443/admin/%2e%2e/public/x?q",
        ),
        ("x-original-method", b"GET"),
    ]);
    let o = read(&h, true, C::IngressNginx, None).unwrap();
    assert_eq!(o.path.as_deref(), Some("/admin/%2e%2e/public/x?q"));
    assert_eq!(
        o.url.as_deref(),
        Some("https://app.example.com:8443/admin/%2e%2e/public/x?q")
    );
    let h = map(&[
        ("x-original-url", b"https://app/public/../admin"),
        ("x-original-method", b"GET"),
    ]);
    let o = read(&h, true, C::IngressNginx, None).unwrap();
    assert_eq!(o.path.as_deref(), Some("/public/../admin"));
}

#[test]
fn a_named_ingress_reads_only_its_own_headers() {
    // The client's own spellings beside Traefik's: ignored, not compared.
    let mut pairs = NGINX_SET.to_vec();
    pairs.push(("x-original-uri", b"/public/x"));
    pairs.push(("x-original-url", b"https://app.example.com/public/x"));
    pairs.push(("x-original-method", b"GET"));
    let h = map(&pairs);
    let o = read(&h, true, C::Traefik, None).unwrap();
    assert_eq!(o.path.as_deref(), Some("/admin?x=1"));
    // ingress-nginx: the client's X-Forwarded-Uri is ignored, X-Original-URL counts.
    let h = map(&[
        ("x-original-url", b"https://app.example.com/admin"),
        ("x-original-method", b"POST"),
        ("x-forwarded-uri", b"/public/x"),
        ("x-forwarded-method", b"GET"),
    ]);
    let o = read(&h, true, C::IngressNginx, None).unwrap();
    assert_eq!(
        (o.path.as_deref(), o.method),
        (Some("/admin"), Method::POST)
    );
    // Missing what the named ingress sets: unknown.
    let h = map(&[
        ("x-original-uri", b"/public/x"),
        ("x-forwarded-method", b"GET"),
    ]);
    assert_eq!(
        read(&h, true, C::Nginx, None),
        Err(Unknown::Missing("x-forwarded-uri"))
    );
    let h = map(&[("x-forwarded-uri", b"/public/x")]);
    assert_eq!(
        read(&h, true, C::Caddy, None),
        Err(Unknown::Missing("x-forwarded-method"))
    );
}

#[test]
fn duplicate_lines_and_disagreeing_sources_are_unknown() {
    let h = map(&[
        ("x-forwarded-uri", b"/admin"),
        ("x-forwarded-uri", b"/public/x"),
        ("x-forwarded-method", b"GET"),
    ]);
    for client in [C::Auto, C::Nginx, C::Traefik, C::Caddy] {
        assert_eq!(read(&h, true, client, None), Err(Unknown::Disagree("path")));
    }
    let h = map(&[
        ("x-forwarded-uri", b"/hook"),
        ("x-forwarded-method", b"GET"),
        ("x-original-method", b"POST"),
    ]);
    assert_eq!(
        read(&h, true, C::Auto, None),
        Err(Unknown::Disagree("method"))
    );
    // Methods are compared as sent: `get` is not `GET`.
    let h = map(&[
        ("x-forwarded-uri", b"/a"),
        ("x-forwarded-method", b"GET"),
        ("x-original-method", b"get"),
    ]);
    assert!(read(&h, true, C::Auto, None).is_err());
    let mut pairs = NGINX_SET.to_vec();
    pairs.push(("x-forwarded-host", b"evil.example.net"));
    assert_eq!(
        read(&map(&pairs), true, C::Nginx, None),
        Err(Unknown::Disagree("host"))
    );
    // Agreeing sources are fine; a host with and without its port agrees.
    let h = map(&[
        ("x-forwarded-uri", b"/a?b"),
        ("x-original-uri", b"/a?b"),
        ("x-forwarded-method", b"GET"),
        ("x-forwarded-host", b"app.example.com"),
        ("x-original-url", b"https://app.example.com:8443/a?b"),
        ("x-forwarded-proto", b"https"),
    ]);
    let o = read(&h, true, C::Auto, None).unwrap();
    assert_eq!(o.url.as_deref(), Some("https://app.example.com:8443/a?b"));
}

#[test]
fn unreadable_values_are_unknown_never_skipped_over() {
    for bad in [
        &b""[..],
        b" ",
        b"admin",
        b"/a b",
        b"/a\tb",
        b"http://app/x",
        b"*",
    ] {
        let h = map(&[("x-forwarded-uri", bad), ("x-forwarded-method", b"GET")]);
        assert!(
            read(&h, true, C::Nginx, None).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    for bad in [&b"G ET"[..], b"", b"GET\xff", b"GET,POST"] {
        let h = map(&[("x-forwarded-uri", b"/a"), ("x-forwarded-method", bad)]);
        assert!(read(&h, true, C::Traefik, None).is_err());
    }
    for bad in [
        &b"a b"[..],
        b"app:99999",
        b"app:x",
        b"u@app",
        b"app/x",
        b"app, other",
    ] {
        let mut pairs = NGINX_SET[..2].to_vec();
        pairs.push(("x-forwarded-host", bad));
        assert!(
            read(&map(&pairs), true, C::Nginx, None).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let mut pairs = NGINX_SET[..3].to_vec();
    pairs.push(("x-forwarded-proto", b"https, http"));
    assert!(read(&map(&pairs), true, C::Nginx, None).is_err());
}

#[test]
fn envoys_path_below_the_endpoint_is_compared_with_every_header() {
    // Direct: /oauth2/auth/admin with a client's X-Forwarded-Uri: /public/x.
    let h = map(&[("x-forwarded-uri", b"/public/x")]);
    assert_eq!(
        read(&h, true, C::Auto, Some("/admin")),
        Err(Unknown::Disagree("path"))
    );
    // Untrusted: headers are not read; the path below is what was asked about.
    let o = read(&h, false, C::Auto, Some("/admin")).unwrap();
    assert_eq!(o.path.as_deref(), Some("/admin"));
    // Named Envoy: only the path below counts.
    let o = read(&h, true, C::Envoy, Some("/admin?x=1")).unwrap();
    assert_eq!(o.path.as_deref(), Some("/admin?x=1"));
    // The wrong form for the named ingress.
    assert_eq!(read(&h, true, C::Envoy, None), Err(Unknown::WrongForm));
    assert_eq!(
        read(&h, true, C::Nginx, Some("/public/x")),
        Err(Unknown::WrongForm)
    );
    // Envoy's own headers agree with its path.
    let h = map(&[
        ("x-forwarded-uri", b"/a?b=1"),
        ("x-forwarded-method", b"GET"),
        ("x-forwarded-host", b"app"),
        ("x-forwarded-proto", b"http"),
    ]);
    let o = read(&h, true, C::Auto, Some("/a?b=1")).unwrap();
    assert_eq!(o.url.as_deref(), Some("http://app/a?b=1"));
    // A method header that differs from the check's own method.
    let h = map(&[("x-forwarded-method", b"POST")]);
    assert_eq!(
        read(&h, true, C::Auto, Some("/a")),
        Err(Unknown::Disagree("method"))
    );
}

#[test]
fn ipv6_hosts() {
    let mut pairs = NGINX_SET[..2].to_vec();
    pairs.push(("x-forwarded-host", b"[2001:db8::1]:8443"));
    pairs.push(("x-forwarded-proto", b"https"));
    let o = read(&map(&pairs), true, C::Nginx, None).unwrap();
    assert_eq!(
        o.url.as_deref(),
        Some("https://[2001:db8::1]:8443/admin?x=1")
    );
    let mut pairs = NGINX_SET[..2].to_vec();
    pairs.push(("x-forwarded-host", b"[2001:db8::zz]"));
    assert!(read(&map(&pairs), true, C::Nginx, None).is_err());
}

mod property {
    //! The fuzz target's promise (`fuzz/fuzz_targets/forward_auth_original.rs`), as a
    //! property test that runs with the unit tests.
    use super::*;
    use proptest::prelude::*;

    const NAMES: &[&str] = &[
        "x-forwarded-uri",
        "x-forwarded-method",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-original-uri",
        "x-original-url",
        "x-original-method",
    ];

    fn sets(client: ForwardAuthClient) -> &'static [&'static str] {
        match client {
            C::Nginx | C::Traefik | C::Caddy => &NAMES[..4],
            C::IngressNginx => &["x-original-url", "x-original-method"],
            C::Envoy => &["x-forwarded-host", "x-forwarded-proto"],
            C::Auto => NAMES,
        }
    }

    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"/public/x".to_vec()),
            Just(b"/admin".to_vec()),
            Just(b"GET".to_vec()),
            Just(b"POST".to_vec()),
            Just(b"https".to_vec()),
            Just(b"app.example.com".to_vec()),
            Just(b"https://app.example.com/admin".to_vec()),
            Just(b"https://app.example.com:99999/public/x".to_vec()),
            proptest::collection::vec(
                prop_oneof![
                    Just(b'/'),
                    Just(b'a'),
                    Just(0xff_u8),
                    Just(b' '),
                    Just(b'?'),
                    Just(b':')
                ],
                0..8
            ),
        ]
    }

    fn headers(pairs: &[(usize, Vec<u8>)], keep: impl Fn(&str) -> bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (i, v) in pairs {
            let name = NAMES[i % NAMES.len()];
            if let (true, Ok(v)) = (keep(name), HeaderValue::from_bytes(v)) {
                h.append(HeaderName::from_static(name), v);
            }
        }
        h
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn a_client_value_never_decides_the_original_request(
            c in 0usize..6,
            ingress in proptest::collection::vec((0usize..7, value()), 0..5),
            added in proptest::collection::vec((0usize..7, value()), 0..4),
            below in proptest::option::of(prop_oneof![Just("/admin"), Just("/public/x")]),
        ) {
            let client = [C::Auto, C::Nginx, C::IngressNginx, C::Traefik, C::Caddy, C::Envoy][c];
            let set = sets(client);
            let alone = headers(&ingress, |n| set.contains(&n));
            let mut both = alone.clone();
            let extra = headers(&added, |n| client == C::Auto || !set.contains(&n));
            for (k, v) in extra.iter() {
                both.append(k.clone(), v.clone());
            }
            let a = read(&alone, true, client, below);
            let b = read(&both, true, client, below);
            if client != C::Auto {
                prop_assert_eq!(&a, &b);
            } else if let (Ok(a), Ok(b)) = (&a, &b) {
                prop_assert_eq!((&a.path, &a.method), (&b.path, &b.method));
            }
            if let Ok(o) = &b {
                let path = o.path.as_deref().unwrap_or("");
                prop_assert!(path.starts_with('/'));
                prop_assert!(path.bytes().all(|x| (0x21..0x7f).contains(&x)));
            }
        }
    }
}
