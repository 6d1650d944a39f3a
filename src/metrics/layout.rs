//! Where each series lives in a shard: every label set is a fixed list (or the status
//! codes 100..=599), so the number of series is known at compile time and no value from
//! a request (a user, a path, a host, a token) can ever become a label.
//!
//! A family's series are laid out label by label, the last label varying fastest; a
//! histogram's series is its buckets (not cumulative), the `+Inf` bucket, then the sum
//! in nanoseconds (the count is the buckets' sum).

/// `mode` of `gatehouse_http_requests_total` and `gatehouse_http_request_duration_seconds`.
pub const MODES: &[&str] = &["proxy", "forward_auth", "endpoint"];
/// Status codes 100..=599 one slot each, and one for anything else an upstream sends.
pub const CODES: usize = 501;

/// Bucket bounds for request, upstream and provider latencies, in seconds and in
/// nanoseconds: from half a millisecond (gatehouse's own work) to a minute.
pub const LATENCY_LE: &[&str] = &[
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
    "2.5", "5", "10", "30", "60",
];
pub const LATENCY_NS: &[u64] = &[
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];
/// Bucket bounds for Redis calls: a tenth of a millisecond to a second (the call's own
/// bound, `redis_timeout_ms`, is usually below that).
pub const FAST_LE: &[&str] = &[
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
    "0.25", "0.5", "1",
];
pub const FAST_NS: &[u64] = &[
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];
/// Slots of one latency histogram series: buckets, `+Inf`, sum.
pub const LATENCY_HIST: usize = LATENCY_NS.len() + 2;
pub const FAST_HIST: usize = FAST_NS.len() + 2;

/// `kind` of `gatehouse_upstream_errors_total`.
pub const UPSTREAM_ERRORS: &[&str] = &["connect", "timeout", "closed", "bad_response"];

/// `result` of `gatehouse_logins_total`: `ok`, or the failure's code (`AppError::code`)
/// among those a callback can end with; any other is `other`.
pub const LOGIN_RESULTS: &[&str] = &[
    "ok",
    "provider_denied",
    "login_cookie_missing",
    "secure_cookie_over_http",
    "state_mismatch",
    "login_expired",
    "missing_parameter",
    "issuer_mismatch",
    "audience_mismatch",
    "invalid_id_token",
    "groups_overage",
    "claim_mismatch",
    "token_endpoint_error",
    "session_too_large",
    "not_ready",
    "provider_unavailable",
    "session_store_unavailable",
    "unauthenticated",
    "internal_error",
    "other",
];

/// `result` of `gatehouse_refreshes_total` (`metrics::Refresh`).
pub const REFRESH_RESULTS: &[&str] = &[
    "ok",
    "joined",
    "reused",
    "provider_unavailable",
    "invalid_grant",
    "refused",
    "invalid_token",
    "id_token_not_renewed",
    "session_ended",
    "store_unavailable",
    "store_failed",
    "failed",
];

/// `rule` of `gatehouse_denials_total`: the setting that refused (`Denial::rule`).
pub const DENIAL_RULES: &[&str] = &[
    "allowed_groups",
    "required_claims",
    "allowed_emails",
    "allowed_email_domains",
    "allowed_emails_or_domains",
    "other",
];
/// `source` of `gatehouse_denials_total`: the configuration, or the forward-auth URL's query.
pub const DENIAL_SOURCES: &[&str] = &["config", "auth_url"];

/// `result` of `gatehouse_bearer_tokens_total`.
pub const BEARER_RESULTS: &[&str] = &[
    "accepted",
    "not_jwt",
    "unknown_issuer",
    "keys_not_loaded",
    "expired",
    "not_yet_valid",
    "bad_signature",
    "algorithm_refused",
    "unknown_key",
    "issuer_mismatch",
    "audience_mismatch",
    "invalid",
    "no_identity",
];

