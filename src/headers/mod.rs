//! Request header hygiene at the trust boundary, in one tested place:
//!
//! 1. [`remove_hop_by_hop`]: RFC 9110 §7.6.1 connection-specific fields, including every
//!    field named in `Connection`;
//! 2. [`strip_identity`]: every client copy of an identity header, in every spelling (case,
//!    `_` for `-`, duplicates), including ones gatehouse does not inject but upstreams read;
//! 3. [`remove_own_cookies`]: gatehouse's session and login cookies;
//! 4. [`strip_method_override`]: on a request a skip route let through, every header
//!    that would make the upstream run another method than the route allowed;
//!
//! then [`Forwarded`] (`forwarded.rs`) sets the forwarding metadata (client values
//! believed only from trusted proxies) and [`inject`] writes the verified identity.

mod forwarded;

pub use forwarded::Forwarded;

use crate::config::{HeaderNames, PassAuthorization};
use crate::identity::Identity;
use axum::http::header::{AUTHORIZATION, CONNECTION, COOKIE, UPGRADE};
use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop fields (RFC 9110 §7.6.1, plus the de-facto `Keep-Alive`/`Proxy-Connection`).
/// `HeaderName`s, not strings: no name parsing per request; a `static`, so the array is
/// not built (and dropped) at each use.
static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    axum::http::header::TE,
    axum::http::header::TRAILER,
    axum::http::header::TRANSFER_ENCODING,
    UPGRADE,
    axum::http::header::PROXY_AUTHENTICATE,
    axum::http::header::PROXY_AUTHORIZATION,
];

/// Exact names (normalised) that are identity headers whoever reads them.
const IDENTITY_NAMES: &[&str] = &[
    "remote-user",
    "remote-groups",
    "x-remote-user",
    "x-remote-group",
    "x-remote-groups",
    "x-remote-email",
    // Kubernetes' front-proxy UID header (`--requestheader-uid-headers`).
    "x-remote-uid",
    "x-user",
    "x-email",
    "x-groups",
    "x-webauth-user",
    "x-webauth-email",
    "x-webauth-groups",
    "x-id-token",
    "x-access-token",
    "x-real-user",
    // Forwarding metadata upstreams trust, in every spelling but X-Forwarded-* and
    // X-Original-* (prefixes below): gatehouse sets its own.
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "x-rewrite-url",
];

/// Prefixes (normalised) that mark identity or forwarding metadata from clients.
/// `impersonate-`: Kubernetes impersonation (`Impersonate-User`, `-Group`, `-Uid`,
/// `-Extra-*`) must never come from a browser, since Headlamp relays to the API server.
/// `x-remote-extra-`: the extras of Kubernetes' front-proxy (request header)
/// authentication, beside `X-Remote-User`/`X-Remote-Group` above.
const IDENTITY_PREFIXES: &[&str] = &[
    "x-forwarded-",
    "x-auth-request-",
    "x-original-",
    "impersonate-",
    "x-remote-extra-",
];

/// Lower-case, with every character but letters and digits folded to `-`: how WSGI, PHP
/// and some Node/Go stacks see names (`X_Forwarded_User`, `X.Forwarded.User` are
/// `x-forwarded-user` to them). The one definition of "the same header" for stripping
/// (sidecar) and refusing (forward auth).
pub fn normalise(name: &str) -> String {
    name.bytes().map(|b| char::from(fold(b))).collect()
}

/// [`normalise`] for one byte, from a table: this runs for every byte of every header
/// name of every request.
fn fold(b: u8) -> u8 {
    FOLD[usize::from(b)]
}

static FOLD: [u8; 256] = {
    let mut t = [b'-'; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b.is_ascii_alphanumeric() {
            t[i] = b.to_ascii_lowercase();
        }
        i += 1;
    }
    t
};

/// `name` starts with `prefix` once both are normalised (`prefix` already is). No allocation:
/// this runs for every header of every request.
fn folded_starts_with(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len() && name.bytes().zip(prefix.bytes()).all(|(a, b)| fold(a) == b)
}

