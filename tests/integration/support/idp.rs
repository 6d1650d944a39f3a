//! An in-process OpenID Provider that signs whatever a test asks for: the home of the
//! bad-token suite. `/authorize` redirects straight back (no login page); the token
//! endpoint checks client authentication and PKCE, then mints tokens with the current
//! [`Mint`]. Not a substitute for interop with a real provider (see `peers.rs`).

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub const CLIENT_ID: &str = "gatehouse-test";
pub const CLIENT_SECRET: &str = "test-client-secret";

const RSA1: &str = include_str!("../fixtures/rsa1.pem");
const RSA1_PUB: &str = include_str!("../fixtures/rsa1.pub.pem");
const RSA2: &str = include_str!("../fixtures/rsa2.pem");
const RSA1_JWK: &str = include_str!("../fixtures/rsa1.jwk.json");
const RSA2_JWK: &str = include_str!("../fixtures/rsa2.jwk.json");

/// How a token is signed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Signer {
    /// RS256 with key `k1` (published).
    Rsa1,
    /// RS256 with an unpublished key, header says `k1`: a bad signature.
    Rsa2,
    /// ES256 with key `e1` (published).
    Ec,
    /// ES256 with an unpublished key, header says `e1`.
    EcOther,
    /// `alg: none`, empty signature.
    None,
    /// HS256 keyed with the published RSA public key (the key-confusion attack).
    Hs256WithPublicKey,
}

/// Changes a token response body; the flag says whether it answers a refresh.
pub type BodyTweak = Arc<dyn Fn(&mut Value, bool) + Send + Sync>;

/// What the next tokens look like.
#[derive(Clone)]
pub struct Mint {
    pub signer: Signer,
    /// `kid` in the header; `None` omits it. Default: the signer's key id.
    pub kid: Option<Option<String>>,
    pub ttl: i64,
    pub tweak: Arc<dyn Fn(&mut Value) + Send + Sync>,
    pub refresh_token: bool,
    /// `typ` in the JWS header (default `JWT`).
    pub typ: Option<String>,
    /// Put the right `at_hash` for the access token in the ID token.
    pub at_hash: bool,
    /// Changes the token response body; the flag says whether it answers a refresh.
    pub body_tweak: BodyTweak,
}

impl Default for Mint {
    fn default() -> Self {
        Mint {
            signer: Signer::Rsa1,
            kid: None,
            ttl: 300,
            tweak: Arc::new(|_| {}),
            refresh_token: true,
            typ: None,
            at_hash: false,
            body_tweak: Arc::new(|_, _| {}),
        }
    }
}

pub struct Keys {
    rsa1: EncodingKey,
    rsa2: EncodingKey,
    ec: EncodingKey,
    ec_other: EncodingKey,
    pub ec_jwk: Value,
    pub rsa1_jwk: Value,
    pub rsa2_jwk: Value,
}

