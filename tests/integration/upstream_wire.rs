//! gatehouse's own upstream client (`src/proxy/h1.rs`, used for GET and HEAD with no
//! body) against an upstream that writes its answers byte by byte: every way HTTP/1.1
//! delimits a response body, interim responses, and malformed answers, each checked for
//! what the client gets and for whether the upstream connection is used again.

use crate::support::{config, idp::TestIdp, start, Gatehouse};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the scripted upstream answers for `path` on connection number `conn`, and
/// whether it then closes the connection.
fn script(method: &str, path: &str, conn: usize) -> (Vec<u8>, bool) {
    let tag = format!("x-conn: {conn}\r\n");
    let with = |head: &str, body: &[u8]| {
        let mut out = head.replace("{tag}", &tag).into_bytes();
        out.extend_from_slice(body);
        out
    };
    match path {
        "/wire/length" if method == "HEAD" => (
            with("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n{tag}\r\n", b""),
            false,
        ),
        "/wire/length" => (
            with("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n{tag}\r\n", b"hello"),
            false,
        ),
        "/wire/chunked" => (
            with(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n{tag}\r\n",
                b"5;ext=\"v\"\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
            ),
            false,
        ),
        "/wire/close" => (
            with("HTTP/1.1 200 OK\r\n{tag}\r\n", b"until the end"),
            true,
        ),
        "/wire/interim" => (
            with(
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n{tag}\r\n",
                b"ok",
            ),
            false,
        ),
        "/wire/no-content" => (
            with("HTTP/1.1 204 No Content\r\n{tag}\r\n", b""),
            false,
        ),
        "/wire/not-modified" => (
            with("HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n{tag}\r\n", b""),
            false,
        ),
        "/wire/two-framings" => (
            with(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n{tag}\r\n",
                b"2\r\nok\r\n0\r\n\r\n",
            ),
            false,
        ),
        "/wire/trailing-junk" => (
            with("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{tag}\r\n", b"okJUNK"),
            false,
        ),
        "/wire/says-close" => (
            with(
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n{tag}\r\n",
                b"ok",
            ),
            false,
        ),
        "/wire/http10" => (
            with("HTTP/1.0 200 OK\r\ncontent-length: 2\r\n{tag}\r\n", b"ok"),
            false,
        ),
        "/wire/bad-length" => (
            with("HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n{tag}\r\n", b"hello"),
            true,
        ),
        "/wire/empty-length-element" => (
            with("HTTP/1.1 200 OK\r\ncontent-length: ,5\r\n{tag}\r\n", b"hello"),
            true,
        ),
        "/wire/signed-length" => (
            with("HTTP/1.1 200 OK\r\ncontent-length: +5\r\n{tag}\r\n", b"hello"),
            true,
        ),
        "/wire/bad-chunk" => (
            with(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n{tag}\r\n",
                b"5\r\nhello\r\nzz\r\n",
            ),
            false,
        ),
        "/wire/switch" => (
            with("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n", b""),
            true,
        ),
        "/wire/huge-head" => {
            let filler = format!("x-filler: {}\r\n", "a".repeat(8000));
            (
                with(
                    &format!("HTTP/1.1 200 OK\r\n{}content-length: 0\r\n\r\n", filler.repeat(10)),
                    b"",
                ),
                true,
            )
        }
        "/wire/folded" => (
            with("HTTP/1.1 200 OK\r\nx-a: 1\r\n  folded\r\ncontent-length: 0\r\n\r\n", b""),
            true,
        ),
        "/wire/garbage" => (b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec(), true),
        "/wire/silent" => (Vec::new(), true),
        _ => (
            with("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n{tag}\r\n", b""),
            false,
        ),
    }
}

/// For `/wire/stray`: the test says when its answer has arrived (`.0`), the upstream
/// then writes an unasked `408` on the idle connection and says so (`.1`).
/// `.2`: gatehouse's and the upstream's ports of that connection.
type Stray = Arc<(
    tokio::sync::Notify,
    tokio::sync::Notify,
    std::sync::Mutex<(u16, u16)>,
)>;