fn folded_eq(name: &str, target: &str) -> bool {
    name.len() == target.len() && folded_starts_with(name, target)
}

/// Two names that every stack folding separators and case reads as one.
pub fn same_header(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

/// Removes hop-by-hop fields. With `upgrade`, keeps `Upgrade` and sets
/// `Connection: upgrade` so the upstream can switch protocols.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none: one pass over the names present (each compare of a
    // standard name is cheap) instead of a removal, hashed, per hop-by-hop name.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    let named: Vec<String> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    let upgrade_value = headers.get(UPGRADE).cloned();
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    for name in &named {
        headers.remove(name.as_str());
    }
    if let (true, Some(value)) = (upgrade, upgrade_value) {
        headers.insert(UPGRADE, value);
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// True when a request asks to switch protocols (WebSocket and friends).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// True when the upgrade asked for is WebSocket (and nothing else).
pub fn is_websocket(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(UPGRADE).iter();
    matches!((values.next(), values.next()), (Some(v), None) if v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"))
}

/// True when every protocol in `Upgrade` (`websocket`, `h2c`, `foo/1.0`) is allowed.
/// `h2c` would let a client talk HTTP/2 to the upstream past every check, so only
/// configured protocols (default: WebSocket) are tunnelled.
pub fn upgrade_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let mut protocols = headers
        .get_all(UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| {
            p.trim()
                .split('/')
                .next()
                .unwrap_or("")
                .to_ascii_lowercase()
        })
        .filter(|p| !p.is_empty())
        .peekable();
    protocols.peek().is_some() && protocols.all(|p| allowed.contains(&p))
}

/// Removes every client header that could pass for identity; returns how many went.
pub fn strip_identity(headers: &mut HeaderMap, names: &HeaderNames) -> usize {
    let configured = names.folded();
    let strip_authorization =
        names.authorization != PassAuthorization::None || names.strip_client_authorization;
    let is_doomed = |k: &&HeaderName| {
        let n = k.as_str();
        IDENTITY_NAMES.iter().any(|t| folded_eq(n, t))
            || IDENTITY_PREFIXES.iter().any(|p| folded_starts_with(n, p))
            || configured.iter().any(|c| folded_eq(n, c))
            || (strip_authorization && n == "authorization")
    };
    // The usual request has none: no list is built for it.
    if !headers.keys().any(|k| is_doomed(&k)) {
        return 0;
    }
    let doomed: Vec<HeaderName> = headers.keys().filter(is_doomed).cloned().collect();
    let mut removed = 0;
    for name in doomed {
        removed += headers.get_all(&name).iter().count();
        tracing::debug!(header = %name, "removed a client-supplied identity header");
        headers.remove(&name);
    }
    removed
}

/// Method-override headers (normalised). Express's `method-override`, Symfony and Laravel
/// (with overrides on), and many API frameworks run a request as the method named there
/// instead of the one on the request line.
const METHOD_OVERRIDE_NAMES: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Removes every method-override header, in every spelling, from a request that a
/// `skip_auth_routes` route let through without a login; returns how many went. Such a
/// route can name its methods (`POST=/hook`), and an upstream honouring an override would
/// otherwise run `POST /hook` with `X-HTTP-Method-Override: DELETE` as a DELETE that no
/// route allowed. Signed-in requests keep them: gatehouse decides nothing by their method,
/// and apps whose clients can only send GET and POST rely on them.
pub fn strip_method_override(headers: &mut HeaderMap) -> usize {
    // The usual request has none: no list is built for it.
    if !has_method_override(headers) {
        return 0;
    }
    let doomed: Vec<HeaderName> = headers.keys().filter(|k| is_override(k)).cloned().collect();
    let mut removed = 0;
    for name in doomed {
        removed += headers.get_all(&name).iter().count();
        tracing::debug!(header = %name, "removed a method override from a request no login was asked for");
        headers.remove(&name);
    }
    removed
}

fn is_override(k: &HeaderName) -> bool {
    METHOD_OVERRIDE_NAMES
        .iter()
        .any(|t| folded_eq(k.as_str(), t))
}

/// Whether a request carries a method override in any spelling. In forward auth,
/// gatehouse cannot remove it (the ingress forwards the request), so a check that carries
/// one is never let through by a skip route.
pub fn has_method_override(headers: &HeaderMap) -> bool {
    headers.keys().any(is_override)
}

/// The `X-Auth-Request-*` names a forward-auth answer carries besides the configured ones.
static AUTH_REQUEST_NAMES: [HeaderName; 4] = [
    X_AUTH_REQUEST_USER,
    X_AUTH_REQUEST_EMAIL,
    X_AUTH_REQUEST_GROUPS,
    X_AUTH_REQUEST_PREFERRED_USERNAME,
];

/// The first client header that is a spelling of an identity header gatehouse emits (the
/// configured names, `Authorization` aside, `X-Auth-Request-*`, and the assertion's
/// header whether or not the assertion is on), with the name it
/// aliases. In a forward-auth call such a header came from the client: an ingress that
/// does not remove it would hand it to the app.
pub fn emitted_alias<'a>(
    headers: &'a HeaderMap,
    names: &HeaderNames,
) -> Option<(&'a HeaderName, HeaderName)> {
    let emitted = || {
        [&names.user, &names.email, &names.preferred_username]
            .into_iter()
            .chain(names.groups.iter())
            .chain(names.id_token.iter())
            .chain(std::iter::once(&names.assertion))
            .chain(AUTH_REQUEST_NAMES.iter())
    };
    headers.keys().find_map(|k| {
        emitted()
            .find(|e| same_header(k.as_str(), e.as_str()))
            .map(|e| (k, e.clone()))
    })
}

/// Applies what [`RequestCookies::without`](crate::session::RequestCookies::without)
/// worked out; `owns` is for a header that must be read again.
pub fn rewrite_cookies(
    headers: &mut HeaderMap,
    rewrite: crate::session::CookieRewrite,
    owns: impl Fn(&str) -> bool,
) {
    use crate::session::CookieRewrite;
    match rewrite {
        CookieRewrite::Keep => {}
        CookieRewrite::Drop => {
            headers.remove(COOKIE);
        }
        CookieRewrite::Replace(kept) => {
            headers.remove(COOKIE);
            if let Ok(v) = HeaderValue::from_str(&kept) {
                headers.insert(COOKIE, v);
            }
        }
        CookieRewrite::Reread => remove_own_cookies(headers, owns),
    }
}

/// Drops gatehouse's own cookies from the `Cookie` header(s), keeping the rest. Works on
/// bytes: a header with any byte outside visible ASCII (another cookie's UTF-8 value) is
/// still searched, or our cookies in it would go upstream.
pub fn remove_own_cookies(headers: &mut HeaderMap, owns: impl Fn(&str) -> bool) {
    let is_ours = |p: &[u8]| {
        let name = p.split(|&b| b == b'=').next().unwrap_or_default();
        std::str::from_utf8(name).is_ok_and(|n| owns(n.trim()))
    };
    let (mut ours, mut kept) = (false, Vec::new());
    let parts = headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty());
    for part in parts {
        if is_ours(part) {
            ours = true;
        } else {
            kept.push(part);
        }
    }
    // Most requests carry none of ours (nothing to do) or only ours (drop the header).
    if !ours {
        return;
    }
    let rebuilt = (!kept.is_empty()).then(|| kept.join(&b"; "[..]));
    headers.remove(COOKIE);
    if let Some(v) = rebuilt.and_then(|c| HeaderValue::from_bytes(&c).ok()) {
        headers.insert(COOKIE, v);
    }
}

