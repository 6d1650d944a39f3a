//! The embedded development identity provider behind `gatehouse demo`. DEVELOPMENT ONLY:
//! any username logs in, with whatever groups are typed. It still speaks real OIDC
//! (discovery, JWKS, authorization code with mandatory PKCE S256, refresh with rotation,
//! userinfo, end session) so gatehouse runs its production code path against it.
//! Besides gatehouse it can know other clients (`demo --extra-client`), so a peer such
//! as Apache with mod_auth_openidc signs in at the same provider in `bench/run.sh`.
//! Codes, refresh tokens and ID tokens are bound to the client they were issued to.

mod keys;

use crate::http::pages::{escape, shell};
use crate::oidc::token::pkce_challenge;
use crate::util::{now_secs, random_token};
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use keys::SigningKey;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A client the development IdP knows.
#[derive(Clone, Debug)]
pub struct DevClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    pub default_group: String,
    pub id_token_ttl: u64,
}

struct Grant {
    client_id: String,
    username: String,
    groups: Vec<String>,
    nonce: Option<String>,
    challenge: String,
    redirect_uri: String,
    issued: u64,
}

struct Idp {
    issuer: String,
    clients: Vec<DevClient>,
    key: SigningKey,
    codes: Mutex<HashMap<String, Grant>>,
    refresh: Mutex<HashMap<String, Issued>>,
    access: Mutex<HashMap<String, Issued>>,
}

/// Who a token was issued to, for which client, and until when (Unix seconds) it is kept.
#[derive(Clone)]
struct Issued {
    username: String,
    groups: Vec<String>,
    client_id: String,
    until: u64,
}

impl Idp {
    fn client(&self, client_id: Option<&str>) -> Option<&DevClient> {
        let id = client_id?;
        self.clients.iter().find(|c| c.client_id == id)
    }
}

/// How long an unused refresh token or an unredeemed code is kept.
const REFRESH_KEPT: u64 = 8 * 3600;
const CODE_KEPT: u64 = 600;

/// Drops what has expired: without this, a long demo (or bench/soak.sh) grew by every
/// token ever issued.
fn prune<V>(map: &mut HashMap<String, V>, until: impl Fn(&V) -> u64) {
    let now = now_secs();
    map.retain(|_, v| until(v) > now);
}

/// Builds the development IdP's router for `issuer` (its own base URL), knowing
/// `clients` (their ids must differ; the caller checks).
pub fn app(issuer: String, clients: Vec<DevClient>) -> Result<Router, String> {
    let idp = Arc::new(Idp {
        issuer,
        clients,
        key: SigningKey::generate()?,
        codes: Mutex::new(HashMap::new()),
        refresh: Mutex::new(HashMap::new()),
        access: Mutex::new(HashMap::new()),
    });
    Ok(Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize_form).post(authorize_submit))
        .route("/token", post(token))
        .route("/userinfo", get(userinfo))
        .route("/end_session", get(end_session))
        .with_state(idp))
}

async fn discovery(State(idp): State<Arc<Idp>>) -> Json<serde_json::Value> {
    let i = &idp.issuer;
    Json(serde_json::json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"),
        "userinfo_endpoint": format!("{i}/userinfo"),
        "end_session_endpoint": format!("{i}/end_session"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }))
}

async fn jwks(State(idp): State<Arc<Idp>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"keys": [idp.key.jwk]}))
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

fn bad_request(msg: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        shell(
            "Development IdP error",
            &format!("<h1>Bad authorization request</h1><p>{}</p>", escape(msg)),
        ),
    )
        .into_response()
}

fn check_authorize<'a>(idp: &'a Idp, q: &AuthorizeQuery) -> Result<&'a DevClient, &'static str> {
    let Some(client) = idp.client(q.client_id.as_deref()) else {
        return Err("unknown client_id");
    };
    if q.redirect_uri.as_deref() != Some(client.redirect_uri.as_str()) {
        return Err("redirect_uri is not the one registered for this client");
    }
    if q.response_type.as_deref() != Some("code") {
        return Err("only response_type=code is supported");
    }
    if q.code_challenge.is_none() || q.code_challenge_method.as_deref() != Some("S256") {
        return Err("PKCE with S256 is required");
    }
    Ok(client)
}

async fn authorize_form(State(idp): State<Arc<Idp>>, Query(q): Query<AuthorizeQuery>) -> Response {
    let client = match check_authorize(&idp, &q) {
        Ok(c) => c,
        Err(e) => return bad_request(e),
    };
    shell(
        "Development sign-in",
        &format!(
            "<p style=\"background:#b00020;color:#fff;padding:.6rem\"><strong>DEVELOPMENT ONLY.</strong> This built-in identity provider lets anyone sign in as anyone. Never expose it.</p>\
<h1>Sign in to the development IdP</h1><form method=\"post\"><p><label>Username <input name=\"username\" value=\"dev\" autofocus></label></p>\
<p><label>Groups (comma-separated) <input name=\"groups\" value=\"{}\"></label></p><p><button type=\"submit\">Sign in</button></p></form>",
            escape(&client.default_group)
        ),
    )
    .into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    #[serde(default)]
    groups: String,
}