/// Waits until the kernel holds unread bytes on gatehouse's side of the connection
/// between `local` (gatehouse's port) and `remote` (the upstream's), as
/// `/proc/net/tcp` shows them: the stray answer has arrived, unasked.
async fn wait_for_unread_bytes(local: u16, remote: u16) {
    let want = format!("0100007F:{local:04X} 0100007F:{remote:04X}");
    for _ in 0..500 {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let queued = table.lines().find_map(|l| {
            let l = l.trim_start();
            let rest = l.split_once(": ")?.1;
            rest.starts_with(&want)
                .then(|| {
                    rest.split_whitespace()
                        .nth(3)?
                        .split_once(':')
                        .map(|q| q.1.to_string())
                })
                .flatten()
        });
        if queued.is_some_and(|rx| u64::from_str_radix(&rx, 16).unwrap_or(0) > 0) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the stray answer never reached gatehouse's socket");
}

/// Starts the scripted upstream; returns its URL and the number of connections accepted.
async fn scripted_upstream(stray: Stray) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let conn = count.fetch_add(1, Ordering::SeqCst) + 1;
            let stray = Arc::clone(&stray);
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&pending[..end]).to_string();
                    pending.drain(..end + 4);
                    let mut words = head.split(' ');
                    let method = words.next().unwrap_or_default().to_string();
                    let path = words.next().unwrap_or_default().to_string();
                    if path == "/wire/stray" {
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        let _ = s.write_all(ok).await;
                        stray.0.notified().await;
                        let late = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n";
                        let _ = s.write_all(late).await;
                        let ports = (
                            s.peer_addr().unwrap().port(),
                            s.local_addr().unwrap().port(),
                        );
                        *stray.2.lock().unwrap() = ports;
                        stray.1.notify_one();
                        continue;
                    }
                    let (answer, close) = script(&method, &path, conn);
                    if s.write_all(&answer).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (url, accepted)
}

async fn gatehouse() -> (Gatehouse, TestIdp, Arc<AtomicUsize>, Stray) {
    let idp = TestIdp::start().await;
    let stray = Stray::default();
    let (up, accepted) = scripted_upstream(Arc::clone(&stray)).await;
    let gh = start(config(
        &up,
        &idp.issuer,
        &[("skip_auth_routes", "/wire/**")],
    ))
    .await;
    (gh, idp, accepted, stray)
}

/// Sends `method path` through gatehouse on `client`: status, `x-conn`, body (or the
/// body's error).
async fn fetch(
    client: &reqwest::Client,
    gh: &Gatehouse,
    method: reqwest::Method,
    path: &str,
) -> (u16, Option<String>, Result<String, String>) {
    let r = client
        .request(method, format!("{}{path}", gh.url))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let conn = r
        .headers()
        .get("x-conn")
        .map(|v| v.to_str().unwrap().to_string());
    (
        r.status().as_u16(),
        conn,
        r.text().await.map_err(|e| e.to_string()),
    )
}

