//! `POST /oauth2/backchannel_logout`: OpenID Connect Back-Channel Logout 1.0 (incorporating
//! errata set 1). The provider posts a logout token (§2.5); gatehouse verifies it
//! (`oidc/logout_token.rs`), ends the sessions it names through the session store (the
//! cookie store: this replica's revocation list; the redis store: every replica), which
//! also closes their WebSockets (4001), and answers as §2.8 says.
//!
//! Trusts only the token's signature: the caller is not a browser, so there is no cookie
//! and no same-origin check (sign-out's), and anyone may post here; a token that does not
//! verify changes nothing. The body is read up to [`MAX_BODY`] bytes. Answers, all with
//! `Cache-Control: no-store`:
//! - 200, empty: the sessions are ended (also when none matched: nothing is left to end);
//! - 400 `{"error":"invalid_request","error_description":...}`: a body, form or token
//!   that fails a check, or a `jti` already used (a replay); 413 for a body too large;
//! - 503 `{"error":"temporarily_unavailable",...}`: the session store or the provider's
//!   keys cannot be reached, so nothing could be ended; the provider should send it again;
//! - 405 for any method but POST.
//!
//! Logged: one line per accepted logout, naming what it matched by (`sid` or `sub`), a
//! short hash of the user, and how many sessions ended; never the token. Audited
//! (`audit.rs`): every accepted logout with the `sub` (the audit trail names whose
//! sessions ended, as `sign_in` does), and every refusal with a stable reason.

use super::{peer_of, AppState, Ctx};
use crate::oidc::logout_token::LogoutToken;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::BodyExt;
use std::sync::Arc;

/// Where the provider posts logout tokens: register `<public origin>` + this path as the
/// client's `backchannel_logout_uri`.
pub const PATH: &str = "/oauth2/backchannel_logout";

/// The largest body read: a logout token is a few hundred bytes to a few kilobytes.
pub const MAX_BODY: usize = 16 * 1024;

/// An answer with `Cache-Control: no-store` (§2.8).
fn answer(status: StatusCode, body: Option<serde_json::Value>) -> Response {
    let mut resp = match body {
        Some(b) => (status, Json(b)).into_response(),
        None => status.into_response(),
    };
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The request as audit events name it.
fn audit(ctx: &Ctx) -> crate::audit::Scope<'_> {
    ctx.audit_at(crate::audit::Mode::Endpoint, PATH)
}

/// 400 with the OAuth error body of RFC 6749 §5.2, as §2.8 allows; `code` names the
/// refusal in the audit event.
fn invalid(ctx: &Ctx, code: &str, why: &str) -> Response {
    crate::audit::backchannel_logout_refused(&audit(ctx), code);
    tracing::info!(request_id = %ctx.request_id, trace_id = %ctx.trace.trace_id(), reason = %why, "back-channel logout refused");
    answer(
        StatusCode::BAD_REQUEST,
        Some(serde_json::json!({"error": "invalid_request", "error_description": why})),
    )
}

/// 503: nothing was ended; the provider should send the token again.
fn unavailable(ctx: &Ctx, code: &str, why: &str) -> Response {
    crate::audit::backchannel_logout_refused(&audit(ctx), code);
    tracing::warn!(request_id = %ctx.request_id, trace_id = %ctx.trace.trace_id(), reason = %why, "back-channel logout could not be carried out");
    let mut resp = answer(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(serde_json::json!({"error": "temporarily_unavailable", "error_description": why})),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    resp
}

/// Why a body is not a back-channel logout request.
enum BodyError {
    /// Larger than [`MAX_BODY`]; not read to its end.
    TooLarge,
    /// Refused without reading it to its end (its type, or a read that failed).
    Unread(&'static str),
    /// Read whole, and not one `logout_token`.
    Invalid(&'static str),
}

/// Reads the form body (`application/x-www-form-urlencoded`, §2.5) and its one
/// `logout_token`.
async fn logout_token_of(req: Request) -> Result<String, BodyError> {
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err(BodyError::Unread(
            "the body must be application/x-www-form-urlencoded with a logout_token field",
        ));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(BodyError::TooLarge);
    }
    let bytes = http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                BodyError::TooLarge
            } else {
                BodyError::Unread("the request body could not be read")
            }
        })?
        .to_bytes();
    let mut tokens = url::form_urlencoded::parse(&bytes)
        .filter(|(k, _)| k == "logout_token")
        .map(|(_, v)| v);
    match (tokens.next(), tokens.next()) {
        (Some(t), None) if !t.is_empty() => Ok(t.into_owned()),
        (Some(_), Some(_)) => Err(BodyError::Invalid(
            "the logout_token field appears more than once",
        )),
        _ => Err(BodyError::Invalid("the body has no logout_token field")),
    }
}

