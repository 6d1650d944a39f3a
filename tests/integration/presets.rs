//! Each provider preset against the real `oidc-provider`, configured with that provider's
//! quirks (tests/interop/op.mjs options): issuer paths and Authentik's trailing slash,
//! Vault's missing refresh tokens, tsidp's single-use refresh tokens and missing
//! end-session endpoint, claims served only at userinfo, ES256 and EdDSA keys, extra
//! audiences, and a private CA. What the in-process IdP fakes instead (HS256, Entra
//! overage, string booleans) is in `providers.rs`.

use crate::support::peers::{op_form_login, skip_unless_available, NodeOp};
use crate::support::upstream::{seen, Upstream};
use crate::support::{check_online, config, start_on, Browser, Gatehouse, Resp};

struct Stack {
    op: NodeOp,
    _up: Upstream,
    gh: Gatehouse,
}

/// oidc-provider with `quirks`, an echo upstream, and gatehouse with `extra` settings
/// (scopes `openid,email,profile,groups` unless `extra` sets them).
async fn stack(quirks: &[&str], extra: &[(&'static str, &str)]) -> Option<Stack> {
    let mut all = vec![("scopes", "openid,email,profile,groups")];
    all.extend_from_slice(extra);
    stack_exactly(quirks, &all).await
}

/// Like [`stack`], with exactly `extra` (so a preset's scopes apply).
async fn stack_exactly(quirks: &[&str], extra: &[(&'static str, &str)]) -> Option<Stack> {
    if skip_unless_available(false) {
        return None;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let op = NodeOp::for_gatehouse_at(&base, quirks).await;
    let up = Upstream::start().await;
    let gh = start_on(listener, config(&up.url, &op.issuer, extra)).await;
    Some(Stack { op, _up: up, gh })
}

async fn login(s: &Stack, b: &Browser, user: &str) -> Resp {
    let start = format!("{}/app", s.gh.url);
    op_form_login(b, &start, user, "admins,dev", String::new).await
}

#[tokio::test]
async fn keycloak_realm_issuer_path() {
    let Some(s) = stack(
        &["--issuer-path", "/realms/main"],
        &[("provider", "keycloak")],
    )
    .await
    else {
        return;
    };
    assert!(s.op.issuer.ends_with("/realms/main"), "{}", s.op.issuer);
    let echo = login(&s, &Browser::new(), "kate").await.json();
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["kate@example.test"]);
    assert_eq!(seen(&echo, "x-forwarded-group"), vec!["admins,dev"]);
}

#[tokio::test]
async fn authentik_issuer_keeps_its_trailing_slash() {
    let Some(s) = stack(
        &["--issuer-path", "/application/o/headlamp/"],
        &[
            ("provider", "authentik"),
            ("scopes", "openid,email,profile,groups,offline_access"),
        ],
    )
    .await
    else {
        return;
    };
    assert!(s.op.issuer.ends_with("/application/o/headlamp/"));
    let echo = login(&s, &Browser::new(), "anna").await.json();
    // The preset maps the user from preferred_username.
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["anna"]);
    let token = &seen(&echo, "x-forwarded-id-token")[0];
    let iss = gatehouse::oidc::verify::payload(token).unwrap()["iss"].clone();
    assert_eq!(
        iss,
        serde_json::json!(s.op.issuer),
        "byte for byte, slash included"
    );
}

#[tokio::test]
async fn vault_without_refresh_tokens_serves_until_the_id_token_ends() {
    let Some(s) = stack(
        &[
            "--issuer-path",
            "/v1/identity/oidc/provider/default",
            "--no-refresh-token",
        ],
        &[
            ("provider", "vault"),
            ("scopes", "openid,email,profile,groups"),
            // Every request is "due": a session holding a refresh token would refresh.
            ("refresh_before_secs", "100000"),
        ],
    )
    .await
    else {
        return;
    };
    let b = Browser::new();
    let echo = login(&s, &b, "val").await.json();
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["val@example.test"]);
    // No refresh token: the session holds none and still serves until the ID token ends.
    let again = b.get(&format!("{}/again", s.gh.url)).await;
    assert_eq!(again.status, 200);
    assert!(
        again
            .set_cookies()
            .iter()
            .all(|c| !c.starts_with("_gatehouse")),
        "nothing to refresh: {:?}",
        again.set_cookies()
    );
}

#[tokio::test]
async fn tsidp_single_use_refresh_tokens_are_spent_once_and_sign_out_is_local() {
    let Some(s) = stack(
        &["--no-end-session", "--access-token-ttl", "300"],
        &[
            ("provider", "tsidp"),
            ("scopes", "openid,email,profile"),
            // Every request is "due": the concurrent ones below race for one refresh.
            ("refresh_before_secs", "100000"),
        ],
    )
    .await
    else {
        return;
    };
    let b = Browser::new();
    login(&s, &b, "tom").await;
    let cookie = b.cookie_header();
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (client, cookie) = (client.clone(), cookie.clone());
        let url = format!("{}/concurrent/{i}", s.gh.url);
        tasks.push(tokio::spawn(async move {
            client
                .get(url)
                .header("cookie", cookie)
                .header("accept", "application/json")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(
            t.await.unwrap(),
            200,
            "oidc-provider revokes the whole grant if a refresh token is used twice"
        );
    }
    let out = b
        .send(
            reqwest::Method::POST,
            &format!("{}/oauth2/sign_out", s.gh.url),
            &[("origin", s.gh.url.as_str())],
        )
        .await;
    assert_eq!(
        out.status, 200,
        "no end-session endpoint: a local sign-out page"
    );
    assert!(out.body.contains("signed out"), "{}", out.body);
}

#[tokio::test]
async fn claims_only_at_userinfo_reach_the_upstream() {
    let Some(s) = stack(&["--claims-in-userinfo-only"], &[]).await else {
        return;
    };
    let echo = login(&s, &Browser::new(), "uma").await.json();
    assert_eq!(seen(&echo, "x-forwarded-email"), vec!["uma@example.test"]);
    assert_eq!(seen(&echo, "x-forwarded-group"), vec!["admins,dev"]);
    let token = &seen(&echo, "x-forwarded-id-token")[0];
    let claims = gatehouse::oidc::verify::payload(token).unwrap();
    assert!(
        claims.get("email").is_none(),
        "the ID token itself has no email"
    );
}

#[tokio::test]
async fn a_userinfo_subject_that_differs_refuses_the_sign_in() {
    let Some(s) = stack(
        &["--claims-in-userinfo-only", "--userinfo-sub", "mallory"],
        &[],
    )
    .await
    else {
        return;
    };
    let page = login(&s, &Browser::new(), "uma").await;
    assert_eq!(page.status, 502, "{page:?}");
    assert!(page.body.contains("`mallory`"), "{}", page.body);
}

#[tokio::test]
async fn es256_and_eddsa_keys_verify_and_eddsa_is_flagged_for_the_api_server() {
    for alg in ["ES256", "EdDSA"] {
        let Some(s) = stack(&["--signing-alg", alg], &[]).await else {
            return;
        };
        let echo = login(&s, &Browser::new(), "eve").await.json();
        assert_eq!(
            seen(&echo, "x-forwarded-user"),
            vec!["eve@example.test"],
            "{alg}"
        );
        let (code, said) = check_online(&s.op.issuer, &[]).await;
        assert_eq!(code, Some(0), "{said}");
        let flagged = said.contains("warning: the provider signs ID tokens with EdDSA only");
        assert_eq!(flagged, alg == "EdDSA", "{alg}: {said}");
    }
}

#[tokio::test]
async fn check_online_names_scopes_and_refresh_tokens_the_provider_will_not_give() {
    let Some(s) = stack(&["--no-refresh-token"], &[]).await else {
        return;
    };
    let (code, said) = check_online(&s.op.issuer, &["--scopes", "openid,made-up-scope"]).await;
    assert_eq!(code, Some(0), "warnings only: {said}");
    assert!(
        said.contains("does not list the scope(s) made-up-scope"),
        "{said}"
    );
    assert!(
        said.contains("does not list the refresh_token grant"),
        "{said}"
    );
}

#[tokio::test]
async fn google_preset_asks_for_offline_access_and_checks_the_hosted_domain() {
    let Some(s) = stack(&[], &[("provider", "google")]).await else {
        return;
    };
    let first = Browser::new().get(&format!("{}/app", s.gh.url)).await;
    let authorize = first.location().unwrap();
    assert!(
        authorize.contains("access_type=offline") && authorize.contains("prompt=consent"),
        "{authorize}"
    );
    assert_eq!(login(&s, &Browser::new(), "gus").await.status, 200);
    // oidc-provider sends no hd claim: a Workspace-only configuration refuses it.
    let Some(s) = stack(
        &[],
        &[("provider", "google"), ("hosted_domain", "example.com")],
    )
    .await
    else {
        return;
    };
    let page = login(&s, &Browser::new(), "gus").await;
    assert_eq!(page.status, 403, "{page:?}");
    assert!(page.body.contains("hd=example.com"), "{}", page.body);
}

#[tokio::test]
async fn extra_audiences_need_trusted_audiences() {
    let Some(s) = stack(&["--extra-aud", "kubernetes"], &[]).await else {
        return;
    };
    let page = login(&s, &Browser::new(), "amy").await;
    assert_eq!(page.status, 502);
    assert!(page.body.contains("`kubernetes`") && page.body.contains("trusted_audiences"));
    let Some(s) = stack(
        &["--extra-aud", "kubernetes"],
        &[("trusted_audiences", "kubernetes")],
    )
    .await
    else {
        return;
    };
    assert_eq!(login(&s, &Browser::new(), "amy").await.status, 200);
}

/// A CA and a server certificate for 127.0.0.1, as PEM files in a fresh directory.
fn private_ca() -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let dir = std::env::temp_dir().join(format!(
        "gh-ca-{}-{}",
        std::process::id(),
        gatehouse::util::random_token(4)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "gatehouse test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
    let (ca_pem, cert_pem, key_pem) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca_pem, ca_cert.pem()).unwrap();
    std::fs::write(&cert_pem, leaf_cert.pem()).unwrap();
    std::fs::write(&key_pem, leaf_key.serialize_pem()).unwrap();
    (ca_pem, cert_pem, key_pem)
}

#[tokio::test]
async fn a_provider_behind_a_private_ca_needs_provider_ca_file() {
    let (ca, cert, key) = private_ca();
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let quirks = ["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    let ca_s = ca.display().to_string();
    let Some(s) = stack(&quirks, &[("provider_ca_file", &ca_s)]).await else {
        return;
    };
    assert!(s.op.issuer.starts_with("https://127.0.0.1:"));
    // The browser trusts the CA too (it talks to the provider's login page).
    let b = Browser::trusting(&std::fs::read(&ca).unwrap());
    let echo = login(&s, &b, "cara").await.json();
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["cara@example.test"]);

    // Without the CA: the check names the host and the setting; nothing is turned off.
    let (code, said) = check_online(&s.op.issuer, &[]).await;
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("127.0.0.1") && said.contains("provider_ca_file"),
        "{said}"
    );
    std::fs::remove_dir_all(ca.parent().unwrap()).ok();
}

#[tokio::test]
async fn entra_and_dex_presets_sign_in_with_their_defaults() {
    // A loopback stand-in for Entra: the preset's user claim is preferred_username.
    let Some(s) = stack(
        &[],
        &[
            ("provider", "entra"),
            ("scopes", "openid,email,profile,groups,offline_access"),
        ],
    )
    .await
    else {
        return;
    };
    let echo = login(&s, &Browser::new(), "erin").await.json();
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["erin"]);
    // Dex: groups and offline_access are requested, so groups arrive and refresh works.
    let dex = [("provider", "dex"), ("refresh_before_secs", "100000")];
    let Some(s) = stack_exactly(&[], &dex).await else {
        return;
    };
    let b = Browser::new();
    let echo = login(&s, &b, "dan").await.json();
    assert_eq!(seen(&echo, "x-forwarded-group"), vec!["admins,dev"]);
    let again = b.get(&format!("{}/again", s.gh.url)).await;
    assert!(
        again
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("_gatehouse=")),
        "offline_access gave a refresh token, and it was used"
    );
}
