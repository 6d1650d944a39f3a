//! Several apps behind one gatehouse (`[[routes]]`, issue 18 item 4): each host goes to
//! its own upstream under its own rules, one sign-in serves them all, a request for no
//! app is a 404 that names none of them.

use crate::support::idp::{self, TestIdp};
use crate::support::upstream::{seen, Upstream};
use crate::support::{start, Browser, Gatehouse, COOKIE_SECRET};
use gatehouse::config::{Config, RawConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream that answers every request with `name` as its body (to tell apps apart).
struct Named {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Named {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn named(name: &'static str) -> Named {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{name}",
                    name.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    Named { url, task }
}

struct Apps {
    _idp: TestIdp,
    a: Upstream,
    b: Named,
    gh: Gatehouse,
}

/// gatehouse on the test IdP with `routes` (TOML `[[routes]]` tables) and plain-http
/// cookies.
pub(crate) async fn with_routes(idp: &TestIdp, routes: &str) -> Gatehouse {
    let toml = format!(
        r#"
issuer_url = "{issuer}"
client_id = "{id}"
client_secret = "{secret}"
cookie_secret = "{COOKIE_SECRET}"
cookie_secure = false
listen = "127.0.0.1:0"
{routes}"#,
        issuer = idp.issuer,
        id = idp::CLIENT_ID,
        secret = idp::CLIENT_SECRET,
    );
    let raw = RawConfig::from_toml(&toml, "routes.toml").unwrap();
    start(Config::from_raw(&raw).unwrap()).await
}

/// App A on 127.0.0.1 for group `dev`, app B on localhost for group `ops` and on
/// `*.apps.localhost` for `dev`; alice (groups admins, dev) may use A and the wildcard.
async fn apps() -> Apps {
    let idp = TestIdp::start().await;
    let a = Upstream::start().await;
    let b = named("app-b").await;
    let gh = with_routes(
        &idp,
        &format!(
            r#"
[[routes]]
host = "127.0.0.1"
upstream = "{a}"
allowed_groups = ["dev"]

[[routes]]
host = "localhost"
upstream = "{b}"
allowed_groups = ["ops"]

[[routes]]
host = "*.apps.localhost"
upstream = "{b}"
allowed_groups = "dev"
"#,
            a = a.url,
            b = b.url,
        ),
    )
    .await;
    Apps {
        _idp: idp,
        a,
        b,
        gh,
    }
}

#[tokio::test]
async fn one_sign_in_is_allowed_on_one_app_and_refused_on_the_other() {
    let w = apps().await;
    let b = Browser::new();
    let port = w.gh.addr.port();
    // Signs in once, on app A.
    let (resp, _) = b.follow(&format!("http://127.0.0.1:{port}/dash")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let echo = resp.json();
    assert_eq!(echo["path"], "/dash");
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["alice@example.test"]);
    // The same session on app B (another host): alice is not in `ops`.
    let refused = b.get(&format!("http://localhost:{port}/")).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(!refused.body.contains("app-b"), "never proxied");
    // A third route, wildcard, to B's upstream with `dev`: allowed, and B answers.
    let wild = b
        .send(
            reqwest::Method::GET,
            &format!("http://127.0.0.1:{port}/x"),
            &[("host", &format!("Team1.Apps.localhost:{port}"))],
        )
        .await;
    assert_eq!(wild.status, 200, "{wild:?}");
    assert_eq!(wild.body, "app-b");
    // Still A on its own host: the route picked the upstream, not the session.
    let again = b.get(&format!("http://127.0.0.1:{port}/")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["path"], "/");
}

#[tokio::test]
async fn a_request_for_no_app_is_a_404_that_names_none() {
    let w = apps().await;
    let b = Browser::new();
    let port = w.gh.addr.port();
    let url = format!("http://127.0.0.1:{port}/secret");
    for host in [
        "unknown.test".to_string(),
        format!("apps.localhost:{port}"),
        format!("127.0.0.1.evil.test:{port}"),
        format!("x.apps.localhost.evil.test:{port}"),
        "localhost:notaport".to_string(),
    ] {
        for accept in ["text/html", "application/json"] {
            let resp = b
                .send(
                    reqwest::Method::GET,
                    &url,
                    &[("host", &host), ("accept", accept)],
                )
                .await;
            assert_eq!(resp.status, 404, "{host}: {resp:?}");
            assert!(resp.location().is_none(), "no sign-in for no app");
            for secret in [&w.a.url, &w.b.url, "apps.localhost\"", "routes", "ops"] {
                assert!(
                    !resp.body.contains(secret.trim_start_matches("http://")),
                    "{host}: the 404 names `{secret}`: {}",
                    resp.body
                );
            }
            if accept == "application/json" {
                assert_eq!(resp.json()["error"], "no_route", "{}", resp.body);
            }
        }
    }
}

#[tokio::test]
async fn a_client_cannot_pick_another_app_with_forwarding_headers() {
    let w = apps().await;
    let b = Browser::new();
    let port = w.gh.addr.port();
    let (resp, _) = b.follow(&format!("http://127.0.0.1:{port}/")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    // Not a trusted proxy: its X-Forwarded-Host is not believed, so this stays on A.
    let resp = b
        .send(
            reqwest::Method::GET,
            &format!("http://127.0.0.1:{port}/"),
            &[
                ("x-forwarded-host", "team1.apps.localhost"),
                ("forwarded", "host=team1.apps.localhost"),
            ],
        )
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.json()["path"], "/", "A's echo, not B");
}

/// A (echo) on `/` for `dev`, B on `/admin` for `ops`: alice may use A, not B.
async fn admin_prefix() -> (TestIdp, Upstream, Named, Gatehouse) {
    let idp = TestIdp::start().await;
    let a = Upstream::start().await;
    let b = named("admin-app").await;
    let gh = with_routes(
        &idp,
        &format!(
            r#"
[[routes]]
host = "127.0.0.1"
upstream = "{a}"
allowed_groups = ["dev"]

[[routes]]
host = "127.0.0.1"
path_prefix = "/admin"
upstream = "{b}"
allowed_groups = ["ops"]
"#,
            a = a.url,
            b = b.url,
        ),
    )
    .await;
    (idp, a, b, gh)
}

#[tokio::test]
async fn a_path_the_upstream_reads_as_a_refused_prefix_gets_that_prefix_rules() {
    let (_idp, _a, _b, gh) = admin_prefix().await;
    let b = Browser::new();
    let port = gh.addr.port();
    let (resp, _) = b.follow(&format!("http://127.0.0.1:{port}/dash")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    // Servers read these as /admin...: `;parameters` dropped, escapes decoded. They are
    // B's requests, under B's rules, never proxied to A.
    for path in [
        "/admin;x",
        "/admin;jsessionid=1/users",
        "/%61dmin",
        "/%61%64%6d%69%6e/users",
        "/admin%3bx/users",
        // Express (by default), ASP.NET Core and IIS match routes without case.
        "/ADMIN/users",
        "/Admin",
        "/%41dmin",
    ] {
        let resp = b.get(&format!("http://127.0.0.1:{port}{path}")).await;
        assert_eq!(resp.status, 403, "{path}: {resp:?}");
        assert!(!resp.body.contains("\"path\""), "{path}: proxied to A");
    }
    // Dot segments hidden behind parameters or escapes match no app at all.
    for path in [
        "/dash/..;/admin",
        "/dash/%2e%2e;x/admin",
        "/dash/%2e;x/admin",
    ] {
        let resp = b.get(&format!("http://127.0.0.1:{port}{path}")).await;
        assert_eq!(resp.status, 404, "{path}: {resp:?}");
    }
    // What is not /admin to any server stays A's.
    for path in ["/admins", "/admin%20/x", "/dash;x"] {
        let resp = b.get(&format!("http://127.0.0.1:{port}{path}")).await;
        assert_eq!(resp.status, 200, "{path}: {resp:?}");
        assert_eq!(resp.json()["path"], path, "A's echo, the path as sent");
    }
}