fn ec_key(kid: &str) -> (EncodingKey, Value) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let p = pair.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])});
    (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

fn rsa_jwk(raw: &str, kid: &str) -> Value {
    let mut v: Value = serde_json::from_str(raw).unwrap();
    v["kty"] = json!("RSA");
    v["kid"] = json!(kid);
    v["use"] = json!("sig");
    v["alg"] = json!("RS256");
    v
}

impl Keys {
    fn new() -> Keys {
        let (ec, ec_jwk) = ec_key("e1");
        let (ec_other, _) = ec_key("e1");
        Keys {
            rsa1: EncodingKey::from_rsa_pem(RSA1.as_bytes()).unwrap(),
            rsa2: EncodingKey::from_rsa_pem(RSA2.as_bytes()).unwrap(),
            ec,
            ec_other,
            ec_jwk,
            rsa1_jwk: rsa_jwk(RSA1_JWK, "k1"),
            rsa2_jwk: rsa_jwk(RSA2_JWK, "k2"),
        }
    }

    /// Signs `claims` as `mint` says.
    pub fn sign(&self, mint: &Mint, claims: &Value) -> String {
        let default_kid = match mint.signer {
            Signer::Ec | Signer::EcOther => "e1",
            _ => "k1",
        };
        let kid = mint.kid.clone().unwrap_or(Some(default_kid.to_string()));
        let (alg, key) = match mint.signer {
            Signer::Rsa1 => (Algorithm::RS256, &self.rsa1),
            Signer::Rsa2 => (Algorithm::RS256, &self.rsa2),
            Signer::Ec => (Algorithm::ES256, &self.ec),
            Signer::EcOther => (Algorithm::ES256, &self.ec_other),
            Signer::None => {
                let mut h = json!({"alg": "none", "typ": "JWT"});
                if let Some(k) = kid {
                    h["kid"] = json!(k);
                }
                let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
                return format!("{}.{}.", enc(&h), enc(claims));
            }
            Signer::Hs256WithPublicKey => {
                let mut header = Header::new(Algorithm::HS256);
                header.kid = kid;
                return jsonwebtoken::encode(
                    &header,
                    claims,
                    &EncodingKey::from_secret(RSA1_PUB.as_bytes()),
                )
                .unwrap();
            }
        };
        let mut header = Header::new(alg);
        header.kid = kid;
        if let Some(typ) = &mint.typ {
            header.typ = Some(typ.clone());
        }
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }
}

struct Pending {
    nonce: Option<String>,
    challenge: String,
}

/// Shared state a test can inspect and change while the IdP runs.
pub struct IdpState {
    pub issuer: Mutex<String>,
    pub keys: Keys,
    pub mint: Mutex<Mint>,
    pub jwks: Mutex<Value>,
    pub jwks_fetches: AtomicUsize,
    pub refreshes: AtomicUsize,
    /// Every refresh token presented at the token endpoint, in order.
    pub refresh_tokens_presented: Mutex<Vec<String>>,
    pub refresh_fails: AtomicBool,
    /// Milliseconds the token endpoint waits before answering a refresh.
    pub refresh_delay_ms: std::sync::atomic::AtomicU64,
    pub deny: Mutex<Option<String>>,
    pending: Mutex<HashMap<String, Pending>>,
    /// `sub` of the identity logged in at the next `/authorize`.
    pub next_sub: Mutex<String>,
    /// The `sid` (provider session id) of the next ID tokens; `None`: `op-<sub>`, one
    /// provider session per user, kept across refreshes as a real provider does.
    pub next_sid: Mutex<Option<String>>,
    /// What `/userinfo` answers (404 when `None`), and the bearer tokens it was sent.
    pub userinfo: Mutex<Option<Value>>,
    pub userinfo_calls: Mutex<Vec<String>>,
    /// Every token sent to the revocation endpoint (RFC 7009).
    pub revoked: Mutex<Vec<String>>,
    /// Every `redirect_uri` sent to the token endpoint.
    pub token_redirect_uris: Mutex<Vec<String>>,
    /// While set, every request is accepted and never answered (a hung provider).
    pub hang: AtomicBool,
    /// Whether discovery advertises back-channel logout (with `sid`); default true.
    pub backchannel_logout: AtomicBool,
}

pub struct TestIdp {
    pub issuer: String,
    pub state: Arc<IdpState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestIdp {
    pub async fn start() -> TestIdp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let keys = Keys::new();
        let jwks = json!({"keys": [keys.rsa1_jwk.clone(), keys.ec_jwk.clone()]});
        let state = Arc::new(IdpState {
            issuer: Mutex::new(issuer.clone()),
            keys,
            mint: Mutex::new(Mint::default()),
            jwks: Mutex::new(jwks),
            jwks_fetches: AtomicUsize::new(0),
            refreshes: AtomicUsize::new(0),
            refresh_tokens_presented: Mutex::new(Vec::new()),
            refresh_fails: AtomicBool::new(false),
            refresh_delay_ms: std::sync::atomic::AtomicU64::new(0),
            deny: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            next_sub: Mutex::new("alice".into()),
            next_sid: Mutex::new(None),
            userinfo: Mutex::new(None),
            userinfo_calls: Mutex::new(Vec::new()),
            revoked: Mutex::new(Vec::new()),
            token_redirect_uris: Mutex::new(Vec::new()),
            hang: AtomicBool::new(false),
            backchannel_logout: AtomicBool::new(true),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks_doc))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .route("/revoke", post(revoke))
            .route("/logout", get(|| async { "logged out at the IdP" }))
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(&state),
                hang_when_asked,
            ))
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestIdp {
            issuer,
            state,
            task,
        }
    }

    pub fn set_mint(&self, mint: Mint) {
        *self.state.mint.lock().unwrap() = mint;
    }

    /// Changes the default claims of the next tokens.
    pub fn tweak(&self, f: impl Fn(&mut Value) + Send + Sync + 'static) {
        self.state.mint.lock().unwrap().tweak = Arc::new(f);
    }

    pub fn set_jwks(&self, keys: Vec<Value>) {
        *self.state.jwks.lock().unwrap() = json!({ "keys": keys });
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn refreshes(&self) -> usize {
        self.state.refreshes.load(Ordering::SeqCst)
    }
}

async fn hang_when_asked(
    State(st): State<Arc<IdpState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if st.hang.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    next.run(req).await
}