/// A short, stable stand-in for a user id in logs (not reversible at a glance, enough
/// to tell log lines about the same user apart).
fn user_hash(sub: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, sub.as_bytes());
    d.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// `POST /oauth2/backchannel_logout`.
pub async fn logout(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let ctx = Ctx::new(&st.cfg, req.method(), req.headers(), peer_of(&req));
    if req.method() != Method::POST {
        let mut resp = answer(
            StatusCode::METHOD_NOT_ALLOWED,
            Some(
                serde_json::json!({"error": "invalid_request", "error_description": "the back-channel logout endpoint takes POST only"}),
            ),
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    let token = match logout_token_of(req).await {
        Ok(t) => t,
        Err(BodyError::TooLarge) => {
            crate::audit::backchannel_logout_refused(&audit(&ctx), "body_too_large");
            tracing::info!(request_id = %ctx.request_id, trace_id = %ctx.trace.trace_id(), max = MAX_BODY, "back-channel logout refused: body too large");
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some(
                    serde_json::json!({"error": "invalid_request", "error_description": format!("the body is larger than {MAX_BODY} bytes")}),
                ),
            );
        }
        Err(BodyError::Unread(why)) => return invalid(&ctx, "invalid_request", why),
        Err(BodyError::Invalid(why)) => return read_fully(invalid(&ctx, "invalid_request", why)),
    };
    let Some(loaded) = st.auth.provider.loaded() else {
        return read_fully(unavailable(
            &ctx,
            "keys_not_loaded",
            "gatehouse has not loaded the provider's keys yet",
        ));
    };
    let verified = match st.auth.provider.verify_logout_token(&loaded, &token).await {
        Ok(t) => t,
        Err(e) if e.is_transient() => {
            return read_fully(unavailable(&ctx, "provider_unavailable", &e.to_string()))
        }
        Err(e) => return read_fully(invalid(&ctx, "invalid_logout_token", &e.to_string())),
    };
    read_fully(end(&st, &ctx, &verified).await)
}

/// Marks an answer to a request whose body was read to its end here, so the connection
/// stays usable (`workers.rs` closes it after answers that left a body unread).
fn read_fully(mut resp: Response) -> Response {
    resp.extensions_mut().insert(crate::proxy::BodyForwarded);
    resp
}

/// Ends what a verified token names, then records its `jti`.
///
/// In this order on purpose: ending is idempotent (only sessions begun by the token's
/// `iat` match, so a replay cannot reach a later sign-in), so when the store fails
/// half-way the provider's retry still ends the sessions, where recording the `jti`
/// first would turn that retry into a "replay" and the sessions would live on. A
/// replay is still answered 400 (§2.6), having changed nothing.
async fn end(st: &AppState, ctx: &Ctx, t: &LogoutToken) -> Response {
    let sessions = &st.auth.sessions;
    // `iat` on the provider's clock; a session begun up to `clock_skew_secs` later on
    // ours may still be one the provider meant. Never later than now, though: a sign-in
    // after the logout arrived is a new one, and ending it would send the browser to the
    // provider and straight back, in a loop, until the clock caught up.
    let before = t
        .iat
        .saturating_add(st.cfg.clock_skew.as_secs())
        .min(crate::util::now_secs());
    let ended = match sessions
        .end_matching(t.sid.as_deref(), t.sub.as_deref(), before)
        .await
    {
        Ok(n) => n,
        Err(e) => {
            return unavailable(
                ctx,
                "session_store_unavailable",
                &format!("the session store is unavailable, so no session was ended: {e}"),
            )
        }
    };
    let key = format!("{}\0{}", st.auth.provider.client.issuer, t.jti);
    match sessions.first_use(&key, t.exp).await {
        Ok(true) => {}
        Ok(false) => {
            return invalid(
                ctx,
                "replayed_jti",
                "this logout token's jti was already used (a replay); nothing was changed",
            )
        }
        Err(e) => {
            return unavailable(
                ctx,
                "session_store_unavailable",
                &format!(
                "the session store is unavailable, so the logout token could not be recorded: {e}"
            ),
            )
        }
    }
    let by = if t.sid.is_some() { "sid" } else { "sub" };
    let user = t.sub.as_deref().map(user_hash).unwrap_or_default();
    crate::audit::backchannel_logout(
        &audit(ctx),
        t.sub.as_deref(),
        by,
        ended as u64,
        sessions.shared(),
    );
    if sessions.shared() {
        tracing::info!(request_id = %ctx.request_id, trace_id = %ctx.trace.trace_id(), by, user, sessions_ended = ended, store = sessions.kind(), "back-channel logout: sessions ended on every replica");
    } else {
        tracing::info!(request_id = %ctx.request_id, trace_id = %ctx.trace.trace_id(), by, user, store = sessions.kind(), "back-channel logout: matching sessions ended on this replica (its revocation list)");
    }
    answer(StatusCode::OK, None)
}
