//! `skip_auth_routes` is matched before login, on a path of up to `max_header_bytes` that
//! anyone may send: a long crafted path against rules with several stars is answered at
//! once and holds up nobody else (a backtracking `*` once kept a worker busy for seconds
//! per request, so two such requests stalled `/healthz` on a two-worker gatehouse).

use crate::flow::world;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes of crafted text in each path: as long as a request target can be (the `http`
/// crate stops at 65,534 bytes for a URI, and hyper with it), so about 64 KB.
const LONG: usize = 64_000;
/// Generous for a debug build on a busy two-core machine; matching itself takes ~2 ms.
const PROMPT: Duration = Duration::from_millis(200);
/// How long a test waits for any one answer before calling the server stuck.
const STUCK: Duration = Duration::from_secs(5);

const RULES: &str = "GET=/assets/*-*-*.js,/a/*x*y*z*/**,/*-*-*-*-*-*-*-*/x,GET=/*a*a*a*a*b";

/// (path, whether a rule lets it through without login).
fn crafted() -> Vec<(String, bool)> {
    let dashes = "-".repeat(LONG);
    let xy = "xy".repeat(LONG / 2);
    vec![
        (format!("/assets/{dashes}"), false),
        (format!("/assets/{dashes}.jsx"), false),
        (format!("/assets/{dashes}.js"), true),
        (format!("/a/{xy}/b"), false),
        (format!("/a/{xy}z/b/c"), true),
        (format!("/{dashes}/y"), false),
        (format!("/{dashes}/x"), true),
        (format!("/{}", "a".repeat(LONG)), false),
        (format!("/{}b", "a".repeat(LONG)), true),
    ]
}

/// An API client (a 401 instead of a redirect to sign in) that follows no redirect.
fn api_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::ACCEPT,
        reqwest::header::HeaderValue::from_static("application/json"),
    );
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .unwrap()
}

/// GETs `url`; (status, time to the whole answer), or a failure once [`STUCK`] has passed.
async fn timed_get(client: &reqwest::Client, url: &str) -> (u16, Duration) {
    let started = Instant::now();
    let answer = tokio::time::timeout(STUCK, async {
        let r = client.get(url).send().await?;
        let status = r.status().as_u16();
        r.bytes().await.map(|_| status)
    })
    .await;
    // Never the whole URL in a message: it is 64 KB.
    let short = &url[..url.len().min(60)];
    match answer {
        Ok(Ok(status)) => (status, started.elapsed()),
        Ok(Err(e)) => panic!("{short}…: {}", e.without_url()),
        Err(_) => panic!("no answer within {STUCK:?} for {short}…"),
    }
}

#[tokio::test]
async fn long_paths_against_starred_rules_are_answered_at_once() {
    let w = world(&[("skip_auth_routes", RULES), ("max_header_bytes", "131072")]).await;
    let client = api_client();
    for (path, public) in crafted() {
        let (status, took) = timed_get(&client, &format!("{}{path}", w.gh.url)).await;
        let what = &path[..24];
        if public {
            assert_eq!(status, 200, "{what}… is public: the upstream answers");
        } else {
            assert_eq!(status, 401, "{what}… needs a login");
        }
        assert!(took < PROMPT, "{what}… took {took:?}");
    }
}

#[tokio::test]
async fn long_paths_in_flight_never_delay_other_requests() {
    let w = world(&[("skip_auth_routes", RULES), ("max_header_bytes", "131072")]).await;
    // Two crafted requests per worker (one per CPU, handed connections in turn), each
    // sent whole on its own connection before anything else is asked.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut crafted_in_flight = Vec::new();
    for (path, _) in crafted()
        .into_iter()
        .filter(|(_, public)| !public)
        .cycle()
        .take(2 * workers)
    {
        let mut s = TcpStream::connect(w.gh.addr).await.unwrap();
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        crafted_in_flight.push(s);
    }
    // Meanwhile, health checks on fresh connections (so on every worker) are answered.
    for _ in 0..2 * workers {
        let (status, took) = timed_get(&api_client(), &format!("{}/healthz", w.gh.url)).await;
        assert_eq!(status, 200);
        assert!(took < PROMPT, "/healthz took {took:?} beside crafted paths");
    }
    for mut s in crafted_in_flight {
        let mut answer = Vec::new();
        tokio::time::timeout(STUCK, s.read_to_end(&mut answer))
            .await
            .expect("the crafted request is answered")
            .unwrap();
        let head = String::from_utf8_lossy(&answer[..answer.len().min(12)]).into_owned();
        assert_eq!(head, "HTTP/1.1 401", "a crafted path needs a login");
    }
}
