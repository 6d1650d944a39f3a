//! What each `[[routes]]` entry sets for its app (issue 18 item 4): its own header set
//! and `pass_authorization`, its own skip routes; a client's `Authorization` never
//! reaching an app another route hands a token; WebSockets after a reload into routes.
//! Forward auth with routes is `gateway_forward_auth.rs`'s.

use crate::gateway_routes::with_routes;
use crate::support::idp::TestIdp;
use crate::support::upstream::{seen, Upstream};
use crate::support::Browser;
use reqwest::Method;

/// Headlamp on 127.0.0.1 (the ID token as `Authorization`, no token header, its static
/// files public) and Grafana on localhost (its own user and group headers): two echo
/// upstreams, one sign-in.
#[tokio::test]
async fn each_app_gets_its_own_header_set_and_skip_routes_from_one_sign_in() {
    let idp = TestIdp::start().await;
    let (headlamp, grafana) = (Upstream::start().await, Upstream::start().await);
    let gh = with_routes(
        &idp,
        &format!(
            r#"
[[routes]]
host = "127.0.0.1"
upstream = "{headlamp}"
pass_authorization = "id_token"
header_id_token = ""
skip_auth_routes = ["GET=/static/**"]

[[routes]]
host = "localhost"
upstream = "{grafana}"
header_user = "X-WEBAUTH-USER"
header_groups = "X-WEBAUTH-GROUPS"
"#,
            headlamp = headlamp.url,
            grafana = grafana.url,
        ),
    )
    .await;
    let port = gh.addr.port();
    let b = Browser::new();
    let (resp, _) = b.follow(&format!("http://127.0.0.1:{port}/c/main")).await;
    assert_eq!(resp.status, 200, "{resp:?}");

    // Headlamp: Bearer <ID token>, the default user header, no token header; a client's
    // copy of Grafana's user header (an identity header of another app) is removed.
    let forged = [
        ("x-webauth-user", "mallory"),
        ("X_WEBAUTH_GROUPS", "admins"),
        ("x-forwarded-id-token", "forged"),
    ];
    let echo = b
        .send(
            Method::GET,
            &format!("http://127.0.0.1:{port}/c/main"),
            &forged,
        )
        .await
        .json();
    let bearer = seen(&echo, "authorization");
    assert_eq!(bearer.len(), 1, "{echo}");
    assert!(bearer[0].starts_with("Bearer ey"), "{bearer:?}");
    assert_eq!(seen(&echo, "x-forwarded-user"), ["alice@example.test"]);
    for name in ["x-forwarded-id-token", "x-webauth-user", "x_webauth_groups"] {
        assert!(
            seen(&echo, name).is_empty(),
            "{name} reached headlamp: {echo}"
        );
    }

    // Grafana: its own names, no Authorization; the default names are gone, client
    // copies included.
    let forged = [
        ("x-forwarded-user", "mallory"),
        ("x-webauth-user", "mallory"),
    ];
    let echo = b
        .send(
            Method::GET,
            &format!("http://localhost:{port}/d/home"),
            &forged,
        )
        .await
        .json();
    assert_eq!(
        seen(&echo, "x-webauth-user"),
        ["alice@example.test"],
        "{echo}"
    );
    assert_eq!(seen(&echo, "x-webauth-groups"), ["admins,dev"]);
    assert!(seen(&echo, "x-forwarded-user").is_empty(), "{echo}");
    assert!(seen(&echo, "authorization").is_empty(), "{echo}");
    assert_eq!(
        seen(&echo, "x-forwarded-id-token").len(),
        1,
        "the top-level set's token header"
    );

    // Headlamp's skip route is Headlamp's: public there, a sign-in on Grafana.
    let anon = Browser::new();
    let public = anon
        .get(&format!("http://127.0.0.1:{port}/static/app.js"))
        .await;
    assert_eq!(public.status, 200, "{public:?}");
    assert!(seen(&public.json(), "authorization").is_empty());
    let other = anon
        .get(&format!("http://localhost:{port}/static/app.js"))
        .await;
    assert_eq!(other.status, 302, "{other:?}");
    let post = anon
        .send(
            Method::POST,
            &format!("http://127.0.0.1:{port}/static/app.js"),
            &[],
        )
        .await;
    assert_ne!(post.status, 200, "GET only: {post:?}");
}