async fn userinfo(State(st): State<Arc<IdpState>>, headers: HeaderMap) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    st.userinfo_calls.lock().unwrap().push(auth);
    match st.userinfo.lock().unwrap().clone() {
        Some(v) => Json(v).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn revoke(
    State(st): State<Arc<IdpState>>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> StatusCode {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .map(str::to_string);
    if basic.as_deref()
        != Some(
            STANDARD
                .encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
                .as_str(),
        )
    {
        return StatusCode::UNAUTHORIZED;
    }
    if let Some(t) = f.get("token") {
        st.revoked.lock().unwrap().push(t.clone());
    }
    StatusCode::OK
}

async fn discovery(State(st): State<Arc<IdpState>>) -> Json<Value> {
    let i = st.issuer.lock().unwrap().clone();
    let base = i.trim_end_matches('/');
    let backchannel = st.backchannel_logout.load(Ordering::SeqCst);
    Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks"),
        "end_session_endpoint": format!("{base}/logout"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "revocation_endpoint": format!("{base}/revoke"),
        "code_challenge_methods_supported": ["S256"],
        "backchannel_logout_supported": backchannel,
        "backchannel_logout_session_supported": backchannel,
    }))
}

async fn jwks_doc(State(st): State<Arc<IdpState>>) -> Json<Value> {
    st.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    Json(st.jwks.lock().unwrap().clone())
}

async fn authorize(
    State(st): State<Arc<IdpState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
    let state = q.get("state").cloned().unwrap_or_default();
    let mut url = reqwest::Url::parse(&redirect).unwrap();
    if let Some(err) = st.deny.lock().unwrap().clone() {
        url.query_pairs_mut()
            .append_pair("error", &err)
            .append_pair(
                "error_description",
                "the user is not assigned to this application",
            )
            .append_pair("state", &state);
        return Redirect::to(url.as_str()).into_response();
    }
    assert_eq!(
        q.get("code_challenge_method").map(String::as_str),
        Some("S256"),
        "gatehouse must always use PKCE S256"
    );
    assert_eq!(q.get("client_id").map(String::as_str), Some(CLIENT_ID));
    let code = gatehouse::util::random_token(16);
    st.pending.lock().unwrap().insert(
        code.clone(),
        Pending {
            nonce: q.get("nonce").cloned(),
            challenge: q.get("code_challenge").cloned().unwrap_or_default(),
        },
    );
    url.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &state);
    Redirect::to(url.as_str()).into_response()
}

fn oauth_error(error: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": error, "error_description": "test IdP refused"})),
    )
        .into_response()
}

/// Mints a token response for `sub` with the current mint.
pub fn mint_response(st: &IdpState, nonce: Option<&str>) -> Value {
    let mint = st.mint.lock().unwrap().clone();
    let now = gatehouse::util::now_secs() as i64;
    let sub = st.next_sub.lock().unwrap().clone();
    let sid = st
        .next_sid
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| format!("op-{sub}"));
    let mut claims = json!({
        "iss": st.issuer.lock().unwrap().clone(), "sub": sub, "aud": CLIENT_ID, "sid": sid,
        "exp": now + mint.ttl, "iat": now, "email": format!("{sub}@example.test"),
        "email_verified": true,
        "preferred_username": sub, "groups": ["admins", "dev"],
    });
    if let Some(n) = nonce {
        claims["nonce"] = json!(n);
    }
    let access_token = format!("at-{}", gatehouse::util::random_token(8));
    if mint.at_hash {
        claims["at_hash"] = json!(gatehouse::oidc::verify::at_hash(
            jsonwebtoken::Algorithm::RS256,
            &access_token
        ));
    }
    (mint.tweak)(&mut claims);
    let mut body = json!({"access_token": access_token, "token_type": "Bearer", "expires_in": mint.ttl,
        "id_token": st.keys.sign(&mint, &claims)});
    if mint.refresh_token {
        body["refresh_token"] = json!(format!("rt-{}", gatehouse::util::random_token(8)));
    }
    (mint.body_tweak)(&mut body, nonce.is_none());
    body
}

async fn token(
    State(st): State<Arc<IdpState>>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .map(str::to_string);
    let expected = STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    if basic.as_deref() != Some(expected.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            st.token_redirect_uris
                .lock()
                .unwrap()
                .push(f.get("redirect_uri").cloned().unwrap_or_default());
            let Some(p) = f
                .get("code")
                .and_then(|c| st.pending.lock().unwrap().remove(c))
            else {
                return oauth_error("invalid_grant");
            };
            let verifier = f.get("code_verifier").cloned().unwrap_or_default();
            if gatehouse::oidc::token::pkce_challenge(&verifier) != p.challenge {
                return oauth_error("invalid_grant");
            }
            Json(mint_response(&st, p.nonce.as_deref())).into_response()
        }
        Some("refresh_token") => {
            st.refreshes.fetch_add(1, Ordering::SeqCst);
            st.refresh_tokens_presented
                .lock()
                .unwrap()
                .push(f.get("refresh_token").cloned().unwrap_or_default());
            let delay = st.refresh_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
            if st.refresh_fails.load(Ordering::SeqCst) {
                return oauth_error("invalid_grant");
            }
            Json(mint_response(&st, None)).into_response()
        }
        _ => oauth_error("unsupported_grant_type"),
    }
}
