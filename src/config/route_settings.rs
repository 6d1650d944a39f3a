//! A `[[routes]]` entry's own settings: `skip_auth_routes` (in addition to the top-level
//! ones, for this app only), the identity header set (`header_user`, `header_email`,
//! `header_groups`, `header_preferred_username`, `header_id_token`, `pass_authorization`)
//! and the assertion's `assertion_audience` and `assertion_groups`. What a route leaves
//! out is the top-level setting, so they are resolved once the top-level ones are read
//! ([`finish`]). Every problem is named `FILE: routes[N]: key: ...` and listed with the
//! others.
//!
//! Every identity header name of every set is removed from every request, whichever app
//! it is for: a name that is an identity header for one app is never left for a client
//! to fill on another.

use super::reader::Reader;
use super::routes::{ReadRoutes, RouteReader};
use super::{HeaderNames, PassAuthorization};
use crate::assertion::{AssertionPolicy, AssertionSettings};
use crate::gateway::{RouteSettings, RouteTable};
use crate::routes::SkipRoute;
use axum::http::HeaderName;

/// The settings keys a route takes.
pub(super) const SETTING_KEYS: [&str; 9] = [
    "skip_auth_routes",
    "header_user",
    "header_email",
    "header_groups",
    "header_preferred_username",
    "header_id_token",
    "pass_authorization",
    "assertion_audience",
    "assertion_groups",
];

/// A route's settings as written; `None`: not written (the top-level setting).
#[derive(Debug, Default)]
pub(super) struct Own {
    skip_auth_routes: Vec<SkipRoute>,
    user: Option<String>,
    email: Option<String>,
    groups: Option<Vec<String>>,
    preferred_username: Option<String>,
    /// `""`: no token header for this app.
    id_token: Option<String>,
    authorization: Option<PassAuthorization>,
    assertion_audience: Option<String>,
    assertion_groups: Option<Vec<String>>,
}

impl Own {
    fn sets_headers(&self) -> bool {
        self.user.is_some()
            || self.email.is_some()
            || self.groups.is_some()
            || self.preferred_username.is_some()
            || self.id_token.is_some()
            || self.authorization.is_some()
    }
}

impl RouteReader<'_> {
    /// The settings `table` writes (problems with their values are listed).
    pub(super) fn written(&mut self, table: &toml::Table) -> Own {
        let mut skip_auth_routes = Vec::new();
        for spec in self.list(table, "skip_auth_routes") {
            match SkipRoute::parse(&spec) {
                Ok(route) => skip_auth_routes.push(route),
                Err(e) => self.problem(format!("skip_auth_routes: {e}")),
            }
        }
        let authorization = match self.string(table, "pass_authorization").as_deref() {
            None => None,
            Some("none") => Some(PassAuthorization::None),
            Some("id_token") => Some(PassAuthorization::IdToken),
            Some("access_token") => Some(PassAuthorization::AccessToken),
            Some(other) => {
                self.problem(format!(
                    "pass_authorization: `{other}` is not one of none, id_token, access_token"
                ));
                None
            }
        };
        let listed = |r: &mut Self, key| table.contains_key(key).then(|| r.list(table, key));
        Own {
            skip_auth_routes,
            user: self.string(table, "header_user"),
            email: self.string(table, "header_email"),
            groups: listed(self, "header_groups"),
            preferred_username: self.string(table, "header_preferred_username"),
            id_token: self.string(table, "header_id_token"),
            authorization,
            assertion_audience: self.string(table, "assertion_audience"),
            assertion_groups: listed(self, "assertion_groups"),
        }
    }

    /// A header name a route writes, or a problem.
    fn header(&mut self, key: &str, value: &str) -> Option<HeaderName> {
        HeaderName::from_bytes(value.as_bytes())
            .map_err(|_| self.problem(format!("{key}: `{value}` is not a valid header name")))
            .ok()
    }

    /// The header set of a route that writes one: `top` with what it writes.
    fn headers(&mut self, w: &Own, top: &HeaderNames) -> HeaderNames {
        let mut set = top.clone();
        set.folded = Default::default();
        let one = |r: &mut Self, key, written: &Option<String>, slot: &mut HeaderName| {
            if let Some(name) = written.as_deref().and_then(|v| r.header(key, v)) {
                *slot = name;
            }
        };
        one(self, "header_user", &w.user, &mut set.user);
        one(self, "header_email", &w.email, &mut set.email);
        one(
            self,
            "header_preferred_username",
            &w.preferred_username,
            &mut set.preferred_username,
        );
        if let Some(groups) = &w.groups {
            set.groups = groups
                .iter()
                .filter_map(|g| self.header("header_groups", g))
                .collect();
        }
        match w.id_token.as_deref() {
            None => {}
            Some("") => set.id_token = None,
            Some(name) => set.id_token = self.header("header_id_token", name),
        }
        if let Some(a) = w.authorization {
            set.authorization = a;
        }
        for (key, msg) in super::header_check::problems(&set) {
            self.problem(format!("{key}: {msg}"));
        }
        set
    }
}

