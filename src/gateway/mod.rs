//! The multi-app gateway: `[[routes]]` send each host (and path prefix) to its own
//! upstream under its own access rules. Without routes gatehouse serves the one
//! `upstream` and nothing here runs.

use crate::config::PassAuthorization;

pub mod settings;
pub mod table;

pub use settings::{Applied, RouteSettings};
pub use table::{HostPattern, Route, RouteTable};

/// A route's own settings as `check` shows them (empty when it has none).
fn own(s: &RouteSettings) -> String {
    let mut parts = Vec::new();
    if !s.skip_auth_routes.is_empty() {
        let skip: Vec<String> = s.skip_auth_routes.iter().map(|r| r.to_string()).collect();
        parts.push(format!("its own skip_auth_routes {}", skip.join(", ")));
    }
    if let Some(h) = &s.headers {
        let groups: Vec<&str> = h.groups.iter().map(|g| g.as_str()).collect();
        let token = h.id_token.as_ref().map_or("none", |t| t.as_str());
        let strips =
            match h.strip_client_authorization && h.authorization == PassAuthorization::None {
                true => ", the client's Authorization removed",
                false => "",
            };
        parts.push(format!(
            "headers user {}, email {}, groups {}, id token {token}, pass_authorization {}{strips}",
            h.user,
            h.email,
            groups.join(","),
            match h.authorization {
                PassAuthorization::None => "none",
                PassAuthorization::IdToken => "id_token",
                PassAuthorization::AccessToken => "access_token",
            }
        ));
    }
    if let Some(a) = &s.assertion {
        let aud = a.audience.as_deref().unwrap_or("the request's host");
        let groups = a.groups.as_ref().map_or("all".to_string(), |g| g.join(","));
        parts.push(format!("assertion audience {aud}, groups {groups}"));
    }
    match parts.is_empty() {
        true => String::new(),
        false => format!("; {}", parts.join("; ")),
    }
}

/// The route table as `check` prints it: one line a route, most specific first, with its
/// own rules (the top-level rules apply as well).
pub fn describe(table: &RouteTable) -> Vec<String> {
    table
        .routes()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut rules = Vec::new();
            for (name, items) in [
                ("allowed_groups", &r.rules.groups),
                ("allowed_emails", &r.rules.emails),
                ("allowed_email_domains", &r.rules.email_domains),
            ] {
                if !items.is_empty() {
                    rules.push(format!("{name} {}", crate::config::list::quoted(items)));
                }
            }
            let rules = match rules.is_empty() {
                true => "the top-level rules only".to_string(),
                false => format!("{} and the top-level rules", rules.join(", ")),
            };
            format!("  {}. {r}: {rules}{}", i + 1, own(&r.own))
        })
        .collect()
}
