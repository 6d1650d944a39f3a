//! The binary as a user runs it: `check`, `secret`, `serve` refusing bad configuration,
//! and `demo` logging a user in through the embedded development IdP.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// `gatehouse check --config FILE` with the two secrets in the environment.
fn check_file(file: &std::path::Path) -> std::process::Output {
    check_file_with(file, &[])
}

fn gatehouse() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    for (k, _) in std::env::vars() {
        if k.starts_with("GATEHOUSE_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn check_lists_every_problem_at_once() {
    let dir = std::env::temp_dir().join(format!("gatehouse-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "issuer_url = \"http://sso.example.com\"\ncookie_secret = \"short\"\nheader_user = \"bad header\"\nskip_auth_routes = [\"healthz\"]\nallowed_email_domains = [\"@x\"]\n").unwrap();
    let out = gatehouse()
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "client_id is required",
        "the path must start with /",
        "`@x` is not a domain",
        "only on loopback",
        "gatehouse secret",
        "not a valid header name",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    let typo = dir.join("typo.toml");
    std::fs::write(&typo, "issuer-url = \"x\"\n").unwrap();
    let out = gatehouse()
        .args(["check", "--config"])
        .arg(&typo)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `issuer_url`"));
}

#[test]
fn check_accepts_a_good_configuration_from_env_and_flags() {
    let secret = String::from_utf8(gatehouse().arg("secret").output().unwrap().stdout).unwrap();
    let out = gatehouse()
        .args([
            "check",
            "--upstream",
            "http://127.0.0.1:4466",
            "--client-id",
            "headlamp",
            "--client-secret",
            "s",
        ])
        .env(
            "GATEHOUSE_ISSUER_URL",
            "https://sso.example.com/realms/main",
        )
        .env("GATEHOUSE_COOKIE_SECRET", secret.trim())
        .env("GATEHOUSE_LISTEN", "0.0.0.0:4180")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("0.0.0.0:4180 -> http://127.0.0.1:4466/"));
}

#[test]
fn secret_prints_fresh_strong_secrets() {
    let a = String::from_utf8(gatehouse().arg("secret").output().unwrap().stdout).unwrap();
    let b = String::from_utf8(gatehouse().arg("secret").output().unwrap().stdout).unwrap();
    assert_ne!(a, b);
    assert_eq!(a.trim().len(), 43, "32 bytes, base64url");
}

#[test]
fn serve_refuses_to_start_without_a_cookie_secret() {
    let out = gatehouse()
        .args([
            "serve",
            "--upstream",
            "http://127.0.0.1:1",
            "--issuer-url",
            "https://sso.example.com",
            "--client-id",
            "c",
            "--client-secret",
            "s",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gatehouse secret"));
}

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `gatehouse demo` with `args` (plus `--listen 127.0.0.1:0`) and returns it
/// with the lines it printed before "Open ...", once gatehouse answers.
async fn start_demo(args: &[&str]) -> (Killed, Vec<String>) {
    let mut child = gatehouse()
        .args(["demo", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = Killed(child);
    let lines: Vec<String> = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take_while(|l| !l.starts_with("Open "))
            .collect()
    })
    .await
    .unwrap();
    let url = printed(&lines, "gatehouse:");
    crate::support::wait_until_ok(&format!("{url}readyz")).await;
    (guard, lines)
}

/// The value the demo printed after `label` (e.g. "gatehouse:").
fn printed(lines: &[String], label: &str) -> String {
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label} line in {lines:?}"))
        .trim()
        .to_string()
}

#[tokio::test]
async fn demo_logs_a_user_in_through_the_embedded_idp() {
    let (_guard, lines) = start_demo(&["--group", "platform"]).await;
    assert!(lines[0].contains("DEVELOPMENT ONLY"), "{lines:?}");
    let url = printed(&lines, "gatehouse:");
    let b = crate::support::Browser::new();
    let start = b.get(&url).await;
    assert_eq!(start.status, 302);
    let authorize = start.location().unwrap();
    let form = b.get(&authorize).await;
    assert!(
        form.body.contains("DEVELOPMENT ONLY") && form.body.contains("platform"),
        "{}",
        form.body
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let posted = client
        .post(&authorize)
        .form(&[("username", "dana"), ("groups", "platform,ops")])
        .send()
        .await
        .unwrap();
    let callback = posted
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let (page, _) = b.follow(&callback).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Hello, dana@example.test"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("platform,ops"),
        "groups shown by the whoami upstream"
    );
}

/// One authorization-code round at the demo's IdP as `client`: the code its redirect
/// URI receives, and the PKCE verifier that goes with it.
async fn code_for(
    http: &reqwest::Client,
    idp: &str,
    client: (&str, &str),
    user: &str,
) -> (String, String) {
    let verifier = gatehouse::util::random_token(32);
    let challenge = gatehouse::oidc::token::pkce_challenge(&verifier);
    let query = [
        ("client_id", client.0),
        ("redirect_uri", client.1),
        ("response_type", "code"),
        ("state", "st"),
        ("nonce", "n-1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let back = http
        .post(format!("{idp}/authorize"))
        .query(&query)
        .form(&[("username", user), ("groups", "ops")])
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 303, "{:?}", back.text().await);
    let location = url::Url::parse(back.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(
        location.as_str().split('?').next(),
        Some(client.1),
        "the code goes to this client's own redirect URI"
    );
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    (code, verifier)
}

async fn token_call<F: serde::Serialize + ?Sized>(
    http: &reqwest::Client,
    idp: &str,
    who: (&str, &str),
    form: &F,
) -> (u16, serde_json::Value) {
    let r = http
        .post(format!("{idp}/token"))
        .basic_auth(who.0, Some(who.1))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn demo_extra_clients_sign_in_at_the_same_idp_and_cannot_use_each_others_grants() {
    let a = ("apache", "secret-a", "http://127.0.0.1:9/oauth2/callback");
    let b = ("other", "secret-b", "http://localhost:10/cb");
    let (_guard, lines) = start_demo(&[
        &format!("--extra-client={}:{}:{}", a.0, a.1, a.2),
        &format!("--extra-client={}:{}:{}", b.0, b.1, b.2),
    ])
    .await;
    let idp = printed(&lines, "identity provider:");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("extra client: apache -> http://127.0.0.1:9/oauth2/callback")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("secret-")),
        "no secret printed: {lines:?}"
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // A's code and verifier, redeemed by A: an ID token for A, signed by the IdP's key.
    let (code, verifier) = code_for(&http, &idp, (a.0, a.2), "erin").await;
    let exchange = |code: String, verifier: String, redirect: &'static str| {
        [
            ("grant_type", "authorization_code".to_string()),
            ("code", code),
            ("code_verifier", verifier),
            ("redirect_uri", redirect.to_string()),
        ]
    };
    let form = exchange(code, verifier, a.2);
    let (status, tokens) = token_call(&http, &idp, (a.0, a.1), &form).await;
    assert_eq!(status, 200, "{tokens}");
    let jwks = crate::support::Browser::new()
        .get(&format!("{idp}/jwks"))
        .await
        .json();
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[a.0]);
    v.set_issuer(&[idp.as_str()]);
    let claims =
        jsonwebtoken::decode::<serde_json::Value>(tokens["id_token"].as_str().unwrap(), &key, &v)
            .unwrap()
            .claims;
    assert_eq!(claims["sub"], "erin");
    assert_eq!(claims["nonce"], "n-1");
    assert_eq!(claims["groups"], serde_json::json!(["ops"]));

    // A's refresh token is refused to B (and burnt, as a code is); A with a wrong
    // secret is refused too.
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
    ];
    let (status, err) = token_call(&http, &idp, (b.0, b.1), &form).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, err) = token_call(&http, &idp, (a.0, "wrong"), &form).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("invalid_client"))
    );

    // A's code presented by B is refused, and burnt: A cannot use it afterwards either.
    let (code, verifier) = code_for(&http, &idp, (a.0, a.2), "erin").await;
    let form = exchange(code, verifier, a.2);
    let (status, err) = token_call(&http, &idp, (b.0, b.1), &form).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant")),
        "{err}"
    );
    let (status, _) = token_call(&http, &idp, (a.0, a.1), &form).await;
    assert_eq!(status, 400);

    // B's own flow works; B cannot ask for a code sent to A's redirect URI.
    let (code, verifier) = code_for(&http, &idp, (b.0, b.2), "finn").await;
    let form = exchange(code, verifier, b.2);
    let (status, tokens) = token_call(&http, &idp, (b.0, b.1), &form).await;
    assert_eq!(status, 200, "{tokens}");
    let wrong = http
        .get(format!("{idp}/authorize"))
        .query(&[
            ("client_id", b.0),
            ("redirect_uri", a.2),
            ("response_type", "code"),
            ("code_challenge", "x"),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("not the one registered for this client"));
}

