//! Request header hygiene at the trust boundary (`headers::remove_hop_by_hop`,
//! `strip_identity`, `Forwarded::read`/`apply`, `inject`, `remove_own_cookies`), run in the
//! order `http/gate.rs` runs them on a request going upstream.
//!
//! Input: knob bytes (configuration, peer address), then a header block: one
//! `name: value` per line, any bytes (lines that are no valid header are skipped).
//!
//! Asserts:
//! - after the hop-by-hop step no hop-by-hop field and no field named in `Connection`
//!   is left (except `Upgrade` and `Connection: upgrade` for an allowed upgrade);
//! - after `strip_identity` no header is left that is an identity, impersonation or
//!   forwarding header in any spelling (case, `_` for `-`): the names and prefixes
//!   `headers/mod.rs` documents, Kubernetes' front-proxy family (`X-Remote-User`,
//!   `-Group`, `-Extra-*`), the configured header names and extra `strip_headers`, and
//!   `Authorization` when gatehouse injects one or is told to strip it;
//! - on the request that goes upstream, every such header carries exactly the values
//!   gatehouse itself writes (the same as writing them into an empty map): nothing the
//!   client sent survives or is appended to;
//! - from an untrusted peer, the forwarding values are the peer's address and `http`;
//! - no cookie gatehouse owns (session, chunks, login state) is left in `Cookie`.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use gatehouse::config::{CookieKey, CookieSettings, HeaderNames, PassAuthorization};
use gatehouse::headers::{self, Forwarded, IdentityValues};
use gatehouse::identity::Identity;
use gatehouse::session::chunks;
use gatehouse::session::SessionStore;
use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

const SECRET: &str = "eQSez7uFSSNM00VuDK26B5V6dhwJNLetd7njsjYLay0";

/// Identity names, normalised (lower case, `_` as `-`): `headers/mod.rs`'s documented
/// list and Kubernetes' request-header authentication names.
const EXACT: &[&str] = &[
    "remote-user",
    "remote-groups",
    "x-remote-user",
    "x-remote-group",
    "x-remote-groups",
    "x-remote-email",
    "x-user",
    "x-email",
    "x-groups",
    "x-webauth-user",
    "x-webauth-email",
    "x-webauth-groups",
    "x-id-token",
    "x-access-token",
    "x-real-user",
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "x-rewrite-url",
];

/// Identity prefixes, normalised. `x-remote-extra-`: Kubernetes front-proxy extras
/// (`--requestheader-extra-headers-prefix`), beside `X-Remote-User`/`-Group` above.
const PREFIXES: &[&str] = &[
    "x-forwarded-",
    "x-auth-request-",
    "x-original-",
    "impersonate-",
    "x-remote-extra-",
];

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// The knobs at the start of the input; the rest is the header block, as raw bytes
/// (not a derived `Vec<u8>`, which interleaves "one more?" bytes with the data and so
/// defeats seeds and the dictionary).
#[derive(Arbitrary, Debug)]
struct Knobs {
    /// bit 0-1: pass_authorization; 2: strip_client_authorization; 3: custom names;
    /// 4: the peer is a trusted proxy; 5: IPv6 peer; 6: a session is injected;
    /// 7: secure cookies.
    flags: u8,
    peer: [u8; 4],
}

fn name(s: &str) -> HeaderName {
    HeaderName::from_bytes(s.as_bytes()).expect("valid header name")
}

fn header_names(flags: u8) -> HeaderNames {
    let authorization = match flags & 3 {
        1 => PassAuthorization::IdToken,
        2 => PassAuthorization::AccessToken,
        _ => PassAuthorization::None,
    };
    let custom = flags & 8 != 0;
    let pick = |default: &str, other: &str| name(if custom { other } else { default });
    HeaderNames {
        user: pick("x-forwarded-user", "x-gh-user"),
        email: pick("x-forwarded-email", "x_gh_email"),
        groups: if custom {
            vec![name("x-gh-groups"), name("groups")]
        } else {
            vec![name("x-forwarded-group"), name("x-forwarded-groups")]
        },
        preferred_username: pick("x-forwarded-preferred-username", "x-gh-login"),
        id_token: custom
            .then(|| name("x-gh-token"))
            .or(Some(name("x-forwarded-id-token"))),
        authorization,
        token_is_access_token: authorization == PassAuthorization::AccessToken,
        strip_client_authorization: flags & 4 != 0,
        strip: if custom {
            vec![name("x-tenant"), name("x_team")]
        } else {
            Vec::new()
        },
        folded: Default::default(),
    }
}

fn fold(n: &str) -> String {
    n.chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

fn identity_ish(n: &str, names: &HeaderNames) -> bool {
    let f = fold(n);
    let configured = [&names.user, &names.email, &names.preferred_username]
        .into_iter()
        .chain(&names.groups)
        .chain(&names.id_token)
        .chain(&names.strip)
        .any(|c| fold(c.as_str()) == f);
    let authorization = (names.authorization != PassAuthorization::None
        || names.strip_client_authorization)
        && f == "authorization";
    EXACT.contains(&f.as_str())
        || PREFIXES.iter().any(|p| f.starts_with(p))
        || configured
        || authorization
}

fn parse_block(block: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in block.split(|&b| b == b'\n') {
        let (n, v) = match line.iter().position(|&b| b == b':') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &b""[..]),
        };
        let v = v.strip_prefix(b" ").unwrap_or(v);
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n), HeaderValue::from_bytes(v)) {
            h.append(n, v);
        }
    }
    h
}

