//! The proxy itself: WebSockets with the identity on the upgrade request and the
//! subprotocol kept, streaming bodies, path prefixes, and 502/504 when the upstream fails.

use crate::flow::logged_in;
use crate::support::upstream::{seen, Upstream};
use crate::support::{config, start, Browser};
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Opens a WebSocket through gatehouse with `cookie`, offering Headlamp's subprotocols.
pub async fn websocket(
    base: &str,
    path: &str,
    cookie: &str,
) -> Result<
    (
        String,
        serde_json::Value,
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    ),
    String,
> {
    let url = format!("{}{path}", base.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().unwrap();
    let h = req.headers_mut();
    h.insert("cookie", cookie.parse().unwrap());
    h.insert(
        "sec-websocket-protocol",
        "v4.channel.k8s.io, base64.binary.k8s.io".parse().unwrap(),
    );
    h.insert("x-forwarded-user", "root".parse().unwrap());
    h.insert("x_forwarded_group", "system:masters".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .map_err(|e| e.to_string())?;
    let protocol = resp
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let first = match ws.next().await {
        Some(Ok(Message::Text(t))) => serde_json::from_str(t.as_str()).unwrap(),
        other => return Err(format!("unexpected first message {other:?}")),
    };
    Ok((protocol, first, ws))
}

/// Checks a WebSocket through gatehouse end to end.
pub async fn check_websocket(base: &str, cookie: &str, user: &str) {
    let path =
        "/headlamp/clusters/main/api/v1/namespaces/default/pods/p/exec?command=sh&stdin=true";
    let (protocol, first, mut ws) = websocket(base, path, cookie)
        .await
        .expect("websocket through gatehouse");
    assert_eq!(protocol, "v4.channel.k8s.io", "the subprotocol survives");
    assert_eq!(first["path"], path, "the path prefix is kept");
    assert_eq!(
        seen(&first, "x-forwarded-user"),
        vec![user.to_string()],
        "identity on the upgrade request, spoof gone"
    );
    assert!(seen(&first, "x_forwarded_group").is_empty());
    assert_eq!(seen(&first, "x-forwarded-id-token").len(), 1);
    ws.send(Message::text("hello through gatehouse"))
        .await
        .unwrap();
    match ws.next().await {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), "hello through gatehouse"),
        other => panic!("no echo: {other:?}"),
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    match ws.next().await {
        Some(Ok(Message::Binary(b))) => assert_eq!(b.as_ref(), &[0u8, 1, 2, 255]),
        other => panic!("no binary echo: {other:?}"),
    }
}

#[tokio::test]
async fn websockets_pass_through_with_identity_and_subprotocol() {
    let (w, b) = logged_in(&[]).await;
    check_websocket(&w.gh.url, &b.cookie_header(), "alice@example.test").await;
    let denied = websocket(&w.gh.url, "/ws", "").await;
    assert!(
        denied.unwrap_err().contains("401"),
        "no session, no upgrade"
    );
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    let (w, b) = logged_in(&[]).await;
    let client = reqwest::Client::new();
    let size = 48 * 1024 * 1024;
    let r = client
        .post(format!("{}/upload", w.gh.url))
        .header("cookie", b.cookie_header())
        .body(vec![7u8; size])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["body_bytes"],
        size
    );
    let mut resp = client
        .get(format!("{}/big?bytes={size}", w.gh.url))
        .header("cookie", b.cookie_header())
        .send()
        .await
        .unwrap();
    let mut total = 0;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        total += chunk.len();
    }
    assert_eq!(total, size);
}

#[tokio::test]
async fn upstream_cookies_and_status_pass_back() {
    let (w, b) = logged_in(&[]).await;
    let r = b
        .send(
            Method::GET,
            &format!("{}/x", w.gh.url),
            &[("accept", "application/json")],
        )
        .await;
    assert!(r
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("upstream_cookie=1")));
    assert!(
        !r.headers.contains_key("connection")
            || r.headers.get("connection").unwrap() == "keep-alive"
    );
}

#[tokio::test]
async fn a_down_upstream_is_a_502_page_and_a_slow_one_504() {
    let idp = crate::support::idp::TestIdp::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let gh = start(config(&dead, &idp.issuer, &[])).await;
    let b = Browser::new();
    let (resp, _) = b.follow(&format!("{}/", gh.url)).await;
    assert_eq!(resp.status, 502);
    assert!(
        resp.body.contains("not accepting connections") && resp.body.contains("Request id"),
        "{}",
        resp.body
    );
    let api = b
        .send(
            Method::GET,
            &format!("{}/", gh.url),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(api.status, 502);
    assert_eq!(api.json()["error"], "upstream_unavailable");

    let up = Upstream::start().await;
    let slow = start(config(
        &up.url,
        &idp.issuer,
        &[("upstream_timeout_secs", "1")],
    ))
    .await;
    let b = Browser::new();
    b.follow(&format!("{}/", slow.url)).await;
    let r = b
        .send(
            Method::GET,
            &format!("{}/slow", slow.url),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(r.json()["error"], "upstream_timeout");
}

/// A WebSocket never outlives its session: when the session behind the upgrade expires,
/// gatehouse closes it (code 4001) and the client reconnects through the auth step.
#[tokio::test]
async fn a_websocket_is_closed_when_its_session_expires() {
    let w = crate::flow::world(&[("refresh_before_secs", "0")]).await;
    w.idp.set_mint(crate::support::idp::Mint {
        ttl: 2,
        ..crate::support::idp::Mint::default()
    });
    let b = Browser::new();
    crate::flow::login(&w, &b, "/").await;
    let (_, _, mut ws) = websocket(&w.gh.url, "/ws", &b.cookie_header())
        .await
        .expect("websocket through gatehouse");
    ws.send(Message::text("still here")).await.unwrap();
    assert!(matches!(ws.next().await, Some(Ok(Message::Text(_)))));
    // Nothing else is sent: the next frame is gatehouse's close, at the session's end.
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
        .await
        .expect("closed within the session's lifetime");
    match next {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4001),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

/// Signing out closes the WebSockets that session opened on this replica (code 4001), at
/// once; another user's WebSocket stays open.
#[tokio::test]
async fn signing_out_closes_that_sessions_websockets_only() {
    let (w, alice) = logged_in(&[]).await;
    let bob = Browser::new();
    crate::flow::login(&w, &bob, "/").await;
    let (_, _, mut theirs) = websocket(&w.gh.url, "/ws", &alice.cookie_header())
        .await
        .expect("alice's websocket");
    let (_, _, mut other) = websocket(&w.gh.url, "/ws", &bob.cookie_header())
        .await
        .expect("the other session's websocket");
    let out = alice
        .send(
            Method::POST,
            &format!("{}/oauth2/sign_out", w.gh.url),
            &[("origin", w.gh.url.as_str())],
        )
        .await;
    assert!(out.status == 302 || out.status == 200, "{out:?}");
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), theirs.next())
        .await
        .expect("closed at sign-out, not at expiry");
    match next {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 4001),
        other => panic!("expected a close frame, got {other:?}"),
    }
    other.send(Message::text("still here")).await.unwrap();
    match other.next().await {
        Some(Ok(Message::Text(t))) => assert!(t.as_str().contains("still here"), "{t}"),
        got => panic!("the other session's websocket was closed too: {got:?}"),
    }
}
