//! Reading `[[routes]]`: the apps of a multi-app gateway, each a `host` (exact or
//! `*.domain`), an optional `path_prefix`, its `upstream` (left out: forward auth only)
//! and its own access rules (`allowed_groups`, `allowed_emails`, `allowed_email_domains`,
//! ANDed with the top-level rules); its own skip routes, header set and assertion
//! audience are `route_settings.rs`'s. Only the TOML file holds routes. Every problem is
//! listed with the others: unknown keys, a bad host, prefix or upstream, and two routes
//! that cover the same requests (no order between them). A top-level `upstream` beside
//! routes is refused: with routes, a request no route matches gets 404, never a default
//! app.

use super::emails_file::is_email;
use super::list::{self, Written};
use super::reader::{valid_domain, Reader};
use super::route_settings::{Own, SETTING_KEYS};
use super::AccessRules;
use crate::gateway::{HostPattern, Route, RouteSettings};
use url::Url;

/// The keys a route takes besides [`SETTING_KEYS`].
const ROUTE_KEYS: [&str; 6] = [
    "host",
    "path_prefix",
    "upstream",
    "allowed_groups",
    "allowed_emails",
    "allowed_email_domains",
];

/// The routes as read, before their own settings are resolved against the top-level
/// ones (`route_settings::finish`): each with what it wrote and where.
#[derive(Default)]
pub(super) struct ReadRoutes {
    pub(super) routes: Vec<(Route, Own, String)>,
}