#[test]
fn demo_refuses_bad_extra_clients_naming_each_and_never_the_secret() {
    let out = gatehouse()
        .args(["demo", "--listen", "127.0.0.1:0"])
        .args([
            "--extra-client=a:topsecret:https://127.0.0.1/cb",
            "--extra-client=gatehouse-demo:topsecret:http://127.0.0.1/cb",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "--extra-client a: the redirect URI `https://127.0.0.1/cb` must be http:// on loopback"
        ) && err.contains("--extra-client gatehouse-demo: that client id is taken")
            && !err.contains("topsecret"),
        "{err}"
    );
}

#[test]
fn the_example_configuration_and_every_documented_value_in_it_are_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/gatehouse.example.toml");
    let text = std::fs::read_to_string(example).unwrap();
    // Uncomment every `# key = value` example, except those naming files on an admin's
    // machine or excluding each other.
    let skip = [
        "client_secret_file",
        "cookie_secret_file",
        "allowed_emails_file",
        "provider_ca_file",
        "upstream_ca_file",
        "upstream_client_cert_file",
        "upstream_client_key_file",
        "assertion_signing_key_file",
        "client_secret",
        "cookie_secret",
        // The redis store: one of three ways to reach it, and files of the admin's.
        "session_store",
        "redis_url",
        "redis_sentinel_master",
        "redis_sentinel_addrs",
        "redis_cluster_nodes",
        "redis_ca_file",
        "redis_password_file",
        // TLS: files of the admin's; the redirect port needs them.
        "tls_cert_file",
        "tls_key_file",
        "http_redirect_listen",
    ];
    let mut seen = std::collections::HashSet::new();
    let all: String = text
        .lines()
        .map(|l| {
            let Some(rest) = l.strip_prefix("# ") else {
                return l.to_string();
            };
            let key = rest.split(" = ").next().unwrap_or("");
            let is_setting = rest.contains(" = ")
                && !key.is_empty()
                && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            if is_setting && !skip.contains(&key) && seen.insert(key.to_string()) {
                rest.to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = std::env::temp_dir().join(format!("gh-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let full = dir.join("all.toml");
    std::fs::write(&full, &all).unwrap();
    for file in [std::path::Path::new(example), full.as_path()] {
        let out = check_file(file);
        assert!(
            out.status.success(),
            "{}: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(seen.contains("allowed_groups") && seen.contains("forward_auth_redirect"));
    let out = gatehouse()
        .args(["check", "--config"])
        .arg(&full)
        .args(["--bearer-tokens", "--client-secret", "s"])
        .env(
            "GATEHOUSE_COOKIE_SECRET",
            "DbhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk",
        )
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("access: allowed_groups [\"platform-admins\", \"developers\"]")
            && said.contains("bearer tokens accepted"),
        "check says who may enter: {said}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn check_prints_what_a_provider_preset_chose_and_refuses_its_pitfalls() {
    let base = |c: &mut Command| {
        c.env("GATEHOUSE_CLIENT_ID", "headlamp")
            .env("GATEHOUSE_CLIENT_SECRET", "s")
            .env(
                "GATEHOUSE_COOKIE_SECRET",
                "DbhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk",
            );
    };
    let mut c = gatehouse();
    base(&mut c);
    let out = c
        .args(["check", "--provider", "entra", "--tenant-id", "t-123"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    for needle in [
        "provider: entra",
        "preset default: issuer_url = https://login.microsoftonline.com/t-123/v2.0",
        "preset default: user_claim = preferred_username",
        "overage",
    ] {
        assert!(said.contains(needle), "missing {needle:?} in:\n{said}");
    }
    // Overridable: the user's scopes win over the preset's.
    let mut c = gatehouse();
    base(&mut c);
    let out = c
        .args([
            "check",
            "--provider",
            "dex",
            "--issuer-url",
            "https://dex.example.com",
        ])
        .args(["--scopes", "openid,email"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!said.contains("preset default: scopes"), "{said}");
    for (args, needle) in [
        (
            vec![
                "--provider",
                "tsidp",
                "--issuer-url",
                "https://idp.tail1.ts.net",
                "--scopes",
                "openid,groups",
            ],
            "invalid_scope",
        ),
        (
            vec![
                "--provider",
                "vault",
                "--issuer-url",
                "https://vault.example.com/v1/identity/oidc",
            ],
            "invalid child issuer",
        ),
        (
            vec![
                "--provider",
                "authentik",
                "--issuer-url",
                "https://ak.example.com/application/o/headlamp",
            ],
            "WITH the trailing slash",
        ),
        (vec!["--provider", "entra"], "tenant_id is required"),
        (
            vec![
                "--provider",
                "okta",
                "--issuer-url",
                "https://x.example.com",
            ],
            "is not one of oidc, tsidp",
        ),
    ] {
        let mut c = gatehouse();
        base(&mut c);
        let out = c.arg("check").args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: missing {needle:?} in:\n{err}"
        );
    }
}

#[test]
fn every_provider_example_passes_check() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/providers");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().path().join("gatehouse.toml");
        if !file.exists() {
            continue;
        }
        let out = check_file(&file);
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        checked.push(file);
    }
    assert!(checked.len() >= 8, "{checked:?}");
}

/// `check` prints every list as it read it, each item quoted, so `Domain Admins` is
/// plainly one group; a space in a list whose items hold none is refused with the fix,
/// beside the other problems of the same run.
#[test]
fn check_shows_each_list_as_read_and_refuses_spaces_with_the_fix() {
    let dir = std::env::temp_dir().join(format!("gatehouse-lists-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("lists.toml");
    std::fs::write(
        &file,
        "issuer_url = \"https://sso.example.com\"\nclient_id = \"headlamp\"\nallowed_groups = \"Domain Admins\"\nallowed_email_domains = [\"example.com\", \"example.org\"]\n",
    )
    .unwrap();
    let out = check_file(&file);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        format!(
            "  allowed_groups: [\"Domain Admins\"] (from {})",
            file.display()
        ),
        format!(
            "  allowed_email_domains: [\"example.com\", \"example.org\"] (from {})",
            file.display()
        ),
        "  scopes: [\"openid\", \"email\", \"profile\"] (default)".to_string(),
        "  cookie_secret: 1 item(s), not shown (from env GATEHOUSE_COOKIE_SECRET)".to_string(),
        "access: allowed_groups [\"Domain Admins\"]".to_string(),
    ] {
        assert!(said.contains(&needle), "missing {needle:?} in:\n{said}");
    }
    assert!(!said.contains("DbhHMlgj"), "{said}");

    let out = check_file_with(&file, &["--allowed-groups", "Platform Team, ops"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(
            "  allowed_groups: [\"Platform Team\", \"ops\"] (from flag --allowed-groups)"
        ),
        "{said}"
    );

    let out = check_file_with(
        &file,
        &[
            "--scopes",
            "openid email profile",
            "--allowed-emails",
            "a@x.org b@y.org",
            "--listen",
            "nowhere",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "scopes (from flag --scopes): \"openid email profile\" contains spaces; separate items with commas: openid,email,profile",
        "allowed_emails (from flag --allowed-emails): \"a@x.org b@y.org\" contains spaces; separate items with commas: a@x.org,b@y.org",
        "`nowhere` is not an address",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `check_file` with more flags.
fn check_file_with(file: &std::path::Path, flags: &[&str]) -> std::process::Output {
    gatehouse()
        .args(["check", "--config"])
        .arg(file)
        .args(flags)
        .env("GATEHOUSE_CLIENT_SECRET", "s")
        .env(
            "GATEHOUSE_COOKIE_SECRET",
            "DbhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk",
        )
        .output()
        .unwrap()
}

/// `forward_auth_client` and `auth_listen`: `check` says which headers describe the
/// original request and where the ID token goes; a bad value, or an auth listener on
/// the main address, is refused with the rest; naming no ingress with skip routes, or
/// no auth listener in auth-only mode, is a warning.
#[test]
fn check_explains_forward_auth_trust_and_refuses_its_mistakes() {
    let dir = std::env::temp_dir().join(format!("gh-fa-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("g.toml");
    std::fs::write(
        &file,
        "issuer_url = \"https://sso.example.com\"\nclient_id = \"c\"\nlisten = \"0.0.0.0:4180\"\n\
         trusted_proxies = \"10.0.0.0/8\"\nskip_auth_routes = \"GET=/public/**\"\n",
    )
    .unwrap();
    let out = check_file_with(&file, &[]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("warning: forward_auth_client is auto"),
        "{said}"
    );
    assert!(said.contains("warning: auth_listen is not set"), "{said}");
    assert!(said.contains("forward auth: client auto"), "{said}");
    let out = check_file_with(
        &file,
        &[
            "--forward-auth-client",
            "ingress-nginx",
            "--auth-listen",
            "0.0.0.0:4181",
        ],
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("forward auth: client ingress-nginx (X-Original-URL and X-Original-Method only); the ID token only in answers on auth_listen 0.0.0.0:4181"),
        "{said}"
    );
    assert!(!said.contains("warning: forward_auth_client"), "{said}");
    let out = check_file_with(
        &file,
        &[
            "--forward-auth-client",
            "haproxy",
            "--auth-listen",
            "0.0.0.0:4180",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(
        err.contains("`haproxy` is not one of auto, nginx, ingress-nginx, traefik, caddy, envoy"),
        "{err}"
    );
    assert!(
        err.contains("auth_listen: 0.0.0.0:4180 is also `listen`"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Number settings have upper bounds, stated in the refusal: `check` (and so `serve`)
/// refuses a duration a clock cannot hold (`u64::MAX` seconds used to pass `check`, then
/// panic `serve` on SIGTERM or a connection on a slow request body), from a flag, a
/// variable or the file, and accepts the bound itself.
#[test]
fn check_refuses_numbers_past_their_bounds_naming_the_bound() {
    let dir = std::env::temp_dir().join(format!("gatehouse-bounds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bounds.toml");
    std::fs::write(
        &file,
        "issuer_url = \"https://sso.example.com\"\nclient_id = \"headlamp\"\nupstream = \"http://127.0.0.1:9\"\nsession_lifetime_secs = 31536001\n",
    )
    .unwrap();
    let out = check_file_with(
        &file,
        &[
            "--shutdown-grace-secs",
            "18446744073709551615",
            "--max-connections",
            "18446744073709551615",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "shutdown_grace_secs (from flag --shutdown-grace-secs): 18446744073709551615 is too large: at most 86400 (one day)".to_string(),
        "max_connections (from flag --max-connections): 18446744073709551615 is too large: at most 1048576".to_string(),
        format!("session_lifetime_secs (from {}): 31536001 is too large: at most 31536000 (one year)", file.display()),
    ] {
        assert!(err.contains(&needle), "missing {needle:?} in:\n{err}");
    }
    let out = gatehouse()
        .args(["check", "--config"])
        .arg(&file)
        .env("GATEHOUSE_CLIENT_SECRET", "s")
        .env(
            "GATEHOUSE_COOKIE_SECRET",
            "DbhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk",
        )
        .env("GATEHOUSE_IDLE_TIMEOUT_SECS", "3601")
        .env("GATEHOUSE_SESSION_LIFETIME_SECS", "31536000")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("idle_timeout_secs (from env GATEHOUSE_IDLE_TIMEOUT_SECS): 3601 is too large: at most 3600 (one hour)"),
        "{err}"
    );
    assert!(!err.contains("session_lifetime_secs"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `allowed_emails_file` holds one address per line: `check` shows what it read (count and
/// addresses), and refuses a line that is not one address, naming the file and the line,
/// instead of taking `alice@x, bob@x` as one address nobody has or cutting at a `#`.
#[test]
fn check_shows_the_emails_file_as_read_and_refuses_a_line_that_is_not_one_address() {
    let dir = std::env::temp_dir().join(format!("gatehouse-emails-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let emails = dir.join("emails.txt");
    std::fs::write(
        &emails,
        "# platform team\nalice@example.com\n\n  # on call\nal#bob@example.com\r\n",
    )
    .unwrap();
    let file = dir.join("gatehouse.toml");
    std::fs::write(
        &file,
        format!(
            "issuer_url = \"https://sso.example.com\"\nclient_id = \"headlamp\"\nallowed_emails_file = {:?}\n",
            emails.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = check_file(&file);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = format!(
        "access: allowed_emails_file {} (2 address(es): [\"alice@example.com\", \"al#bob@example.com\"]; re-read when it changes)",
        emails.display()
    );
    assert!(said.contains(&want), "missing {want:?} in:\n{said}");

    for (text, line) in [
        ("alice@example.com\nalice@example.com, bob@example.com\n", "line 2: \"alice@example.com, bob@example.com\" holds more than one address, or spaces; write one address per line"),
        ("alice@example.com bob@example.com\n", "line 1: \"alice@example.com bob@example.com\" holds more than one address, or spaces"),
        ("# team\nalice@example.com # lead\n", "line 2: \"alice@example.com # lead\" holds text after the address; a comment is a line of its own, starting with #"),
        ("alice\n", "line 1: \"alice\" is not an email address"),
    ] {
        std::fs::write(&emails, text).unwrap();
        let out = check_file(&file);
        assert_eq!(out.status.code(), Some(1), "{text:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        let want = format!(
            "allowed_emails_file (from {}): {} {line}",
            file.display(),
            emails.display()
        );
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A fresh temporary directory for one test.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gatehouse-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `gatehouse secret` prints base64url, which begins with `-` once in 64 runs: such a
/// secret, and any other value that looks like an option, is taken as the value it is;
/// a value that is really missing is still named as missing.
#[test]
fn option_values_may_begin_with_a_hyphen_and_a_missing_one_is_named() {
    for (cookie, client, group) in [
        (
            "-bhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk",
            "-s",
            "-admins",
        ),
        (
            "--hHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk",
            "--not-a-flag",
            "--ops",
        ),
    ] {
        let out = gatehouse()
            .args(["check", "--issuer-url", "https://sso.example.com"])
            .args(["--client-id", "c", "--upstream", "http://127.0.0.1:1"])
            .args(["--cookie-secret", cookie, "--client-secret", client])
            .args(["--allowed-groups", group])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{cookie}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("access: allowed_groups [\"{group}\"]")),
            "{stdout}"
        );
    }
    // the same through `=` and for demo's own options
    let out = gatehouse()
        .args([
            "demo",
            "--group=-x",
            "--extra-client",
            "-a:-b:http://127.0.0.1:9/cb",
        ])
        .args(["--listen", "not-an-address"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid value 'not-an-address' for '--listen"),
        "{err}"
    );
    assert!(!err.contains("unexpected argument"), "{err}");

    for (args, named) in [
        (&["check", "--cookie-secret"][..], "--cookie-secret"),
        (
            &[
                "check",
                "--cookie-secret",
                "--upstream",
                "http://127.0.0.1:1",
            ],
            "--cookie-secret",
        ),
        (
            &["serve", "--client-secret", "-c", "g.toml"],
            "--client-secret",
        ),
        (&["demo", "--group", "--listen", "127.0.0.1:0"], "--group"),
    ] {
        let out = gatehouse().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("a value is required for '{named}")),
            "{args:?}: {err}"
        );
    }
}

/// Transpositions, omissions, insertions and substitutions in a key name each get the key
/// they meant; a name far from every key gets no guess.
#[test]
fn check_suggests_the_key_a_misspelt_name_meant() {
    let dir = temp_dir("typos");
    let file = dir.join("typos.toml");
    std::fs::write(
        &file,
        "client_secert = \"s\"\nupstraem = \"http://a\"\nallowed_group = \"x\"\nissuer-url = \"https://sso.example.com\"\nclientid = \"c\"\ncookie_secrat = \"x\"\nfrobnicate = 1\n",
    )
    .unwrap();
    let out = gatehouse()
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for (typo, meant) in [
        ("client_secert", "client_secret"),
        ("upstraem", "upstream"),
        ("allowed_group", "allowed_groups"),
        ("issuer-url", "issuer_url"),
        ("clientid", "client_id"),
        ("cookie_secrat", "cookie_secret"),
    ] {
        assert!(
            err.contains(&format!("unknown key `{typo}` (did you mean `{meant}`?)")),
            "{typo}:\n{err}"
        );
    }
    assert!(err.contains("unknown key `frobnicate`\n"), "{err}");
}

/// Unknown keys do not hide what validation finds: one run lists both, and `serve`
/// refuses with the same whole list.
#[test]
fn check_and_serve_report_unknown_keys_and_missing_settings_in_one_list() {
    let dir = temp_dir("all-problems");
    let file = dir.join("g.toml");
    std::fs::write(
        &file,
        "client_secert = \"s\"\nissuer_url = \"https://sso.example.com\"\nheader_user = \"bad header\"\n",
    )
    .unwrap();
    for (sub, code) in [("check", 1), ("serve", 2)] {
        let out = gatehouse()
            .args([sub, "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{sub}");
        let err = String::from_utf8_lossy(&out.stderr);
        for needle in [
            "unknown key `client_secert` (did you mean `client_secret`?)",
            "client_id is required",
            "cookie_secret is required",
            "not a valid header name",
        ] {
            assert!(err.contains(needle), "{sub}: missing {needle:?} in:\n{err}");
        }
        assert!(
            err.contains("the configuration has 4 problem(s)"),
            "{sub}:\n{err}"
        );
    }
}

/// A misspelt `GATEHOUSE_*` variable is warned about with the variable it meant, by
/// `check` (passing or not) and by `serve` at start-up; the variables gatehouse and its
/// test harness read that are not settings are not.
#[test]
fn misspelt_gatehouse_variables_are_warned_about_with_a_suggestion() {
    let good = |c: &mut Command| {
        c.args([
            "--issuer-url",
            "https://sso.example.com",
            "--client-id",
            "c",
        ])
        .args(["--client-secret", "s", "--upstream", "http://127.0.0.1:1"])
        .args([
            "--cookie-secret",
            "DbhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk",
        ])
        .env("GATEHOUSE_UPSTRAEM", "http://127.0.0.1:2")
        .env("GATEHOUSE_ALOWED_GROUPS", "admins")
        .env("GATEHOUSE_WORKERS", "1")
        .env("GATEHOUSE_CHROMIUM", "/usr/bin/chromium")
        .env("GATEHOUSE_NGINX", "/usr/sbin/nginx");
    };
    let expect = |text: &str| {
        for line in [
            "warning: env GATEHOUSE_UPSTRAEM is not a gatehouse setting and is ignored (did you mean `GATEHOUSE_UPSTREAM`?)",
            "warning: env GATEHOUSE_ALOWED_GROUPS is not a gatehouse setting and is ignored (did you mean `GATEHOUSE_ALLOWED_GROUPS`?)",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        for known in ["GATEHOUSE_WORKERS", "GATEHOUSE_CHROMIUM", "GATEHOUSE_NGINX"] {
            assert!(!text.contains(known), "{known} warned about:\n{text}");
        }
    };
    let mut c = gatehouse();
    c.arg("check");
    good(&mut c);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    expect(&String::from_utf8_lossy(&out.stdout));

    // with problems too, next to them
    let out = gatehouse()
        .args(["check"])
        .env("GATEHOUSE_UPSTRAEM", "http://127.0.0.1:2")
        .env("GATEHOUSE_ALOWED_GROUPS", "admins")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    expect(&err);
    assert!(err.contains("client_id is required"), "{err}");

    // serve logs them at start-up, before it serves
    let mut c = gatehouse();
    c.args(["serve", "--listen", "127.0.0.1:0"]);
    good(&mut c);
    let mut child = c
        .env("GATEHOUSE_LOG_FORMAT", "text")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _guard = Killed(child);
    let lines: Vec<String> = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .take_while(|l| !l.contains("gatehouse serving"))
        .collect();
    let log = lines.join("\n");
    assert!(
        log.contains("GATEHOUSE_UPSTRAEM") && log.contains("`GATEHOUSE_UPSTREAM`"),
        "{log}"
    );
    assert!(log.contains("`GATEHOUSE_ALLOWED_GROUPS`"), "{log}");
    assert!(!log.contains("GATEHOUSE_WORKERS"), "{log}");
}

/// `[[routes]]`: `check` prints the table most specific first with each route's rules,
/// and refuses two routes that cover the same requests, with every other problem.
#[test]
fn check_prints_the_route_table_and_refuses_routes_it_cannot_order() {
    let dir = std::env::temp_dir().join(format!("gh-routes-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    let base = "issuer_url = \"https://sso.example.com\"\nclient_id = \"c\"\n";
    std::fs::write(
        &good,
        format!("{base}\n[[routes]]\nhost = \"*.example.com\"\nupstream = \"http://wild:80\"\n\n[[routes]]\nhost = \"grafana.example.com\"\nupstream = \"http://grafana:3000\"\nallowed_groups = [\"Domain Admins\"]\n\n[[routes]]\nhost = \"grafana.example.com\"\npath_prefix = \"/api\"\nupstream = \"http://grafana-api:3000\"\n"),
    )
    .unwrap();
    let out = check_file(&good);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("-> 3 route(s)"), "{stdout}");
    let table = "routes (most specific first; a request no route matches gets 404):\n  1. grafana.example.com/api -> http://grafana-api:3000: the top-level rules only\n  2. grafana.example.com/ -> http://grafana:3000: allowed_groups [\"Domain Admins\"] and the top-level rules\n  3. *.example.com/ -> http://wild: the top-level rules only\n";
    assert!(stdout.contains(table), "{stdout}");

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        format!("{base}upstream = \"http://app:1\"\n\n[[routes]]\nhost = \"a.example.com\"\nupstream = \"http://a\"\n\n[[routes]]\nhost = \"A.EXAMPLE.COM\"\npath_prefix = \"/\"\nupstream = \"http://b\"\n"),
    )
    .unwrap();
    let out = check_file(&bad);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("routes[2]: covers exactly what routes[1] covers (a.example.com/)"),
        "{all}"
    );
    assert!(
        all.contains("upstream and [[routes]] are both set"),
        "{all}"
    );
}
