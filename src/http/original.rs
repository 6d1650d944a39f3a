//! What the ingress says about the original request in a forward-auth call: its method,
//! path (with query), scheme and host, as one value or *unknown* (ARCHITECTURE.md, "one
//! value or unknown"; CONTRACTS.md §2).
//!
//! Trusts: headers only from a peer in `trusted_proxies`, and then only the headers the
//! configured ingress (`forward_auth_client`) sets itself; with `auto`, every header that
//! could carry a fact must agree. Envoy's path below `/oauth2/auth` is what the ingress
//! asked about, from whoever sends it; but only a named `envoy` lets it decide a skip
//! route, since a fixed auth URL with a trailing slash looks the same. Never trusts: a client's copy of any header (nginx
//! and Caddy pass them into the auth request beside their own), a value that is missing,
//! unreadable (control bytes, spaces, an empty line), unparsable (a bad port, user info,
//! another scheme) or that disagrees with another line or source. Any of those makes the
//! whole original request unknown: no skip route applies and the post-login target is
//! `/`. Nothing is ever dropped to make the rest agree.
//!
//! Bytes >= 0x80 are legal on the wire for many ingresses (nginx passes `$request_uri`
//! raw): they are kept, percent-encoded, so the path stays the one the app will see (and
//! `routes::canonical_path` refuses it for skip routes). Paths are never normalised here:
//! `/admin/%2e%2e/public/x` stays as it is, so a skip route cannot match a path the app
//! reads differently.

use crate::config::ForwardAuthClient;
use axum::http::{HeaderMap, Method};

/// What gatehouse believes about the request being checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    /// The method (the auth request's own when unknown: only used to tell API calls).
    pub method: Method,
    /// Path and query, non-ASCII bytes percent-encoded; `None` when unknown.
    pub path: Option<String>,
    /// The absolute URL, when scheme and host are known too (the post-login target).
    pub url: Option<String>,
    /// Whether `path` may decide a skip route. Not with `auto` below `/oauth2/auth`: a
    /// fixed auth URL with a trailing slash (nginx, Traefik, Caddy) looks exactly like
    /// Envoy asking about `/`, so only a named `envoy` makes that form decisive.
    pub decides_skip: bool,
}

impl Original {
    /// The original request's `host[:port]` exactly as the ingress reported it (the host
    /// in lower case), when the URL is known. Read from the URL gatehouse built, never
    /// through a URL parser: that would turn `2130706433` or `0x7f.1` into `127.0.0.1`
    /// and `[0:0::1]` into `[::1]`, a host no ingress routes to that address and the
    /// route table, reading a proxied request's `Host`, places nowhere.
    pub fn authority(&self) -> Option<&str> {
        let (_, rest) = self.url.as_deref()?.split_once("://")?;
        let end = rest.find('/').unwrap_or(rest.len());
        rest.get(..end).filter(|a| !a.is_empty())
    }

    /// The original request as audit events name it (never its query).
    pub fn route(&self) -> crate::audit::Route<'_> {
        use crate::audit::Route;
        match (&self.url, &self.path) {
            (Some(url), _) => Route::Url(url),
            (None, Some(path)) => Route::HostPath(None, path),
            (None, None) => Route::Unknown,
        }
    }
}

/// Why the original request is unknown (for the log; never shown with client values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unknown {
    /// The peer is not in `trusted_proxies`, and no Envoy path was given.
    Untrusted,
    /// The configured ingress's header is absent.
    Missing(&'static str),
    /// A value is not a valid one of its kind.
    Unreadable(&'static str),
    /// Two lines or sources disagree (a client's copy next to the ingress's).
    Disagree(&'static str),
    /// The ingress is named and the request came in another form (a path below
    /// `/oauth2/auth` from anything but Envoy, or none from Envoy).
    WrongForm,
}

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unknown::Untrusted => f.write_str("the peer is not in trusted_proxies"),
            Unknown::Missing(h) => write!(f, "the ingress sent no {h}"),
            Unknown::Unreadable(h) => write!(f, "{h} is not readable"),
            Unknown::Disagree(what) => write!(
                f,
                "the sources of the {what} disagree (a client's copy next to the ingress's?)"
            ),
            Unknown::WrongForm => f.write_str("the call's form does not match forward_auth_client"),
        }
    }
}

