//! Serving over TLS: curl negotiates h2 (and HTTP/1.1 when asked) and gets the app with
//! the identity of a sign-in done over TLS; the plain-http redirect port sends GET and
//! HEAD to https and never names a host the client made up; a handshake that never
//! completes loses its connection slot after `header_read_timeout`.

use super::{file, sign_in, Served, TestCa};
use crate::support::idp::TestIdp;
use crate::support::upstream::{seen, Upstream};
use crate::support::{raw_http, Browser};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// `curl <args>`; (body, the last line `-w` wrote).
async fn curl(args: Vec<String>) -> (String, String) {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(&args)
            .output()
            .expect("run curl")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "curl failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, last) = text.rsplit_once('\n').unwrap_or(("", &text));
    (body.to_string(), last.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_h2_and_http1_gets_the_app_with_the_identity_of_a_sign_in_over_tls() {
    let (idp, up) = (TestIdp::start().await, Upstream::start().await);
    let ca = TestCa::new();
    // cookie_secure stays at its default (true): the sign-in works because it is https.
    let gh = Served::start(&ca, &ca.leaf(1), &idp, &up, &|_| String::new()).await;
    let b = sign_in(&ca, &idp, &gh.url, "alice").await;
    let ca_file = file(gh.dir.path(), "ca.pem", &ca.pem);
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let (body, got) = curl(vec![
            "-sS".into(),
            flag.into(),
            "--cacert".into(),
            ca_file.display().to_string(),
            "-H".into(),
            format!("cookie: {}", b.cookie_header()),
            // A spoofed identity never reaches the app, over h2 as over HTTP/1.1.
            "-H".into(),
            "x-forwarded-user: root".into(),
            "-w".into(),
            "\n%{http_version}".into(),
            format!("{}/app/x?y=1", gh.url),
        ])
        .await;
        assert_eq!(got, version, "{flag} negotiated HTTP/{version}");
        let echo: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{flag}: {e}: {body}"));
        assert_eq!(echo["path"], "/app/x?y=1", "{flag}: {echo}");
        assert_eq!(
            seen(&echo, "x-forwarded-preferred-username"),
            vec!["alice"],
            "{flag}"
        );
        assert_eq!(
            seen(&echo, "x-forwarded-user"),
            vec!["alice@example.test"],
            "{flag}"
        );
        assert_eq!(seen(&echo, "x-forwarded-proto"), vec!["https"], "{flag}");
        assert_eq!(
            seen(&echo, "host"),
            vec![format!("127.0.0.1:{}", gh.port)],
            "{flag}"
        );
        // The upstream speaks HTTP/1.1: one Cookie line, no HTTP/2 pseudo headers.
        assert_eq!(seen(&echo, "cookie").len(), 1, "{flag}: {echo}");
    }
    // A WebSocket over TLS (HTTP/1.1, as browsers open them without RFC 8441): the
    // upgrade reaches the app with the identity, and messages flow both ways.
    let tls = super::connect(&ca, gh.port, &[b"http/1.1"]).await;
    let mut req = format!("wss://localhost:{}/ws", gh.port)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("cookie", b.cookie_header().parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tls)
        .await
        .expect("a WebSocket over TLS");
    assert_eq!(resp.status(), 101);
    let first = ws.next().await.unwrap().unwrap().into_text().unwrap();
    let upgrade: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        seen(&upgrade, "x-forwarded-user"),
        vec!["alice@example.test"]
    );
    ws.send(Message::text("ping over tls")).await.unwrap();
    let echo = ws.next().await.unwrap().unwrap().into_text().unwrap();
    assert_eq!(echo.as_str(), "ping over tls");

    // Without a session, over h2: the browser is sent to sign in.
    let (_, status) = curl(vec![
        "-sS".into(),
        "--http2".into(),
        "--cacert".into(),
        ca_file.display().to_string(),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "\n%{http_code} %{http_version}".into(),
        format!("{}/app", gh.url),
    ])
    .await;
    assert_eq!(status, "302 2");
}

