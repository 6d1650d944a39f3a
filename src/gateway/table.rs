//! The route table of a multi-app gateway (`[[routes]]`): which app a request is for,
//! from its host (as gatehouse believes it: `headers::forwarded`) and its path.
//!
//! Most specific first: an exact host before any wildcard, a longer wildcard suffix
//! before a shorter one, then the longest `path_prefix`. The table is sorted once, when
//! the configuration is read; a lookup walks it and stops at the first match. Trusts
//! nothing of the request: a host that is not a plain DNS name or IP literal (with an
//! optional port) matches no route. Prefixes are matched against the path as the most
//! lenient server reads it (percent-decoded, without `;parameters`), and a path servers
//! could read as different ones (dot segments, encoded slashes, backslashes, a prefix in
//! another case) matches no route when any route has a prefix.

use super::settings::RouteSettings;
use crate::config::AccessRules;
use std::cmp::Ordering;
use std::fmt;
use url::Url;

/// The `host` of a route: one host, or every subdomain of a domain (`*.example.com`:
/// `a.example.com` and `a.b.example.com`, never `example.com` itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Lower case.
    Exact(String),
    /// The domain after `*.`, lower case.
    Wildcard(String),
}

impl HostPattern {
    /// `host` as a route writes it; `Err` says what is wrong.
    pub fn parse(host: &str) -> Result<HostPattern, String> {
        let lower = host.trim().to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let ip = !wild && name.parse::<std::net::IpAddr>().is_ok();
        // A wildcard of an IP address (`*.10.0.0.1`) names no host: a top-level domain is
        // never all digits.
        let numeric_tld = name
            .rsplit('.')
            .next()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
        if !ip && (!valid_name(name, wild) || numeric_tld) {
            return Err(format!(
                "`{host}` is not a host name (app.example.com), a wildcard (*.example.com) or an IP address; no port, scheme or path"
            ));
        }
        Ok(match wild {
            true => HostPattern::Wildcard(name.to_string()),
            false => HostPattern::Exact(name.to_string()),
        })
    }

    /// Whether `host` (lower case, no port) is this pattern's.
    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(d) => host
                .strip_suffix(d.as_str())
                .and_then(|sub| sub.strip_suffix('.'))
                .is_some_and(|sub| !sub.is_empty()),
        }
    }

    /// Sort key: exact hosts first, then wildcards by their domain's length, longest first.
    fn rank(&self) -> (u8, std::cmp::Reverse<usize>) {
        match self {
            HostPattern::Exact(_) => (0, std::cmp::Reverse(0)),
            HostPattern::Wildcard(d) => (1, std::cmp::Reverse(d.len())),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => write!(f, "{h}"),
            HostPattern::Wildcard(d) => write!(f, "*.{d}"),
        }
    }
}

/// Letters, digits and `-` in dot-separated labels (one label allowed: `localhost`).
fn valid_name(name: &str, wild: bool) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && (!wild || name.contains('.') || name == "localhost")
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// One app behind the gateway.
#[derive(Debug, Clone)]
pub struct Route {
    pub host: HostPattern,
    /// Starts with `/`; `/` for the whole host.
    pub path_prefix: String,
    /// `None`: a route for forward auth only (the ingress has the app); a proxied
    /// request that reaches it gets 404.
    pub upstream: Option<Url>,
    /// This app's rules, ANDed with the top-level ones.
    pub rules: AccessRules,
    /// Its own skip routes, header set and assertion audience (`settings.rs`).
    pub own: RouteSettings,
}

/// How a request's path meets a route's prefix.
#[derive(PartialEq)]
enum PathMatch {
    Yes,
    No,
    /// Only when case is ignored (`/ADMIN` for `/admin`): a case-insensitive upstream
    /// (Express, ASP.NET Core, IIS) serves it as the prefix's path, a case-sensitive one
    /// as another; either route could be the wrong one, so it matches none.
    CaseOnly,
}

impl Route {
    /// `path`: the request's [`match_form`].
    fn matches(&self, host: &str, path: &[u8]) -> PathMatch {
        if !self.host.matches(host) {
            return PathMatch::No;
        }
        let prefix = self.path_prefix.as_bytes();
        if prefix_matches(prefix, path) {
            PathMatch::Yes
        } else if path
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
            && prefix_matches(prefix, &[prefix, &path[prefix.len()..]].concat())
        {
            PathMatch::CaseOnly
        } else {
            PathMatch::No
        }
    }

    fn order(&self, other: &Route) -> Ordering {
        self.host
            .rank()
            .cmp(&other.host.rank())
            .then_with(|| other.path_prefix.len().cmp(&self.path_prefix.len()))
    }