/// Where one fact may come from.
#[derive(Clone, Copy)]
enum Src {
    Header(&'static str),
    /// `X-Original-URL` (ingress-nginx): scheme, host and path in one.
    OriginalUrl,
    /// The path below `/oauth2/auth` (Envoy).
    Below,
    /// The auth request's own method (Envoy keeps it).
    OwnMethod,
}

const XF_URI: Src = Src::Header("x-forwarded-uri");
const XF_METHOD: Src = Src::Header("x-forwarded-method");
const XF_HOST: Src = Src::Header("x-forwarded-host");
const XF_PROTO: Src = Src::Header("x-forwarded-proto");
const XO_URI: Src = Src::Header("x-original-uri");
const XO_METHOD: Src = Src::Header("x-original-method");

/// The sources of each fact for one kind of ingress.
struct Plan {
    path: &'static [Src],
    method: &'static [Src],
    host: &'static [Src],
    proto: &'static [Src],
}

fn plan(client: ForwardAuthClient, below: bool) -> Plan {
    use ForwardAuthClient as C;
    match client {
        C::Nginx | C::Traefik | C::Caddy => Plan {
            path: &[XF_URI],
            method: &[XF_METHOD],
            host: &[XF_HOST],
            proto: &[XF_PROTO],
        },
        C::IngressNginx => Plan {
            path: &[Src::OriginalUrl],
            method: &[XO_METHOD],
            host: &[Src::OriginalUrl],
            proto: &[Src::OriginalUrl],
        },
        C::Envoy => Plan {
            path: &[Src::Below],
            method: &[Src::OwnMethod],
            host: &[XF_HOST],
            proto: &[XF_PROTO],
        },
        C::Auto if below => Plan {
            path: &[Src::Below, XF_URI, XO_URI, Src::OriginalUrl],
            method: &[Src::OwnMethod, XF_METHOD, XO_METHOD],
            host: &[XF_HOST, Src::OriginalUrl],
            proto: &[XF_PROTO, Src::OriginalUrl],
        },
        C::Auto => Plan {
            path: &[XF_URI, XO_URI, Src::OriginalUrl],
            method: &[XF_METHOD, XO_METHOD],
            host: &[XF_HOST, Src::OriginalUrl],
            proto: &[XF_PROTO, Src::OriginalUrl],
        },
    }
}

/// The auth request as the reader sees it.
pub struct Call<'a> {
    pub headers: &'a HeaderMap,
    /// The peer is in `trusted_proxies`.
    pub trusted: bool,
    pub client: ForwardAuthClient,
    pub own_method: &'a Method,
    /// The path and query below `/oauth2/auth` (Envoy's form), raw.
    pub below: Option<&'a str>,
}

impl Original {
    /// Nothing known: no skip route applies, the post-login target is `/`.
    pub fn unknown(own_method: &Method) -> Original {
        Original {
            method: own_method.clone(),
            path: None,
            url: None,
            decides_skip: false,
        }
    }

    /// Reads the original request, or says why it is unknown.
    pub fn read(call: &Call<'_>) -> Result<Original, Unknown> {
        let named = call.client != ForwardAuthClient::Auto;
        let envoy = call.client == ForwardAuthClient::Envoy;
        if named && envoy != call.below.is_some() {
            return Err(Unknown::WrongForm);
        }
        if !call.trusted && call.below.is_none() {
            return Err(Unknown::Untrusted);
        }
        let plan = plan(call.client, call.below.is_some());
        let facts = Facts {
            call,
            headers_believed: call.trusted,
        };
        let path = facts
            .agree("path", plan.path, Fact::Path)?
            .ok_or(Unknown::Missing(first_name(plan.path)))?;
        let method = facts
            .agree("method", plan.method, Fact::Method)?
            .ok_or(Unknown::Missing(first_name(plan.method)))?;
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| Unknown::Unreadable(first_name(plan.method)))?;
        let host = facts.agree_host(plan.host)?;
        let proto = facts.agree("scheme", plan.proto, Fact::Proto)?;
        let url = match (proto, host) {
            (Some(proto), Some(host)) => Some(format!("{proto}://{host}{path}")),
            _ => None,
        };
        Ok(Original {
            method,
            path: Some(path),
            url,
            decides_skip: !(call.client == ForwardAuthClient::Auto && call.below.is_some()),
        })
    }
}

fn first_name(srcs: &[Src]) -> &'static str {
    match srcs.first() {
        Some(Src::Header(h)) => h,
        Some(Src::OriginalUrl) => "x-original-url",
        Some(Src::Below) => "a path below /oauth2/auth",
        Some(Src::OwnMethod) | None => "method",
    }
}

#[derive(Clone, Copy)]
enum Fact {
    Path,
    Method,
    Host,
    Proto,
}

struct Facts<'a, 'b> {
    call: &'b Call<'a>,
    headers_believed: bool,
}

impl Facts<'_, '_> {
    /// Every value of `fact` from `srcs`, each checked; `Err` for an unreadable one.
    fn values(&self, srcs: &[Src], fact: Fact) -> Result<Vec<String>, Unknown> {
        let mut out = Vec::new();
        for src in srcs {
            match *src {
                Src::Below => {
                    if let Some(b) = self.call.below {
                        let v = read_fact(b.as_bytes(), Fact::Path)
                            .ok_or(Unknown::Unreadable("the path below /oauth2/auth"))?;
                        out.push(v);
                    }
                }
                Src::OwnMethod => out.push(self.call.own_method.as_str().to_string()),
                Src::Header(name) if self.headers_believed => {
                    for line in self.call.headers.get_all(name) {
                        out.push(
                            read_fact(line.as_bytes(), fact).ok_or(Unknown::Unreadable(name))?,
                        );
                    }
                }
                Src::OriginalUrl if self.headers_believed => {
                    for line in self.call.headers.get_all("x-original-url") {
                        let parts = split_url(line.as_bytes())
                            .ok_or(Unknown::Unreadable("x-original-url"))?;
                        out.push(match fact {
                            Fact::Path => parts.path,
                            Fact::Host => parts.host,
                            Fact::Proto => parts.scheme,
                            Fact::Method => continue,
                        });
                    }
                }
                Src::Header(_) | Src::OriginalUrl => {}
            }
        }
        Ok(out)
    }