/// What a raw request to the redirect port got: (status, Location).
async fn redirected(port: u16, method: &str, host: &str, target: &str) -> (u16, Option<String>) {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let req = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let answer = String::from_utf8_lossy(&raw_http(addr, req.as_bytes()).await).to_string();
    let status = crate::support::raw_status(answer.as_bytes());
    let location = answer
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .map(str::to_string);
    (status, location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_http_port_redirects_get_and_head_to_https_and_never_to_a_host_the_client_made_up(
) {
    let (idp, up) = (TestIdp::start().await, Upstream::start().await);
    let ca = TestCa::new();
    let rport = crate::support::redis::free_port();
    let gh = Served::start(&ca, &ca.leaf(1), &idp, &up, &|_| {
        format!("http_redirect_listen = \"127.0.0.1:{rport}\"\nallowed_redirect_domains = [\"localhost\", \".example.test\"]\n")
    })
    .await;
    let https = |host: &str, path: &str| Some(format!("https://{host}:{}{path}", gh.port));
    for method in ["GET", "HEAD"] {
        assert_eq!(
            redirected(rport, method, &format!("localhost:{rport}"), "/app/x?y=1").await,
            (308, https("localhost", "/app/x?y=1")),
            "{method}"
        );
    }
    assert_eq!(
        redirected(rport, "GET", "App.Example.TEST", "/").await,
        (308, https("app.example.test", "/"))
    );
    // The absolute form names the host instead of Host.
    assert_eq!(
        redirected(rport, "GET", "evil.example", "http://localhost/z").await,
        (308, https("localhost", "/z"))
    );
    // A body was sent in clear text: refused, not redirected to be sent again.
    for method in ["POST", "PUT", "DELETE"] {
        assert_eq!(
            redirected(rport, method, "localhost", "/").await,
            (400, None),
            "{method}"
        );
    }
    for host in [
        "evil.example",
        "example.test.evil.example",
        "evilexample.test",
        "evil.example@localhost",
        "localhost@evil.example",
        "localhost/evil.example",
        "localhost\\evil.example",
        "localhost:80/x",
        "127.0.0.1",
    ] {
        assert_eq!(
            redirected(rport, "GET", host, "/").await,
            (400, None),
            "{host}"
        );
    }
    // The Location works: the https port answers there.
    let b = Browser::trusting(ca.pem.as_bytes());
    let r = b
        .get(&format!("https://localhost:{}/healthz", gh.port))
        .await;
    assert_eq!(r.status, 200);
}

/// gatehouse's `gatehouse_open_connections`, read from its metrics listener.
async fn open_connections(metrics: &str) -> u64 {
    let text = reqwest::get(metrics).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("gatehouse_open_connections "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no gatehouse_open_connections in:\n{text}"))
}

/// Waits until gatehouse counts `n` open client connections (10 s at most).
async fn until_open(metrics: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_connections(metrics).await != n {
        assert!(Instant::now() < deadline, "never {n} open connections");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_never_completes_is_cut_after_header_read_timeout_and_frees_its_slot() {
    let (idp, up) = (TestIdp::start().await, Upstream::start().await);
    let ca = TestCa::new();
    let mport = crate::support::redis::free_port();
    let gh = Served::start(&ca, &ca.leaf(1), &idp, &up, &|_| {
        format!("header_read_timeout_secs = 2\nmax_connections = 2\nmetrics_listen = \"127.0.0.1:{mport}\"\n")
    })
    .await;
    let metrics = format!("http://127.0.0.1:{mport}/metrics");
    // A TLS handshake: one past the cap gets a plain-text 503, which is no handshake.
    let connector = tokio_rustls::TlsConnector::from(ca.client(&[b"http/1.1"]));
    let handshake = || async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gh.port))
            .await
            .ok()?;
        let name = rustls_pki_types::ServerName::try_from("localhost").ok()?;
        connector.connect(name, tcp).await.ok()
    };
    until_open(&metrics, 0).await;
    // Both slots: one client says nothing, one starts a ClientHello and stops.
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", gh.port))
        .await
        .unwrap();
    let mut partial = tokio::net::TcpStream::connect(("127.0.0.1", gh.port))
        .await
        .unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let opened = Instant::now();
    until_open(&metrics, 2).await;
    // Held: a third client is refused while they hang.
    assert!(handshake().await.is_none(), "a third connection got a slot");
    // Each is closed by gatehouse after about header_read_timeout, not before.
    for (name, s) in [("silent", &mut silent), ("partial", &mut partial)] {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        assert!(read.is_ok(), "{name}: still open after 10 s");
        assert!(matches!(read.unwrap(), Ok(0) | Err(_)), "{name}: closed");
        let after = opened.elapsed();
        assert!(
            after >= Duration::from_millis(1500),
            "{name}: cut too early ({after:?})"
        );
    }
    // The slots are free again.
    until_open(&metrics, 0).await;
    assert!(handshake().await.is_some(), "the slots never came back");
    assert!(gh
        .log()
        .contains("TLS handshake not finished within header_read_timeout"));
}

/// `gatehouse check` with the flags and the environment: names the https listener, and
/// lists every certificate problem at once (a key that is not the certificate's, a file
/// that is no certificate) beside the configuration's others.
#[test]
fn check_names_the_https_listener_and_lists_every_certificate_problem() {
    let ca = TestCa::new();
    let (a, b) = (ca.leaf(1), ca.leaf(2));
    let dir = crate::support::TempDir::new("tls-check");
    let (cert, key, other) = (
        file(dir.path(), "a.crt", &a.cert_pem),
        file(dir.path(), "a.key", &a.key_pem),
        file(dir.path(), "b.key", &b.key_pem),
    );
    let check = |cert: &std::path::Path, key: &std::path::Path, extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args([
                "check",
                "--issuer-url",
                "https://sso.example.com",
                "--client-id",
                "c",
            ])
            .args([
                "--client-secret",
                "s",
                "--cookie-secret",
                crate::support::COOKIE_SECRET,
            ])
            .args(["--listen", "0.0.0.0:8443", "--tls-cert-file"])
            .arg(cert)
            .arg("--tls-key-file")
            .arg(key)
            .args(extra)
            .env("GATEHOUSE_HTTP_REDIRECT_LISTEN", "0.0.0.0:8080")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let (code, said) = check(&cert, &key, &[]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("listener: https on 0.0.0.0:8443"), "{said}");
    assert!(
        said.contains("plain http on 0.0.0.0:8080 redirects"),
        "{said}"
    );
    let (code, said) = check(&cert, &other, &["--cookie-secret-file", "/nonexistent"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("is not the key of the certificate"), "{said}");
    assert!(
        said.contains("cookie_secret"),
        "the others are listed too: {said}"
    );
    let (code, said) = check(&key, &cert, &[]);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("tls_cert_file") && said.contains("no PEM certificate"),
        "{said}"
    );
    assert!(
        said.contains("tls_key_file") && said.contains("no PEM private key"),
        "{said}"
    );
}