async fn authorize_submit(
    State(idp): State<Arc<Idp>>,
    Query(q): Query<AuthorizeQuery>,
    Form(f): Form<LoginForm>,
) -> Response {
    let client = match check_authorize(&idp, &q) {
        Ok(c) => c,
        Err(e) => return bad_request(e),
    };
    let username = f.username.trim().to_string();
    if username.is_empty() {
        return bad_request("a username is required");
    }
    let groups = f
        .groups
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect();
    let code = random_token(24);
    let grant = Grant {
        client_id: client.client_id.clone(),
        username,
        groups,
        nonce: q.nonce.clone(),
        challenge: q.code_challenge.clone().unwrap_or_default(),
        redirect_uri: q.redirect_uri.clone().unwrap_or_default(),
        issued: now_secs(),
    };
    if let Ok(mut codes) = idp.codes.lock() {
        prune(&mut codes, |g| g.issued + CODE_KEPT);
        codes.insert(code.clone(), grant);
    }
    let Ok(mut target) = url::Url::parse(&client.redirect_uri) else {
        return bad_request("bad redirect_uri");
    };
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", q.state.as_deref().unwrap_or(""))
        .append_pair("iss", &idp.issuer);
    Redirect::to(target.as_str()).into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// The client whose id and secret came with a token request, if they are right.
fn client_authenticated<'a>(
    idp: &'a Idp,
    headers: &HeaderMap,
    form: &TokenForm,
) -> Option<&'a DevClient> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let (id, secret) = match basic.as_deref().and_then(|b| b.split_once(':')) {
        Some((i, s)) => (decode(i), decode(s)),
        None => (
            form.client_id.clone().unwrap_or_default(),
            form.client_secret.clone().unwrap_or_default(),
        ),
    };
    idp.client(Some(&id)).filter(|c| c.client_secret == secret)
}

fn issue(
    idp: &Idp,
    client: &DevClient,
    username: &str,
    groups: &[String],
    nonce: Option<&str>,
) -> Response {
    let now = now_secs();
    let ttl = client.id_token_ttl;
    let mut claims = serde_json::json!({
        "iss": idp.issuer, "sub": username, "aud": client.client_id, "iat": now, "exp": now + ttl,
        "email": format!("{username}@example.test"), "email_verified": true, "preferred_username": username,
        "name": username, "groups": groups,
    });
    if let Some(n) = nonce {
        claims["nonce"] = serde_json::Value::String(n.to_string());
    }
    let id_token = match idp.key.sign(&claims) {
        Ok(t) => t,
        Err(e) => return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e),
    };
    let (access, refresh) = (random_token(24), random_token(24));
    if let (Ok(mut a), Ok(mut r)) = (idp.access.lock(), idp.refresh.lock()) {
        prune(&mut a, |v| v.until);
        prune(&mut r, |v| v.until);
        let who = Issued {
            username: username.to_string(),
            groups: groups.to_vec(),
            client_id: client.client_id.clone(),
            until: now + ttl,
        };
        r.insert(
            refresh.clone(),
            Issued {
                until: now + REFRESH_KEPT,
                ..who.clone()
            },
        );
        a.insert(access.clone(), who);
    }
    Json(serde_json::json!({
        "access_token": access, "token_type": "Bearer", "expires_in": ttl,
        "id_token": id_token, "refresh_token": refresh,
    }))
    .into_response()
}

async fn token(
    State(idp): State<Arc<Idp>>,
    headers: HeaderMap,
    Form(f): Form<TokenForm>,
) -> Response {
    let Some(client) = client_authenticated(&idp, &headers, &f) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    };
    match f.grant_type.as_str() {
        "authorization_code" => {
            let grant = f
                .code
                .as_deref()
                .and_then(|c| idp.codes.lock().ok()?.remove(c));
            // A code works once, and only for the client it was issued to.
            let Some(g) = grant.filter(|g| {
                now_secs().saturating_sub(g.issued) < 60 && g.client_id == client.client_id
            }) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown, used or expired code",
                );
            };
            if f.redirect_uri.as_deref() != Some(g.redirect_uri.as_str()) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "redirect_uri differs from the authorization request",
                );
            }
            if f.code_verifier.as_deref().map(pkce_challenge).as_deref()
                != Some(g.challenge.as_str())
            {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "PKCE verification failed",
                );
            }
            issue(&idp, client, &g.username, &g.groups, g.nonce.as_deref())
        }
        "refresh_token" => {
            // Rotation: a refresh token works once, and only for its own client.
            let found = f
                .refresh_token
                .as_deref()
                .and_then(|t| idp.refresh.lock().ok()?.remove(t))
                .filter(|i| i.client_id == client.client_id);
            match found {
                Some(i) => issue(&idp, client, &i.username, &i.groups, None),
                None => oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown or already used refresh token",
                ),
            }
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "use authorization_code or refresh_token",
        ),
    }
}

async fn userinfo(State(idp): State<Arc<Idp>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let found = token
        .and_then(|t| idp.access.lock().ok()?.get(t).cloned())
        .filter(|i| i.until > now_secs());
    match found {
        Some(Issued { username: user, groups, .. }) => Json(serde_json::json!({"sub": user, "email": format!("{user}@example.test"), "preferred_username": user, "groups": groups})).into_response(),
        None => (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")]).into_response(),
    }
}

#[derive(Deserialize)]
struct EndSessionQuery {
    post_logout_redirect_uri: Option<String>,
}

async fn end_session(Query(q): Query<EndSessionQuery>) -> Response {
    let back = q
        .post_logout_redirect_uri
        .filter(|u| u.starts_with("http://127.0.0.1") || u.starts_with("http://localhost"))
        .map(|u| {
            format!(
                "<p><a href=\"{}\">Back to the application</a></p>",
                escape(&u)
            )
        })
        .unwrap_or_default();
    shell(
        "Signed out",
        &format!("<h1>Signed out of the development IdP</h1>{back}"),
    )
    .into_response()
}
