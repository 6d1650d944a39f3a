//! The multi-app gateway: `[[routes]]` send each host (and path prefix) to its own
//! upstream under its own access rules. Without routes gatehouse serves the one
//! `upstream` and nothing here runs.

pub mod table;

pub use table::{HostPattern, Route, RouteTable};

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
            format!("  {}. {r}: {rules}", i + 1)
        })
        .collect()
}