fn value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_bytes(s.as_bytes()).ok()
}

/// The header values for one session, built once and reused while the session is
/// cached (`session/cache.rs`): a request then only clones reference-counted bytes.
#[derive(Clone, Debug)]
pub struct IdentityValues {
    user: Option<HeaderValue>,
    email: Option<HeaderValue>,
    preferred_username: Option<HeaderValue>,
    groups: Option<HeaderValue>,
    id_token: Option<HeaderValue>,
    bearer: Option<HeaderValue>,
    /// What the token values were chosen for: values built for another header set
    /// (a reload changed `pass_authorization`, or a route has its own) must not be used
    /// for this one ([`IdentityValues::fits`]).
    authorization: PassAuthorization,
    token_is_access_token: bool,
}

impl IdentityValues {
    /// Builds the values; any that cannot be a header value is left out.
    pub fn new(
        names: &HeaderNames,
        id: &Identity,
        id_token: &str,
        access_token: Option<&str>,
    ) -> IdentityValues {
        let bearer = match names.authorization {
            PassAuthorization::None => None,
            PassAuthorization::IdToken => Some(id_token),
            PassAuthorization::AccessToken => access_token,
        };
        IdentityValues {
            user: value(&id.user),
            email: id.email.as_deref().and_then(value),
            preferred_username: id.preferred_username.as_deref().and_then(value),
            groups: (!id.groups.is_empty())
                .then(|| value(&id.groups.join(",")))
                .flatten(),
            id_token: if names.token_is_access_token {
                access_token.and_then(value)
            } else {
                value(id_token)
            },
            bearer: bearer.and_then(|t| value(&format!("Bearer {t}"))),
            authorization: names.authorization,
            token_is_access_token: names.token_is_access_token,
        }
    }

