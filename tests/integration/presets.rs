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
    // The preset maps the user from preferred_username.
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["kate"]);
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
    // The preset maps the user from sub (the entity ID), whatever the scopes add.
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["val"]);
    assert_eq!(seen(&echo, "x-forwarded-email"), vec!["val@example.test"]);
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
pub fn private_ca() -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
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

/// Signs `user` in with nothing but `provider = <name>` (and the issuer, client, secret and
/// cookie secret every configuration needs) against oidc-provider sending what that
/// provider sends (`--profile <name>`), and returns the headers the upstream got.
async fn defaults_only(name: &str, quirks: &[&str], user: &str) -> Option<serde_json::Value> {
    // `oidc` stands for any standard provider: oidc-provider's full default profile.
    let profile = if name == "oidc" { "default" } else { name };
    let mut all = vec!["--profile", profile];
    all.extend_from_slice(quirks);
    let s = stack_exactly(&all, &[("provider", name)]).await?;
    let page = login(&s, &Browser::new(), user).await;
    assert_eq!(page.status, 200, "{name} with its defaults: {page:?}");
    Some(page.json())
}

/// The identity headers the upstream got: user, email, groups, preferred username.
fn identity(echo: &serde_json::Value) -> [Vec<String>; 4] {
    [
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-group",
        "x-forwarded-preferred-username",
    ]
    .map(|h| seen(echo, h))
}

fn one(s: &str) -> Vec<String> {
    vec![s.to_string()]
}

#[tokio::test]
async fn vault_defaults_sign_in_with_scope_openid_and_the_subject() {
    let vault = ["--issuer-path", "/v1/identity/oidc/provider/default"];
    let Some(echo) = defaults_only("vault", &vault, "val").await else {
        return;
    };
    // Only sub, aud, iat, exp and nonce arrive: the user is the entity ID.
    let [user, email, groups, preferred] = identity(&echo);
    assert_eq!(user, one("val"));
    assert!(email.is_empty() && groups.is_empty() && preferred.is_empty());
    let token = &seen(&echo, "x-forwarded-id-token")[0];
    let claims = gatehouse::oidc::verify::payload(token).unwrap();
    assert!(claims.get("email").is_none(), "{claims}");
}

#[tokio::test]
async fn tsidp_defaults_trust_its_email_without_email_verified() {
    let Some(echo) = defaults_only("tsidp", &["--no-end-session"], "tom").await else {
        return;
    };
    let [user, email, groups, preferred] = identity(&echo);
    assert_eq!(user, one("tom@example.test"));
    assert_eq!(email, one("tom@example.test"));
    assert!(groups.is_empty(), "tsidp sends no groups: {groups:?}");
    assert_eq!(preferred, one("tom"));
}

#[tokio::test]
async fn authentik_defaults_map_the_username_and_drop_the_unverified_email() {
    let ak = ["--issuer-path", "/application/o/headlamp/"];
    let Some(echo) = defaults_only("authentik", &ak, "anna").await else {
        return;
    };
    let [user, email, groups, preferred] = identity(&echo);
    assert_eq!(user, one("anna"));
    assert!(email.is_empty(), "email_verified is false: {email:?}");
    assert_eq!(groups, one("admins,dev"));
    assert_eq!(preferred, one("anna"));
}

#[tokio::test]
async fn entra_defaults_map_preferred_username_and_pass_group_object_ids() {
    let Some(echo) = defaults_only("entra", &[], "erin").await else {
        return;
    };
    let [user, email, groups, _] = identity(&echo);
    assert_eq!(user, one("erin@example.test"));
    assert!(email.is_empty(), "Entra's email is unverified: {email:?}");
    let ids: Vec<&str> = groups[0].split(',').collect();
    assert_eq!(ids.len(), 2, "{groups:?}");
    assert!(
        ids.iter()
            .all(|g| g.len() == 36 && g.split('-').count() == 5),
        "{groups:?}"
    );
}

#[tokio::test]
async fn keycloak_defaults_map_the_username_and_merge_group_paths_and_realm_roles() {
    let kc = ["--issuer-path", "/realms/main"];
    let Some(echo) = defaults_only("keycloak", &kc, "kate").await else {
        return;
    };
    let [user, email, groups, preferred] = identity(&echo);
    // email_verified is false, as for a user an administrator created: the username is
    // the user, and the unverified email is not passed on.
    assert_eq!(user, one("kate"));
    assert!(email.is_empty(), "{email:?}");
    // The group mapper's full paths lose their slash; realm roles join them.
    assert_eq!(groups, one("admins,dev,realm-viewer"));
    assert_eq!(preferred, one("kate"));
}

