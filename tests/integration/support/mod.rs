//! Test harness: gatehouse served in-process on `127.0.0.1:0`, an in-process test IdP that
//! signs whatever tokens a test asks for (`idp.rs`), an echo upstream with WebSocket
//! support (`upstream.rs`), real peers started as child processes (`peers.rs`), real
//! ingress programs in front of the forward-auth endpoint (`ingress.rs`), real Redis
//! (standalone, Sentinel, Cluster: `redis.rs`), and a tiny
//! cookie-keeping HTTP client that behaves like a browser about redirects.

#![allow(dead_code)]

pub mod idp;
pub mod ingress;
pub mod peers;
pub mod prometheus;
pub mod redis;
pub mod upstream;

use gatehouse::config::{Config, RawConfig};
use gatehouse::http::AppState;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LOCATION, SET_COOKIE};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

/// A cookie secret for tests (>= 32 bytes).
pub const COOKIE_SECRET: &str = "DbhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk";

/// gatehouse running in this process.
pub struct Gatehouse {
    pub addr: SocketAddr,
    pub url: String,
    /// The internal forward-auth listener (`auth_listen`), when configured:
    /// `http://127.0.0.1:PORT`.
    pub auth_url: Option<String>,
    pub auth_addr: Option<SocketAddr>,
    /// The metrics listener (`metrics_listen`), when configured: `http://127.0.0.1:PORT`.
    pub metrics_url: Option<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds a configured listener (port 0 in tests) here, like `serve` does, so its port is
/// known.
fn bind_now(addr: SocketAddr) -> tokio::net::TcpListener {
    let l = std::net::TcpListener::bind(addr).unwrap();
    l.set_nonblocking(true).unwrap();
    tokio::net::TcpListener::from_std(l).unwrap()
}

/// Builds a config for `upstream` and `issuer` with test defaults, then `extra` on top.
pub fn config(upstream: &str, issuer: &str, extra: &[(&'static str, &str)]) -> Config {
    let mut raw = RawConfig::default();
    raw.set("upstream", upstream);
    raw.set("issuer_url", issuer);
    raw.set("client_id", idp::CLIENT_ID);
    raw.set("client_secret", idp::CLIENT_SECRET);
    raw.set("cookie_secret", COOKIE_SECRET);
    raw.set("cookie_secure", "false");
    raw.set("listen", "127.0.0.1:0");
    for (k, v) in extra {
        raw.set(k, v);
    }
    match Config::from_raw(&raw) {
        Ok(c) => c,
        Err(e) => panic!("test config invalid: {e}"),
    }
}

/// Starts gatehouse without waiting for the provider.
pub async fn start_unready(cfg: Config) -> Gatehouse {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_on(listener, cfg)
}

/// Starts gatehouse on a listener bound earlier (when a peer needs the port first) and
/// waits until it is ready.
pub async fn start_on(listener: tokio::net::TcpListener, cfg: Config) -> Gatehouse {
    let gh = serve_on(listener, cfg);
    wait_until_ok(&format!("{}/readyz", gh.url)).await;
    gh
}

fn serve_on(listener: tokio::net::TcpListener, cfg: Config) -> Gatehouse {
    let addr = listener.local_addr().unwrap();
    // `auth_listen` (port 0 in tests): bound here, like `serve` does, so its port is known.
    let auth = cfg.auth_listen.map(bind_now);
    let auth_addr = auth.as_ref().map(|l| l.local_addr().unwrap());
    // `metrics_listen`: served beside, as `serve` does, and stopped with the rest.
    let metrics = cfg.metrics_listen.map(bind_now);
    if metrics.is_some() {
        gatehouse::metrics::enable();
    }
    let metrics_url = metrics
        .as_ref()
        .map(|l| format!("http://{}", l.local_addr().unwrap()));
    let state = AppState::new(cfg).unwrap();
    let task = tokio::spawn(async move {
        let serving =
            gatehouse::http::serve_with_auth(state, listener, auth, std::future::pending());
        match metrics {
            Some(m) => {
                tokio::select! {
                    _ = serving => {}
                    _ = gatehouse::metrics::serve(m) => {}
                }
            }
            None => {
                let _ = serving.await;
            }
        }
    });
    Gatehouse {
        addr,
        url: format!("http://{addr}"),
        auth_url: auth_addr.map(|a| format!("http://{a}")),
        auth_addr,
        metrics_url,
        task,
    }
}

/// Starts gatehouse and waits until `/readyz` says ready.
pub async fn start(cfg: Config) -> Gatehouse {
    let gh = start_unready(cfg).await;
    wait_until_ok(&format!("{}/readyz", gh.url)).await;
    gh
}

/// `/oauth2/userinfo`'s `expires_at` for `b`'s session at gatehouse `gh` (refreshing it
/// when due).
pub async fn expires_at(gh: &str, b: &Browser) -> u64 {
    let r = b
        .send(
            reqwest::Method::GET,
            &format!("{gh}/oauth2/userinfo"),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["expires_at"].as_u64().unwrap()
}

/// `token` sent as `Authorization: Bearer` to `url`, as an API client.
pub async fn with_bearer(url: &str, token: &str) -> Resp {
    Browser::new()
        .send(
            reqwest::Method::GET,
            url,
            &[
                ("authorization", &format!("Bearer {token}")),
                ("accept", "application/json"),
            ],
        )
        .await
}

/// Sends `request` raw to `addr` and reads until the peer closes (10 s at most): for
/// bytes no HTTP client library would send.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return Vec::new();
    };
    if s.write_all(request).await.is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "no answer within 10 s");
    buf
}

/// Sends `request` raw to `addr` and reads only as far as the status code (0 when the
/// peer closed without one). Not to the end: Envoy holds a closing connection open for
/// a second (`delayed_close_timeout`), which would cost that much per request.
pub async fn raw_http_status(addr: SocketAddr, request: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    if s.write_all(request).await.is_err() {
        return 0;
    }
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        while buf.len() < 12 {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 10 s");
    raw_status(&buf)
}

/// The status code of a raw answer (0 when there is none).
pub fn raw_status(answer: &[u8]) -> u16 {
    std::str::from_utf8(answer.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Polls `url` until it answers 200 (10 s at most).
pub async fn wait_until_ok(url: &str) {
    let client = reqwest::Client::new();
    for _ in 0..500 {
        if let Ok(r) = client.get(url).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{url} never became ready");
}

/// A response as a test sees it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
    pub url: String,
}

impl Resp {
    pub fn location(&self) -> Option<String> {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    }
}

/// A cookie-keeping client that follows redirects like a browser (one jar for all of
/// 127.0.0.1, as browsers ignore ports for cookies).
pub struct Browser {
    client: reqwest::Client,
    pub jar: Mutex<BTreeMap<String, String>>,
    pub accept: &'static str,
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Browser::with(reqwest::Client::builder())
    }

    /// A browser that also trusts the CA certificates in `pem`.
    pub fn trusting(pem: &[u8]) -> Browser {
        let mut b = reqwest::Client::builder();
        for c in reqwest::Certificate::from_pem_bundle(pem).unwrap() {
            b = b.add_root_certificate(c);
        }
        Browser::with(b)
    }

    fn with(builder: reqwest::ClientBuilder) -> Browser {
        let client = builder
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser {
            client,
            jar: Mutex::new(BTreeMap::new()),
            accept: "text/html,application/xhtml+xml",
        }
    }

    pub fn cookie_header(&self) -> String {
        self.jar
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.lock().unwrap().get(name).cloned()
    }

    fn keep(&self, resp: &reqwest::Response) {
        let mut jar = self.jar.lock().unwrap();
        for sc in resp
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            let first = sc.split(';').next().unwrap_or("");
            let Some((name, value)) = first.split_once('=') else {
                continue;
            };
            let expired = sc.to_ascii_lowercase().contains("max-age=0");
            if expired || value.is_empty() {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_string(), value.trim().to_string());
            }
        }
    }

    /// One request, cookies sent and kept, no redirect followed.
    pub async fn send(&self, method: reqwest::Method, url: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = self.client.request(method, url);
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
        {
            req = req.header("accept", self.accept);
        }
        let cookies = self.cookie_header();
        if !cookies.is_empty() {
            req = req.header("cookie", cookies);
        }
        for (k, v) in headers {
            req = req.header(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {url} failed: {e}"));
        self.read(resp, url).await
    }

    /// Keeps the response's cookies and reads it whole.
    async fn read(&self, resp: reqwest::Response, url: &str) -> Resp {
        self.keep(&resp);
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        Resp {
            status,
            headers,
            body,
            url: url.to_string(),
        }
    }

    /// POSTs a form with the jar's cookies; no redirect followed.
    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Resp {
        let resp = self
            .client
            .post(url)
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url} failed: {e}"));
        self.read(resp, url).await
    }

    /// GETs `url` without cookies; its status, or `None` when the request failed
    /// (readiness polls).
    pub async fn try_get(&self, url: &str) -> Option<u16> {
        let resp = self.client.get(url).send().await.ok()?;
        Some(resp.status().as_u16())
    }

    pub async fn get(&self, url: &str) -> Resp {
        self.send(reqwest::Method::GET, url, &[]).await
    }

    /// GETs `url` and follows redirects (10 at most); returns the final response and every
    /// URL visited.
    pub async fn follow(&self, url: &str) -> (Resp, Vec<String>) {
        let mut visited = vec![url.to_string()];
        let mut resp = self.get(url).await;
        for _ in 0..10 {
            let Some(loc) = resp
                .location()
                .filter(|_| (300..400).contains(&resp.status))
            else {
                break;
            };
            let next = reqwest::Url::parse(&resp.url)
                .unwrap()
                .join(&loc)
                .unwrap()
                .to_string();
            visited.push(next.clone());
            resp = self.get(&next).await;
        }
        (resp, visited)
    }
}

/// `gatehouse check --online` for `issuer`, with `extra` flags; (exit code, stdout).
pub async fn check_online(issuer: &str, extra: &[&str]) -> (Option<i32>, String) {
    let issuer = issuer.to_string();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        for (k, _) in std::env::vars() {
            if k.starts_with("GATEHOUSE_") {
                c.env_remove(k);
            }
        }
        c.args(["check", "--online", "--issuer-url", &issuer])
            .args(["--client-id", idp::CLIENT_ID, "--client-secret", "s"])
            .args(["--cookie-secret", COOKIE_SECRET])
            .args(&extra)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The real gatehouse binary, serving on `127.0.0.1:<port>` in front of `upstream` for the
/// in-process test IdP at `issuer` (two workers, plain-http cookies, output discarded),
/// with `extra` flags; killed and reaped however the test ends.
pub struct RealGatehouse {
    pub child: std::process::Child,
    pub url: String,
}

impl RealGatehouse {
    pub async fn start(port: u16, upstream: &str, issuer: &str, extra: &[&str]) -> RealGatehouse {
        Self::spawn(port, upstream, issuer, extra, std::process::Stdio::null()).await
    }

    /// [`RealGatehouse::start`], keeping what the binary writes to stderr.
    pub async fn start_capturing(
        port: u16,
        upstream: &str,
        issuer: &str,
        extra: &[&str],
    ) -> (RealGatehouse, Captured) {
        let mut gh = Self::spawn(port, upstream, issuer, extra, std::process::Stdio::piped()).await;
        let captured = Captured::default();
        if let Some(mut err) = gh.child.stderr.take() {
            let into = captured.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = std::io::Read::read(&mut err, &mut buf) {
                    if n == 0 {
                        break;
                    }
                    into.0.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
        (gh, captured)
    }

    async fn spawn(
        port: u16,
        upstream: &str,
        issuer: &str,
        extra: &[&str],
        stderr: std::process::Stdio,
    ) -> RealGatehouse {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream", upstream, "--issuer-url", issuer])
            .args(["--client-id", idp::CLIENT_ID])
            .args(["--client-secret", idp::CLIENT_SECRET])
            .args(["--cookie-secret", COOKIE_SECRET])
            .args(["--cookie-secure", "false"])
            .args(extra)
            .env("GATEHOUSE_WORKERS", "2")
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the gatehouse binary");
        let url = format!("http://127.0.0.1:{port}");
        let started = RealGatehouse { child, url };
        wait_until_ok(&format!("{}/readyz", started.url)).await;
        started
    }
}

/// What a child process wrote to a stream, as it arrives.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits (5 s at most) until a line satisfies `want`; returns it.
    pub async fn line(&self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(l) = self.text().lines().find(|l| want(l)) {
                return l.to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no line {what} in:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RealGatehouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir {
    pub path: std::path::PathBuf,
}

impl TempDir {
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn new(kind: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "gatehouse-{kind}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn empty(&self) {
        let _ = std::fs::remove_dir_all(&self.path);
        std::fs::create_dir_all(&self.path)
            .unwrap_or_else(|e| panic!("create {}: {e}", self.path.display()));
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
