//! Forward-auth interop with the real ingress programs (nginx `auth_request`, Caddy
//! `forward_auth`, Traefik ForwardAuth, Envoy ext_authz), each started on an ephemeral
//! loopback port by `support::ingress` in front of the echo upstream, with gatehouse in
//! auth-only mode behind it and the real OpenID Provider (`oidc-provider`) for logins.
//!
//! For each: a browser-style login through the ingress lands on the page first asked for;
//! the upstream receives the identity and a signed assertion that node's `jose` verifies;
//! a spoofed identity header (or assertion) from the client never
//! reaches it; a user outside an allowed group gets 403 (configured rule, and the
//! per-route query rule where the ingress can carry one); an unauthenticated API call gets
//! 401.

use crate::support::ingress::{free_port, skip_unless_ingress, Ingress, Kind, Wiring};
use crate::support::peers::{op_form_login, skip_unless_available, NodeOp};
use crate::support::upstream::{seen, Upstream};
use crate::support::{config, start_on, Browser, Gatehouse, Resp};
use reqwest::Method;

struct Stack {
    ingress: Ingress,
    gh: Gatehouse,
    _up: Upstream,
    _op: NodeOp,
}

async fn stack(kind: Kind) -> Option<Stack> {
    if skip_unless_available(false) || skip_unless_ingress(kind) {
        return None;
    }
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let key = crate::assertion::key_path("p256.pem");
    let op = NodeOp::for_gatehouse_at(&base, &[]).await;
    let up = Upstream::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gh_addr = listener.local_addr().unwrap();
    let mut extra = vec![
        ("scopes", "openid,email,profile,groups"),
        ("trusted_proxies", "127.0.0.1"),
        ("allowed_groups", "admins,ops"),
        ("post_logout_redirect_url", ""),
        ("auth_listen", "127.0.0.1:0"),
        ("forward_auth_client", kind.client()),
        ("assertion_signing_key_file", &key),
        ("assertion_issuer", crate::assertion::ISSUER),
    ];
    if kind == Kind::Envoy {
        // Envoy cannot put `?redirect=true` in its auth URL.
        extra.push(("forward_auth_redirect", "true"));
    }
    // Auth-only mode: the ingress proxies to the app, gatehouse only answers.
    let gh = start_on(listener, config("", &op.issuer, &extra)).await;
    let wiring = Wiring {
        listen_port: port,
        gatehouse: gh_addr,
        gatehouse_auth: gh.auth_addr.unwrap(),
        upstream: up.addr,
        configmap: true,
        naive: false,
    };
    let ingress = tokio::task::spawn_blocking(move || Ingress::start(kind, &wiring))
        .await
        .unwrap();
    Some(Stack {
        ingress,
        gh,
        _up: up,
        _op: op,
    })
}

/// Logs in through the ingress starting at `path`; returns the page it lands on.
async fn login_through(s: &Stack, b: &Browser, path: &str, user: &str, groups: &str) -> Resp {
    let start = format!("{}{path}", s.ingress.url);
    op_form_login(b, &start, user, groups, || s.ingress.log()).await
}

