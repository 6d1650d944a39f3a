//! Prometheus metrics: what gatehouse counts, and the recording calls the request path
//! makes. The registry is process-global and hand-rolled: each thread records into a
//! shard of its own (`shard.rs`), so a recording is a few instructions with no lock, no
//! contended cache line and no allocation; the scrape sums the shards (`exposition.rs`)
//! and is served on `metrics_listen` only (`server.rs`), never on `listen` or
//! `auth_listen`.
//!
//! Every label value comes from a fixed list (`layout.rs`): the recording functions take
//! enums or gatehouse's own `&'static str` codes and map anything unknown to `other`, so
//! no user, path, host or token can become a series. A configuration reload leaves the
//! registry alone: counters run for the process's life.

mod exposition;
mod layout;
mod process;
mod server;
mod shard;

pub use exposition::render;
pub use server::{serve, CONTENT_TYPE};

use layout as l;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::time::Instant;

/// Whether metrics are recorded: only once a metrics listener is configured, so that
/// without `metrics_listen` the request path does not even read the clock for them.
static ON: AtomicBool = AtomicBool::new(false);

/// Turns recording on (before serving: the connection gauges count from the start).
pub fn enable() {
    ON.store(true, Ordering::Relaxed);
}

#[inline]
fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// When something timed began; empty while metrics are off (no clock read).
#[derive(Debug, Clone, Copy)]
pub struct Timer(Option<Instant>);

impl Timer {
    #[inline]
    pub fn start() -> Timer {
        Timer(on().then(Instant::now))
    }

    /// Nanoseconds since the start, saturating; `None` while metrics are off.
    #[inline]
    fn nanos(self) -> Option<u64> {
        self.0.map(nanos_since)
    }
}

/// How a request was handled, for the `mode` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Through the auth step to the upstream (`http/gate.rs`).
    Proxy = 0,
    /// A forward-auth verdict (`/oauth2/auth`).
    ForwardAuth = 1,
    /// gatehouse's own endpoints: `/oauth2/*` (but `/oauth2/auth`), `/healthz`, `/readyz`,
    /// the back-channel logout.
    Endpoint = 2,
}

/// Nanoseconds since `started`, saturating.
#[inline]
fn nanos_since(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[inline]
fn bump(i: usize) {
    shard::with(|s| s.add(i, 1));
}

/// Records a duration in the latency histogram series starting at `base`.
#[inline]
fn observe(base: usize, bounds: &[u64], ns: u64) {
    shard::with(|s| {
        s.add(base + l::bucket(bounds, ns), 1);
        s.add(base + bounds.len() + 1, ns);
    });
}

/// A request answered: its mode, status code and how long until the response head.
#[inline]
pub fn request(mode: Mode, status: u16, started: Timer) {
    let Some(ns) = started.nanos() else {
        return;
    };
    let code = match status {
        100..=599 => usize::from(status - 100),
        _ => l::CODES - 1,
    };
    let m = mode as usize;
    shard::with(|s| {
        s.add(l::HTTP_REQUESTS + m * l::CODES + code, 1);
        let base = l::HTTP_SECONDS + m * l::LATENCY_HIST;
        s.add(base + l::bucket(l::LATENCY_NS, ns), 1);
        s.add(base + l::LATENCY_NS.len() + 1, ns);
    });
}

/// The upstream's response head arrived, `started` being when gatehouse began sending
/// (connecting included when no pooled connection was free).
#[inline]
pub fn upstream_answered(started: Timer) {
    if let Some(ns) = started.nanos() {
        observe(l::UPSTREAM_SECONDS, l::LATENCY_NS, ns);
    }
}

/// Why an exchange with the upstream failed, for `gatehouse_upstream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// No connection could be opened.
    Connect = 0,
    /// No response head within `upstream_timeout_secs`.
    Timeout = 1,
    /// Closed or broken off before answering.
    Closed = 2,
    /// An answer that is not HTTP/1.1 gatehouse can pass on.
    BadResponse = 3,
}

pub fn upstream_failed(kind: UpstreamError) {
    bump(l::UPSTREAM_ERROR + kind as usize);
}

