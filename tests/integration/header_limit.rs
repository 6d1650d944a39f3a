//! An upstream that refuses gatehouse's identity headers as too large (431): the user
//! gets a page naming each header gatehouse added and its size (never its value), the
//! total, and what to change, instead of the upstream's blank or one-line answer.

use crate::support::idp::TestIdp;
use crate::support::{config, start, Browser};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Header blocks over this size get a 431, as Go's net/http writes it (no length, the
/// connection closed); `/explained` gets a 431 with a long page of the upstream's own.
const LIMIT: usize = 4096;

async fn strict_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 8192];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let explained = head.starts_with(b"GET /explained ");
                let answer = if explained {
                    let page = "x".repeat(2000);
                    format!("HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}", page.len())
                } else if head.len() > LIMIT {
                    "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large".to_string()
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                        .to_string()
                };
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn a_431_for_identity_headers_names_each_header_and_its_size() {
    let idp = TestIdp::start().await;
    let up = strict_upstream().await;
    let groups: Vec<String> = (0..200).map(|i| format!("team-{i:03}-secret")).collect();
    idp.tweak(move |c| c["groups"] = json!(groups.clone()));
    let gh = start(config(&up, &idp.issuer, &[("skip_auth_routes", "/public")])).await;
    let b = Browser::new();
    let (page, _) = b.follow(&format!("{}/", gh.url)).await;
    assert_eq!(page.status, 502, "{page:?}");
    let body = &page.body;
    assert!(body.contains("too large"), "{body}");
    assert!(
        !body.contains("Something behind gatehouse failed"),
        "{body}"
    );
    for name in [
        "x-forwarded-groups",
        "x-forwarded-user",
        "x-forwarded-id-token",
    ] {
        assert!(body.contains(name), "names {name}: {body}");
    }
    assert!(!body.contains("team-001-secret"), "never a value: {body}");
    assert!(body.contains("bytes in all"), "the total: {body}");
    for setting in [
        "groups_claim",
        "header_id_token",
        "MaxHeaderBytes",
        "large_client_header_buffers",
    ] {
        assert!(
            body.contains(setting),
            "says what to change ({setting}): {body}"
        );
    }

    let r = b
        .send(
            reqwest::Method::GET,
            &format!("{}/", gh.url),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, 502, "{r:?}");
    let j = r.json();
    assert_eq!(j["error"], "identity_headers_too_large", "{j}");
    let listed = j["headers"].as_array().unwrap();
    let groups = listed
        .iter()
        .find(|h| h["name"] == "x-forwarded-groups")
        .unwrap_or_else(|| panic!("{j}"));
    let bytes = groups["bytes"].as_u64().unwrap();
    assert!(bytes > 3000, "{j}");
    let sum: u64 = listed.iter().map(|h| h["bytes"].as_u64().unwrap()).sum();
    assert_eq!(j["total_bytes"].as_u64().unwrap(), sum, "{j}");
    assert!(!r.body.contains("team-001-secret"), "{j}");

    // An upstream's own long explanation is passed on as it is.
    let own = b.get(&format!("{}/explained", gh.url)).await;
    assert_eq!(own.status, 431);
    assert_eq!(own.body.len(), 2000);
    // Without identity headers (a skipped route), a 431 is the upstream's own business.
    let public = Browser::new()
        .send(
            reqwest::Method::GET,
            &format!("{}/public", gh.url),
            &[("x-big", &"b".repeat(5000))],
        )
        .await;
    assert_eq!(public.status, 431, "{public:?}");
}