    /// Whether these values serve `names`: the same tokens in the same places (the
    /// names themselves are `names`'s when injecting).
    pub fn fits(&self, names: &HeaderNames) -> bool {
        self.authorization == names.authorization
            && self.token_is_access_token == names.token_is_access_token
    }
}

/// Where the headers gatehouse sets go: a header map (`insert`: any earlier value goes),
/// or [`Additions`].
pub trait SetHeader {
    fn set(&mut self, name: HeaderName, value: HeaderValue);
}

impl SetHeader for HeaderMap {
    fn set(&mut self, name: HeaderName, value: HeaderValue) {
        self.insert(name, value);
    }
}

/// The headers gatehouse adds to a proxied request (forwarding metadata, identity,
/// request id), kept beside the client's rather than hashed into its header map: the
/// upstream client writes them after the client's (`proxy/h1.rs`), or they join the map
/// for hyper's client. Each name is set once and the client's map holds no copy of it:
/// [`strip_identity`] removed those, and configuration refuses identity header names
/// that repeat or collide with the forwarding ones (`config/validate.rs`).
#[derive(Debug)]
pub struct Additions(Vec<(HeaderName, HeaderValue)>);

impl SetHeader for Additions {
    fn set(&mut self, name: HeaderName, value: HeaderValue) {
        debug_assert!(self.0.iter().all(|(n, _)| *n != name), "{name} set twice");
        self.0.push((name, value));
    }
}

impl Default for Additions {
    /// Room for every header gatehouse sets (5 forwarding, up to 7 identity, request id).
    fn default() -> Additions {
        Additions(Vec::with_capacity(16))
    }
}

impl Additions {
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.0.iter().map(|(n, v)| (n, v))
    }

    /// Moves the additions into `headers`.
    pub fn apply_to(self, headers: &mut HeaderMap) {
        headers.reserve(self.0.len());
        for (name, value) in self.0 {
            headers.insert(name, value);
        }
    }
}

/// Writes the verified identity. Runs after [`strip_identity`], so each header is ours alone.
pub fn inject(headers: &mut impl SetHeader, names: &HeaderNames, v: &IdentityValues) {
    inject_identity(headers, names, v, true);
}

/// [`inject`]; without the ID token and `Authorization` unless `with_tokens`.
fn inject_identity(
    headers: &mut impl SetHeader,
    names: &HeaderNames,
    v: &IdentityValues,
    with_tokens: bool,
) {
    let mut put = |name: &HeaderName, value: &Option<HeaderValue>| {
        if let Some(value) = value {
            headers.set(name.clone(), value.clone());
        }
    };
    put(&names.user, &v.user);
    put(&names.email, &v.email);
    put(&names.preferred_username, &v.preferred_username);
    for name in &names.groups {
        put(name, &v.groups);
    }
    if !with_tokens {
        return;
    }
    if let Some(name) = &names.id_token {
        put(name, &v.id_token);
    }
    put(&AUTHORIZATION, &v.bearer);
}