/// The route table, each route's own settings resolved against the top-level ones; the
/// top-level set (`top`) and every route's set also remove every other set's names.
pub(super) fn finish(
    r: &mut Reader<'_>,
    read: ReadRoutes,
    top: &mut HeaderNames,
    assertion: Option<&AssertionSettings>,
    warnings: &mut Vec<String>,
) -> RouteTable {
    let mut routes = Vec::with_capacity(read.routes.len());
    for (mut route, w, at) in read.routes {
        let mut reader = RouteReader {
            at,
            problems: &mut r.problems,
        };
        let headers = w.sets_headers().then(|| reader.headers(&w, top));
        let writes_assertion = w.assertion_audience.is_some() || w.assertion_groups.is_some();
        if writes_assertion && assertion.is_none() {
            warnings.push(format!(
                "{}: assertion_audience or assertion_groups set but assertion_signing_key_file is not: no identity assertion is sent",
                reader.at
            ));
        }
        let policy = assertion.filter(|_| writes_assertion).map(|a| {
            AssertionPolicy::new(
                // `""`, as at the top level: the request's host.
                match w.assertion_audience.as_deref() {
                    Some("") => None,
                    Some(aud) => Some(aud.to_string()),
                    None => a.policy.audience.clone(),
                },
                w.assertion_groups
                    .clone()
                    .or_else(|| a.policy.groups.clone()),
            )
        });
        route.own = RouteSettings {
            skip_auth_routes: w.skip_auth_routes,
            headers,
            assertion: policy,
        };
        routes.push(route);
    }
    strip_every_set(top, &mut routes);
    strip_authorization_per_upstream(top, &mut routes);
    if let Some(a) = assertion {
        warn_shared_audience(&a.policy, &routes, warnings);
    }
    RouteTable::new(routes)
}

/// A route to an upstream that another route hands `Authorization` removes the client's
/// own too: that app takes the header as gatehouse's word, whichever route a request
/// came by (as every set's header names are removed everywhere). A route that gets the
/// top-level set is given its own copy of it, with `strip_client_authorization` on.
fn strip_authorization_per_upstream(top: &HeaderNames, routes: &mut [crate::gateway::Route]) {
    let passes = |r: &crate::gateway::Route| {
        r.own.headers.as_ref().unwrap_or(top).authorization != PassAuthorization::None
    };
    let handed: Vec<url::Url> = routes
        .iter()
        .filter(|r| passes(r))
        .filter_map(|r| r.upstream.clone())
        .collect();
    for r in routes.iter_mut() {
        let set = r.own.headers.as_ref().unwrap_or(top);
        let strips = set.authorization != PassAuthorization::None || set.strip_client_authorization;
        if strips || !r.upstream.as_ref().is_some_and(|u| handed.contains(u)) {
            continue;
        }
        let mut own = set.clone();
        own.strip_client_authorization = true;
        r.own.headers = Some(own);
    }
}

/// Warns of a fixed assertion audience that routes to different apps share: an app
/// could present the assertion it was handed to another, which takes it as its own.
fn warn_shared_audience(
    top: &AssertionPolicy,
    routes: &[crate::gateway::Route],
    warnings: &mut Vec<String>,
) {
    let audience_of =
        |r: &crate::gateway::Route| r.own.assertion.as_ref().unwrap_or(top).audience.clone();
    let mut seen: Vec<String> = Vec::new();
    for r in routes {
        let Some(aud) = audience_of(r) else { continue };
        if seen.contains(&aud) {
            continue;
        }
        let sharing: Vec<&crate::gateway::Route> = routes
            .iter()
            .filter(|o| audience_of(o).as_deref() == Some(aud.as_str()))
            .collect();
        // Routes of one upstream are one app; one without upstream is an app of its own.
        let apps = sharing.iter().any(|o| o.upstream.is_none())
            || sharing.iter().any(|o| o.upstream != r.upstream);
        if sharing.len() > 1 && apps {
            let names: Vec<String> = sharing
                .iter()
                .map(|o| format!("{}{}", o.host, o.path_prefix))
                .collect();
            warnings.push(format!(
                "the assertion audience `{aud}` is shared by the routes for {}: each of these apps could present an assertion it was handed to another, which would take it; give each app its own assertion_audience (\"\" for the request's host)",
                names.join(", ")
            ));
        }
        seen.push(aud);
    }
}

/// Adds every identity header name of every set to each set's `strip` list.
fn strip_every_set(top: &mut HeaderNames, routes: &mut [crate::gateway::Route]) {
    let names_of = |h: &HeaderNames| -> Vec<HeaderName> {
        [&h.user, &h.email, &h.preferred_username]
            .into_iter()
            .chain(h.groups.iter())
            .chain(h.id_token.iter())
            .cloned()
            .collect()
    };
    if routes.iter().all(|r| r.own.headers.is_none()) {
        return;
    }
    let mut all: Vec<HeaderName> = names_of(top);
    for set in routes.iter().filter_map(|r| r.own.headers.as_ref()) {
        all.extend(names_of(set));
    }
    let add = |set: &mut HeaderNames| {
        for name in &all {
            if !set.strip.contains(name) {
                set.strip.push(name.clone());
            }
        }
        set.folded = Default::default();
    };
    for set in routes.iter_mut().filter_map(|r| r.own.headers.as_mut()) {
        add(set);
    }
    add(top);
}
