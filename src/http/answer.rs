//! The answers every mode gives when the auth step does not let a request through, so the
//! sidecar, `/oauth2/userinfo` and the forward-auth endpoint say the same thing:
//!
//! - no usable session: a 302 to the provider for a browser navigation when redirecting
//!   is wanted, otherwise 401 with `WWW-Authenticate` and a `login_url` (for a browser
//!   navigation also in `X-Gatehouse-Login`, for nginx's `error_page 401`);
//! - signed in but refused by a rule: 403 naming the rule and the identity, offering
//!   sign-out (signing in again would only land on the same refusal);
//! - a bearer token that does not verify: 401 `invalid_token`, never a redirect.

use super::login::begin_login;
use super::{AppError, AppState, Ctx};
use crate::auth::Decision;
use crate::config::Config;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::Response;

/// On a 401 for a browser navigation: the URL that starts the login and returns to the
/// page asked for (nginx: `auth_request_set $login $upstream_http_x_gatehouse_login`).
pub const LOGIN_HEADER: HeaderName = HeaderName::from_static("x-gatehouse-login");

/// Appends `Set-Cookie`s to a response.
pub fn add_cookies(resp: &mut Response, cookies: Vec<HeaderValue>) {
    for c in cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
}

/// Where to start a login that returns to `target`: on the callback's origin when
/// `redirect_url` is set (the auth host may differ from the app's), else relative.
pub fn login_url(cfg: &Config, target: &str) -> String {
    let base = cfg
        .redirect_url
        .as_ref()
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    format!(
        "{base}/oauth2/start?rd={}",
        crate::util::query_escape(target)
    )
}

/// The response for any decision but `Allow`/`Public`. `target` is the validated
/// post-login target; `redirect` says whether browsers get a 302 to the provider.
pub async fn refusal(
    st: &AppState,
    ctx: &Ctx,
    decision: Decision,
    target: String,
    redirect: bool,
) -> Response {
    match decision {
        Decision::Login { reason, clear } => {
            tracing::debug!(request_id = %ctx.request_id, trace_id = %ctx.trace.trace_id(), ?reason, "login required");
            if redirect && !ctx.api {
                return begin_login(st, ctx, target, clear).await;
            }
            let url = login_url(&st.cfg, &target);
            let mut resp = ctx.fail(AppError::Unauthenticated {
                login_url: url.clone(),
            });
            // For an ingress that can only pass 401 on (nginx `auth_request`): a browser
            // navigation carries where to sign in, so `error_page 401` can redirect it
            // while API clients keep their 401.
            if !ctx.api {
                if let Ok(v) = HeaderValue::from_str(&url) {
                    resp.headers_mut().insert(LOGIN_HEADER, v);
                }
            }
            add_cookies(&mut resp, clear);
            resp
        }
        Decision::Deny {
            session,
            denial,
            set_cookies,
        } => {
            let mut resp = ctx.fail(AppError::Denied {
                user: session.identity.user.clone(),
                denial: denial.to_string(),
            });
            add_cookies(&mut resp, set_cookies);
            resp
        }
        Decision::BadToken { reason } => ctx.fail(AppError::InvalidBearer { reason }),
        Decision::StoreDown { cause } => {
            let mut resp = ctx.fail(AppError::SessionStoreDown { cause });
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            resp
        }
        Decision::Allow { .. } | Decision::Public { .. } => ctx.fail(AppError::Internal(
            "an allowed request reached the refusal path".into(),
        )),
    }
}