    /// The one value every source gives, `None` when none gives any.
    fn agree(
        &self,
        what: &'static str,
        srcs: &[Src],
        fact: Fact,
    ) -> Result<Option<String>, Unknown> {
        let values = self.values(srcs, fact)?;
        match values.split_first() {
            None => Ok(None),
            Some((first, rest)) if rest.iter().all(|v| v == first) => Ok(Some(first.clone())),
            Some(_) => Err(Unknown::Disagree(what)),
        }
    }

    /// Hosts agree when their names do (case-insensitive); a port, where one source has it
    /// and another does not (`$host` next to `$http_host`), is kept. Two ports that differ
    /// disagree.
    fn agree_host(&self, srcs: &[Src]) -> Result<Option<String>, Unknown> {
        let values = self.values(srcs, Fact::Host)?;
        let mut best: Option<(String, Option<String>)> = None;
        for v in values {
            let (name, port) = split_port(&v);
            best = match best {
                None => Some((name, port)),
                Some((n, p)) if n == name => match (p, port) {
                    (Some(a), Some(b)) if a != b => return Err(Unknown::Disagree("host")),
                    (a, b) => Some((n, a.or(b))),
                },
                Some(_) => return Err(Unknown::Disagree("host")),
            };
        }
        Ok(best.map(|(n, p)| match p {
            Some(p) => format!("{n}:{p}"),
            None => n,
        }))
    }
}

/// One header line as a fact, or `None` when it is not a valid one.
fn read_fact(raw: &[u8], fact: Fact) -> Option<String> {
    let raw = raw.trim_ascii();
    match fact {
        Fact::Path => request_target(raw),
        Fact::Method => {
            let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
            (!raw.is_empty() && raw.iter().all(tchar))
                .then(|| String::from_utf8_lossy(raw).into_owned())
        }
        Fact::Host => authority(raw),
        Fact::Proto => scheme(raw),
    }
}

/// An origin-form request target (`/path?query`): visible ASCII, with each byte >= 0x80
/// percent-encoded; no spaces, no control bytes, nothing else.
fn request_target(raw: &[u8]) -> Option<String> {
    if raw.first() != Some(&b'/') {
        return None;
    }
    let mut out = String::with_capacity(raw.len());
    for &b in raw {
        match b {
            0x21..=0x7e => out.push(char::from(b)),
            0x80..=0xff => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
            _ => return None,
        }
    }
    Some(out)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// `host[:port]`: a DNS-style name or an IP literal, and a port 1-65535. No user info.
fn authority(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let (host, port) = split_port(text);
    let name_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    };
    let port_ok = port.as_deref().map_or(true, |p| {
        p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok_and(|n| n > 0)
    });
    (name_ok && port_ok).then(|| match port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

/// `host` (lower case) and the port text after its `:`, if any (`[v6]:port` for IPv6).
fn split_port(v: &str) -> (String, Option<String>) {
    let cut = if v.starts_with('[') {
        v.find("]:").map(|i| i + 1)
    } else {
        v.rfind(':')
    };
    match cut {
        Some(i) => (v[..i].to_ascii_lowercase(), Some(v[i + 1..].to_string())),
        None => (v.to_ascii_lowercase(), None),
    }
}

fn scheme(raw: &[u8]) -> Option<String> {
    match raw.to_ascii_lowercase().as_slice() {
        b"http" => Some("http".into()),
        b"https" => Some("https".into()),
        _ => None,
    }
}

/// The parts of an absolute `X-Original-URL`, raw (never normalised).
struct UrlParts {
    scheme: String,
    host: String,
    path: String,
}

/// `scheme://host[:port]/path?query`, read by hand: a URL parser would resolve dot
/// segments and decode, and the path must stay the one the app sees.
fn split_url(raw: &[u8]) -> Option<UrlParts> {
    let raw = raw.trim_ascii();
    let at = raw.windows(3).position(|w| w == b"://")?;
    let scheme = scheme(&raw[..at])?;
    let rest = &raw[at + 3..];
    let end = rest.iter().position(|b| *b == b'/').unwrap_or(rest.len());
    let host = authority(&rest[..end])?;
    let path = request_target(&rest[end..])?;
    Some(UrlParts { scheme, host, path })
}

#[cfg(test)]
#[path = "original_tests.rs"]
mod tests;
