//! Certificate rotation on disk, the way cert-manager and a mounted Kubernetes Secret do
//! it (a `..data` symlink swapped to a new version): new connections get the new leaf
//! within seconds, a keep-alive connection opened before keeps working, and a broken
//! replacement (a key that is not the certificate's, a half-written file) is refused
//! with the reason logged while the running certificate stays.

use super::{connect, served_leaf, Served, TestCa};
use crate::support::idp::TestIdp;
use crate::support::upstream::Upstream;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::time::{Duration, Instant};

/// The leaf new connections get now.
async fn leaf_now(ca: &TestCa, port: u16) -> Vec<u8> {
    served_leaf(&connect(ca, port, &[b"http/1.1"]).await)
}

/// Waits until new connections get `want` (15 s at most).
async fn until_served(ca: &TestCa, port: u16, want: &[u8], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while leaf_now(ca, port).await != want {
        assert!(Instant::now() < deadline, "{what}: never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `gatehouse_tls_certificate_expiry_timestamp_seconds` on the metrics listener.
async fn expiry_gauge(port: u16) -> Option<u64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("gatehouse_tls_certificate_expiry_timestamp_seconds "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificate_files_reach_new_connections_while_open_ones_carry_on_and_a_broken_pair_is_refused(
) {
    let (idp, up) = (TestIdp::start().await, Upstream::start().await);
    let ca = TestCa::new();
    let (first, second, third) = (ca.leaf(1), ca.leaf(2), ca.leaf(3));
    let metrics = crate::support::ingress::free_port();
    let mut gh = Served::start(&ca, &first, &idp, &up, &|_| {
        format!("metrics_listen = \"127.0.0.1:{metrics}\"")
    })
    .await;
    assert_eq!(leaf_now(&ca, gh.port).await, first.der);
    // The expiry gauge follows the served certificate: 2031-01-01, then 2032-01-01.
    assert_eq!(expiry_gauge(metrics).await, Some(1_924_992_000));

    // A keep-alive HTTP/1.1 connection opened before the rotation.
    let old = connect(&ca, gh.port, &[b"http/1.1"]).await;
    assert_eq!(served_leaf(&old), first.der);
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(old))
        .await
        .unwrap();
    tokio::spawn(conn);
    let get = |send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>| {
        let req = hyper::Request::get("/healthz")
            .header("host", "localhost")
            .body(Empty::new())
            .unwrap();
        send.send_request(req)
    };
    let r = get(&mut send).await.unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.into_body().collect().await;

    let started = Instant::now();
    gh.install(&second.cert_pem, &second.key_pem);
    until_served(&ca, gh.port, &second.der, "the second certificate").await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let log = gh.logged("TLS certificate reloaded", 1).await;
    assert!(log.contains("2032-01-01 00:00 UTC (in "), "{log}");
    assert_eq!(expiry_gauge(metrics).await, Some(1_956_528_000));
    // The old connection still works, on the certificate it was handshaken with.
    let r = get(&mut send).await.expect("the old connection carries on");
    assert_eq!(r.status(), 200);

    // A key that is not the certificate's: refused, named, and the second one stays.
    gh.install(&third.cert_pem, &first.key_pem);
    let log = gh.logged("TLS certificate reload refused", 1).await;
    assert!(log.contains("is not the key of the certificate"), "{log}");
    assert_eq!(leaf_now(&ca, gh.port).await, second.der);
    // A certificate caught half written (the key is the right one): refused too.
    let half = &third.cert_pem[..third.cert_pem.len() / 2];
    gh.install(half, &third.key_pem);
    let log = gh.logged("TLS certificate reload refused", 2).await;
    assert!(
        log.contains("damaged") || log.contains("no PEM certificate"),
        "{log}"
    );
    assert_eq!(leaf_now(&ca, gh.port).await, second.der);
    // No key file at all (a Secret version without it).
    std::fs::remove_file(gh.path("tls.key")).unwrap();
    gh.logged("TLS certificate reload refused", 3).await;
    assert_eq!(leaf_now(&ca, gh.port).await, second.der);
    std::os::unix::fs::symlink("..data/tls.key", gh.path("tls.key")).unwrap();

    // Then the good third pair, written file by file in place (not a swap): served.
    std::fs::write(gh.path("tls.crt"), &third.cert_pem).unwrap();
    std::fs::write(gh.path("tls.key"), &third.key_pem).unwrap();
    until_served(&ca, gh.port, &third.der, "the third certificate").await;
    let r = get(&mut send)
        .await
        .expect("the old connection still carries on");
    assert_eq!(r.status(), 200);
}