/// `endpoint` of the provider families.
pub const PROVIDER_ENDPOINTS: &[&str] = &["discovery", "jwks", "token", "userinfo", "revocation"];
/// `result` of `gatehouse_provider_requests_total`.
pub const PROVIDER_RESULTS: &[&str] = &[
    "ok",
    "redirect",
    "client_error",
    "server_error",
    "timeout",
    "connect",
    "error",
];

/// `op` and `result` of `gatehouse_session_store_operations_total`.
pub const STORE_OPS: &[&str] = &[
    "load",
    "save",
    "refresh_turn",
    "finish_refresh",
    "end",
    "lookup",
];
pub const STORE_RESULTS: &[&str] = &["ok", "error"];
/// `result` of `gatehouse_session_cache_lookups_total`.
pub const CACHE_RESULTS: &[&str] = &["hit", "miss"];
/// `cause` of `gatehouse_session_ends_total`.
pub const END_CAUSES: &[&str] = &[
    "sign_out",
    "sign_out_everywhere",
    "backchannel",
    "refresh_refused",
];
/// `result` of `gatehouse_redis_commands_total`.
pub const REDIS_RESULTS: &[&str] = &["ok", "error", "timeout", "not_connected"];

// Offsets: each family after the one before.
pub const HTTP_REQUESTS: usize = 0;
pub const HTTP_SECONDS: usize = HTTP_REQUESTS + MODES.len() * CODES;
pub const UPSTREAM_SECONDS: usize = HTTP_SECONDS + MODES.len() * LATENCY_HIST;
pub const UPSTREAM_ERROR: usize = UPSTREAM_SECONDS + LATENCY_HIST;
pub const LOGINS: usize = UPSTREAM_ERROR + UPSTREAM_ERRORS.len();
pub const REFRESHES: usize = LOGINS + LOGIN_RESULTS.len();
pub const DENIALS: usize = REFRESHES + REFRESH_RESULTS.len();
pub const BEARER: usize = DENIALS + DENIAL_RULES.len() * DENIAL_SOURCES.len();
pub const PROVIDER_REQUESTS: usize = BEARER + BEARER_RESULTS.len();
pub const PROVIDER_SECONDS: usize =
    PROVIDER_REQUESTS + PROVIDER_ENDPOINTS.len() * PROVIDER_RESULTS.len();
pub const CONNECTIONS_OPENED: usize = PROVIDER_SECONDS + PROVIDER_ENDPOINTS.len() * LATENCY_HIST;
pub const CONNECTIONS_CLOSED: usize = CONNECTIONS_OPENED + 1;
pub const CONNECTIONS_REFUSED: usize = CONNECTIONS_CLOSED + 1;
pub const WEBSOCKETS_OPENED: usize = CONNECTIONS_REFUSED + 1;
pub const WEBSOCKETS_CLOSED: usize = WEBSOCKETS_OPENED + 1;
pub const STORE_OPERATIONS: usize = WEBSOCKETS_CLOSED + 1;
pub const CACHE_LOOKUPS: usize = STORE_OPERATIONS + STORE_OPS.len() * STORE_RESULTS.len();
pub const SESSION_ENDS: usize = CACHE_LOOKUPS + CACHE_RESULTS.len();
pub const REDIS_COMMANDS: usize = SESSION_ENDS + END_CAUSES.len();
pub const REDIS_SECONDS: usize = REDIS_COMMANDS + REDIS_RESULTS.len();
/// A slot only the shard test records into.
pub const TEST_SLOT: usize = REDIS_SECONDS + FAST_HIST;
/// Slots per shard.
pub const SLOTS: usize = TEST_SLOT + 1;

/// The index of `name` in `values`, or of the last value (`other`) when it is not there.
pub fn index_or_last(values: &[&str], name: &str) -> usize {
    values
        .iter()
        .position(|v| *v == name)
        .unwrap_or(values.len().saturating_sub(1))
}

/// The bucket a duration of `ns` nanoseconds falls in (`bounds.len()`: `+Inf`).
#[inline]
pub fn bucket(bounds: &[u64], ns: u64) -> usize {
    bounds.iter().position(|b| ns <= *b).unwrap_or(bounds.len())
}
