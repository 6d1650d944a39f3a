//! When what gatehouse depends on fails: a provider that hangs, an upstream that closes
//! mid-response or drops a WebSocket. Each answer is bounded in time, names the cause,
//! and leaves no connection or memory behind. (The real provider going down and coming
//! back is in `interop.rs`.)

use crate::flow::{login, world};
use crate::support::upstream::seen;
use crate::support::Browser;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The provider hangs (accepts, never answers): a sign-in in progress and a new one each
/// get a 503 naming the provider within the provider timeout, and a signed-in user keeps
/// working (the refresh that falls due is skipped while the tokens are valid).
#[tokio::test]
async fn a_hung_provider_costs_a_bounded_wait_and_a_503_naming_it() {
    let w = world(&[
        ("provider_timeout_secs", "2"),
        ("refresh_before_secs", "100000"),
    ])
    .await;
    let alice = Browser::new();
    assert_eq!(login(&w, &alice, "/before").await.status, 200);

    // Bob is half-way through signing in when the provider hangs.
    let bob = Browser::new();
    let to_idp = bob
        .get(&format!("{}/oauth2/start?rd=/after", w.gh.url))
        .await;
    let authorize = to_idp.location().expect("sent to the provider");
    let back = bob.get(&authorize).await;
    let callback = back
        .location()
        .expect("the provider sends bob back with a code");
    w.idp.state.hang.store(true, Ordering::SeqCst);

    let started = Instant::now();
    let r = bob.get(&callback).await;
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        took < Duration::from_secs(5),
        "the exchange waited {took:?}"
    );
    assert!(
        r.body.contains(&w.idp.issuer),
        "names the provider: {}",
        r.body
    );
    assert!(r.body.contains("timed out"), "names the cause: {}", r.body);
    assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);

    // A new sign-in is not sent to a provider that does not answer.
    let carol = Browser::new();
    let started = Instant::now();
    let r = carol.get(&format!("{}/page", w.gh.url)).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(r.body.contains(&w.idp.issuer), "{}", r.body);

    // Alice is signed in: her requests pass, promptly, with her identity.
    for _ in 0..3 {
        let started = Instant::now();
        let r = alice.get(&format!("{}/during", w.gh.url)).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            seen(&r.json(), "x-forwarded-user"),
            vec!["alice@example.test"]
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    // The provider answers again: sign-in works without a restart.
    w.idp.state.hang.store(false, Ordering::SeqCst);
    let dave = Browser::new();
    let mut landed = None;
    for _ in 0..50 {
        let (r, _) = dave.follow(&format!("{}/after", w.gh.url)).await;
        if r.status == 200 {
            landed = Some(r);
            break;
        }
        assert_eq!(r.status, 503, "{r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let landed = landed.expect("sign-in works again once the provider answers");
    assert_eq!(landed.json()["path"], "/after");
}

/// An upstream that misbehaves on purpose, by path: `/cut` sends half a body and closes,
/// `/drop` closes without answering, `/ws` accepts a WebSocket, sends one message and
/// drops the connection, anything else is a small 200.
async fn bad_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                match path.as_str() {
                    "/cut" => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n")
                            .await;
                        let _ = s.write_all(&[b'x'; 1000]).await;
                    }
                    "/drop" => {}
                    // Promises keep-alive, then closes: the next request on this
                    // connection would be lost if gatehouse did not notice or retry.
                    "/once" => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                    "/ws" => {
                        let key = head
                            .lines()
                            .find_map(|l| {
                                let (n, v) = l.split_once(':')?;
                                n.eq_ignore_ascii_case("sec-websocket-key")
                                    .then(|| v.trim().to_string())
                            })
                            .unwrap_or_default();
                        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(
                            key.as_bytes(),
                        );
                        let resp = format!("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n");
                        let _ = s.write_all(resp.as_bytes()).await;
                        let _ = s.write_all(&[0x81, 0x02, b'h', b'i']).await;
                    }
                    _ => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                            .await;
                    }
                }
                // Dropping `s` closes the connection, abruptly for /cut and /ws.
            });
        }
    });
    (addr, task)
}