#[tokio::test]
async fn every_body_framing_arrives_whole_and_the_connection_is_reused_only_when_clean() {
    let (gh, _idp, accepted, stray) = gatehouse().await;
    let client = reqwest::Client::new();
    let get = reqwest::Method::GET;

    let (status, first, body) = fetch(&client, &gh, get.clone(), "/wire/length").await;
    assert_eq!((status, body), (200, Ok("hello".into())));
    // Bodies delimited by length, chunks, or nothing (204, 304, HEAD) leave the
    // connection usable: the next request goes on the same one.
    let clean: &[(reqwest::Method, &str, u16, &str)] = &[
        (get.clone(), "/wire/chunked", 200, "hello world"),
        (get.clone(), "/wire/interim", 200, "ok"),
        (get.clone(), "/wire/no-content", 204, ""),
        (get.clone(), "/wire/not-modified", 304, ""),
        (reqwest::Method::HEAD, "/wire/length", 200, ""),
        (get.clone(), "/wire/length", 200, "hello"),
    ];
    for (method, path, want_status, want_body) in clean {
        let (status, conn, body) = fetch(&client, &gh, method.clone(), path).await;
        assert_eq!(
            (status, body.as_deref()),
            (*want_status, Ok(*want_body)),
            "{method} {path}"
        );
        assert_eq!(
            conn, first,
            "{method} {path} reused the upstream connection"
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // Each of these ends with the connection closed; the next request opens a new one
    // and still gets its answer.
    let unclean = [
        ("/wire/close", "until the end"),
        ("/wire/two-framings", "ok"),
        ("/wire/trailing-junk", "ok"),
        ("/wire/says-close", "ok"),
        ("/wire/http10", "ok"),
    ];
    for (path, want) in unclean {
        let before = accepted.load(Ordering::SeqCst);
        let (status, _, body) = fetch(&client, &gh, get.clone(), path).await;
        assert_eq!((status, body.as_deref()), (200, Ok(want)), "{path}");
        let (status, conn, body) = fetch(&client, &gh, get.clone(), "/wire/length").await;
        assert_eq!(
            (status, body.as_deref()),
            (200, Ok("hello")),
            "after {path}"
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            before + 1,
            "after {path}: a new connection"
        );
        assert_eq!(conn, Some((before + 1).to_string()));
    }

    // An idle kept connection on which the upstream wrote unasked: never used again, or
    // its stray 408 would be taken for the next request's answer.
    let (status, _, body) = fetch(&client, &gh, get.clone(), "/wire/stray").await;
    assert_eq!((status, body.as_deref()), (200, Ok("ok")));
    stray.0.notify_one();
    stray.1.notified().await;
    let (gatehouse_port, upstream_port) = *stray.2.lock().unwrap();
    wait_for_unread_bytes(gatehouse_port, upstream_port).await;
    let before = accepted.load(Ordering::SeqCst);
    let (status, conn, body) = fetch(&client, &gh, get.clone(), "/wire/length").await;
    assert_eq!(
        (status, body.as_deref()),
        (200, Ok("hello")),
        "not the stray 408"
    );
    assert_eq!(conn, Some((before + 1).to_string()));
}

#[tokio::test]
async fn a_malformed_answer_is_a_502_or_a_cut_body_never_a_hang_or_a_wrong_body() {
    let (gh, _idp, _, _) = gatehouse().await;
    let client = reqwest::Client::new();
    let get = reqwest::Method::GET;
    for path in [
        "/wire/bad-length",
        "/wire/signed-length",
        "/wire/empty-length-element",
        "/wire/switch",
        "/wire/huge-head",
        "/wire/folded",
        "/wire/garbage",
    ] {
        let (status, _, body) = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            fetch(&client, &gh, get.clone(), path),
        )
        .await
        .unwrap_or_else(|_| panic!("{path} hung"));
        assert_eq!(status, 502, "{path}: {body:?}");
        let body = body.unwrap();
        assert!(body.contains("upstream"), "{path}: {body}");
    }
    // A chunk size that is not one: the client gets the status and a body cut short.
    let (status, _, body) = fetch(&client, &gh, get.clone(), "/wire/bad-chunk").await;
    assert_eq!(status, 200);
    assert!(
        body.is_err(),
        "the client is told the body was cut: {body:?}"
    );
    // And gatehouse goes on serving.
    let (status, _, body) = fetch(&client, &gh, get, "/wire/length").await;
    assert_eq!((status, body.as_deref()), (200, Ok("hello")));
}

/// The 502 page says which way the upstream failed: it closed without answering, or it
/// answered something malformed (and what: a bad head, too large, bad framing), never
/// "not accepting connections" for an upstream that did accept; on the bodyless client
/// and on the one that carries request bodies alike.
#[tokio::test]
async fn the_502_says_how_the_upstream_failed() {
    let (gh, _idp, _, _) = gatehouse().await;
    let client = reqwest::Client::new();
    let cases: &[(&str, &str, &str)] = &[
        (
            "/wire/silent",
            "closed it without answering",
            "upstream_closed",
        ),
        (
            "/wire/garbage",
            "a bad response head",
            "upstream_bad_response",
        ),
        (
            "/wire/folded",
            "a bad response head",
            "upstream_bad_response",
        ),
        ("/wire/huge-head", "too large", "upstream_bad_response"),
        ("/wire/bad-length", "bad framing", "upstream_bad_response"),
    ];
    for (path, says, code) in cases {
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            if *path == "/wire/huge-head" && method == reqwest::Method::POST {
                continue; // hyper's client takes a larger head than gatehouse's own
            }
            let page = client
                .request(method.clone(), format!("{}{path}", gh.url))
                .header("accept", "text/html")
                .body(if method == reqwest::Method::POST {
                    "x=1"
                } else {
                    ""
                })
                .send()
                .await
                .unwrap();
            assert_eq!(page.status(), 502, "{method} {path}");
            let body = page.text().await.unwrap();
            assert!(body.contains(says), "{method} {path}: {body}");
            assert!(
                !body.contains("not accepting connections"),
                "{method} {path}: {body}"
            );
            let api = client
                .request(method.clone(), format!("{}{path}", gh.url))
                .header("accept", "application/json")
                .send()
                .await
                .unwrap();
            assert_eq!(api.status(), 502, "{method} {path}");
            let j: serde_json::Value = api.json().await.unwrap();
            assert_eq!(j["error"], *code, "{method} {path}: {j}");
        }
    }
}
