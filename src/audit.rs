//! Audit events: exactly one structured event per security decision, on the `tracing`
//! target [`TARGET`] (`gatehouse::audit`), which `telemetry.rs` sends to `audit_log` as one
//! JSON object per line, whatever `log_level` says. README.md ("Audit events") lists every
//! event with its fields.
//!
//! Every event carries `event` (its stable name), `request_id`, `trace_id`, `client` (the
//! address gatehouse believes: the peer, or what a trusted proxy vouched for), `route`
//! (host and path, never the query: queries carry codes and state), `mode` (`proxy`,
//! `forward_auth` or `endpoint`) and the user as far as known (`user`, `sub`, `email`).
//!
//! Never logged: tokens, codes, state, cookies, secrets, query strings, the session id
//! (a [`Digest`] of it correlates a session's events instead), the list of groups (its
//! length only: an Entra ID user has hundreds, and the provider holds the list), values
//! from an unverified token (the issuer of a refused bearer token is the sender's word).
//!
//! Nothing else may log from this module: its own target is the audit one.

use crate::authz::{Denial, RuleSource};
use crate::bearer::BearerError;
use crate::http::AppError;
use crate::session::Session;
use crate::trace::TraceId;
use std::fmt;
use std::net::IpAddr;

/// The `tracing` target of every audit event.
pub const TARGET: &str = "gatehouse::audit";

/// The longest route written; a longer path is cut (and ends with `...`).
const ROUTE_MAX: usize = 256;

/// How the request reached the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The sidecar: the request goes on to the upstream.
    Proxy,
    /// `/oauth2/auth`: an ingress asks about another request.
    ForwardAuth,
    /// gatehouse's own endpoints (`/oauth2/callback`, `sign_out`, `userinfo`, the
    /// back-channel logout).
    Endpoint,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Proxy => "proxy",
            Mode::ForwardAuth => "forward_auth",
            Mode::Endpoint => "endpoint",
        }
    }
}

/// The request a decision is about, as every event names it. Borrowed: building one
/// costs nothing on the request path.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    pub request_id: &'a str,
    pub trace_id: TraceId,
    pub client: IpAddr,
    pub route: Route<'a>,
    pub mode: Mode,
}

/// Where the request was going, written without its query.
#[derive(Clone, Copy, Debug)]
pub enum Route<'a> {
    /// A host (when known) and a path.
    HostPath(Option<&'a str>, &'a str),
    /// An absolute URL (forward-auth's original request); the scheme is left out.
    Url(&'a str),
    /// Forward-auth from a peer gatehouse does not trust: the original is unknown.
    Unknown,
}

impl fmt::Display for Route<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (host, rest) = match *self {
            Route::HostPath(host, path) => (host.unwrap_or(""), path),
            Route::Url(url) => (url.split_once("://").map_or(url, |(_, r)| r), ""),
            Route::Unknown => return Ok(()),
        };
        let mut left = ROUTE_MAX;
        for part in [host, rest] {
            // The query and fragment never: they carry codes, state and tokens.
            let part = part.split(['?', '#']).next().unwrap_or("");
            if part.len() > left {
                let mut cut = left;
                while !part.is_char_boundary(cut) {
                    cut -= 1;
                }
                f.write_str(&part[..cut])?;
                return f.write_str("...");
            }
            f.write_str(part)?;
            left -= part.len();
        }
        Ok(())
    }
}

/// A short, non-reversible stand-in for a session id (the first 8 bytes of its SHA-256,
/// in hex): the same session's events share it; the id itself never leaves the store.
pub struct Digest([u8; 8]);

