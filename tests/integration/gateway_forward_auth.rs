//! Forward auth with `[[routes]]` (issue 18 item 4): `/oauth2/auth` answers with the
//! route of the original request (its rules, skip routes and header set), refuses a
//! check it cannot place, and a route without an upstream is for forward auth only.

use crate::gateway_routes::with_routes;
use crate::support::idp::TestIdp;
use crate::support::upstream::Upstream;
use crate::support::Browser;
use reqwest::Method;

/// Forward auth with routes: an ingress (trusted, nginx's headers) asks about hosts
/// that gatehouse only checks (routes without an upstream).
async fn checked_hosts() -> (TestIdp, Upstream, crate::support::Gatehouse) {
    let idp = TestIdp::start().await;
    let echo = Upstream::start().await;
    let gh = with_routes(
        &idp,
        &format!(
            r#"
trusted_proxies = "127.0.0.1/32"
forward_auth_client = "nginx"
auth_listen = "127.0.0.1:0"

[[routes]]
host = "127.0.0.1"
upstream = "{echo}"

[[routes]]
host = "grafana.test"
allowed_groups = "dev"
header_user = "X-WEBAUTH-USER"

[[routes]]
host = "billing.test"
allowed_groups = "ops"

[[routes]]
host = "apps.test"
skip_auth_routes = "/public/**"

[[routes]]
host = "apps.test"
path_prefix = "/admin"
allowed_groups = "ops"
"#,
            echo = echo.url,
        ),
    )
    .await;
    (idp, echo, gh)
}

fn ingress<'a>(host: &'a str, uri: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("x-forwarded-host", host),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-uri", uri),
        ("x-forwarded-method", "GET"),
    ]
}

#[tokio::test]
async fn forward_auth_answers_with_the_route_of_the_original_request() {
    let (_idp, _echo, gh) = checked_hosts().await;
    let b = Browser::new();
    let (resp, _) = b
        .follow(&format!("http://127.0.0.1:{}/", gh.addr.port()))
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let auth = format!("{}/oauth2/auth", gh.auth_url.clone().unwrap());
    let check = |host: &'static str, uri: &'static str| {
        let (b, auth) = (&b, &auth);
        async move { b.send(Method::GET, auth, &ingress(host, uri)).await }
    };

    // alice (admins, dev): Grafana's rules let her in, with Grafana's header set.
    let r = check("grafana.test", "/d/home").await;
    assert_eq!(r.status, 200, "{r:?}");
    let user = r
        .headers
        .get("x-webauth-user")
        .and_then(|v| v.to_str().ok());
    assert_eq!(user, Some("alice@example.test"), "{r:?}");
    assert!(r.headers.get("x-forwarded-user").is_none(), "{r:?}");
    // A check that brings its own copy of any app's identity header is refused (the
    // ingress would hand it on), whichever host it is for.
    for host in ["grafana.test", "billing.test"] {
        let mut with = ingress(host, "/").to_vec();
        with.push(("X_WebAuth_User", "admin"));
        let r = b.send(Method::GET, &auth, &with).await;
        assert_eq!(r.status, 400, "{host}: {r:?}");
    }
    // Billing's refuse her: 403, as the proxy would.
    assert_eq!(check("billing.test", "/").await.status, 403);
    // A path prefix's rules apply to the original path, in every spelling a server
    // reads as it.
    assert_eq!(check("apps.test", "/wiki").await.status, 200);
    for path in [
        "/admin",
        "/admin/users",
        "/%61dmin",
        "/admin;x",
        "/admin?x=1",
        "/ADMIN/users",
        "/Admin",
    ] {
        assert_eq!(check("apps.test", path).await.status, 403, "{path}");
    }
    // A path the table cannot place is refused, never left to the top-level rules.
    for path in [
        "/wiki/../admin",
        "/wiki/%2e%2e/admin",
        "//admin",
        // nginx ends `$uri` at a raw `#` (location /admin) but sends `$request_uri`.
        "/admin#x",
        "/admin#",
    ] {
        let r = check("apps.test", path).await;
        assert_eq!(r.status, 403, "{path}: {r:?}");
        assert!(r.body.contains("which application"), "{path}: {}", r.body);
    }
    // No route for the host: refused, naming no route.
    for host in ["unknown.test", "grafana.test.evil.test", "localhost"] {
        let r = b
            .send(
                Method::GET,
                &auth,
                &[
                    ingress(host, "/")[0],
                    ingress(host, "/")[1],
                    ingress(host, "/")[2],
                    ("accept", "application/json"),
                ],
            )
            .await;
        assert_eq!(r.status, 403, "{host}: {r:?}");
        assert_eq!(r.json()["error"], "no_route_for_check", "{host}");
        assert!(!r.body.contains("billing"), "{}", r.body);
    }
    // The ingress did not say which host: no route can be chosen.
    let r = b.send(Method::GET, &auth, &[]).await;
    assert_eq!(r.status, 403, "{r:?}");
    // A skip route of apps.test is public there, with no session at all.
    let anon = Browser::new();
    let r = anon
        .send(
            Method::GET,
            &auth,
            &ingress("apps.test", "/public/logo.png"),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = anon
        .send(
            Method::GET,
            &auth,
            &ingress("grafana.test", "/public/logo.png"),
        )
        .await;
    assert_eq!(r.status, 401, "grafana has no such skip route: {r:?}");
}

#[tokio::test]
async fn a_route_without_an_upstream_is_not_proxied() {
    let (_idp, _echo, gh) = checked_hosts().await;
    let b = Browser::new();
    let port = gh.addr.port();
    let (resp, _) = b.follow(&format!("http://127.0.0.1:{port}/")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let r = b
        .send(
            Method::GET,
            &format!("http://127.0.0.1:{port}/"),
            &[("host", "grafana.test")],
        )
        .await;
    assert_eq!(r.status, 404, "{r:?}");
}
