//! Reading `[[routes]]`: the apps of a multi-app gateway, each a `host` (exact or
//! `*.domain`), an optional `path_prefix`, its `upstream` and its own access rules
//! (`allowed_groups`, `allowed_emails`, `allowed_email_domains`, ANDed with the top-level
//! rules). Only the TOML file holds routes. Every problem is listed with the others:
//! unknown keys, a bad host, prefix or upstream, and two routes that cover the same
//! requests (no order between them). A top-level `upstream` beside routes is refused:
//! with routes, a request no route matches gets 404, never a default app.

use super::emails_file::is_email;
use super::list::{self, Written};
use super::reader::{valid_domain, Reader};
use super::AccessRules;
use crate::gateway::{HostPattern, Route, RouteTable};
use url::Url;

/// The keys a route takes.
const ROUTE_KEYS: [&str; 6] = [
    "host",
    "path_prefix",
    "upstream",
    "allowed_groups",
    "allowed_emails",
    "allowed_email_domains",
];

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

/// The route table (empty without `[[routes]]`); `upstream` is the top-level one.
pub(super) fn read(r: &mut Reader<'_>, upstream: Option<&Url>) -> RouteTable {
    let Some(file) = r.raw.routes.clone() else {
        return RouteTable::default();
    };
    let mut routes: Vec<(usize, Route)> = Vec::new();
    for (i, table) in file.tables.iter().enumerate() {
        let mut route = RouteReader {
            at: format!("{}: routes[{}]", file.path, i + 1),
            problems: &mut r.problems,
        };
        if let Some(read) = route.read(table) {
            for (j, earlier) in &routes {
                if earlier.same_place(&read) {
                    route.problem(format!(
                        "covers exactly what routes[{}] covers ({}{}): no order between them; merge them or give one another path_prefix",
                        j + 1,
                        read.host,
                        read.path_prefix
                    ));
                }
            }
            routes.push((i, read));
        }
    }
    if file.tables.is_empty() {
        r.problems.push(format!("{}: `routes` is empty", file.path));
    }
    if upstream.is_some() {
        r.problems.push("upstream and [[routes]] are both set: with routes each app's upstream is in its route, and a request no route matches gets 404; move upstream into a route (host = \"app.example.com\" or \"*.example.com\")".into());
    }
    RouteTable::new(routes.into_iter().map(|(_, r)| r).collect())
}

/// One route's reading, its problems named `FILE: routes[N]: ...`.
struct RouteReader<'a> {
    at: String,
    problems: &'a mut Vec<String>,
}

impl RouteReader<'_> {
    fn problem(&mut self, msg: impl std::fmt::Display) {
        self.problems.push(format!("{}: {msg}", self.at));
    }

    fn read(&mut self, table: &toml::Table) -> Option<Route> {
        for key in table.keys() {
            if !ROUTE_KEYS.contains(&key.as_str()) {
                self.problem(format!(
                    "unknown key `{key}` (a route takes {})",
                    ROUTE_KEYS.join(", ")
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
        let upstream = match self.string(table, "upstream") {
            Some(u) => self.upstream(&u),
            None => {
                self.problem("upstream is required (http://app:8080 or https://app)");
                None
            }
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
        })
    }

    fn string(&mut self, table: &toml::Table, key: &str) -> Option<String> {
        match table.get(key) {
            None => None,
            Some(toml::Value::String(s)) => Some(s.trim().to_string()),
            Some(_) => {
                self.problem(format!("`{key}` should be a string"));
                None
            }
        }
    }

    fn list(&mut self, table: &toml::Table, key: &'static str) -> Vec<String> {
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
