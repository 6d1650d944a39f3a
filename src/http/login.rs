//! The login flow endpoints: `/oauth2/start`, `/oauth2/callback` (authorization-code flow
//! with PKCE, state and nonce), `/oauth2/sign_out` (with RP-initiated logout) and
//! `/oauth2/userinfo`.
//!
//! Trusts nothing from the client: `rd` is validated (`redirect.rs`), `state` must match a
//! sealed login cookie, the code is exchanged with the PKCE verifier, and the ID token is
//! verified before a session exists.

use super::{peer_of, AppError, AppState, Ctx};
use crate::audit::Mode;
use crate::auth::{authenticate, session_from_tokens, AuthRequest, Decision};
use crate::config::Config;
use crate::session::chunks::RequestCookies;
use crate::session::LoginState;
use crate::util::{now_secs, random_token};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

/// A 302 with extra `Set-Cookie`s.
pub fn redirect(location: &str, cookies: Vec<HeaderValue>) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in cookies {
        h.append(header::SET_COOKIE, c);
    }
    resp
}

/// The request's cookies, parsed once.
pub(super) fn cookies_of(headers: &HeaderMap) -> RequestCookies<'_> {
    RequestCookies::parse_bytes(headers.get_all(header::COOKIE).iter().map(|v| v.as_bytes()))
}

/// Sends the browser to the provider; `return_to` was validated by the caller.
pub async fn begin_login(
    st: &AppState,
    ctx: &Ctx,
    return_to: String,
    mut cookies: Vec<HeaderValue>,
) -> Response {
    let Some(loaded) = st.auth.provider.loaded() else {
        return ctx.fail(AppError::NotReady(
            "discovery and keys are not loaded yet".into(),
        ));
    };
    // Only send the browser to a provider that answers: otherwise it would end on a
    // browser error page instead of this one, which names the provider and the cause.
    if let Err(cause) = st.auth.provider.reachable().await {
        return ctx.fail(AppError::ProviderUnavailable {
            issuer: st.auth.provider.client.issuer.clone(),
            cause,
        });
    }
    let login = LoginState {
        state: random_token(24),
        nonce: random_token(24),
        pkce_verifier: random_token(32),
        return_to,
        created_at: now_secs(),
    };
    let cookie = match st.auth.sessions.start_login(&login) {
        Ok(c) => c,
        Err(e) => return ctx.fail(e.into()),
    };
    cookies.push(cookie);
    let url = st.auth.provider.authorize_url(
        &loaded,
        &ctx.redirect_uri(&st.cfg),
        &login.state,
        &login.nonce,
        &login.pkce_verifier,
    );
    redirect(&url, cookies)
}

/// The validated post-login target for a raw `rd`, `/` when unsafe. An absolute URL on
/// the host the callback lands on becomes a path; one on an `allowed_redirect_domains`
/// host stays absolute (one auth host serving several apps).
pub fn safe_target(cfg: &Config, ctx: &Ctx, rd: Option<&str>) -> String {
    let own = match &cfg.redirect_url {
        Some(u) => u.host_str().unwrap_or(""),
        None => ctx
            .forwarded
            .host
            .as_deref()
            .map(|h| h.split(':').next().unwrap_or(h))
            .unwrap_or(""),
    };
    rd.and_then(|rd| crate::redirect::validate_target(rd, own, &cfg.allowed_redirect_domains))
        .unwrap_or_else(|| {
            if let Some(rd) = rd {
                tracing::debug!(request_id = %ctx.request_id, trace_id = %ctx.trace.trace_id(), rd = %rd.chars().take(200).collect::<String>(), "post-login target refused (not a safe path, and not an allowed_redirect_domains host); using /");
            }
            "/".into()
        })
}

#[derive(Deserialize)]
pub struct StartQuery {
    rd: Option<String>,
}