impl Digest {
    pub fn of(id: &str) -> Digest {
        let d = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
        let mut out = [0u8; 8];
        out.copy_from_slice(&d.as_ref()[..8]);
        Digest(out)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// One audit event: the fields every event has, then its own. `user`, `sub` and `email`
/// are `Option<&str>` (absent when unknown).
macro_rules! emit {
    ($level:ident, $s:expr, $event:literal, $user:expr, $sub:expr, $email:expr $(, $($rest:tt)*)?) => {
        tracing::event!(
            target: "gatehouse::audit",
            tracing::Level::$level,
            event = $event,
            request_id = $s.request_id,
            trace_id = %$s.trace_id,
            client = %$s.client,
            route = %$s.route,
            mode = $s.mode.as_str(),
            user = $user,
            sub = $sub,
            email = $email,
            $($($rest)*)?
        )
    };
}

/// `user`, `sub`, `email` of a session.
fn who(s: &Session) -> (Option<&str>, Option<&str>, Option<&str>) {
    let id = &s.identity;
    (Some(&id.user), Some(&id.sub), id.email.as_deref())
}

/// A provider's error code as far as it is a code (RFC 6749 §5.2 allows %x20-21 /
/// %x23-5B / %x5D-7E; codes in use are `[a-z_]`): anything else is dropped.
fn code_of(error: &str) -> Option<&str> {
    let ok = !error.is_empty()
        && error.len() <= 64
        && error
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    ok.then_some(error)
}

/// A completed sign-in: a session exists.
pub fn sign_in(s: &Scope<'_>, session: &Session) {
    let (user, sub, email) = who(session);
    emit!(INFO, s, "sign_in", user, sub, email,
        groups = session.identity.groups.len(), session = %Digest::of(&session.id));
}

/// A sign-in that did not complete; `reason` is the error's code (`AppError::code`).
pub fn sign_in_failed(s: &Scope<'_>, e: &AppError) {
    let provider_error = match e {
        AppError::ProviderDenied { error, .. } => code_of(error),
        AppError::Flow(f) => f.provider_error().and_then(code_of),
        _ => None,
    };
    emit!(
        WARN,
        s,
        "sign_in_failed",
        None::<&str>,
        None::<&str>,
        None::<&str>,
        reason = e.code(),
        provider_error
    );
}

/// A signed-in user signed out; `everywhere`: every session of theirs was ended.
pub fn sign_out(s: &Scope<'_>, session: &Session, everywhere: bool, sessions_ended: u64) {
    let (user, sub, email) = who(session);
    emit!(INFO, s, "sign_out", user, sub, email,
        everywhere, sessions_ended, session = %Digest::of(&session.id));
}

/// A sign-out refused (another site asked for it).
pub fn sign_out_refused(s: &Scope<'_>, e: &AppError) {
    emit!(
        WARN,
        s,
        "sign_out_refused",
        None::<&str>,
        None::<&str>,
        None::<&str>,
        reason = e.code()
    );
}

/// A refresh failed and the session ended with it: the user must sign in again.
pub fn refresh_failed(
    s: &Scope<'_>,
    session: &Session,
    reason: &str,
    provider_error: Option<&str>,
) {
    let (user, sub, email) = who(session);
    emit!(WARN, s, "refresh_failed", user, sub, email,
        reason, provider_error = provider_error.and_then(code_of),
        session = %Digest::of(&session.id));
}

/// A session unused for longer than `session_idle_timeout_secs` was refused.
pub fn session_ended_idle(s: &Scope<'_>, session: &Session, idle_timeout_secs: u64) {
    let (user, sub, email) = who(session);
    emit!(INFO, s, "session_ended_idle", user, sub, email,
        idle_timeout_secs, session = %Digest::of(&session.id));
}

/// A rule refused a verified identity.
pub fn denied(s: &Scope<'_>, session: &Session, denial: &Denial) {
    let (user, sub, email) = who(session);
    let rule_source = match denial.source {
        RuleSource::Config => "config",
        RuleSource::Query => "query",
    };
    emit!(
        WARN,
        s,
        "denied",
        user,
        sub,
        email,
        rule = denial.rule,
        rule_source
    );
}

/// An `Authorization: Bearer` token that does not verify (never the token).
pub fn bearer_refused(s: &Scope<'_>, e: &BearerError) {
    emit!(
        WARN,
        s,
        "bearer_refused",
        None::<&str>,
        None::<&str>,
        None::<&str>,
        reason = e.code()
    );
}

/// A forward-auth check refused because the request carries its own copy of an identity
/// header (`header`: its name as sent, never its value) that the ingress would pass on.
pub fn identity_header_refused(s: &Scope<'_>, header: &str) {
    let header: String = header.chars().take(100).collect();
    emit!(
        WARN,
        s,
        "identity_header_refused",
        None::<&str>,
        None::<&str>,
        None::<&str>,
        header
    );
}

/// A verified back-channel logout token ended the sessions it names. `by`: `sid` or
/// `sub`; `every_replica`: the store is shared (redis), so the count is every
/// replica's.
pub fn backchannel_logout(
    s: &Scope<'_>,
    sub: Option<&str>,
    by: &str,
    ended: u64,
    every_replica: bool,
) {
    emit!(
        INFO,
        s,
        "backchannel_logout",
        None::<&str>,
        sub,
        None::<&str>,
        by,
        sessions_ended = ended,
        every_replica
    );
}

/// A back-channel logout request refused, or not carried out; nothing was ended.
pub fn backchannel_logout_refused(s: &Scope<'_>, reason: &str) {
    emit!(
        WARN,
        s,
        "backchannel_logout_refused",
        None::<&str>,
        None::<&str>,
        None::<&str>,
        reason
    );
}

/// A configuration reload, applied or refused: the rules may have changed. Not about a
/// request, so it has no request fields; `trigger` is `signal` or `file_changed`,
/// `restart_needed` the fixed settings the new configuration changes (kept as they run).
pub fn config_reload(trigger: &str, applied: bool, problems: usize, restart_needed: &str) {
    tracing::event!(
        target: "gatehouse::audit",
        tracing::Level::WARN,
        event = if applied { "config_reloaded" } else { "config_reload_refused" },
        trigger,
        problems,
        restart_needed
    );
}

/// A WebSocket closed because a configuration reload's rules no longer let it through.
/// Not about a request: the connection was opened earlier (its opening was allowed).
pub fn websocket_revoked(admitted: &crate::proxy::tunnels::Admitted) {
    use crate::proxy::tunnels::Admitted;
    match admitted {
        Admitted::Identity(session, _) => {
            let (user, sub, email) = who(session);
            tracing::event!(
                target: "gatehouse::audit",
                tracing::Level::WARN,
                event = "websocket_revoked",
                user,
                sub,
                email,
                session = %Digest::of(&session.id)
            );
        }
        Admitted::Public { method, path, .. } => tracing::event!(
            target: "gatehouse::audit",
            tracing::Level::WARN,
            event = "websocket_revoked",
            method = method.as_str(),
            route = %Route::HostPath(None, path)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(r: Route<'_>) -> String {
        r.to_string()
    }

    #[test]
    fn routes_never_carry_the_query() {
        assert_eq!(
            route(Route::HostPath(Some("app.example"), "/a/b")),
            "app.example/a/b"
        );
        assert_eq!(route(Route::HostPath(None, "/a")), "/a");
        assert_eq!(
            route(Route::HostPath(Some("h"), "/cb?code=s3cret&state=x")),
            "h/cb"
        );
        assert_eq!(
            route(Route::Url("https://h.example/x?code=1#frag")),
            "h.example/x"
        );
        assert_eq!(route(Route::Url("https://h.example/x#a?b")), "h.example/x");
        assert_eq!(route(Route::Unknown), "");
        let long = format!("/{}é?q=1", "a".repeat(300));
        let shown = route(Route::HostPath(Some("h"), &long));
        assert!(
            shown.ends_with("...") && shown.len() <= ROUTE_MAX + 3,
            "{shown}"
        );
        assert!(!shown.contains('?'));
    }

    #[test]
    fn digests_are_short_stable_and_not_the_id() {
        let a = Digest::of("session-id-1").to_string();
        assert_eq!(a.len(), 16);
        assert_eq!(a, Digest::of("session-id-1").to_string());
        assert_ne!(a, Digest::of("session-id-2").to_string());
        assert!(!a.contains("session"));
    }

    #[test]
    fn only_codes_pass_as_provider_errors() {
        assert_eq!(code_of("invalid_grant"), Some("invalid_grant"));
        assert_eq!(code_of("access_denied"), Some("access_denied"));
        assert_eq!(code_of("a b"), None);
        assert_eq!(code_of("x\"}{"), None);
        assert_eq!(code_of(""), None);
        assert_eq!(code_of(&"a".repeat(65)), None);
    }
}