/// A sign-in's callback ended: `None` signed in, `Some(code)` failed with that
/// `AppError::code`.
pub fn login(failure: Option<&str>) {
    let i = match failure {
        None => 0,
        Some(code) => l::index_or_last(l::LOGIN_RESULTS, code).max(1),
    };
    bump(l::LOGINS + i);
}

/// How a refresh ended, for `gatehouse_refreshes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// This replica refreshed the tokens.
    Ok = 0,
    /// A request shared a refresh already in flight (or just done) in this replica.
    Joined = 1,
    /// Another replica had refreshed the session: its result was used.
    Reused = 2,
    /// The provider could not be reached, or failed on its side (5xx).
    ProviderUnavailable = 3,
    /// The provider refused the refresh token (`invalid_grant`): the session ends.
    InvalidGrant = 4,
    /// The provider refused the request with another error.
    Refused = 5,
    /// The refreshed ID token (or access token) failed verification.
    InvalidToken = 6,
    /// No new ID token to replace the forwarded one.
    IdTokenNotRenewed = 7,
    /// The session was ended meanwhile.
    SessionEnded = 8,
    /// The session store could not be asked whose turn it was.
    StoreUnavailable = 9,
    /// The refreshed session could not be stored.
    StoreFailed = 10,
    /// Anything else.
    Failed = 11,
}

pub fn refresh(result: Refresh) {
    bump(l::REFRESHES + result as usize);
}

/// The refresh outcome for a failed call to the provider.
pub fn refresh_failure(e: &crate::oidc::FlowError) -> Refresh {
    use crate::oidc::FlowError as F;
    match e {
        _ if e.is_transient() => Refresh::ProviderUnavailable,
        F::Refused { error, .. } if error == "invalid_grant" => Refresh::InvalidGrant,
        F::Refused { .. } => Refresh::Refused,
        F::Token(_) | F::AccessToken(_) | F::Identity(_) | F::Invalid(_) => Refresh::InvalidToken,
        F::IdTokenNotRenewed { .. } => Refresh::IdTokenNotRenewed,
        _ => Refresh::Failed,
    }
}

/// A signed-in user refused by a rule.
pub fn denial(d: &crate::authz::Denial) {
    let rule = match d.rule {
        "allowed_emails / allowed_email_domains" => 4,
        r => l::index_or_last(l::DENIAL_RULES, r),
    };
    let source = match d.source {
        crate::authz::RuleSource::Config => 0,
        crate::authz::RuleSource::Query => 1,
    };
    bump(l::DENIALS + rule * l::DENIAL_SOURCES.len() + source);
}

/// A bearer token accepted (`None`) or refused (`Some(why)`).
pub fn bearer(refused: Option<&crate::bearer::BearerError>) {
    use crate::bearer::BearerError as B;
    use crate::oidc::verify::TokenError as T;
    let i = match refused {
        None => 0,
        Some(B::NotJwt) | Some(B::Invalid(T::Malformed)) => 1,
        Some(B::UnknownIssuer(_)) => 2,
        Some(B::NotReady(_)) => 3,
        Some(B::Invalid(T::Expired(_))) => 4,
        Some(B::Invalid(T::NotYetValid(_))) => 5,
        Some(B::Invalid(T::BadSignature)) => 6,
        Some(B::Invalid(T::AlgNone | T::AlgNotAllowed(_))) => 7,
        Some(B::Invalid(T::Key(_))) => 8,
        Some(B::Invalid(T::Issuer { .. })) => 9,
        Some(B::Invalid(T::Audience { .. } | T::UntrustedAudience(_) | T::AuthorizedParty(_))) => {
            10
        }
        Some(B::Invalid(_)) => 11,
        Some(B::NoIdentity(_)) => 12,
    };
    bump(l::BEARER + i);
}

/// Which provider endpoint a call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The discovery document (also the reachability check before a sign-in).
    Discovery = 0,
    Jwks = 1,
    /// The token endpoint: code exchanges and refreshes.
    Token = 2,
    Userinfo = 3,
    Revocation = 4,
}

