//! The signed identity assertion end to end: an app behind gatehouse receives it after
//! sign-in and verifies it with an independent JWT library (node's `jose`,
//! `tests/interop/verify-assertion.mjs`) against the JWKS gatehouse serves; a client's
//! own copy of the header, in any spelling, never reaches the app (also through a skip
//! route, and with the assertion off); the forward-auth answer carries it for the
//! ingress to copy, and refuses a check that brings its own; a key rotation by reload
//! (new key first) signs with the new `kid` while the JWKS publishes both, and
//! `watch_config` notices the key file changing by itself; `check` describes it.

use crate::flow::{logged_in, world};
use crate::reload::{base, free_port, serve, sign_in, write};
use crate::support::idp::{self, TestIdp};
use crate::support::upstream::{seen, Upstream};
use crate::support::{Browser, Resp, COOKIE_SECRET};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub(crate) const ISSUER: &str = "https://gatehouse.example.test";

pub(crate) fn key_path(name: &str) -> String {
    format!(
        "{}/src/assertion/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn key_text(name: &str) -> String {
    std::fs::read_to_string(key_path(name)).unwrap()
}

/// Skips (developer run) or fails (CI) without node and jose.
fn skip_without_jose() -> bool {
    if crate::support::peers::skip_unless_available(false) {
        return true;
    }
    let jose = crate::support::peers::interop_dir().join("node_modules/jose");
    assert!(
        jose.exists(),
        "{} is missing: run `npm ci --prefix tests/interop`",
        jose.display()
    );
    false
}

/// What `jose` makes of `tokens`, verified against `jwks` for `audience`.
pub(crate) async fn jose_verify(jwks: &str, audience: &str, tokens: &[String]) -> Value {
    let (jwks, audience) = (jwks.to_string(), audience.to_string());
    let input = serde_json::to_vec(tokens).unwrap();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new("node")
            .arg(crate::support::peers::interop_dir().join("verify-assertion.mjs"))
            .args(["--jwks", &jwks, "--issuer", ISSUER, "--audience", &audience])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("run node verify-assertion.mjs");
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "verify-assertion.mjs: {text}");
        serde_json::from_str::<Value>(text.trim())
            .unwrap_or_else(|e| panic!("verify-assertion.mjs said {text:?}: {e}"))
    })
    .await
    .unwrap()
}

/// The one assertion the upstream saw in `echo`, and that it saw no other spelling.
fn assertion_seen(echo: &Value) -> Vec<String> {
    let names: Vec<&String> = echo["headers"].as_object().unwrap().keys().collect();
    let spelt: Vec<&&String> = names
        .iter()
        .filter(|n| n.to_ascii_lowercase().replace(['_', '.'], "-") == "x-gatehouse-assertion")
        .filter(|n| n.as_str() != "x-gatehouse-assertion")
        .collect();
    assert!(
        spelt.is_empty(),
        "another spelling reached the app: {spelt:?}"
    );
    seen(echo, "x-gatehouse-assertion")
}

/// Forged copies a client might send, in every spelling an app's stack may fold.
const FORGED: &[(&str, &str)] = &[
    (
        "X-Gatehouse-Assertion",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0.",
    ),
    ("x-gatehouse-assertion", "forged-2"),
    ("X_Gatehouse_Assertion", "forged-3"),
    ("X.GATEHOUSE.ASSERTION", "forged-4"),
];