impl ReadRoutes {
    /// Every route's upstream, in the file's order.
    pub(super) fn upstreams(&self) -> impl Iterator<Item = &Url> {
        self.routes
            .iter()
            .filter_map(|(r, _, _)| r.upstream.as_ref())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// `[[routes]]` as parsed TOML: `None` unless it is an array of tables.
pub(super) fn tables(value: toml::Value) -> Option<Vec<toml::Table>> {
    match value {
        toml::Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                toml::Value::Table(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// The routes (none without `[[routes]]`); `upstream` is the top-level one.
pub(super) fn read(r: &mut Reader<'_>, upstream: Option<&Url>) -> ReadRoutes {
    let Some(file) = r.raw.routes.clone() else {
        return ReadRoutes::default();
    };
    let mut routes: Vec<(usize, Route, Own, String)> = Vec::new();
    for (i, table) in file.tables.iter().enumerate() {
        let mut route = RouteReader {
            at: format!("{}: routes[{}]", file.path, i + 1),
            problems: &mut r.problems,
        };
        let written = route.written(table);
        if let Some(read) = route.read(table) {
            for (j, earlier, _, _) in &routes {
                if earlier.same_place(&read) {
                    route.problem(format!(
                        "covers exactly what routes[{}] covers ({}{}): no order between them; merge them or give one another path_prefix",
                        j + 1,
                        read.host,
                        read.path_prefix
                    ));
                }
            }
            let at = route.at.clone();
            routes.push((i, read, written, at));
        }
    }
    if file.tables.is_empty() {
        r.problems.push(format!("{}: `routes` is empty", file.path));
    }
    if upstream.is_some() {
        r.problems.push("upstream and [[routes]] are both set: with routes each app's upstream is in its route, and a request no route matches gets 404; move upstream into a route (host = \"app.example.com\" or \"*.example.com\")".into());
    }
    ReadRoutes {
        routes: routes.into_iter().map(|(_, r, w, at)| (r, w, at)).collect(),
    }
}

/// One route's reading, its problems named `FILE: routes[N]: ...`.
pub(super) struct RouteReader<'a> {
    pub(super) at: String,
    pub(super) problems: &'a mut Vec<String>,
}

impl RouteReader<'_> {
    pub(super) fn problem(&mut self, msg: impl std::fmt::Display) {
        self.problems.push(format!("{}: {msg}", self.at));
    }

    fn read(&mut self, table: &toml::Table) -> Option<Route> {
        for key in table.keys() {
            if !ROUTE_KEYS.contains(&key.as_str()) && !SETTING_KEYS.contains(&key.as_str()) {
                let all: Vec<&str> = ROUTE_KEYS
                    .iter()
                    .chain(SETTING_KEYS.iter())
                    .copied()
                    .collect();
                self.problem(format!(
                    "unknown key `{key}` (a route takes {})",
                    all.join(", ")
                ));
            }
        }
        let host = match self.string(table, "host") {
            Some(h) => HostPattern::parse(&h).map_err(|e| self.problem(format!("host: {e}"))),
            None => {
                self.problem("host is required (app.example.com or *.example.com)");
                Err(())
            }
        };
        let path_prefix = self
            .string(table, "path_prefix")
            .unwrap_or_else(|| "/".into());
        let prefix_ok = path_prefix.starts_with('/')
            && !path_prefix.contains("//")
            && !path_prefix.split('/').any(|s| s == "." || s == "..")
            && path_prefix.bytes().all(|b| {
                b.is_ascii_graphic() && !matches!(b, b'%' | b'?' | b'#' | b'\\' | b'*' | b';')
            });
        if !prefix_ok {
            self.problem(format!("path_prefix: `{path_prefix}` is not a path starting with / (no %, ?, #, ;, \\, * or . segments)"));
        }
        // Left out: a route for forward auth only. Written but wrong: refused.
        let upstream = match self.string(table, "upstream") {
            Some(u) => self.upstream(&u).map(Some),
            None => Some(None),
        };
        let rules = AccessRules {
            groups: self.list(table, "allowed_groups"),
            emails: self.list(table, "allowed_emails"),
            emails_file: None,
            email_domains: self.list(table, "allowed_email_domains"),
            claims: Vec::new(),
        };
        for e in rules.emails.iter().filter(|e| !is_email(e)) {
            self.problem(format!("allowed_emails: `{e}` is not an email address"));
        }
        for d in &rules.email_domains {
            let bare = d.strip_prefix('.').unwrap_or(d);
            if d.contains('@') || !valid_domain(bare) {
                self.problem(format!("allowed_email_domains: `{d}` is not a domain (write company.com, or .company.com to include subdomains)"));
            }
        }
        Some(Route {
            host: host.ok()?,
            path_prefix: prefix_ok.then_some(path_prefix)?,
            upstream: upstream?,
            rules,
            own: RouteSettings::default(),
        })
    }

    pub(super) fn string(&mut self, table: &toml::Table, key: &str) -> Option<String> {
        match table.get(key) {
            None => None,
            Some(toml::Value::String(s)) => Some(s.trim().to_string()),
            Some(_) => {
                self.problem(format!("`{key}` should be a string"));
                None
            }
        }
    }

    pub(super) fn list(&mut self, table: &toml::Table, key: &'static str) -> Vec<String> {
        let items: Vec<String>;
        let written = match table.get(key) {
            None => return Vec::new(),
            Some(toml::Value::String(s)) => Written::Text(s),
            Some(toml::Value::Array(a)) => {
                match a.iter().map(|v| v.as_str().map(str::to_string)).collect() {
                    Some(all) => items = all,
                    None => {
                        self.problem(format!("`{key}` should be a string or an array of strings"));
                        return Vec::new();
                    }
                }
                Written::Items(&items)
            }
            Some(_) => {
                self.problem(format!("`{key}` should be a string or an array of strings"));
                return Vec::new();
            }
        };
        match list::parse(key, written) {
            Ok(items) => items,
            Err(spaced) => {
                let meant = spaced.meant().to_vec();
                self.problem(spaced);
                meant
            }
        }
    }

    /// An http(s) URL with a host and nothing else (as the top-level `upstream`).
    fn upstream(&mut self, value: &str) -> Option<Url> {
        let shown = super::reader::without_credentials(value);
        match Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if !u.username().is_empty() || u.password().is_some() {
                    self.problem(format!(
                        "upstream: `{shown}` must not carry a user name or password"
                    ));
                    None
                } else if u.path() != "/" || u.query().is_some() || u.fragment().is_some() {
                    self.problem(format!("upstream: `{shown}` must not have a path or query: gatehouse forwards the request path unchanged"));
                    None
                } else {
                    Some(u)
                }
            }
            _ => {
                self.problem(format!("upstream: `{shown}` is not an http(s) URL"));
                None
            }
        }
    }
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
