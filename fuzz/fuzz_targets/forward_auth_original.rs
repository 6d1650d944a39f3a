//! The original request of a forward-auth call (`http::original::Original::read`).
//!
//! Input: which ingress is configured, whether the peer is trusted, the path below
//! `/oauth2/auth` (if any), the headers the ingress set itself, and headers the client
//! added (nginx and Caddy pass every client header into the auth request).
//!
//! The security promise: a value the client could have influenced never decides a skip.
//! Asserts, besides never panicking:
//! - with the ingress named, headers of any name the ingress does not set change nothing:
//!   the answer with the client's additions equals the answer without them;
//! - with `auto`, once the ingress's own headers alone describe a request, the client's
//!   additions can only make it unknown, never another path or method;
//! - a known path starts with `/` and holds only visible ASCII (bytes >= 0x80 arrive
//!   percent-encoded, control bytes and spaces never pass), and equals every path source
//!   that was read (for `auto`, every `X-Forwarded-Uri`/`X-Original-URI` line and the path
//!   below the endpoint, once encoded);
//! - a known URL is `http://` or `https://` followed by a host and exactly that path;
//! - from an untrusted peer, no header is ever read (the answer equals the one with no
//!   headers at all).
#![no_main]

use arbitrary::Arbitrary;
use gatehouse::config::ForwardAuthClient;
use gatehouse::http::original::{Call, Original};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-original-uri",
    "x-original-url",
    "x-original-method",
    "x_forwarded_uri",
    "x-real-ip",
    "forwarded",
];

const CLIENTS: [ForwardAuthClient; 6] = [
    ForwardAuthClient::Auto,
    ForwardAuthClient::Nginx,
    ForwardAuthClient::IngressNginx,
    ForwardAuthClient::Traefik,
    ForwardAuthClient::Caddy,
    ForwardAuthClient::Envoy,
];

/// The names each named ingress sets (and so replaces any client copy of).
fn sets(client: ForwardAuthClient) -> &'static [&'static str] {
    match client {
        ForwardAuthClient::Nginx | ForwardAuthClient::Traefik | ForwardAuthClient::Caddy => &[
            "x-forwarded-uri",
            "x-forwarded-method",
            "x-forwarded-host",
            "x-forwarded-proto",
        ],
        ForwardAuthClient::IngressNginx => &["x-original-url", "x-original-method"],
        ForwardAuthClient::Envoy => &["x-forwarded-host", "x-forwarded-proto"],
        ForwardAuthClient::Auto => NAMES,
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    client: u8,
    trusted: bool,
    post: bool,
    below: Option<Vec<u8>>,
    ingress: Vec<(u8, Vec<u8>)>,
    client_headers: Vec<(u8, Vec<u8>)>,
}

fn headers(pairs: &[(u8, Vec<u8>)], only: impl Fn(&str) -> bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        let name = NAMES[usize::from(*n) % NAMES.len()];
        if !only(name) {
            continue;
        }
        if let Ok(v) = HeaderValue::from_bytes(v) {
            h.append(HeaderName::from_static(name), v);
        }
    }
    h
}

fn read(h: &HeaderMap, input: &Input, client: ForwardAuthClient, below: Option<&str>) -> Result<Original, String> {
    let own = if input.post { Method::POST } else { Method::GET };
    Original::read(&Call {
        headers: h,
        trusted: input.trusted,
        client,
        own_method: &own,
        below,
    })
    .map_err(|e| e.to_string())
}

fn encoded(raw: &[u8]) -> String {
    let mut s = String::new();
    for &b in raw.trim_ascii() {
        if b >= 0x80 {
            s.push_str(&format!("%{b:02X}"));
        } else {
            s.push(char::from(b));
        }
    }
    s
}

fuzz_target!(|input: Input| {
    let client = CLIENTS[usize::from(input.client) % CLIENTS.len()];
    // What reaches gatehouse as the path below /oauth2/auth is always a valid URI path.
    let below = input
        .below
        .as_ref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .filter(|b| b.starts_with('/') && b.bytes().all(|c| (0x21..0x7f).contains(&c)));
    let ingress_set = sets(client);
    let ingress_only = headers(&input.ingress, |n| ingress_set.contains(&n));
    let mut both = ingress_only.clone();
    // The client's additions: for a named ingress, only names it does not set (it
    // replaces its own); with `auto`, anything.
    for (k, v) in headers(&input.client_headers, |n| {
        client == ForwardAuthClient::Auto || !ingress_set.contains(&n)
    })
    .iter()
    {
        both.append(k.clone(), v.clone());
    }
    let alone = read(&ingress_only, &input, client, below);
    let with_client = read(&both, &input, client, below);

    if !input.trusted {
        assert_eq!(with_client, read(&HeaderMap::new(), &input, client, below));
    }
    if client != ForwardAuthClient::Auto {
        assert_eq!(alone, with_client, "a header the ingress does not set changed the answer");
    } else if let (Ok(a), Ok(b)) = (&alone, &with_client) {
        assert_eq!(
            (&a.path, &a.method),
            (&b.path, &b.method),
            "a client's copy decided the original request"
        );
    }
    if let Ok(o) = &with_client {
        let path = o.path.as_deref().expect("a known original has a path");
        assert!(path.starts_with('/'));
        assert!(path.bytes().all(|b| (0x21..0x7f).contains(&b)), "{path:?}");
        if let Some(url) = &o.url {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"))
                .expect("http(s) URL");
            assert!(rest.ends_with(path) && !rest[..rest.len() - path.len()].contains('/'));
        }
        if client == ForwardAuthClient::Auto && input.trusted {
            for name in ["x-forwarded-uri", "x-original-uri"] {
                for line in both.get_all(name) {
                    assert_eq!(encoded(line.as_bytes()), path, "{name} disagrees");
                }
            }
        }
        if let Some(b) = below {
            assert_eq!(b, path);
        }
    }
});