fn header(r: &Resp, name: &str) -> Option<String> {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_gets_an_assertion_jose_verifies_against_the_jwks_and_never_a_forged_one() {
    if skip_without_jose() {
        return;
    }
    let key = key_path("p256.pem");
    let (w, b) = logged_in(&[
        ("assertion_signing_key_file", &key),
        ("assertion_issuer", ISSUER),
        ("skip_auth_routes", "/public/**"),
    ])
    .await;
    let r = b
        .send(Method::GET, &format!("{}/app", w.gh.url), FORGED)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let tokens = assertion_seen(&r.json());
    assert_eq!(tokens.len(), 1, "exactly gatehouse's own: {tokens:?}");
    assert!(!tokens[0].starts_with("forged") && tokens[0] != FORGED[0].1);
    // The same session and host: the cached assertion, not a new signature.
    let again = assertion_seen(&b.get(&format!("{}/other", w.gh.url)).await.json());
    assert_eq!(again, tokens);

    let jwks = format!("{}/.well-known/gatehouse/jwks.json", w.gh.url);
    let verdict = jose_verify(&jwks, "127.0.0.1", &tokens).await;
    let result = &verdict["results"][0];
    assert_eq!(result["ok"], true, "{verdict}");
    let (h, p) = (&result["header"], &result["payload"]);
    assert_eq!(h["alg"], "ES256");
    assert_eq!(h["typ"], "JWT");
    assert_eq!(p["iss"], ISSUER);
    assert_eq!(
        p["aud"], "127.0.0.1",
        "the request's host, without its port"
    );
    assert_eq!(p["sub"], "alice");
    assert_eq!(p["email"], "alice@example.test");
    assert_eq!(p["groups"], json!(["admins", "dev"]));
    let (iat, exp) = (p["iat"].as_u64().unwrap(), p["exp"].as_u64().unwrap());
    assert_eq!(exp - iat, 300);
    // jose's own RFC 7638 thumbprint of the published key is its kid.
    let tp = &verdict["thumbprints"][0];
    assert_eq!(tp["kid"], tp["thumbprint"], "{verdict}");
    assert_eq!(h["kid"], tp["kid"]);
    // Another audience, or a forged token, is refused by the app's verifier.
    let other = jose_verify(&jwks, "headlamp.example.test", &tokens).await;
    assert_eq!(other["results"][0]["ok"], false, "{other}");
    let forged: Vec<String> = FORGED.iter().map(|(_, v)| v.to_string()).collect();
    let forged = jose_verify(&jwks, "127.0.0.1", &forged).await;
    assert!(
        forged["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["ok"] == false),
        "{forged}"
    );

    // A skip route carries no assertion, and none of the client's either.
    let public = b
        .send(Method::GET, &format!("{}/public/x", w.gh.url), FORGED)
        .await;
    assert_eq!(public.status, 200, "{public:?}");
    assert!(assertion_seen(&public.json()).is_empty(), "{public:?}");
    let anonymous = Browser::new()
        .send(Method::GET, &format!("{}/public/x", w.gh.url), FORGED)
        .await;
    assert!(
        assertion_seen(&anonymous.json()).is_empty(),
        "{anonymous:?}"
    );
}

#[tokio::test]
async fn with_the_assertion_off_a_forged_copy_is_still_removed_and_the_jwks_says_why() {
    let (w, b) = logged_in(&[("skip_auth_routes", "/public/**")]).await;
    for path in ["/app", "/public/x"] {
        let r = b
            .send(Method::GET, &format!("{}{path}", w.gh.url), FORGED)
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(assertion_seen(&r.json()).is_empty(), "{path}: {r:?}");
    }
    let r = b
        .send(
            Method::GET,
            &format!("{}/.well-known/gatehouse/jwks.json", w.gh.url),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    let body = r.json();
    assert_eq!(body["error"], "assertion_off", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("assertion_signing_key_file"),
        "{body}"
    );
    assert!(body.get("headers").is_none(), "never the upstream's echo");
}

#[tokio::test]
async fn the_jwks_is_served_on_both_listeners_cacheable_and_never_proxied() {
    let key = key_path("rsa2048-pkcs1.pem");
    let w = world(&[
        ("assertion_signing_key_file", &key),
        ("assertion_issuer", ISSUER),
        ("auth_listen", "127.0.0.1:0"),
    ])
    .await;
    for base in [w.gh.url.clone(), w.gh.auth_url.clone().unwrap()] {
        let r = Browser::new()
            .get(&format!("{base}/.well-known/gatehouse/jwks.json"))
            .await;
        assert_eq!(r.status, 200, "{base}: {r:?}");
        assert_eq!(
            header(&r, "cache-control").as_deref(),
            Some("public, max-age=300")
        );
        assert_eq!(
            header(&r, "content-type").as_deref(),
            Some("application/jwk-set+json")
        );
        let jwks = r.json();
        let k = &jwks["keys"][0];
        assert_eq!(
            (&k["kty"], &k["alg"], &k["use"]),
            (&json!("RSA"), &json!("RS256"), &json!("sig"))
        );
        assert!(k.get("d").is_none() && k.get("p").is_none(), "{jwks}");
        assert!(jwks.get("headers").is_none(), "never the upstream's echo");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_forward_auth_answer_carries_the_assertion_for_the_original_host() {
    if skip_without_jose() {
        return;
    }
    let key = key_path("ed25519.pem");
    let (w, b) = logged_in(&[
        ("assertion_signing_key_file", &key),
        ("assertion_issuer", ISSUER),
        ("assertion_groups", "dev,ops"),
        ("trusted_proxies", "127.0.0.1/32"),
        ("forward_auth_client", "nginx"),
        ("auth_listen", "127.0.0.1:0"),
    ])
    .await;
    let ingress = [
        ("x-forwarded-host", "Headlamp.Example.Test:8443"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-uri", "/c/main"),
        ("x-forwarded-method", "GET"),
    ];
    let r = b
        .send(
            Method::GET,
            &format!("{}/oauth2/auth", w.gh.auth_url.clone().unwrap()),
            &ingress,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let tokens = vec![header(&r, "x-gatehouse-assertion").expect("the answer carries it")];
    // On the public listener, like the ID token, it is withheld: a page script could
    // fetch it there and present it to the app from elsewhere.
    let r = b
        .send(Method::GET, &format!("{}/oauth2/auth", w.gh.url), &ingress)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(header(&r, "x-gatehouse-assertion").is_none(), "{r:?}");
    let jwks = format!(
        "{}/.well-known/gatehouse/jwks.json",
        w.gh.auth_url.clone().unwrap()
    );
    let verdict = jose_verify(&jwks, "headlamp.example.test", &tokens).await;
    for result in verdict["results"].as_array().unwrap() {
        assert_eq!(result["ok"], true, "{verdict}");
        assert_eq!(result["header"]["alg"], "EdDSA");
        assert_eq!(result["payload"]["groups"], json!(["dev"]), "filtered");
    }
    // A check that brings its own copy, in any spelling, is refused: the ingress would
    // hand it to the app.
    for (name, value) in FORGED {
        let mut with = ingress.to_vec();
        with.push((name, value));
        let r = b
            .send(
                Method::GET,
                &format!("{}/oauth2/auth", w.gh.auth_url.clone().unwrap()),
                &with,
            )
            .await;
        assert_eq!(r.status, 400, "{name}: {r:?}");
        assert!(header(&r, "x-gatehouse-assertion").is_none());
    }
}

/// `check` says whether the assertion is on, who signs and what is published, never a
/// key; and lists a bad key file's problems with the configuration's others.
#[test]
fn check_describes_the_assertion_and_lists_a_bad_key_files_problems() {
    let check = |key: &str, extra: &[(&str, &str)]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("GATEHOUSE_")) {
            c.env_remove(k);
        }
        c.arg("check")
            .env("GATEHOUSE_ISSUER_URL", "https://sso.example.com")
            .env("GATEHOUSE_CLIENT_ID", "c")
            .env("GATEHOUSE_CLIENT_SECRET", "s")
            .env("GATEHOUSE_COOKIE_SECRET", COOKIE_SECRET)
            .env("GATEHOUSE_UPSTREAM", "http://127.0.0.1:9");
        if !key.is_empty() {
            c.env("GATEHOUSE_ASSERTION_SIGNING_KEY_FILE", key_path(key));
        }
        for (k, v) in extra {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = check("", &[]);
    assert!(ok, "{text}");
    assert!(
        text.contains("identity assertion (x-gatehouse-assertion): off"),
        "{text}"
    );
    let (ok, text) = check(
        "p256.pem",
        &[
            ("GATEHOUSE_ASSERTION_ISSUER", ISSUER),
            ("GATEHOUSE_ASSERTION_GROUPS", "Domain Admins,ops"),
        ],
    );
    assert!(ok, "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("identity assertion"))
        .unwrap();
    for needle in [
        "on: iss `https://gatehouse.example.test`",
        "aud the request's host",
        "lifetime 300 s",
        "groups only [\"Domain Admins\", \"ops\"]",
        "signs with the ES256 key ",
        "publishes 1 key(s) at /.well-known/gatehouse/jwks.json",
    ] {
        assert!(line.contains(needle), "{needle:?} not in {line}");
    }
    let private = key_text("p256.pem");
    let body = private.lines().nth(1).unwrap();
    assert!(!text.contains(body), "a key was printed: {text}");
    // No issuer, and a weak key: both named, with the other problems.
    let (ok, text) = check("rsa1024.pem", &[("GATEHOUSE_CLIENT_ID", "")]);
    assert!(!ok);
    for needle in [
        "weak RSA key",
        "set assertion_issuer",
        "client_id is required",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
}

/// The assertion the upstream got for `b` at `url` (one request).
async fn assertion_at(b: &Browser, url: &str) -> String {
    let r = b.send(Method::GET, url, &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let mut seen = assertion_seen(&r.json());
    assert_eq!(seen.len(), 1, "{r:?}");
    seen.remove(0)
}

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_by_reload_signs_with_the_new_kid_while_the_jwks_publishes_both() {
    if skip_without_jose() {
        return;
    }
    let (idp, upstream) = (TestIdp::start().await, Upstream::start().await);
    let port = free_port();
    let text = format!(
        "{}client_secret = \"{}\"\ncookie_secret = \"{COOKIE_SECRET}\"\nassertion_signing_key_file = \"keys.pem\"\nassertion_issuer = \"{ISSUER}\"\nassertion_audience = \"app\"\nwatch_config = true\n",
        base(&idp, &upstream, port),
        idp::CLIENT_SECRET
    );
    let gh = serve(&text, port, &[("keys.pem", &key_text("p256.pem"))]).await;
    let b = sign_in(&idp, &gh.url, "alice").await;
    let old = assertion_at(&b, &format!("{}/app", gh.url)).await;
    let jwks_url = format!("{}/.well-known/gatehouse/jwks.json", gh.url);

    // The new key first: it signs from the reload on; the old one is still published.
    let keys = gh.config().parent().unwrap().join("keys.pem");
    write(
        &keys,
        &[key_text("p256-second.pem"), key_text("p256.pem")].concat(),
    );
    gh.hangup();
    gh.logged("configuration reloaded", 1).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let new = loop {
        let token = assertion_at(&b, &format!("{}/app", gh.url)).await;
        if kid_of(&token) != kid_of(&old) {
            break token;
        }
        assert!(Instant::now() < deadline, "the new key never signed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let jwks = Browser::new().get(&jwks_url).await.json();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [kid_of(&new), kid_of(&old)], "{jwks}");
    // An app verifies both: one signed before the rotation, one after.
    let verdict = jose_verify(&jwks_url, "app", &[old.clone(), new.clone()]).await;
    for r in verdict["results"].as_array().unwrap() {
        assert_eq!(r["ok"], true, "{verdict}");
    }

    // watch_config notices the key file alone changing (no signal): a broken one is
    // refused with its reason, and the running keys stay.
    write(&keys, &key_text("rsa1024.pem"));
    gh.logged("weak RSA key", 1).await;
    assert_eq!(
        kid_of(&assertion_at(&b, &format!("{}/app", gh.url)).await),
        kid_of(&new)
    );
}
