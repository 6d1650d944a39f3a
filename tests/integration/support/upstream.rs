//! An echo upstream: answers each request with JSON describing what arrived (method, path,
//! every header line, body size, counted while streaming), serves `/big?bytes=N` as a
//! stream, `/slow` after a delay, and accepts WebSocket upgrades: it picks the first
//! offered subprotocol, sends the upgrade request's headers as its first message, then
//! echoes every message.

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub struct Upstream {
    pub addr: SocketAddr,
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn headers_json(req: &Request<Incoming>) -> Value {
    let mut map = Map::new();
    for name in req.headers().keys() {
        let values: Vec<Value> = req
            .headers()
            .get_all(name)
            .iter()
            .map(|v| json!(String::from_utf8_lossy(v.as_bytes())))
            .collect();
        map.insert(name.as_str().to_string(), Value::Array(values));
    }
    Value::Object(map)
}

fn full(s: String) -> Body {
    Full::new(Bytes::from(s)).boxed()
}

/// How many `/slow` requests have reached an upstream in this process (nextest runs
/// each test in a process of its own).
pub static SLOW_STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn handle(mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let headers = headers_json(&req);
    let path = req.uri().to_string();
    if req.headers().contains_key("upgrade") {
        let key = req
            .headers()
            .get("sec-websocket-key")
            .map(|k| derive_accept_key(k.as_bytes()))
            .unwrap_or_default();
        let protocol = req
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|p| p.trim().to_string());
        let on_upgrade = hyper::upgrade::on(&mut req);
        let first = json!({"path": path, "headers": headers}).to_string();
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            let _ = ws.send(Message::text(first)).await;
            while let Some(Ok(msg)) = ws.next().await {
                let echo = matches!(msg, Message::Text(_) | Message::Binary(_));
                if matches!(msg, Message::Close(_)) || (echo && ws.send(msg).await.is_err()) {
                    break;
                }
            }
        });
        let mut resp = Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-accept", key);
        if let Some(p) = protocol {
            resp = resp.header("sec-websocket-protocol", p);
        }
        return Ok(resp.body(full(String::new())).unwrap());
    }
    if req.uri().path() == "/slow" {
        SLOW_STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
    if req.uri().path() == "/big" {
        let n: usize = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("bytes="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures_util::stream::iter((0..n.div_ceil(chunk.len())).map(move |i| {
            let len = chunk.len().min(n - i * chunk.len());
            Ok::<_, Infallible>(Frame::data(chunk.slice(0..len)))
        }));
        return Ok(Response::new(BodyExt::boxed(StreamBody::new(stream))));
    }
    let method = req.method().to_string();
    let mut body_bytes = 0usize;
    let mut body = req.into_body();
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(d) = frame.data_ref() {
            body_bytes += d.len();
        }
    }
    let out = json!({"method": method, "path": path, "headers": headers, "body_bytes": body_bytes});
    let mut resp = Response::builder()
        .header("content-type", "application/json")
        .header("set-cookie", "upstream_cookie=1; Path=/");
    if path.starts_with("/cacheable") {
        resp = resp
            .header("cache-control", "public, max-age=60")
            .header("vary", "Accept-Encoding");
    }
    Ok(resp.body(full(out.to_string())).unwrap())
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(handle);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Upstream {
            addr,
            url: format!("http://{addr}"),
            task,
        }
    }
}

/// The headers the upstream saw, from its JSON echo: name -> every value line.
pub fn seen(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"][name]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
