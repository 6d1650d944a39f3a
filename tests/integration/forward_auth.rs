//! The forward-auth endpoint and the access rules, in process: what an ingress gets back
//! from `/oauth2/auth`, what the sidecar's upstream receives, and the bad inputs of
//! CONTRACTS.md §4 that concern redirects, skip routes, email domains and the rebuilt
//! original URL. Real ingress programs are in `ingress.rs`.

use crate::flow::{logged_in, urlencode, world, World};
use crate::support::idp::{Mint, Signer, CLIENT_ID};
use crate::support::upstream::seen;
use crate::support::{config, start, start_on, Browser, Resp};
use reqwest::Method;
use serde_json::json;

fn header(r: &Resp, name: &str) -> Option<String> {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[tokio::test]
async fn allowed_requests_get_200_with_both_header_families() {
    let (w, b) = logged_in(&[("auth_listen", "127.0.0.1:0")]).await;
    let internal = w.gh.auth_url.clone().unwrap();
    for (method, path) in [
        (Method::GET, "/oauth2/auth"),
        (Method::HEAD, "/oauth2/auth"),
        (Method::POST, "/oauth2/auth/some/path?x=1"),
        (Method::DELETE, "/oauth2/auth/"),
    ] {
        let r = b
            .send(method.clone(), &format!("{internal}{path}"), &[])
            .await;
        assert_eq!(r.status, 200, "{method} {path}: {r:?}");
        for (name, want) in [
            ("x-auth-request-user", "alice@example.test"),
            ("x-auth-request-email", "alice@example.test"),
            ("x-auth-request-groups", "admins,dev"),
            ("x-auth-request-preferred-username", "alice"),
            ("x-forwarded-user", "alice@example.test"),
            ("x-forwarded-email", "alice@example.test"),
            ("x-forwarded-group", "admins,dev"),
            ("x-forwarded-groups", "admins,dev"),
            ("x-forwarded-preferred-username", "alice"),
        ] {
            assert_eq!(header(&r, name).as_deref(), Some(want), "{name} on {path}");
        }
        assert_eq!(
            header(&r, "x-forwarded-id-token")
                .unwrap()
                .split('.')
                .count(),
            3
        );
        assert_eq!(header(&r, "cache-control").as_deref(), Some("no-store"));
        assert!(header(&r, "authorization").is_none());
    }
}

#[tokio::test]
async fn pass_authorization_and_refreshed_cookies_ride_on_the_200() {
    let (w, b) = logged_in(&[
        ("pass_authorization", "id_token"),
        ("refresh_before_secs", "100000"),
        ("auth_listen", "127.0.0.1:0"),
    ])
    .await;
    let r = b
        .get(&format!("{}/oauth2/auth", w.gh.auth_url.as_ref().unwrap()))
        .await;
    assert_eq!(r.status, 200);
    let token = header(&r, "x-forwarded-id-token").unwrap();
    assert_eq!(header(&r, "authorization"), Some(format!("Bearer {token}")));
    assert!(
        r.set_cookies().iter().any(|c| c.starts_with("_gatehouse=")),
        "a refreshed session's cookie comes back on the 200: {:?}",
        r.set_cookies()
    );
    assert!(w.idp.refreshes() >= 1);
}

#[tokio::test]
async fn no_session_is_401_or_a_302_to_the_provider_when_asked() {
    let w = world(&[]).await;
    let b = Browser::new();
    let r = b.get(&format!("{}/oauth2/auth", w.gh.url)).await;
    assert_eq!(
        r.status, 401,
        "a plain check answers 401 (nginx can only act on 401/403)"
    );
    assert!(header(&r, "www-authenticate").is_some());
    assert_eq!(
        header(&r, "x-gatehouse-login").as_deref(),
        Some("/oauth2/start?rd=%2F"),
        "a browser navigation learns where to sign in"
    );
    let api = b
        .send(
            Method::GET,
            &format!("{}/oauth2/auth?redirect=true", w.gh.url),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(api.status, 401, "API clients never get a redirect");
    assert_eq!(api.json()["error"], "unauthenticated");
    assert!(header(&api, "x-gatehouse-login").is_none());
    let nav = b
        .get(&format!("{}/oauth2/auth?redirect=true", w.gh.url))
        .await;
    assert_eq!(nav.status, 302);
    assert!(nav
        .location()
        .unwrap()
        .starts_with(&format!("{}/authorize", w.idp.issuer)));
    assert!(nav.set_cookies().iter().any(|c| c.contains("_login_")));
    // Envoy's form: the original path below /oauth2/auth. Its query is the original
    // request's, but rule keys in it still count (they can only narrow), so no path
    // form drops one: `redirect=true` there sends a navigation to the provider too.
    let envoy = b
        .get(&format!("{}/oauth2/auth/x?redirect=%2Fhome", w.gh.url))
        .await;
    assert_eq!(
        envoy.status, 401,
        "`redirect` there is the app's own parameter"
    );
    let envoy = b.get(&format!("{}/oauth2/auth/x?y=1", w.gh.url)).await;
    assert_eq!(envoy.status, 401, "the app's own parameters are not rules");
}

#[tokio::test]
async fn forward_auth_redirect_setting_sends_browsers_to_the_provider() {
    let w = world(&[("forward_auth_redirect", "true")]).await;
    let b = Browser::new();
    let r = b.get(&format!("{}/oauth2/auth/app/page", w.gh.url)).await;
    assert_eq!(r.status, 302);
    // The login comes back to the path Envoy put below /oauth2/auth.
    let (done, _) = b.follow(&r.location().unwrap()).await;
    assert_eq!(done.json()["path"], "/app/page");
    let api = b
        .send(
            Method::POST,
            &format!("{}/oauth2/auth/app/page", w.gh.url),
            &[],
        )
        .await;
    assert_eq!(api.status, 200, "now signed in");
}

/// Starts a login through /oauth2/auth with `headers`, completes it at the test IdP and
/// returns the callback's redirect target.
async fn post_login_target(w: &World, headers: &[(&str, &str)]) -> String {
    let b = Browser::new();
    let r = b
        .send(
            Method::GET,
            &format!("{}/oauth2/auth?redirect=true", w.gh.url),
            headers,
        )
        .await;
    assert_eq!(r.status, 302, "{r:?}");
    let at_idp = b.get(&r.location().unwrap()).await;
    let callback = b.get(&at_idp.location().unwrap()).await;
    assert_eq!(callback.status, 302, "{callback:?}");
    callback.location().unwrap()
}

#[tokio::test]
async fn the_original_url_is_rebuilt_only_from_trusted_proxies() {
    let host = |w: &World| w.gh.addr.to_string();
    let trusted = world(&[("trusted_proxies", "127.0.0.1")]).await;
    let h = host(&trusted);
    let target = post_login_target(
        &trusted,
        &[
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", h.as_str()),
            ("x-forwarded-uri", "/headlamp/c/main?ns=a"),
            ("x-forwarded-method", "GET"),
        ],
    )
    .await;
    assert_eq!(target, "/headlamp/c/main?ns=a");
    // nginx's X-Original-URI works the same.
    let target = post_login_target(
        &trusted,
        &[
            ("x-original-uri", "/from/nginx"),
            ("x-forwarded-method", "GET"),
        ],
    )
    .await;
    assert_eq!(target, "/from/nginx");
    // Hostile original URIs from a trusted proxy are still validated (§4).
    for bad in [
        "//evil.com/x",
        "/\\evil.com",
        "/%09/evil.com",
        "/./../../\\evil.com",
    ] {
        let target = post_login_target(
            &trusted,
            &[("x-forwarded-uri", bad), ("x-forwarded-method", "GET")],
        )
        .await;
        assert_eq!(target, "/", "{bad}");
    }
    // ingress-nginx's full X-Original-URL: another host is not a target unless listed.
    let target = post_login_target(
        &trusted,
        &[
            ("x-original-url", "https://evil.com/x"),
            ("x-original-method", "GET"),
        ],
    )
    .await;
    assert_eq!(target, "/");

    // The same headers from an untrusted peer are ignored.
    let untrusted = world(&[]).await;
    let target = post_login_target(
        &untrusted,
        &[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example.com"),
            ("x-forwarded-uri", "/secret/page"),
            ("x-original-uri", "/secret/page"),
        ],
    )
    .await;
    assert_eq!(target, "/");
}

#[tokio::test]
async fn one_auth_host_sends_users_back_to_listed_app_hosts_only() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let auth = format!("http://{}", listener.local_addr().unwrap());
    let w = world(&[]).await;
    let cfg = config(
        "",
        &w.idp.issuer,
        &[
            ("trusted_proxies", "127.0.0.1"),
            ("redirect_url", &format!("{auth}/oauth2/callback")),
            ("cookie_domain", ".127.0.0.1.nip.io"),
            (
                "allowed_redirect_domains",
                ".example.com,admin.example.org:8443",
            ),
        ],
    );
    let gh = start_on(listener, cfg).await;
    let w = World { gh, ..w };
    let go = |host: &'static str, uri: &'static str| {
        [
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", host),
            ("x-forwarded-uri", uri),
            ("x-forwarded-method", "GET"),
        ]
    };
    assert_eq!(
        post_login_target(&w, &go("headlamp.example.com", "/c/main?x=1")).await,
        "https://headlamp.example.com/c/main?x=1"
    );
    assert_eq!(
        post_login_target(&w, &go("admin.example.org:8443", "/")).await,
        "https://admin.example.org:8443/"
    );
    for host in [
        "evilexample.com",
        "example.com.evil.com",
        "admin.example.org",
        "a.example.com:444",
    ] {
        let target = post_login_target(&w, &go(host, "/x")).await;
        assert_eq!(target, "/", "{host}");
    }
    // /oauth2/start?rd= (nginx's sign-in redirect) follows the same list.
    for (rd, want) in [
        ("https://app.example.com/p", "https://app.example.com/p"),
        ("https://evilexample.com/p", "/"),
        ("https://app.example.com@evil.com/", "/"),
        ("https:app.example.com", "/"),
    ] {
        let b = Browser::new();
        let r = b
            .get(&format!("{}/oauth2/start?rd={}", w.gh.url, urlencode(rd)))
            .await;
        let at_idp = b.get(&r.location().unwrap()).await;
        let cb = b.get(&at_idp.location().unwrap()).await;
        assert_eq!(cb.location().as_deref(), Some(want), "{rd}");
        assert!(
            cb.set_cookies()
                .iter()
                .filter(|c| c.starts_with("_gatehouse="))
                .all(|c| c.contains("Domain=127.0.0.1.nip.io")),
            "{:?}",
            cb.set_cookies()
        );
    }
    // The 401's login URL points at the auth host.
    let r = Browser::new()
        .send(
            Method::GET,
            &format!("{}/oauth2/auth", w.gh.url),
            &[("accept", "application/json")],
        )
        .await;
    assert!(
        r.json()["login_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{auth}/oauth2/start?rd=")),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn auth_only_mode_serves_the_endpoints_and_nothing_else() {
    let w = world(&[]).await;
    let gh = start(config("", &w.idp.issuer, &[])).await;
    let b = Browser::new();
    let r = b.get(&format!("{}/some/app/page", gh.url)).await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("auth-only mode"), "{}", r.body);
    let (_, visited) = b.follow(&format!("{}/oauth2/start?rd=/x", gh.url)).await;
    assert!(visited.last().unwrap().ends_with("/x"), "{visited:?}");
    let ok = b.get(&format!("{}/oauth2/auth", gh.url)).await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        header(&ok, "x-auth-request-user").as_deref(),
        Some("alice@example.test")
    );
}