/// Keeps shared caches in front of gatehouse from handing one user's page or session to
/// another: a response that carries a gatehouse `Set-Cookie` gets `Cache-Control:
/// no-store`; an authenticated response gets `Vary: Cookie` and is never left `public`
/// (`public` becomes `private`).
pub fn shield_from_shared_caches(h: &mut HeaderMap, authenticated: bool, sets_cookie: bool) {
    use axum::http::header::{CACHE_CONTROL, VARY};
    if !authenticated && !sets_cookie {
        return;
    }
    // One pass over the response's fields: is it `public`, does it vary on Cookie?
    let (mut public, mut varies) = (false, false);
    for (name, v) in h.iter() {
        if name == CACHE_CONTROL {
            public |= v
                .as_bytes()
                .windows(6)
                .any(|w| w.eq_ignore_ascii_case(b"public"));
        } else if name == VARY {
            varies |= v.as_bytes().split(|b| *b == b',').any(|t| {
                let t = t.trim_ascii();
                t == b"*" || t.eq_ignore_ascii_case(b"cookie")
            });
        }
    }
    if sets_cookie {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    } else if public {
        let rewritten: Vec<String> = h
            .get_all(CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| {
                if d.eq_ignore_ascii_case("public") {
                    "private".to_string()
                } else {
                    d.to_string()
                }
            })
            .collect();
        if !rewritten.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&rewritten.join(", ")) {
                h.insert(CACHE_CONTROL, v);
            }
        }
    }
    if !varies {
        h.append(VARY, HeaderValue::from_static("Cookie"));
    }
}

/// oauth2-proxy's response header names, which existing ingress configurations copy.
const X_AUTH_REQUEST_USER: HeaderName = HeaderName::from_static("x-auth-request-user");
const X_AUTH_REQUEST_EMAIL: HeaderName = HeaderName::from_static("x-auth-request-email");
const X_AUTH_REQUEST_GROUPS: HeaderName = HeaderName::from_static("x-auth-request-groups");
const X_AUTH_REQUEST_PREFERRED_USERNAME: HeaderName =
    HeaderName::from_static("x-auth-request-preferred-username");

/// Writes the identity into a forward-auth answer: the `X-Auth-Request-*` family and the
/// names gatehouse injects as a sidecar, so each ingress copies whichever it needs. The
/// ID token and `Authorization` only `with_tokens` (the internal listener's answers): a
/// browser can read an answer from the public one.
pub fn write_auth_response(
    headers: &mut HeaderMap,
    names: &HeaderNames,
    v: &IdentityValues,
    with_tokens: bool,
) {
    let mut put = |name: HeaderName, value: &Option<HeaderValue>| {
        if let Some(value) = value {
            headers.insert(name, value.clone());
        }
    };
    put(X_AUTH_REQUEST_USER, &v.user);
    put(X_AUTH_REQUEST_EMAIL, &v.email);
    put(X_AUTH_REQUEST_GROUPS, &v.groups);
    put(X_AUTH_REQUEST_PREFERRED_USERNAME, &v.preferred_username);
    inject_identity(headers, names, v, with_tokens);
}