/// Times one call to the provider, from sending to the response head, and counts its
/// result: the status class, or the kind of failure.
pub async fn provider_call(
    endpoint: Endpoint,
    call: impl std::future::Future<Output = Result<reqwest::Response, reqwest::Error>>,
) -> Result<reqwest::Response, reqwest::Error> {
    let started = Timer::start();
    let answer = call.await;
    let Some(ns) = started.nanos() else {
        return answer;
    };
    let result = match &answer {
        Ok(r) if r.status().is_success() => 0,
        Ok(r) if r.status().is_redirection() => 1,
        Ok(r) if r.status().is_client_error() => 2,
        Ok(_) => 3,
        Err(e) if e.is_timeout() => 4,
        Err(e) if e.is_connect() => 5,
        Err(_) => 6,
    };
    let e = endpoint as usize;
    bump(l::PROVIDER_REQUESTS + e * l::PROVIDER_RESULTS.len() + result);
    observe(l::PROVIDER_SECONDS + e * l::LATENCY_HIST, l::LATENCY_NS, ns);
    answer
}

/// A client connection accepted and given a slot.
#[inline]
pub fn connection_opened() {
    bump(l::CONNECTIONS_OPENED);
}

/// A client connection's slot given back.
#[inline]
pub fn connection_closed() {
    bump(l::CONNECTIONS_CLOSED);
}

/// A connection refused at `max_connections`.
pub fn connection_refused() {
    bump(l::CONNECTIONS_REFUSED);
}

/// An upgraded connection (WebSocket) opened.
pub fn websocket_opened() {
    bump(l::WEBSOCKETS_OPENED);
}

/// An upgraded connection closed.
pub fn websocket_closed() {
    bump(l::WEBSOCKETS_CLOSED);
}

/// A session store operation, for `gatehouse_session_store_operations_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    Load = 0,
    Save = 1,
    RefreshTurn = 2,
    FinishRefresh = 3,
    /// Ending sessions (sign-out, sign-out everywhere, back-channel logout).
    End = 4,
    /// Finding sessions (a user's, a provider session's, those ended elsewhere) and
    /// logout token replays.
    Lookup = 5,
}

/// Counts a store operation and passes its result on.
#[inline]
pub fn store_op<T, E>(op: StoreOp, result: Result<T, E>) -> Result<T, E> {
    let ok = usize::from(result.is_err());
    bump(l::STORE_OPERATIONS + op as usize * l::STORE_RESULTS.len() + ok);
    result
}

/// A look in the per-thread cache of opened sessions.
#[inline]
pub fn session_cache(hit: bool) {
    bump(l::CACHE_LOOKUPS + usize::from(!hit));
}

/// Why sessions were ended, for `gatehouse_session_ends_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCause {
    SignOut = 0,
    SignOutEverywhere = 1,
    Backchannel = 2,
    /// The provider refused the session's refresh token.
    RefreshRefused = 3,
}

pub fn session_ended(cause: EndCause) {
    bump(l::SESSION_ENDS + cause as usize);
}

/// How a Redis command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisResult {
    Ok = 0,
    /// Redis answered with an error, or the connection failed.
    Error = 1,
    /// No answer within `redis_timeout_ms`.
    Timeout = 2,
    /// No connection to send it on.
    NotConnected = 3,
}

/// One Redis command (requests' own; not the health check's PING).
pub fn redis_command(result: RedisResult, started: Timer) {
    let Some(ns) = started.nanos() else {
        return;
    };
    bump(l::REDIS_COMMANDS + result as usize);
    observe(l::REDIS_SECONDS, l::FAST_NS, ns);
}

/// Which session store is configured (0: none yet, 1: cookie, 2: redis) and whether it
/// answers.
static STORE_KIND: AtomicU8 = AtomicU8::new(0);
static STORE_UP: AtomicBool = AtomicBool::new(false);

/// Records whether the session store answers (`store`: `cookie` or `redis`).
pub fn session_store_up(store: &'static str, up: bool) {
    STORE_KIND.store(if store == "redis" { 2 } else { 1 }, Ordering::Relaxed);
    STORE_UP.store(up, Ordering::Relaxed);
}