pub async fn start(
    State(st): State<Arc<AppState>>,
    q: Result<Query<StartQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Response {
    let rd = q.ok().and_then(|Query(q)| q.rd);
    let mut ctx = Ctx::new(&st.cfg, req.method(), req.headers(), peer_of(&req));
    ctx.api = false;
    let target = safe_target(&st.cfg, &ctx, rd.as_deref());
    begin_login(&st, &ctx, target, Vec::new()).await
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

pub async fn callback(
    State(st): State<Arc<AppState>>,
    q: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Response {
    let mut ctx = Ctx::new(&st.cfg, req.method(), req.headers(), peer_of(&req));
    // The provider's redirect (or form_post) is a browser's navigation and gets a page;
    // only a client that asks for JSON alone (a script driving the flow) gets JSON.
    ctx.api = super::is_api_request(&axum::http::Method::GET, req.headers());
    let audit = ctx.audit_at(Mode::Endpoint, req.uri().path());
    // Every failure below is a failed sign-in: audited once, with its code.
    let fail = |e: AppError| {
        crate::audit::sign_in_failed(&audit, &e);
        ctx.fail(e)
    };
    let Ok(Query(q)) = q else {
        return fail(AppError::MissingParam("state"));
    };
    let cookies = cookies_of(req.headers());
    let (login, clear_login) = match q.state.as_deref() {
        Some(state) => st.auth.sessions.finish_login(&cookies, state),
        None => (None, None),
    };
    let with_clear = |mut resp: Response| {
        if let Some(c) = clear_login.clone() {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        resp
    };
    let minutes = st.cfg.cookie.login_timeout.as_secs().div_ceil(60);
    if q.state.is_none() {
        return fail(AppError::MissingParam("state"));
    }
    let Some(login) = login else {
        let err = if st.auth.sessions.has_login_cookie(&cookies) {
            AppError::StateMismatch
        } else if st.cfg.cookie.secure && ctx.forwarded.proto == "http" {
            AppError::SecureCookieOverHttp { minutes }
        } else {
            AppError::LoginCookieMissing { minutes }
        };
        return fail(err);
    };
    // The provider's error is shown only once the state matched this browser's login:
    // otherwise anyone could put words on gatehouse's page with a crafted link.
    if let Some(error) = q.error {
        let clean = |s: String, n: usize| -> String {
            s.chars().filter(|c| !c.is_control()).take(n).collect()
        };
        return with_clear(fail(AppError::ProviderDenied {
            error: clean(error, 64),
            description: q.error_description.map(|d| clean(d, 300)),
        }));
    }
    if now_secs().saturating_sub(login.created_at) > st.cfg.cookie.login_timeout.as_secs() {
        return with_clear(fail(AppError::LoginExpired { minutes }));
    }
    let Some(code) = q.code else {
        return with_clear(fail(AppError::MissingParam("code")));
    };
    if let Some(iss) = q.iss {
        if iss != st.cfg.issuer_url {
            return with_clear(fail(AppError::IssuerParam {
                expected: st.cfg.issuer_url.clone(),
                found: iss,
            }));
        }
    }
    let Some(loaded) = st.auth.provider.loaded() else {
        return fail(AppError::NotReady(
            "discovery and keys are not loaded yet".into(),
        ));
    };
    match finish(&st, &ctx, &loaded, &login, &code).await {
        Ok(session) => match st.auth.sessions.save(&session, &cookies).await {
            Ok(mut set) => {
                tracing::info!(request_id = %ctx.request_id, trace_id = %ctx.trace.trace_id(), user = %session.identity.user, "user logged in");
                crate::audit::sign_in(&audit, &session);
                set.extend(clear_login);
                redirect(&login.return_to, set)
            }
            Err(e) => with_clear(fail(e.into())),
        },
        Err(e) => with_clear(fail(e)),
    }
}

async fn finish(
    st: &AppState,
    ctx: &Ctx,
    loaded: &crate::oidc::Loaded,
    login: &LoginState,
    code: &str,
) -> Result<crate::session::Session, AppError> {
    let mut tokens = st
        .auth
        .provider
        .exchange(
            loaded,
            code,
            &ctx.redirect_uri(&st.cfg),
            &login.pkce_verifier,
        )
        .await
        .map_err(|e| match e {
            crate::oidc::FlowError::Unreachable(cause) => AppError::ProviderUnavailable {
                issuer: st.auth.provider.client.issuer.clone(),
                cause,
            },
            other => other.into(),
        })?;
    let id_token = tokens
        .id_token
        .take()
        .ok_or(crate::oidc::FlowError::NoIdToken)?;
    let claims = st
        .auth
        .provider
        .verify(
            loaded,
            &id_token,
            Some(&login.nonce),
            tokens.access_token.as_deref(),
        )
        .await
        .map_err(crate::oidc::FlowError::Token)?;
    let claims = crate::auth::complete_claims(
        &st.cfg,
        &st.auth.provider,
        loaded,
        claims,
        tokens.access_token.as_deref(),
    )
    .await?;
    let access_exp = st
        .auth
        .provider
        .check_access_token(tokens.access_token.as_deref())
        .await?;
    Ok(session_from_tokens(
        &st.cfg,
        tokens,
        id_token,
        &claims,
        random_token(12),
        now_secs(),
        access_exp,
    )?)
}

/// `GET /oauth2/sign_out`: a confirmation page whose button posts. A link or an image on
/// another site can therefore never sign a user out.
pub async fn sign_out_page() -> Response {
    let mut resp = super::pages::sign_out_confirm().into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// True unless the browser says the request came from another site: `Sec-Fetch-Site`
/// other than `same-origin`/`none`, or an `Origin` whose host is not this one. Clients
/// that send neither (curl, old browsers) are not sites, so they pass.
fn same_origin(ctx: &Ctx, headers: &HeaderMap) -> bool {
    let text = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    match text("origin") {
        None => true,
        Some(origin) => {
            let host = url::Url::parse(origin).ok().map(|u| match u.port() {
                Some(p) => format!("{}:{p}", u.host_str().unwrap_or("")),
                None => u.host_str().unwrap_or("").to_string(),
            });
            host.is_some() && host.as_deref() == ctx.forwarded.host.as_deref()
        }
    }
}

/// `POST /oauth2/sign_out`: same-origin only; clears the session, revokes its refresh
/// token at the provider (RFC 7009) when the provider has a revocation endpoint, and
/// continues to RP-initiated logout when it has an end-session endpoint.
pub async fn sign_out(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let ctx = Ctx::new(&st.cfg, req.method(), req.headers(), peer_of(&req));
    let audit = ctx.audit_at(Mode::Endpoint, req.uri().path());
    if !same_origin(&ctx, req.headers()) {
        crate::audit::sign_out_refused(&audit, &AppError::CrossSiteSignOut);
        return ctx.fail(AppError::CrossSiteSignOut);
    }
    let cookies = cookies_of(req.headers());
    let everywhere = req.uri().query().is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .any(|(k, v)| k == "everywhere" && v != "0" && v != "false")
    });
    let store = &st.auth.sessions;
    // A store that cannot answer must not look like a sign-out that worked: the session
    // would live on elsewhere.
    let session = match store.load(&cookies).await {
        Ok(s) => s,
        Err(e) => return ctx.fail(AppError::SessionStoreDown { cause: e.0 }),
    };
    let clear = store.clear(&cookies);
    let loaded = st.auth.provider.loaded();
    if let Some(s) = &session {
        let ended = if everywhere {
            store.end_user(s).await.map(|n| n.max(1))
        } else {
            store.end(s, &cookies).await.map(|_| 1)
        };
        let ended = match ended {
            Ok(n) => n,
            Err(e) => return ctx.fail(AppError::SessionStoreDown { cause: e.0 }),
        };
        let closed = st.tunnels.end_session(&s.id);
        tracing::info!(request_id = %ctx.request_id, trace_id = %ctx.trace.trace_id(), user = %s.identity.user, everywhere, sessions_ended = ended, websockets_closed = closed, "user signed out");
        crate::audit::sign_out(&audit, s, everywhere, ended as u64);
        if let (Some(l), Some(rt)) = (&loaded, &s.refresh_token) {
            match st.auth.provider.revoke(l, rt).await {
                Some(Err(e)) => {
                    tracing::warn!(request_id = %ctx.request_id, trace_id = %ctx.trace.trace_id(), error = %e, "could not revoke the refresh token at the provider")
                }
                Some(Ok(())) => {
                    tracing::debug!(request_id = %ctx.request_id, trace_id = %ctx.trace.trace_id(), "revoked the refresh token")
                }
                None => {}
            }
        }
    }
    let post_logout = st
        .cfg
        .post_logout_redirect_url
        .as_ref()
        .map(|u| u.to_string());
    let end = loaded.and_then(|l| {
        st.auth.provider.end_session_url(
            &l,
            session.as_ref().map(|s| s.id_token.as_str()),
            post_logout.as_deref(),
        )
    });
    match end {
        Some(url) => redirect(&url, clear),
        None => {
            let mut resp = super::pages::signed_out().into_response();
            for c in clear {
                resp.headers_mut().append(header::SET_COOKIE, c);
            }
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
    }
}

pub async fn userinfo(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let mut ctx = Ctx::new(&st.cfg, req.method(), req.headers(), peer_of(&req));
    ctx.api = true;
    let cookies = cookies_of(req.headers());
    let audit = ctx.audit_at(Mode::Endpoint, req.uri().path());
    let ar = AuthRequest {
        cookies: &cookies,
        headers: req.headers(),
        method: req.method(),
        path: None,
        extra: &[],
        skip: &[],
        audit: &audit,
    };
    match authenticate(&st.auth, &ar).await {
        Decision::Allow {
            session,
            set_cookies,
        } => {
            let id = &session.identity;
            let mut resp = Json(serde_json::json!({
                "user": id.user, "email": id.email, "groups": id.groups,
                "preferred_username": id.preferred_username, "sub": id.sub,
                "expires_at": session.expires_at,
            }))
            .into_response();
            super::answer::add_cookies(&mut resp, set_cookies);
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        other => super::answer::refusal(&st, &ctx, other, "/".into(), false).await,
    }
}