#[tokio::test]
async fn dex_defaults_ask_for_groups_and_verified_emails() {
    let Some(echo) = defaults_only("dex", &[], "dan").await else {
        return;
    };
    let [user, email, groups, preferred] = identity(&echo);
    assert_eq!(user, one("dan@example.test"));
    assert_eq!(email, one("dan@example.test"));
    assert_eq!(groups, one("admins,dev"));
    assert_eq!(preferred, one("dan"));
}

#[tokio::test]
async fn google_defaults_sign_in_with_its_verified_email() {
    let Some(echo) = defaults_only("google", &[], "gus").await else {
        return;
    };
    let [user, email, groups, preferred] = identity(&echo);
    assert_eq!(user, one("gus@example.test"));
    assert_eq!(email, one("gus@example.test"));
    assert!(
        groups.is_empty() && preferred.is_empty(),
        "{groups:?} {preferred:?}"
    );
}

#[tokio::test]
async fn google_hosted_domain_admits_the_workspace_the_token_names_in_hd() {
    // The google profile sends hd = example.test, as Google does for a Workspace account.
    for (domain, status) in [("example.test", 200), ("example.com", 403)] {
        let settings = [("provider", "google"), ("hosted_domain", domain)];
        let Some(s) = stack_exactly(&["--profile", "google"], &settings).await else {
            return;
        };
        let page = login(&s, &Browser::new(), "gus").await;
        assert_eq!(page.status, status, "{domain}: {page:?}");
    }
}

#[tokio::test]
async fn google_accepts_its_issuer_without_the_scheme_and_no_other_preset_does() {
    let bare = ["--iss-without-scheme"];
    let Some(echo) = defaults_only("google", &bare, "gus").await else {
        return;
    };
    let token = &seen(&echo, "x-forwarded-id-token")[0];
    let iss = gatehouse::oidc::verify::payload(token).unwrap()["iss"].clone();
    assert!(
        iss.as_str().is_some_and(|i| i.starts_with("127.0.0.1:")),
        "{iss}"
    );
    assert_eq!(seen(&echo, "x-forwarded-user"), one("gus@example.test"));
    // The same provider, any other preset: `iss` is compared byte for byte.
    for name in ["oidc", "dex", "keycloak"] {
        let quirks = ["--profile", "google", "--iss-without-scheme"];
        let Some(s) = stack_exactly(&quirks, &[("provider", name)]).await else {
            return;
        };
        let page = login(&s, &Browser::new(), "gus").await;
        assert_eq!(page.status, 502, "{name}: {page:?}");
        assert!(
            page.body.contains("issuer is `127.0.0.1:"),
            "{name}: {}",
            page.body
        );
    }
}

#[tokio::test]
async fn oidc_defaults_sign_in_against_a_plain_provider() {
    let Some(echo) = defaults_only("oidc", &[], "olga").await else {
        return;
    };
    let [user, email, _, _] = identity(&echo);
    assert_eq!(user, one("olga@example.test"));
    assert_eq!(email, one("olga@example.test"));
}

#[tokio::test]
async fn presets_that_ask_for_offline_access_get_and_use_refresh_tokens() {
    // Authentik, Entra and Dex issue refresh tokens only for offline_access, which
    // their presets request; every request is "due", so a held refresh token is used.
    for name in ["authentik", "entra", "dex"] {
        let settings = [("provider", name), ("refresh_before_secs", "100000")];
        let Some(s) = stack_exactly(&["--profile", name], &settings).await else {
            return;
        };
        let b = Browser::new();
        assert_eq!(login(&s, &b, "rita").await.status, 200, "{name}");
        let again = b.get(&format!("{}/again", s.gh.url)).await;
        assert_eq!(again.status, 200, "{name}");
        assert!(
            again
                .set_cookies()
                .iter()
                .any(|c| c.starts_with("_gatehouse=")),
            "{name}: a refresh token came with offline_access and renewed the session"
        );
    }
}