fn values<'a>(h: &'a HeaderMap, n: &HeaderName) -> Vec<&'a [u8]> {
    h.get_all(n).iter().map(HeaderValue::as_bytes).collect()
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(knobs) = Knobs::arbitrary(&mut u) else {
        return;
    };
    let block = u.take_rest();
    let flags = knobs.flags;
    let names = header_names(flags);
    let store = SessionStore::new(CookieSettings {
        name: "_gh".into(),
        secure: flags & 0x80 != 0,
        domain: None,
        login_path: "/oauth2/callback".into(),
        keys: vec![CookieKey::derive(SECRET).expect("test key")],
        session_lifetime: Duration::from_secs(3600),
        login_timeout: Duration::from_secs(600),
    });
    let [a, b, c, d] = knobs.peer;
    let ip = if flags & 0x20 != 0 {
        IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            0,
            0,
            u16::from_be_bytes([a, b]),
            u16::from_be_bytes([c, d]),
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    };
    let peer = SocketAddr::new(ip, 40000);
    let trusted: Vec<IpNet> = if flags & 0x10 != 0 {
        vec![IpNet::new(ip, if ip.is_ipv4() { 32 } else { 128 }).expect("prefix")]
    } else {
        vec!["10.0.0.0/8".parse().expect("net")]
    };
    let is_trusted = trusted.iter().any(|n| n.contains(&ip));

    let original = parse_block(block);
    let mut h = original.clone();

    // As the request path runs it (http/mod.rs reads the forwarding first).
    let fwd = Forwarded::read(&original, peer, &trusted);
    if !is_trusted {
        assert_eq!(fwd.client, ip);
        assert_eq!(fwd.for_chain, ip.to_string());
        assert_eq!(fwd.proto, "http");
    }
    let asked = headers::wants_upgrade(&h);
    let upgrade = asked && headers::upgrade_allowed(&h, &["websocket".to_string()]);

    headers::remove_hop_by_hop(&mut h, upgrade);
    let listed: Vec<String> = original
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    for n in HOP_BY_HOP
        .iter()
        .copied()
        .chain(listed.iter().map(String::as_str))
    {
        let kept_for_upgrade = upgrade && (n == "upgrade" || n == "connection");
        if !kept_for_upgrade {
            assert!(!h.contains_key(n), "hop-by-hop {n:?} left");
        }
    }
    if upgrade {
        assert_eq!(values(&h, &http::header::CONNECTION), vec![&b"upgrade"[..]]);
        assert_eq!(h.get_all(http::header::UPGRADE).iter().count(), 1);
    }

    headers::strip_identity(&mut h, &names);
    for k in h.keys() {
        assert!(
            !identity_ish(k.as_str(), &names),
            "client header {k} survived strip_identity"
        );
    }

    let identity = Identity {
        sub: "s-1".into(),
        user: "alice".into(),
        email: Some("alice@example.com".into()),
        groups: vec!["dev".into(), "ops".into()],
        preferred_username: Some("alice".into()),
        email_verified: Some(true),
    };
    let ours = IdentityValues::new(&names, &identity, "id.tok.en", Some("access"));
    let session = flags & 0x40 != 0;
    fwd.apply(&mut h);
    if session {
        headers::inject(&mut h, &names, &ours);
    }
    // As `http/gate.rs` does: one parse decides, a full re-read when it cannot.
    let rewrite = chunks::RequestCookies::parse_bytes(
        h.get_all(http::header::COOKIE).iter().map(|v| v.as_bytes()),
    )
    .without(|n| store.owns_cookie(n));
    headers::rewrite_cookies(&mut h, rewrite, |n| store.owns_cookie(n));

    // What gatehouse writes, alone.
    let mut expected = HeaderMap::new();
    fwd.apply(&mut expected);
    if session {
        headers::inject(&mut expected, &names, &ours);
    }
    for k in h.keys().chain(expected.keys()) {
        if identity_ish(k.as_str(), &names) {
            assert_eq!(
                values(&h, k),
                values(&expected, k),
                "{k} upstream is not only gatehouse's value"
            );
        }
    }
    if !is_trusted {
        let ip_s = ip.to_string();
        assert_eq!(values(&h, &name("x-forwarded-for")), vec![ip_s.as_bytes()]);
        assert_eq!(values(&h, &name("x-real-ip")), vec![ip_s.as_bytes()]);
        assert_eq!(values(&h, &name("x-forwarded-proto")), vec![&b"http"[..]]);
    }

    let session_name = store.cookie_name().to_string();
    for v in h.get_all(http::header::COOKIE) {
        for part in v.as_bytes().split(|&b| b == b';') {
            let n = part.split(|&b| b == b'=').next().unwrap_or_default();
            // A name that is not UTF-8 is none gatehouse sets or reads.
            let Ok(n) = std::str::from_utf8(n) else {
                continue;
            };
            let n = n.trim();
            assert!(
                !store.owns_cookie(n) && !chunks::is_session_cookie(&session_name, n),
                "gatehouse's cookie {n:?} goes upstream in {v:?}"
            );
        }
    }
});
