//! What a hostile or slow client can hold of the listener: the header-read timeout
//! (slow loris), the header size limit, and the connection cap; none of them may keep a
//! normal request from being served promptly.

use crate::flow::world;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens a connection and sends `bytes` without finishing the request.
async fn dangle(addr: std::net::SocketAddr, bytes: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes.as_bytes()).await.unwrap();
    s
}

#[tokio::test]
async fn slow_loris_connections_are_cut_and_never_block_others() {
    let w = world(&[("header_read_timeout_secs", "1")]).await;
    let mut loris = Vec::new();
    for _ in 0..200 {
        loris.push(dangle(w.gh.addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: a").await);
    }
    // A normal request is served promptly while they hang.
    let started = Instant::now();
    let r = reqwest::get(format!("{}/healthz", w.gh.url)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // And each of them is cut once its headers take longer than the timeout.
    let mut first = loris.remove(0);
    let mut buf = Vec::new();
    let cut = tokio::time::timeout(Duration::from_secs(5), first.read_to_end(&mut buf)).await;
    assert!(
        cut.is_ok(),
        "a connection that never finished its headers was kept open"
    );
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let w = world(&[("max_header_bytes", "16384")]).await;
    let big = "a".repeat(20_000);
    let r = reqwest::Client::new()
        .get(format!("{}/healthz", w.gh.url))
        .header("x-big", big)
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status(), 431, "{r:?}"),
        Err(e) => assert!(e.is_request() || e.is_connect(), "{e}"),
    }
    let ok = reqwest::get(format!("{}/healthz", w.gh.url)).await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn past_the_connection_cap_the_excess_gets_a_quick_503() {
    let w = world(&[("max_connections", "5")]).await;
    // Five keep-alive connections, each proven accepted by a full answer, then left open.
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut s = dangle(w.gh.addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut got = Vec::new();
        let mut chunk = [0u8; 512];
        while !String::from_utf8_lossy(&got).ends_with("ok\n") {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
        held.push(s);
    }
    let started = Instant::now();
    let mut extra = dangle(w.gh.addr, "").await;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), extra.read_to_end(&mut buf))
        .await
        .expect("the refusal is quick")
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("max_connections"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(1));
    // Closing the held ones frees their slots.
    drop(held);
    let mut ok = false;
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(format!("{}/healthz", w.gh.url)).await {
            if r.status() == 200 {
                ok = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "slots come back when connections close");
}