/// A header map from pairs, appending repeated names (tests only).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn test_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names() -> HeaderNames {
        HeaderNames {
            user: HeaderName::from_static("x-forwarded-user"),
            email: HeaderName::from_static("x-forwarded-email"),
            groups: vec![
                HeaderName::from_static("x-forwarded-group"),
                HeaderName::from_static("x-forwarded-groups"),
            ],
            preferred_username: HeaderName::from_static("x-forwarded-preferred-username"),
            id_token: Some(HeaderName::from_static("x-forwarded-id-token")),
            authorization: PassAuthorization::None,
            token_is_access_token: false,
            strip_client_authorization: false,
            strip: vec![HeaderName::from_static("x-custom-identity")],
            assertion: HeaderName::from_static("x-gatehouse-assertion"),
            folded: Default::default(),
        }
    }

    use super::test_map as map;

    #[test]
    fn every_spelling_of_identity_headers_goes() {
        let mut h = map(&[
            ("X-Forwarded-User", "root"),
            ("x-forwarded-user", "root2"),
            ("X_Forwarded_User", "root3"),
            ("x_forwarded_email", "a@evil"),
            ("X-Forwarded-Group", "system:masters"),
            ("X-Forwarded-Id-Token", "forged"),
            ("X-Auth-Request-User", "x"),
            ("Remote-User", "x"),
            ("X-Custom-Identity", "x"),
            ("X-Gatehouse-Assertion", "forged"),
            ("x_gatehouse_assertion", "forged"),
            ("X.GATEHOUSE.ASSERTION", "forged"),
            ("Accept", "text/html"),
        ]);
        let n = strip_identity(&mut h, &names());
        assert_eq!(n, 12);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn every_spelling_of_a_method_override_goes_and_nothing_else() {
        let mut h = map(&[
            ("X-HTTP-Method-Override", "DELETE"),
            ("x-http-method-override", "PUT"),
            ("X_HTTP_Method", "DELETE"),
            ("x.method.override", "PATCH"),
            ("X-Method-Override", "DELETE"),
            ("X-HTTP-Method-Overrides", "keep"),
            ("X-Method", "keep"),
            ("X-Http", "keep"),
            ("Content-Type", "application/json"),
        ]);
        assert_eq!(strip_method_override(&mut h), 5);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            [
                "content-type",
                "x-http",
                "x-http-method-overrides",
                "x-method"
            ]
        );
        assert_eq!(strip_method_override(&mut h), 0);
    }

    #[test]
    fn kubernetes_front_proxy_extras_go() {
        // Found by fuzz/header_sanitise (`X-Remote-Extra-`): X-Remote-User and
        // X-Remote-Group were removed, the extras of the same family were not.
        let mut h = map(&[
            ("X-Remote-Extra-Scopes", "admin"),
            ("x_remote_extra_acme.com%2Fproject", "p"),
            ("X-Remote-Extra-", ""),
            ("X-Remote-Extras", "kept: not the prefix"),
            ("X-Remote-Uid", "0"),
        ]);
        assert_eq!(strip_identity(&mut h, &names()), 4);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-remote-extras"));
    }

    #[test]
    fn hop_by_hop_including_connection_named_fields() {
        let mut h = map(&[
            ("Connection", "keep-alive, X-Secret"),
            ("X-Secret", "1"),
            ("TE", "trailers"),
            ("Upgrade", "websocket"),
            ("Accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        let mut h = map(&[("Connection", "Upgrade"), ("Upgrade", "websocket")]);
        assert!(wants_upgrade(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
    }

    #[test]
    fn only_listed_upgrade_protocols_are_allowed() {
        let ws = vec!["websocket".to_string()];
        for (upgrade, ok) in [
            ("websocket", true),
            ("WebSocket", true),
            ("websocket/13", true),
            ("h2c", false),
            ("websocket, h2c", false),
            ("", false),
        ] {
            let h = map(&[("Upgrade", upgrade)]);
            assert_eq!(upgrade_allowed(&h, &ws), ok, "{upgrade:?}");
        }
    }

    #[test]
    fn shared_caches_are_shielded() {
        let mut h = map(&[("Cache-Control", "public, max-age=60"), ("Vary", "Accept")]);
        shield_from_shared_caches(&mut h, true, false);
        assert_eq!(h.get("cache-control").unwrap(), "private, max-age=60");
        assert_eq!(h.get_all("vary").iter().count(), 2);
        let mut h = map(&[("Vary", "*")]);
        shield_from_shared_caches(&mut h, true, false);
        assert_eq!(h.get_all("vary").iter().count(), 1);
        let mut h = map(&[("Cache-Control", "public")]);
        shield_from_shared_caches(&mut h, false, true);
        assert_eq!(h.get("cache-control").unwrap(), "no-store");
        let mut h = map(&[("Cache-Control", "public")]);
        shield_from_shared_caches(&mut h, false, false);
        assert_eq!(
            h.get("cache-control").unwrap(),
            "public",
            "skip routes: the app decides"
        );
    }

    #[test]
    fn own_cookies_are_removed_others_kept() {
        let mut h = map(&[
            ("Cookie", "_gh=a; theme=dark"),
            ("Cookie", "_gh_0=b; _gh_login_x=c; sid=1"),
        ]);
        remove_own_cookies(&mut h, |n| n == "_gh" || n.starts_with("_gh_"));
        assert_eq!(h.get("cookie").unwrap(), "theme=dark; sid=1");
    }

    #[test]
    fn own_cookies_are_removed_from_headers_that_are_not_ascii() {
        // Found by fuzz/header_sanitise (`Cookie: \xff;_gh`): a header with a byte outside
        // visible ASCII failed `to_str` and was skipped whole, so gatehouse's session
        // cookie in it went upstream.
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_bytes(b"\xff;_gh").unwrap());
        remove_own_cookies(&mut h, |n| n == "_gh");
        assert_eq!(h.get(COOKIE).unwrap().as_bytes(), b"\xff");
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_bytes("_gh=sealed; name=José".as_bytes()).unwrap(),
        );
        h.append(COOKIE, HeaderValue::from_static("_gh_0=x; sid=1"));
        remove_own_cookies(&mut h, |n| n == "_gh" || n.starts_with("_gh_"));
        assert_eq!(h.get_all(COOKIE).iter().count(), 1);
        assert_eq!(
            h.get(COOKIE).unwrap().as_bytes(),
            "name=José; sid=1".as_bytes()
        );
    }

    /// A session keeps the values it first served; a set with another token setting (a
    /// route's own `pass_authorization`, or the one a reload brought) never gets them.
    #[test]
    fn values_kept_for_one_token_setting_never_serve_another() {
        let s = crate::session::Session {
            id_token: "idtok".into(),
            access_token: Some("acctok".into()),
            ..crate::session::Session::sample()
        };
        let with = |a| HeaderNames {
            authorization: a,
            ..names()
        };
        let bearer = |n: &HeaderNames| {
            let mut h = HeaderMap::new();
            inject(&mut h, n, &s.values(n));
            assert_eq!(h.get("x-forwarded-user").unwrap(), "alice");
            h.get("authorization")
                .map(|v| v.to_str().unwrap().to_string())
        };
        let id = with(PassAuthorization::IdToken);
        assert_eq!(bearer(&id).as_deref(), Some("Bearer idtok"));
        assert_eq!(bearer(&with(PassAuthorization::None)), None);
        let access = with(PassAuthorization::AccessToken);
        assert_eq!(bearer(&access).as_deref(), Some("Bearer acctok"));
        assert!(
            matches!(s.values(&id), std::borrow::Cow::Borrowed(_)),
            "kept where they fit"
        );
    }

    #[test]
    fn injection_writes_one_line_per_header() {
        let mut h = HeaderMap::new();
        let id = Identity {
            sub: "s".into(),
            user: "alice".into(),
            email: Some("a@x".into()),
            groups: vec!["a".into(), "b".into()],
            ..Identity::default()
        };
        let mut n = names();
        n.authorization = PassAuthorization::IdToken;
        inject(&mut h, &n, &IdentityValues::new(&n, &id, "tok", None));
        assert_eq!(h.get_all("x-forwarded-group").iter().count(), 1);
        assert_eq!(h.get("x-forwarded-groups").unwrap(), "a,b");
        assert_eq!(h.get("x-forwarded-id-token").unwrap(), "tok");
        assert_eq!(h.get("authorization").unwrap(), "Bearer tok");
    }

    proptest! {
        #[test]
        fn stripping_twice_changes_nothing(names_in in proptest::collection::vec("[A-Za-z_-]{1,24}", 0..12)) {
            let mut h = HeaderMap::new();
            for n in &names_in {
                if let Ok(name) = HeaderName::from_bytes(n.as_bytes()) {
                    h.append(name, HeaderValue::from_static("v"));
                }
            }
            strip_identity(&mut h, &names());
            let once = h.clone();
            prop_assert_eq!(strip_identity(&mut h, &names()), 0);
            prop_assert_eq!(h, once);
        }
    }
}