static RELOADS_OK: AtomicU64 = AtomicU64::new(0);
static RELOADS_FAILED: AtomicU64 = AtomicU64::new(0);
/// Unix seconds of the last successful load; 0 until the first reload, when the process
/// start time stands for the initial load.
static LAST_RELOAD_OK: AtomicU64 = AtomicU64::new(0);
static LAST_RELOAD_FAILED: AtomicBool = AtomicBool::new(false);

/// A configuration reload finished: `ok` when the new configuration is in use. Called
/// by the reload code; rare, so plain shared atomics.
pub fn config_reloaded(ok: bool) {
    if ok {
        RELOADS_OK.fetch_add(1, Ordering::Relaxed);
        LAST_RELOAD_OK.store(crate::util::now_secs(), Ordering::Relaxed);
    } else {
        RELOADS_FAILED.fetch_add(1, Ordering::Relaxed);
    }
    LAST_RELOAD_FAILED.store(!ok, Ordering::Relaxed);
}

/// `notAfter` (Unix seconds) of the certificate served on `listen`; 0: no TLS, or no
/// readable expiry (no sample is written then).
static TLS_CERT_EXPIRY: AtomicU64 = AtomicU64::new(0);

/// The certificate served on `listen` changed (start-up, or a reload of its files).
pub fn tls_certificate_expiry(not_after: Option<u64>) {
    TLS_CERT_EXPIRY.store(not_after.unwrap_or(0), Ordering::Relaxed);
}

/// Notes the process start (for `process_start_time_seconds` where /proc is missing,
/// and the initial configuration load's timestamp). Call once at start-up.
pub fn started() {
    process::note_start();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a metrics listener nothing is recorded (and no clock is read).
    #[test]
    fn nothing_is_recorded_until_enabled() {
        let before = shard::sum();
        login(None);
        request(Mode::Proxy, 200, Timer::start());
        assert!(Timer::start().0.is_none());
        assert_eq!(shard::sum(), before);
        enable();
        login(None);
        assert_eq!(shard::sum()[l::LOGINS], before[l::LOGINS] + 1);
    }

    /// Every code `AppError::code` can give is a login result of its own or, for those a
    /// callback never ends with, `other`; a code that is not gatehouse's is `other` too.
    #[test]
    fn login_failures_map_to_their_code_or_other() {
        let errors = include_str!("../http/errors.rs");
        let codes_fn = &errors[errors.find("pub fn code(&self)").unwrap()..];
        let codes_fn = &codes_fn[..codes_fn.find("\n    }\n").unwrap()];
        let codes: Vec<&str> = codes_fn
            .split("=> \"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .collect();
        assert!(codes.len() > 20, "{codes:?}");
        for code in codes {
            let i = l::index_or_last(l::LOGIN_RESULTS, code);
            assert!(i >= 1, "{code} must never count as ok");
            assert!(
                l::LOGIN_RESULTS[i] == code || l::LOGIN_RESULTS[i] == "other",
                "{code}"
            );
        }
        for code in ["state_mismatch", "claim_mismatch", "provider_unavailable"] {
            assert_eq!(
                l::LOGIN_RESULTS[l::index_or_last(l::LOGIN_RESULTS, code)],
                code
            );
        }
        assert_eq!(
            l::index_or_last(l::LOGIN_RESULTS, "ok\u{0}"),
            l::LOGIN_RESULTS.len() - 1
        );
    }

    /// Every rule name `authz.rs` can deny with has a label of its own.
    #[test]
    fn denial_rules_are_setting_names() {
        let authz = include_str!("../authz.rs");
        for rule in [
            "allowed_groups",
            "required_claims",
            "allowed_emails",
            "allowed_email_domains",
        ] {
            assert!(authz.contains(&format!("\"{rule}\"")), "{rule}");
            assert_eq!(
                l::DENIAL_RULES[l::index_or_last(l::DENIAL_RULES, rule)],
                rule
            );
        }
        assert!(authz.contains("\"allowed_emails / allowed_email_domains\""));
    }
}