/// Open files and resident memory (KiB) of a process.
fn fds_and_rss(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    (fds, rss)
}

/// One round of upstream failures through gatehouse, each checked for what the user gets.
async fn failures(url: &str, b: &Browser, cookie: &str) {
    use futures_util::StreamExt;
    // Half a body, then the upstream closes: the client sees the body end early (an
    // error), never a hang.
    let cut = tokio::time::timeout(Duration::from_secs(5), async {
        let r = reqwest::Client::new()
            .get(format!("{url}/cut"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await
    })
    .await
    .expect("a cut response ends, it does not hang");
    assert!(cut.is_err(), "the client is told the body was cut short");
    // No answer at all: a 502 page naming the upstream.
    let r = b.get(&format!("{url}/drop")).await;
    assert_eq!(r.status, 502, "{r:?}");
    // A WebSocket whose upstream drops: the client's socket is closed too.
    let ws_url = format!("{}/ws", url.replacen("http://", "ws://", 1));
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(ws_url)
            .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    let first = ws.next().await;
    assert!(
        matches!(&first, Some(Ok(m)) if m.to_text().ok() == Some("hi")),
        "{first:?}"
    );
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    assert!(
        end.is_ok(),
        "the client's WebSocket is closed when the upstream's drops"
    );
}

/// The upstream closes mid-response, closes without answering, drops a WebSocket, and
/// finally goes away: each gives the user a 502 or a closed socket at once, and hundreds
/// of rounds leave gatehouse's open files and memory where they were.
#[tokio::test]
async fn upstream_failures_are_answered_and_leave_nothing_behind() {
    let idp = crate::support::idp::TestIdp::start().await;
    let (up, up_task) = bad_upstream().await;
    let port = crate::support::ingress::free_port();
    let gh =
        crate::support::RealGatehouse::start(port, &format!("http://{up}"), &idp.issuer, &[]).await;
    let (pid, url) = (gh.child.id(), gh.url.clone());
    let b = Browser::new();
    let (landed, _) = b.follow(&format!("{url}/ok")).await;
    assert_eq!(landed.status, 200, "{landed:?}");
    let cookie = b.cookie_header();

    // An upstream that closes kept-alive connections: every request still gets its answer.
    for i in 0..50 {
        let r = b.get(&format!("{url}/once")).await;
        assert_eq!(r.status, 200, "request {i}: {r:?}");
    }
    for _ in 0..20 {
        failures(&url, &b, &cookie).await;
    }
    let settled = |want: Option<usize>| async move {
        // Connections closed by either side take a moment to be reaped.
        let mut last = fds_and_rss(pid);
        for _ in 0..100 {
            if want.is_none_or(|w| last.0 <= w) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            last = fds_and_rss(pid);
        }
        last
    };
    let (fds_before, rss_before) = settled(None).await;
    for _ in 0..300 {
        failures(&url, &b, &cookie).await;
    }
    let (fds_after, rss_after) = settled(Some(fds_before)).await;
    assert!(
        fds_after <= fds_before + 2,
        "open files grew from {fds_before} to {fds_after} over 300 rounds"
    );
    assert!(
        rss_after <= rss_before + 4096,
        "RSS grew from {rss_before} KiB to {rss_after} KiB over 300 rounds"
    );
    eprintln!(
        "300 rounds: open files {fds_before} -> {fds_after}, RSS {rss_before} -> {rss_after} KiB"
    );

    // The upstream goes away: 502 naming it, promptly.
    up_task.abort();
    let _ = up_task.await;
    let started = Instant::now();
    let r = b
        .send(
            reqwest::Method::GET,
            &format!("{url}/gone"),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(r.json()["error"], "upstream_unavailable");
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(gh);
}