fn every_value(echo: &serde_json::Value) -> Vec<String> {
    echo["headers"]
        .as_object()
        .map(|m| {
            m.iter()
                .flat_map(|(k, v)| {
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|x| x.as_str())
                        .map(move |x| format!("{k}: {x}"))
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn exercise(kind: Kind) {
    let Some(s) = stack(kind).await else {
        return;
    };
    let name = kind.name();
    let app = &s.ingress.url;

    // An unauthenticated API call is a 401, not a redirect.
    let anon = Browser::new();
    let api = anon
        .send(
            Method::GET,
            &format!("{app}/api/v1/pods"),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(api.status, 401, "{name}: {api:?}\n{}", s.ingress.log());

    // A browser-style login lands on the page first asked for, with the identity.
    let alice = Browser::new();
    let page = login_through(&s, &alice, "/app/page?x=1", "alice", "admins").await;
    assert_eq!(page.status, 200, "{name}: {page:?}\n{}", s.ingress.log());
    let echo = page.json();
    assert_eq!(echo["path"], "/app/page?x=1", "{name}");
    assert_eq!(
        seen(&echo, "x-forwarded-user"),
        vec!["alice@example.test"],
        "{name}"
    );
    assert_eq!(
        seen(&echo, "x-forwarded-email"),
        vec!["alice@example.test"],
        "{name}"
    );
    assert_eq!(seen(&echo, "x-forwarded-group"), vec!["admins"], "{name}");
    assert_eq!(
        seen(&echo, "x-forwarded-id-token")[0].split('.').count(),
        3,
        "{name}"
    );
    // The signed assertion the ingress copied verifies (node's jose, gatehouse's JWKS)
    // for the host the ingress forwarded.
    let assertion = seen(&echo, "x-gatehouse-assertion");
    assert_eq!(assertion.len(), 1, "{name}: {echo}");
    let jwks = format!(
        "{}/.well-known/gatehouse/jwks.json",
        s.gh.auth_url.clone().unwrap()
    );
    let verdict = crate::assertion::jose_verify(&jwks, "127.0.0.1", &assertion).await;
    assert_eq!(verdict["results"][0]["ok"], true, "{name}: {verdict}");
    assert_eq!(verdict["results"][0]["payload"]["sub"], "alice", "{name}");

    // Spoofed identity headers from the client never reach the upstream. Where the
    // ingress removes them before asking (Caddy's `request_header -`, Envoy's header
    // mutation here), the request passes with gatehouse's identity only; where they reach
    // gatehouse (nginx and Traefik pass client headers into the check), gatehouse refuses
    // (400; nginx turns any status but 401/403 into its own 500).
    for spoof in [
        ("x-forwarded-user", "root"),
        ("x-forwarded-group", "system:masters"),
        ("x-auth-request-user", "root"),
        ("X-Forwarded-Groups", "system:masters"),
        ("X-Gatehouse-Assertion", "root"),
    ] {
        let spoofed = alice
            .send(
                Method::GET,
                &format!("{app}/app/again"),
                &[spoof, ("accept", "application/json")],
            )
            .await;
        let want = match kind {
            Kind::Nginx => 500,
            Kind::Traefik => 400,
            _ => 200,
        };
        assert_eq!(spoofed.status, want, "{name} {spoof:?}: {spoofed:?}");
        if want == 200 {
            let echo = spoofed.json();
            let leaked: Vec<String> = every_value(&echo)
                .into_iter()
                .filter(|v| v.ends_with(": root") || v.contains("system:masters"))
                .collect();
            assert!(leaked.is_empty(), "{name}: {leaked:?}");
        } else {
            assert!(
                !spoofed.body.contains("\"path\""),
                "{name}: the spoofed request reached the upstream: {spoofed:?}"
            );
        }
    }
    // Without them, the same signed-in request passes with gatehouse's identity only.
    let clean = alice
        .send(
            Method::GET,
            &format!("{app}/app/again"),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(clean.status, 200, "{name}: {clean:?}");
    let echo = clean.json();
    let leaked: Vec<String> = every_value(&echo)
        .into_iter()
        .filter(|v| v.ends_with(": root") || v.contains("system:masters"))
        .collect();
    assert!(leaked.is_empty(), "{name}: {leaked:?}");

    // The per-route query rule narrows (the ingress's /ops/ route needs group ops).
    if kind != Kind::Envoy {
        let ops = alice.get(&format!("{app}/ops/dashboard")).await;
        assert_eq!(ops.status, 403, "{name}: {ops:?}\n{}", s.ingress.log());
    }

    // A user outside the configured groups gets 403 after signing in.
    let bob = Browser::new();
    let refused = login_through(&s, &bob, "/app/page", "bob", "dev").await;
    assert_eq!(
        refused.status,
        403,
        "{name}: {refused:?}\n{}",
        s.ingress.log()
    );
}

#[tokio::test]
async fn nginx_auth_request() {
    exercise(Kind::Nginx).await;
}

#[tokio::test]
async fn caddy_forward_auth() {
    exercise(Kind::Caddy).await;
}

#[tokio::test]
async fn traefik_forward_auth() {
    exercise(Kind::Traefik).await;
}

#[tokio::test]
async fn envoy_ext_authz() {
    exercise(Kind::Envoy).await;
}

/// A newcomer's Traefik (no `aliasHeadersStrategy`, `authResponseHeaders` without
/// `X-Forwarded-Groups`) or Caddy (copying only `X-Auth-Request-*`, removing nothing)
/// would hand a signed-in user's own `X-Forwarded-Groups: system:masters` to the app.
/// gatehouse sees those headers in the check and refuses it, naming the header.
async fn naive_ingress_never_passes_client_identity(kind: Kind) {
    if skip_unless_ingress(kind) {
        return;
    }
    let idp = crate::support::idp::TestIdp::start().await;
    let up = Upstream::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gh_addr = listener.local_addr().unwrap();
    let gh = start_on(
        listener,
        config(
            "",
            &idp.issuer,
            &[
                ("trusted_proxies", "127.0.0.1"),
                ("auth_listen", "127.0.0.1:0"),
                ("forward_auth_client", kind.client()),
            ],
        ),
    )
    .await;
    let wiring = Wiring {
        listen_port: free_port(),
        gatehouse: gh_addr,
        gatehouse_auth: gh.auth_addr.unwrap(),
        upstream: up.addr,
        configmap: false,
        naive: true,
    };
    let ingress = tokio::task::spawn_blocking(move || Ingress::start(kind, &wiring))
        .await
        .unwrap();
    let name = kind.name();
    let b = Browser::new();
    let (page, _) = b.follow(&format!("{}/app", ingress.url)).await;
    assert_eq!(page.status, 200, "{name}: {page:?}\n{}", ingress.log());
    for (header, value) in [
        ("X-Forwarded-Groups", "system:masters"),
        ("x-forwarded-groups", "system:masters"),
        ("X_Forwarded_Groups", "system:masters"),
        ("X-Forwarded-User", "root"),
        ("X_Forwarded_User", "root"),
        ("x-forwarded-email", "root@example.test"),
        ("X-Forwarded-Id-Token", "forged"),
        ("X-Auth-Request-User", "root"),
    ] {
        let r = b
            .send(
                Method::GET,
                &format!("{}/app", ingress.url),
                &[(header, value), ("accept", "application/json")],
            )
            .await;
        assert_eq!(r.status, 400, "{name} {header}: {r:?}");
        let body = r.json();
        assert_eq!(body["error"], "client_identity_header", "{name}");
        let message = body["message"].as_str().unwrap_or("");
        assert!(
            message.contains(&format!("`{}`", header.to_ascii_lowercase())),
            "{name}: the page names the header: {message}"
        );
        let fix = match kind {
            Kind::Traefik => "aliasHeadersStrategy",
            _ => "copy_headers",
        };
        assert!(message.contains(fix), "{name}: names the fix: {message}");
    }
    // The same user without headers of their own gets in, with gatehouse's identity.
    let clean = b
        .send(
            Method::GET,
            &format!("{}/app", ingress.url),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(clean.status, 200, "{name}: {clean:?}");
    assert!(!clean.body.contains("system:masters"));
}

#[tokio::test]
async fn naive_traefik_never_passes_client_identity() {
    naive_ingress_never_passes_client_identity(Kind::Traefik).await;
}

#[tokio::test]
async fn naive_caddy_never_passes_client_identity() {
    naive_ingress_never_passes_client_identity(Kind::Caddy).await;
}