#[tokio::test]
async fn rules_refuse_with_403_naming_the_rule_in_both_modes() {
    let (w, b) = logged_in(&[("allowed_groups", "ops,admins")]).await;
    // alice (admins, dev) is allowed in both modes.
    assert_eq!(
        b.get(&format!("{}/oauth2/auth", w.gh.url)).await.status,
        200
    );
    // Query rules narrow: `ops` only refuses her...
    let r = b
        .get(&format!("{}/oauth2/auth?allowed_groups=ops", w.gh.url))
        .await;
    assert_eq!(r.status, 403);
    assert!(
        r.body.contains("allowed_groups") && r.body.contains("alice@example.test"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("/oauth2/sign_out") && !r.body.contains("Sign in again"),
        "a refused user is offered sign-out, not a login loop"
    );
    // ...and can never widen: `dev` is not in the configured list.
    *w.idp.state.next_sub.lock().unwrap() = "bob".into();
    w.idp.tweak(|c| c["groups"] = json!(["dev"]));
    let bob = Browser::new();
    let (page, visited) = bob.follow(&format!("{}/app", w.gh.url)).await;
    assert_eq!(page.status, 403, "{visited:?}");
    assert!(
        page.body.contains("bob@example.test is in dev"),
        "{}",
        page.body
    );
    let api = bob
        .send(
            Method::GET,
            &format!("{}/oauth2/auth?allowed_groups=dev", w.gh.url),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(api.status, 403);
    assert_eq!(api.json()["error"], "denied_by_rule");
    // A typo in the auth URL fails closed.
    let typo = b
        .get(&format!("{}/oauth2/auth?allowed_group=ops", w.gh.url))
        .await;
    assert_eq!(typo.status, 400);
    assert!(typo.body.contains("allowed_group"), "{}", typo.body);
}

#[tokio::test]
async fn email_domain_rules_hold_against_crafted_addresses() {
    for (email, verified, allowed) in [
        ("alice@company.com", true, true),
        ("ALICE@Company.COM", true, true),
        ("attacker@evil.com@company.com", true, false),
        ("attacker@company.com.evil.com", true, false),
        ("attacker@evilcompany.com", true, false),
        ("alice@company.com", false, false),
    ] {
        let w = world(&[
            ("allowed_email_domains", "company.com"),
            ("user_claim", "preferred_username"),
        ])
        .await;
        w.idp.tweak(move |c| {
            c["email"] = json!(email);
            c["email_verified"] = json!(verified);
        });
        let b = Browser::new();
        let (page, _) = b.follow(&format!("{}/app", w.gh.url)).await;
        let want = if allowed { 200 } else { 403 };
        assert_eq!(
            page.status, want,
            "{email} verified={verified}: {}",
            page.body
        );
        if allowed {
            assert_eq!(seen(&page.json(), "x-forwarded-email"), vec![email]);
        }
    }
}

#[tokio::test]
async fn required_claims_and_email_lists_apply_to_the_sidecar() {
    let dir = std::env::temp_dir().join(format!("gh-fa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("emails");
    std::fs::write(&file, "alice@example.test\n").unwrap();
    let w = world(&[
        ("allowed_emails_file", file.to_str().unwrap()),
        ("required_claims", "tenant.id=acme"),
    ])
    .await;
    // alice's token has no tenant claim: refused, and the page says which claim.
    let r = Browser::new().follow(&format!("{}/", w.gh.url)).await.0;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("tenant.id=acme"), "{}", r.body);
    w.idp.tweak(|c| c["tenant"] = json!({"id": "acme"}));
    let ok = Browser::new().follow(&format!("{}/", w.gh.url)).await.0;
    assert_eq!(ok.status, 200, "{}", ok.body);
    // bob has the claim too, but is not in the file.
    *w.idp.state.next_sub.lock().unwrap() = "bob".into();
    let bob = Browser::new().follow(&format!("{}/", w.gh.url)).await.0;
    assert_eq!(bob.status, 403, "{}", bob.body);
    assert!(bob.body.contains("allowed_emails"), "{}", bob.body);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn skip_routes_need_no_login_and_still_strip_identity_headers() {
    let w = world(&[
        ("skip_auth_routes", "GET=/ping,/static/**"),
        ("trusted_proxies", "127.0.0.1"),
    ])
    .await;
    let b = Browser::new();
    let r = b
        .send(
            Method::GET,
            &format!("{}/static/app.css?v=1", w.gh.url),
            &[("x-forwarded-user", "root"), ("X_Forwarded_User", "root")],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let echo = r.json();
    assert!(seen(&echo, "x-forwarded-user").is_empty());
    assert!(seen(&echo, "x_forwarded_user").is_empty());
    assert_eq!(b.get(&format!("{}/ping", w.gh.url)).await.status, 200);
    for path in [
        "/static/..%2fadmin",
        "/static/%2e%2e/admin",
        "/static/../admin",
        "/static;x/../admin",
        "//static/x",
        "/static%2fx",
        "/STATIC/x",
        "/admin?/static/x",
        "/admin?x=%2Fstatic%2Fx",
        "/ping/../admin",
        "/ping%23",
    ] {
        let r = b.get(&format!("{}{path}", w.gh.url)).await;
        assert_eq!(r.status, 302, "{path} must need a login: {r:?}");
    }
    let post = b
        .send(Method::POST, &format!("{}/ping", w.gh.url), &[])
        .await;
    assert_eq!(post.status, 401, "the rule is for GET only");
    // A health-check user agent earns nothing.
    let probe = b
        .send(
            Method::GET,
            &format!("{}/admin", w.gh.url),
            &[
                ("user-agent", "kube-probe/1.30"),
                ("accept", "application/json"),
            ],
        )
        .await;
    assert_eq!(probe.status, 401);
}

#[tokio::test]
async fn forward_auth_skip_routes_use_the_trusted_original_uri_only() {
    let rules = ("skip_auth_routes", "/public/**");
    let trusted = world(&[rules, ("trusted_proxies", "127.0.0.1")]).await;
    let untrusted = world(&[rules]).await;
    let b = Browser::new();
    let ask = |w: &World, uri: &'static str| {
        let url = format!("{}/oauth2/auth", w.gh.url);
        let b = &b;
        async move {
            b.send(
                Method::GET,
                &url,
                &[
                    ("x-forwarded-uri", uri),
                    ("x-forwarded-method", "GET"),
                    ("accept", "application/json"),
                ],
            )
            .await
        }
    };
    let r = ask(&trusted, "/public/logo.png").await;
    assert_eq!(r.status, 200);
    assert!(
        header(&r, "x-auth-request-user").is_none(),
        "no identity on a skipped route"
    );
    assert_eq!(ask(&trusted, "/public/..%2fadmin").await.status, 401);
    assert_eq!(ask(&trusted, "/admin?x=/public/a").await.status, 401);
    // ingress-nginx: its X-Original-URL next to a client's own X-Forwarded-Uri.
    let mixed = b
        .send(
            Method::GET,
            &format!("{}/oauth2/auth", trusted.gh.url),
            &[
                ("x-original-url", "https://app.example.com/admin"),
                ("x-forwarded-uri", "/public/logo.png"),
                ("accept", "application/json"),
            ],
        )
        .await;
    assert_eq!(mixed.status, 401, "disagreeing sources skip nothing");
    assert_eq!(
        ask(&untrusted, "/public/logo.png").await.status,
        401,
        "a client's own X-Forwarded-Uri is never believed"
    );
    // Envoy's path suffix is the request being checked, from whoever asks; but under
    // `auto` it decides no skip route (a fixed auth URL with a trailing slash looks the
    // same): only a named Envoy's does.
    let envoy = b
        .get(&format!("{}/oauth2/auth/public/logo.png", untrusted.gh.url))
        .await;
    assert_eq!(envoy.status, 401, "auto: the Envoy form decides no skip");
    let named = world(&[rules, ("forward_auth_client", "envoy")]).await;
    let envoy = b
        .get(&format!("{}/oauth2/auth/public/logo.png", named.gh.url))
        .await;
    assert_eq!(envoy.status, 200);
    let envoy = b
        .get(&format!("{}/oauth2/auth/public/%2e%2e/admin", named.gh.url))
        .await;
    assert_eq!(envoy.status, 401);
}

/// A token signed by the test IdP's published key, with `claims` over the defaults.
fn bearer(w: &World, mint: &Mint, tweak: serde_json::Value) -> String {
    let now = gatehouse::util::now_secs() as i64;
    let mut claims = json!({"iss": w.idp.issuer, "sub": "ci-bot", "aud": CLIENT_ID,
        "exp": now + 300, "iat": now, "email": "ci@example.test", "email_verified": true,
        "groups": ["ci"]});
    for (k, v) in tweak.as_object().unwrap() {
        claims[k] = v.clone();
    }
    w.idp.state.keys.sign(mint, &claims)
}

#[tokio::test]
async fn bearer_tokens_are_verified_like_id_tokens_and_never_redirect() {
    let w = world(&[("bearer_tokens", "true"), ("bearer_audiences", "kubectl")]).await;
    let b = Browser::new();
    let good = bearer(&w, &Mint::default(), json!({}));
    let auth = format!("Bearer {good}");
    let r = b
        .send(
            Method::GET,
            &format!("{}/api/x", w.gh.url),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(seen(&r.json(), "x-forwarded-user"), vec!["ci@example.test"]);
    let fa = b
        .send(
            Method::GET,
            &format!("{}/oauth2/auth", w.gh.url),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(header(&fa, "x-auth-request-groups").as_deref(), Some("ci"));
    let other_aud = bearer(&w, &Mint::default(), json!({"aud": "kubectl"}));
    let r = b
        .send(
            Method::GET,
            &format!("{}/api/x", w.gh.url),
            &[("authorization", &format!("Bearer {other_aud}"))],
        )
        .await;
    assert_eq!(r.status, 200, "bearer_audiences are accepted");

    let now = gatehouse::util::now_secs() as i64;
    let bad = [
        (
            "expired",
            bearer(&w, &Mint::default(), json!({"exp": now - 600})),
        ),
        (
            "wrong audience",
            bearer(&w, &Mint::default(), json!({"aud": "someone-else"})),
        ),
        (
            "wrong issuer",
            bearer(&w, &Mint::default(), json!({"iss": "https://evil.example"})),
        ),
        (
            "bad signature",
            bearer(
                &w,
                &Mint {
                    signer: Signer::Rsa2,
                    ..Mint::default()
                },
                json!({}),
            ),
        ),
        (
            "alg none",
            bearer(
                &w,
                &Mint {
                    signer: Signer::None,
                    ..Mint::default()
                },
                json!({}),
            ),
        ),
        (
            "HS256 with the public key",
            bearer(
                &w,
                &Mint {
                    signer: Signer::Hs256WithPublicKey,
                    ..Mint::default()
                },
                json!({}),
            ),
        ),
        ("not a JWT", "opaque-token".to_string()),
    ];
    for (what, token) in bad {
        for path in ["/api/x", "/oauth2/auth"] {
            // A browser-looking request still gets 401, never a redirect.
            let r = b
                .send(
                    Method::GET,
                    &format!("{}{path}?redirect=true", w.gh.url),
                    &[("authorization", &format!("Bearer {token}"))],
                )
                .await;
            assert_eq!(r.status, 401, "{what} on {path}: {r:?}");
            assert!(
                header(&r, "www-authenticate")
                    .unwrap()
                    .contains("error=\"invalid_token\""),
                "{what}"
            );
            assert!(!r.body.contains(&token), "the token is never echoed");
        }
    }
}

#[tokio::test]
async fn without_bearer_tokens_the_header_is_just_the_apps_own() {
    let (w, b) = logged_in(&[]).await;
    let echo = b
        .send(
            Method::GET,
            &format!("{}/api", w.gh.url),
            &[
                ("authorization", "Bearer app-token"),
                ("accept", "application/json"),
            ],
        )
        .await
        .json();
    assert_eq!(seen(&echo, "authorization"), vec!["Bearer app-token"]);
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["alice@example.test"]);
}

#[tokio::test]
async fn bearer_tokens_from_an_extra_issuer_need_its_own_audience() {
    let other = crate::support::idp::TestIdp::start().await;
    let pair = format!("{}=ci-pipeline", other.issuer);
    let w = world(&[("bearer_tokens", "true"), ("bearer_issuers", &pair)]).await;
    // Wait until the extra issuer's keys are loaded (/readyz reports it).
    let client = reqwest::Client::new();
    for _ in 0..500 {
        let r: serde_json::Value = client
            .get(format!("{}/readyz", w.gh.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if r["bearer_issuers"][0]["ready"] == json!(true) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let now = gatehouse::util::now_secs() as i64;
    let sign = |aud: &str| {
        other.state.keys.sign(
            &Mint::default(),
            &json!({"iss": other.issuer, "sub": "pipeline-7", "aud": aud, "email_verified": true,
                "exp": now + 300, "iat": now, "email": "ci@example.test"}),
        )
    };
    let b = Browser::new();
    let ask = |token: String| {
        let url = format!("{}/oauth2/auth", w.gh.url);
        let b = &b;
        async move {
            b.send(
                Method::GET,
                &url,
                &[("authorization", &format!("Bearer {token}"))],
            )
            .await
        }
    };
    let ok = ask(sign("ci-pipeline")).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(
        header(&ok, "x-auth-request-user").as_deref(),
        Some("ci@example.test")
    );
    // The main client's audience is not valid for the extra issuer, nor any other.
    assert_eq!(ask(sign(CLIENT_ID)).await.status, 401);
    assert_eq!(ask(sign("someone-else")).await.status, 401);
    // An issuer nobody configured.
    let stranger = crate::support::idp::TestIdp::start().await;
    let token = stranger.state.keys.sign(
        &Mint::default(),
        &json!({"iss": stranger.issuer, "sub": "x", "aud": "ci-pipeline", "exp": now + 300, "iat": now}),
    );
    let r = ask(token).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("not one gatehouse accepts"), "{}", r.body);
}

/// A script on the app's origin (any XSS behind gatehouse) can `fetch('/oauth2/auth')`
/// with the session cookie and read the answer's headers. The ID token and
/// `Authorization` go only into answers on the internal listener (`auth_listen`).
#[tokio::test]
async fn the_id_token_never_reaches_a_page_script() {
    let (w, b) = logged_in(&[
        ("pass_authorization", "id_token"),
        ("auth_listen", "127.0.0.1:0"),
    ])
    .await;
    let script = [
        ("sec-fetch-mode", "cors"),
        ("sec-fetch-site", "same-origin"),
        ("accept", "*/*"),
    ];
    for path in [
        "/oauth2/auth",
        "/oauth2/auth/",
        "/oauth2/auth/x?y=1",
        "/oauth2/auth?redirect=true",
    ] {
        for method in [Method::GET, Method::POST, Method::HEAD] {
            let r = b
                .send(method.clone(), &format!("{}{path}", w.gh.url), &script)
                .await;
            assert_eq!(r.status, 200, "{method} {path}: {r:?}");
            assert_eq!(
                header(&r, "x-forwarded-user").as_deref(),
                Some("alice@example.test"),
                "the verdict and identity still come back"
            );
            for secret in ["x-forwarded-id-token", "authorization"] {
                assert!(
                    header(&r, secret).is_none(),
                    "{method} {path}: {secret} readable by a page script"
                );
            }
            assert!(!r.body.contains("eyJ"), "{path}: a token in the body");
        }
    }
    // The ingress asks on the internal listener and gets the token.
    let internal = w.gh.auth_url.clone().unwrap();
    let r = b.get(&format!("{internal}/oauth2/auth")).await;
    let token = header(&r, "x-forwarded-id-token").unwrap();
    assert_eq!(header(&r, "authorization"), Some(format!("Bearer {token}")));
    // The internal listener serves nothing else: a public route pointed at it by mistake
    // breaks sign-in loudly instead of exposing it.
    for path in [
        "/",
        "/oauth2/start",
        "/oauth2/userinfo",
        "/oauth2/callback",
        "/app",
    ] {
        let r = b.get(&format!("{internal}{path}")).await;
        assert_eq!(r.status, 404, "{path} on auth_listen: {r:?}");
        assert!(r.body.contains("auth_listen"), "{path}: {}", r.body);
    }
    assert_eq!(b.get(&format!("{internal}/healthz")).await.status, 200);
    // The sidecar's upstream still gets the token (the proxy path is not an answer).
    let echo = b.get(&format!("{}/app", w.gh.url)).await.json();
    assert_eq!(seen(&echo, "x-forwarded-id-token").len(), 1);
}

/// A client's own identity header, in any spelling, makes the check a 400 naming it.
#[tokio::test]
async fn a_check_carrying_a_client_identity_header_is_refused() {
    let (w, b) = logged_in(&[("auth_listen", "127.0.0.1:0")]).await;
    let internal = w.gh.auth_url.clone().unwrap();
    for (name, value) in [
        ("X-Forwarded-User", "root"),
        ("X_Forwarded_User", "root"),
        ("x.forwarded.user", "root"),
        ("X-FORWARDED-GROUP", "system:masters"),
        ("x-forwarded-groups", "system:masters"),
        ("X-Forwarded-Email", "root@x"),
        ("X-Forwarded-Preferred-Username", "root"),
        ("X-Forwarded-Id-Token", "forged"),
        ("X-Auth-Request-User", "root"),
        ("x_auth_request_groups", "system:masters"),
        ("X-Auth-Request-Email", "root@x"),
        ("X-Auth-Request-Preferred-Username", "root"),
    ] {
        for path in ["/oauth2/auth", "/oauth2/auth/app"] {
            let api = b
                .send(
                    Method::GET,
                    &format!("{internal}{path}"),
                    &[(name, value), ("accept", "application/json")],
                )
                .await;
            assert_eq!(api.status, 400, "{name} on {path}: {api:?}");
            let body = api.json();
            assert_eq!(body["error"], "client_identity_header");
            assert!(
                body["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("`{}`", name.to_ascii_lowercase())),
                "{body}"
            );
            assert!(header(&api, "x-forwarded-user").is_none());
            let page = b
                .send(Method::GET, &format!("{internal}{path}"), &[(name, value)])
                .await;
            assert_eq!(page.status, 400);
            assert!(page.body.contains("forward_auth_client"), "{}", page.body);
        }
    }
    // Unrelated headers with similar names are fine.
    let r = b
        .send(
            Method::GET,
            &format!("{internal}/oauth2/auth"),
            &[("x-forwarded-userx", "a"), ("x-user-agent", "b")],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// CONTRACTS.md §4: a list setting never splits a value on spaces. With
/// `allowed_groups = "Domain Admins"`, a member of `Admins` or `Domain` stays out, in the
/// sidecar and at `/oauth2/auth`, and a member of `Domain Admins` gets in; the query's
/// `allowed_groups=Domain%20Admins` (or `Domain+Admins`) is that same one group, and an
/// email list with a space is a 400 that names the comma-separated form.
#[tokio::test]
async fn a_group_name_with_a_space_is_one_group_in_settings_and_query() {
    let configured = world(&[("allowed_groups", "Domain Admins")]).await;
    let open = world(&[]).await;
    for (groups, allowed) in [
        (json!(["Admins"]), false),
        (json!(["Domain", "dev"]), false),
        (json!(["Domain Admins"]), true),
        (json!(["dev", "Domain Admins"]), true),
    ] {
        let want = if allowed { 200 } else { 403 };
        let g = groups.clone();
        configured.idp.tweak(move |c| c["groups"] = g.clone());
        let b = Browser::new();
        let (page, visited) = b.follow(&format!("{}/app", configured.gh.url)).await;
        assert_eq!(page.status, want, "sidecar, groups {groups}: {visited:?}");
        if !allowed {
            assert!(
                page.body
                    .contains("requires one of the groups Domain Admins;"),
                "{}",
                page.body
            );
        }
        let fa = b.get(&format!("{}/oauth2/auth", configured.gh.url)).await;
        assert_eq!(fa.status, want, "forward auth, groups {groups}");

        let g = groups.clone();
        open.idp.tweak(move |c| c["groups"] = g.clone());
        let b = Browser::new();
        let (page, _) = b.follow(&format!("{}/", open.gh.url)).await;
        assert_eq!(page.status, 200, "no configured rule");
        for q in [
            "allowed_groups=Domain%20Admins",
            "allowed_groups=Domain+Admins",
            "allowed_groups=ops,%20Domain%20Admins",
        ] {
            let r = b.get(&format!("{}/oauth2/auth?{q}", open.gh.url)).await;
            assert_eq!(r.status, want, "{q}, groups {groups}: {}", r.body);
        }
    }
    let b = Browser::new();
    for (q, fix) in [
        (
            "allowed_emails=a@x.org%20b@y.org",
            "separate items with commas: a@x.org,b@y.org",
        ),
        (
            "allowed_email_domains=x.org+y.org",
            "separate items with commas: x.org,y.org",
        ),
    ] {
        let r = b
            .send(
                Method::GET,
                &format!("{}/oauth2/auth?{q}", open.gh.url),
                &[("accept", "application/json")],
            )
            .await;
        assert_eq!(r.status, 400, "{q}");
        let said = r.json()["message"].as_str().unwrap_or_default().to_string();
        assert!(said.contains(fix), "{q}: {}", r.body);
    }
}

/// A skip route that names its methods (`POST=/hook`) never lets through a check whose
/// original request carries a method override: the ingress forwards the request itself,
/// so gatehouse could not remove it, and the app would run another method.
#[tokio::test]
async fn a_method_override_in_a_check_never_rides_a_skip_route() {
    let w = world(&[
        ("skip_auth_routes", "POST=/hook"),
        ("trusted_proxies", "127.0.0.1"),
        ("forward_auth_client", "nginx"),
    ])
    .await;
    let b = Browser::new();
    let check = |extra: Option<(&'static str, &'static str)>| {
        let url = format!("{}/oauth2/auth", w.gh.url);
        let b = &b;
        async move {
            let mut h = vec![
                ("x-forwarded-uri", "/hook"),
                ("x-forwarded-method", "POST"),
                ("accept", "application/json"),
            ];
            h.extend(extra);
            b.send(Method::GET, &url, &h).await.status
        }
    };
    assert_eq!(check(None).await, 200, "the skip route itself works");
    for spelling in [
        "X-HTTP-Method-Override",
        "x-http-method",
        "X-Method-Override",
        "X_HTTP_Method_Override",
    ] {
        assert_eq!(
            check(Some((spelling, "DELETE"))).await,
            401,
            "{spelling}: a public POST must not become a DELETE"
        );
    }
}