    /// Whether `self` and `other` match exactly the same requests (no order between them).
    pub fn same_place(&self, other: &Route) -> bool {
        self.host == other.host && self.path_prefix.eq_ignore_ascii_case(&other.path_prefix)
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.upstream {
            Some(u) => {
                let u = u.as_str().trim_end_matches('/');
                write!(f, "{}{} -> {u}", self.host, self.path_prefix)
            }
            None => write!(f, "{}{} (forward auth only)", self.host, self.path_prefix),
        }
    }
}

/// `/app` covers `/app` and `/app/...` but not `/application`; `/app/` covers `/app/...`.
/// Case counts: a path that meets a prefix only without it matches no route (`lookup`).
fn prefix_matches(prefix: &[u8], path: &[u8]) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with(b"/") || rest.is_empty() || rest.starts_with(b"/"),
        None => false,
    }
}

/// The routes, most specific first. Empty: no `[[routes]]` (the single `upstream`).
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// Some route has a `path_prefix` other than `/`.
    prefixed: bool,
}

impl RouteTable {
    /// Sorts `routes`, most specific first (a stable sort: the file's order otherwise).
    pub fn new(mut routes: Vec<Route>) -> RouteTable {
        routes.sort_by(Route::order);
        let prefixed = routes.iter().any(|r| r.path_prefix != "/");
        RouteTable { routes, prefixed }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Some route has a `path_prefix` other than `/`: a lookup needs the path.
    pub fn has_prefixes(&self) -> bool {
        self.prefixed
    }

    /// The index of the route for `host` (a `Host` value, maybe with a port) and `path`
    /// (the request target's path, as sent); `None`: no route, or input that cannot be
    /// matched safely.
    pub fn lookup(&self, host: Option<&str>, path: &str) -> Option<usize> {
        let host = host_of(host?)?;
        if !self.prefixed {
            return self.routes.iter().position(|r| r.host.matches(&host));
        }
        let path = match_form(path)?;
        for (i, r) in self.routes.iter().enumerate() {
            match r.matches(&host, &path) {
                PathMatch::Yes => return Some(i),
                PathMatch::CaseOnly => return None,
                PathMatch::No => {}
            }
        }
        None
    }
}

/// The host part of a `Host` value, lower case and without a trailing dot; `None` for
/// anything but a DNS name, an IPv4 address or a bracketed IPv6 address, with an
/// optional numeric port.
fn host_of(value: &str) -> Option<String> {
    let (host, port) = match value.strip_prefix('[') {
        Some(rest) => {
            let (inner, after) = rest.split_once(']')?;
            inner.parse::<std::net::Ipv6Addr>().ok()?;
            (
                inner,
                after.strip_prefix(':').or(after.is_empty().then_some("")),
            )
        }
        None => match value.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (value, Some("")),
        },
    };
    let port = port?;
    if !port.is_empty() && port.parse::<u16>().is_err() {
        return None;
    }
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let ok = host.parse::<std::net::IpAddr>().is_ok() || valid_name(&host, false);
    ok.then_some(host)
}

/// The path as the most lenient upstream reads it, for matching against the prefixes;
/// `None` when servers could read it as different paths, which then matches no route.
///
/// Percent-encoded bytes are decoded (`/%61dmin` is `/admin` to any server) and each
/// segment's `;parameters` dropped (`/admin;x` is `/admin` to Tomcat, Jetty and Spring;
/// a prefix met only without case matches nothing, [`PathMatch::CaseOnly`]);
/// refused: a `.` or `..` segment after that (`/public/..;/admin`, `%2e%2e`), an empty
/// segment (`//`), an encoded `/` or `\`, a backslash, a control byte, a `%` that
/// starts no escape, a raw `#`. A prefix holds none of these (`config::routes`), so the decoded
/// path covers every way an upstream could read the raw one.
fn match_form(path: &str) -> Option<Vec<u8>> {
    let raw = path.as_bytes();
    if raw.first() != Some(&b'/') {
        return None;
    }
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let byte = match b {
            // A fragment is no request target's: nginx ends `$uri` there (and routes
            // `/admin#x` as `/admin`) while the path forward auth is told keeps it.
            b'#' => return None,
            b'%' => {
                let hex = raw.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                i += 2;
                match u8::from_str_radix(hex, 16).ok()? {
                    b'/' => return None,
                    d => d,
                }
            }
            b => b,
        };
        if byte == b'\\' || byte.is_ascii_control() {
            return None;
        }
        decoded.push(byte);
        i += 1;
    }
    let mut form = Vec::with_capacity(decoded.len());
    let segments: Vec<&[u8]> = decoded.split(|&b| b == b'/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (n, segment) in segments.iter().enumerate() {
        let name = segment.split(|&b| b == b';').next().unwrap_or_default();
        // An empty segment (`//`, or one that was all parameters) but the last (`/api/`).
        if matches!(name, b"." | b"..") || (name.is_empty() && n != last) {
            return None;
        }
        form.push(b'/');
        form.extend_from_slice(name);
    }
    Some(form)
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
