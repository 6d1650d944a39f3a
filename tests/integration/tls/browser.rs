//! Real headless Chromium over TLS: it trusts the test key through its SPKI pin only
//! (`--ignore-certificate-errors-spki-list`), signs in, reaches the app over HTTP/2, and
//! opens a WebSocket from the page (over HTTP/1.1: gatehouse offers no RFC 8441), which
//! reaches the app with the identity and echoes.

use super::{Served, TestCa};
use crate::support::idp::TestIdp;
use crate::support::peers::{interop_dir, skip_unless_available};
use crate::support::upstream::{seen, Upstream};
use base64::Engine;
use std::process::{Command, Stdio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_pinned_to_the_test_key_signs_in_over_h2_and_uses_a_websocket() {
    if skip_unless_available(true) {
        return;
    }
    let (idp, up) = (TestIdp::start().await, Upstream::start().await);
    let ca = TestCa::new();
    let leaf = ca.leaf(7);
    let gh = Served::start(&ca, &leaf, &idp, &up, &|_| String::new()).await;
    *idp.state.next_sub.lock().unwrap() = "carol".into();
    let pin = ring::digest::digest(&ring::digest::SHA256, &leaf.spki);
    let pin = base64::engine::general_purpose::STANDARD.encode(pin.as_ref());
    let url = format!("{}/app/page", gh.url);
    let ws = format!("wss://127.0.0.1:{}/ws", gh.port);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(interop_dir().join("tls-browser.mjs"))
            .args(["--url", &url, "--spki", &pin, "--ws", &ws])
            .stderr(Stdio::inherit())
            .output()
            .expect("run tls-browser.mjs")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let verdict: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("tls-browser output {text:?}: {e}\n{}", gh.log()));
    assert!(verdict.get("error").is_none(), "{verdict}\n{}", gh.log());
    assert_eq!(verdict["final_url"], format!("{}/app/page", gh.url));
    assert_eq!(verdict["protocol"], "h2", "{verdict}");
    let page: serde_json::Value =
        serde_json::from_str(verdict["body_text"].as_str().unwrap()).unwrap();
    assert_eq!(seen(&page, "x-forwarded-user"), vec!["carol@example.test"]);
    assert_eq!(seen(&page, "x-forwarded-proto"), vec!["https"]);
    let first: serde_json::Value =
        serde_json::from_str(verdict["ws_first"].as_str().unwrap()).unwrap();
    assert_eq!(seen(&first, "x-forwarded-user"), vec!["carol@example.test"]);
    assert_eq!(verdict["ws_echo"], "ping from chromium");
}
