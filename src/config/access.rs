//! Reading who may enter and how forward auth answers: the access rules, skip routes,
//! bearer tokens, and the post-login redirect settings. Every problem is remembered in the
//! [`Reader`], none stops the others.

use super::emails_file::{self, is_email, EmailsFile};
use super::reader::{is_loopback, read_file, valid_domain, Reader};
use super::{AccessRules, BearerSettings, ForwardAuthClient};
use crate::routes::SkipRoute;
use std::net::SocketAddr;
use url::Url;

/// The access and forward-auth settings.
pub(super) struct Access {
    pub(super) forward_auth_redirect: bool,
    pub(super) forward_auth_client: ForwardAuthClient,
    pub(super) auth_listen: Option<SocketAddr>,
    pub(super) allowed_redirect_domains: Vec<String>,
    pub(super) rules: AccessRules,
    pub(super) skip_auth_routes: Vec<SkipRoute>,
    pub(super) bearer: Option<BearerSettings>,
}

pub(super) fn read_access(r: &mut Reader<'_>) -> Access {
    let forward_auth_redirect = r.bool("forward_auth_redirect", false);
    let client = r.str_or("forward_auth_client", "auto");
    let forward_auth_client = ForwardAuthClient::parse(&client).unwrap_or_else(|| {
        let entry = r.raw.get("forward_auth_client");
        r.problem(
            entry,
            "forward_auth_client",
            format!(
                "`{client}` is not one of {}",
                ForwardAuthClient::NAMES.join(", ")
            ),
        );
        ForwardAuthClient::Auto
    });
    let auth_listen = r
        .str_opt("auth_listen")
        .filter(|s| !s.is_empty())
        .and_then(|s| match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                let entry = r.raw.get("auth_listen");
                r.problem(
                    entry,
                    "auth_listen",
                    format!("`{s}` is not an address like 0.0.0.0:4181"),
                );
                None
            }
        });
    let allowed_redirect_domains = r.list("allowed_redirect_domains", &[]);
    for d in &allowed_redirect_domains {
        let (host, port) = match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d.as_str(), None),
        };
        let host_ok = valid_domain(host.strip_prefix('.').unwrap_or(host));
        let port_ok = port.map_or(true, |p| p.parse::<u16>().is_ok_and(|p| p > 0));
        if !host_ok || !port_ok {
            let entry = r.raw.get("allowed_redirect_domains");
            r.problem(
                entry,
                "allowed_redirect_domains",
                format!(
                    "`{d}` is not a host, .domain or host:port (no scheme, no path, no wildcard)"
                ),
            );
        }
    }
    let rules = read_rules(r);
    let mut skip_auth_routes = Vec::new();
    for spec in r.list("skip_auth_routes", &[]) {
        match SkipRoute::parse(&spec) {
            Ok(route) => skip_auth_routes.push(route),
            Err(e) => {
                let entry = r.raw.get("skip_auth_routes");
                r.problem(entry, "skip_auth_routes", e);
            }
        }
    }
    let bearer = if r.bool("bearer_tokens", false) {
        let audiences = r.list("bearer_audiences", &[]);
        let mut issuers = Vec::new();
        for pair in r.list("bearer_issuers", &[]) {
            match pair.split_once('=') {
                Some((iss, aud))
                    if Url::parse(iss).is_ok_and(|u| {
                        u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&u))
                    }) && !aud.is_empty() =>
                {
                    issuers.push((iss.to_string(), aud.to_string()))
                }
                _ => {
                    let entry = r.raw.get("bearer_issuers");
                    r.problem(
                        entry,
                        "bearer_issuers",
                        format!("`{pair}` is not issuer=audience with an https issuer"),
                    );
                }
            }
        }
        Some(BearerSettings { audiences, issuers })
    } else {
        for key in ["bearer_audiences", "bearer_issuers"] {
            if r.raw.get(key).is_some() {
                r.problems.push(format!("{key} is set but bearer_tokens is not true: set bearer_tokens = true to accept bearer tokens"));
            }
        }
        None
    };
    Access {
        forward_auth_redirect,
        forward_auth_client,
        auth_listen,
        allowed_redirect_domains,
        rules,
        skip_auth_routes,
        bearer,
    }
}

/// The access rules; a missing or unreadable emails file, or one with a line that is not
/// one address, is a start-up problem.
pub(super) fn read_rules(r: &mut Reader<'_>) -> AccessRules {
    let mut rules = AccessRules {
        groups: r.list("allowed_groups", &[]),
        emails: r.list("allowed_emails", &[]),
        emails_file: None,
        email_domains: r.list("allowed_email_domains", &[]),
        claims: Vec::new(),
    };
    for e in &rules.emails {
        if !is_email(e) {
            let entry = r.raw.get("allowed_emails");
            r.problem(
                entry,
                "allowed_emails",
                format!("`{e}` is not an email address"),
            );
        }
    }
    for d in &rules.email_domains {
        let bare = d.strip_prefix('.').unwrap_or(d);
        if d.contains('@') || !valid_domain(bare) {
            let entry = r.raw.get("allowed_email_domains");
            r.problem(entry, "allowed_email_domains", format!("`{d}` is not a domain (write company.com, or .company.com to include subdomains)"));
        }
    }
    if let Some(path) = r.str_opt("allowed_emails_file").filter(|s| !s.is_empty()) {
        if let Some(text) = read_file(r, "allowed_emails_file", &path) {
            match emails_file::parse(&text) {
                Ok(emails) => {
                    rules.emails_file = Some(EmailsFile {
                        path: path.into(),
                        emails,
                    })
                }
                Err(bad) => {
                    let entry = r.raw.get("allowed_emails_file");
                    for line in bad {
                        r.problem(entry, "allowed_emails_file", format!("{path} {line}"));
                    }
                }
            }
        }
    }
    for c in r.list("required_claims", &[]) {
        match c.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => rules
                .claims
                .push((k.trim().to_string(), v.trim().to_string())),
            _ => {
                let entry = r.raw.get("required_claims");
                r.problem(
                    entry,
                    "required_claims",
                    format!("`{c}` is not claim=value (e.g. realm_access.roles=admin)"),
                );
            }
        }
    }
    rules
}