/// A reload that turns one `upstream` into `[[routes]]`: a WebSocket opened before
/// (signed in, or through a skip route) was admitted by rules that no longer decide
/// anything, to an upstream that is now only some route's. It is closed (4003), as one
/// that reaches no route is: it was never matched against the table, and the route its
/// host now has may refuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_routes_closes_websockets_opened_under_the_single_upstream() {
    use crate::proxy::websocket;
    use crate::reload::{base, free_port, serve, sign_in, write};
    use futures_util::StreamExt;
    use std::time::Duration;
    use tokio_tungstenite::tungstenite::Message;

    let (idp, upstream) = (TestIdp::start().await, Upstream::start().await);
    let port = free_port();
    let common = format!(
        "client_secret = \"{}\"\ncookie_secret = \"{}\"\n",
        crate::support::idp::CLIENT_SECRET,
        crate::support::COOKIE_SECRET
    );
    let single = format!(
        "{}{common}skip_auth_routes = [\"/feed\"]\n",
        base(&idp, &upstream, port)
    );
    let gh = serve(&single, port, &[]).await;
    let alice = sign_in(&idp, &gh.url, "alice").await;
    let (_, _, mut signed_in) = websocket(&gh.url, "/ws", &alice.cookie_header())
        .await
        .expect("a signed-in WebSocket");
    let (_, _, mut public) = websocket(&gh.url, "/feed", "")
        .await
        .expect("a WebSocket through a skip route");

    // The same app, now a route that wants ops (alice is in admins and dev) and has no
    // public path.
    let base_without_upstream: String = base(&idp, &upstream, port)
        .lines()
        .filter(|l| !l.starts_with("upstream"))
        .map(|l| format!("{l}\n"))
        .collect();
    write(
        &gh.config(),
        &format!(
            "{base_without_upstream}{common}\n[[routes]]\nhost = \"127.0.0.1\"\nupstream = \"{}\"\nallowed_groups = [\"ops\"]\n",
            upstream.url
        ),
    );
    gh.hangup();
    gh.logged("configuration reloaded", 1).await;
    for (what, ws) in [("signed-in", &mut signed_in), ("public", &mut public)] {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                assert_eq!(u16::from(frame.code), 4003, "{what}")
            }
            other => {
                panic!("the {what} WebSocket stayed open under a route that refuses it: {other:?}")
            }
        }
    }
    // New requests get the route's rules.
    let r = alice.get(&format!("{}/app", gh.url)).await;
    assert_eq!(r.status, 403, "{r:?}");
}

/// An app handed `Authorization` by one of its routes takes that header as gatehouse's
/// word: through another route to the same upstream (a prefix with other rules, its own
/// skip routes), the client's own copy is removed too, as every set's header names are.
/// An app that no route hands a token keeps the client's (its own tokens).
#[tokio::test]
async fn the_clients_authorization_never_reaches_an_app_that_one_of_its_routes_hands_a_token() {
    let idp = TestIdp::start().await;
    let (headlamp, other) = (Upstream::start().await, Upstream::start().await);
    let gh = with_routes(
        &idp,
        &format!(
            r#"
[[routes]]
host = "127.0.0.1"
upstream = "{headlamp}"
pass_authorization = "id_token"
header_id_token = ""

[[routes]]
host = "127.0.0.1"
path_prefix = "/plugins"
upstream = "{headlamp}"
skip_auth_routes = ["GET=/plugins/public/**"]

[[routes]]
host = "127.0.0.1"
path_prefix = "/quiet"
upstream = "{headlamp}"
pass_authorization = "none"

[[routes]]
host = "localhost"
upstream = "{other}"
"#,
            headlamp = headlamp.url,
            other = other.url,
        ),
    )
    .await;
    let port = gh.addr.port();
    let b = Browser::new();
    let (resp, _) = b.follow(&format!("http://127.0.0.1:{port}/")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let forged = [("authorization", "Bearer forged.admin.token")];
    for (b, path) in [
        (&b, "/plugins/x"),
        (&b, "/quiet/x"),
        (&Browser::new(), "/plugins/public/app.js"),
    ] {
        let r = b
            .send(
                Method::GET,
                &format!("http://127.0.0.1:{port}{path}"),
                &forged,
            )
            .await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        let echo = r.json();
        assert!(
            seen(&echo, "authorization").is_empty(),
            "{path}: the client's Authorization reached headlamp: {echo}"
        );
    }
    // Through its own route headlamp gets gatehouse's, never the client's.
    let echo = b
        .send(Method::GET, &format!("http://127.0.0.1:{port}/c"), &forged)
        .await
        .json();
    let bearer = seen(&echo, "authorization");
    assert_eq!(bearer.len(), 1, "{echo}");
    assert!(bearer[0].starts_with("Bearer ey"), "{bearer:?}");
    // Another app, handed no token by any route, keeps the client's own.
    let echo = b
        .send(Method::GET, &format!("http://localhost:{port}/"), &forged)
        .await
        .json();
    assert_eq!(seen(&echo, "authorization"), ["Bearer forged.admin.token"]);
}
