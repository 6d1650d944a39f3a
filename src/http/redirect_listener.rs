//! `http_redirect_listen`: a plain-http listener whose only job is to send browsers to
//! https. GET and HEAD get `308 Permanent Redirect` to the same host and path on https;
//! every other method gets 400: its body (a form, an API call) has already crossed the
//! network in clear text, and a redirect that the client follows by sending it again
//! would hide that mistake instead of showing it.
//!
//! The host in `Location` is the client's word (`Host`, or the absolute request target),
//! so it is checked before it is written: a bare host name or IP literal with an optional
//! port, nothing else (no user info, path, backslash or control byte can ride along).
//! When gatehouse knows its hosts (`redirect_url`'s host, `cookie_domain`,
//! `allowed_redirect_domains`), the host must be one of them, and any other gets 400:
//! a shared cache never stores a redirect to a host the client made up. The port is
//! `redirect_url`'s when it is https, else `listen`'s (none for 443).
//!
//! Trusts nothing of the request. Limits: `header_read_timeout`, `max_header_bytes`, and
//! at most `max_connections` connections of its own.

use crate::config::Config;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;

/// Where the redirects point.
#[derive(Debug, Clone)]
pub struct Target {
    /// `:port` to write after the host (empty for 443).
    port: String,
    /// Hosts (`.domain`: and below) a redirect may name; empty: any well-formed host.
    hosts: Vec<String>,
}

impl Target {
    pub fn new(cfg: &Config) -> Target {
        let port = match cfg.redirect_url.as_ref().filter(|u| u.scheme() == "https") {
            Some(u) => u.port(),
            None => Some(cfg.listen.port()).filter(|p| *p != 443),
        };
        let mut hosts: Vec<String> = Vec::new();
        if let Some(h) = cfg.redirect_url.as_ref().and_then(|u| u.host_str()) {
            hosts.push(h.to_ascii_lowercase());
        }
        if let Some(d) = &cfg.cookie.domain {
            // A cookie domain covers its subdomains (RFC 6265 §5.1.3).
            hosts.push(format!(".{}", d.trim_start_matches('.')));
        }
        for entry in &cfg.allowed_redirect_domains {
            let name = entry.rsplit_once(':').map_or(entry.as_str(), |(n, _)| n);
            hosts.push(name.to_ascii_lowercase());
        }
        Target {
            port: port.map(|p| format!(":{p}")).unwrap_or_default(),
            hosts,
        }
    }

    /// The answer to `method` for `host` (as the client wrote it, port included) and
    /// `path` (path and query).
    pub fn answer(&self, method: &Method, host: Option<&str>, path: &str) -> Response<String> {
        if method != Method::GET && method != Method::HEAD {
            return plain(StatusCode::BAD_REQUEST, "this is gatehouse's plain-http port: it only redirects GET and HEAD to https; send other requests to https directly (this one crossed the network unencrypted)\n");
        }
        let Some(name) = host.and_then(host_name) else {
            return plain(
                StatusCode::BAD_REQUEST,
                "the request names no usable host; use the https address of this site\n",
            );
        };
        let lower = name.to_ascii_lowercase();
        let hosts: Vec<&str> = self.hosts.iter().map(String::as_str).collect();
        if !hosts.is_empty() && !crate::redirect::host_allowed(&lower, &hosts) {
            return plain(
                StatusCode::BAD_REQUEST,
                "this host is not served here; use the https address of this site\n",
            );
        }
        let path = if path.starts_with('/') { path } else { "/" };
        let location = format!("https://{lower}{}{path}", self.port);
        match HeaderValue::from_str(&location) {
            Ok(v) => {
                let mut resp = plain(StatusCode::PERMANENT_REDIRECT, "");
                resp.headers_mut().insert(header::LOCATION, v);
                resp
            }
            Err(_) => plain(
                StatusCode::BAD_REQUEST,
                "the request's path is not readable\n",
            ),
        }
    }
}

/// The host name of a `Host` value: a DNS name (letters, digits, `-`, `.`, `_`) or an
/// IPv6 literal in brackets, then an optional port that is dropped. Anything else: `None`.
fn host_name(value: &str) -> Option<&str> {
    let (name, port) = if let Some(rest) = value.strip_prefix('[') {
        let end = rest.find(']')?;
        let literal = &rest[..end];
        literal.parse::<std::net::Ipv6Addr>().ok()?;
        (&value[..end + 2], &rest[end + 1..])
    } else {
        match value.split_once(':') {
            Some((n, _)) => (n, &value[n.len()..]),
            None => (value, ""),
        }
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| {
            !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
        });
    let name_ok = name.starts_with('[')
        || (!name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            && !name.starts_with(['.', '-']));
    (port_ok && name_ok).then_some(name)
}

fn plain(status: StatusCode, body: &'static str) -> Response<String> {
    let mut resp = Response::new(body.to_string());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status != StatusCode::PERMANENT_REDIRECT {
        // The body of a refused request was never read.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Serves redirects on `listener` for as long as the process runs.
pub async fn serve(listener: tokio::net::TcpListener, cfg: &Config) {
    let target = Arc::new(Target::new(cfg));
    let limits = cfg.limits;
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed on http_redirect_listen");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let target = Arc::clone(&target);
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            // The absolute form's authority wins over Host (RFC 9112 §3.2.2).
            let host = match req.uri().authority() {
                Some(a) => Some(a.as_str().to_owned()),
                None => req
                    .headers()
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            };
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let resp = target.answer(req.method(), host.as_deref(), path);
            std::future::ready(Ok::<_, std::convert::Infallible>(resp))
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes);
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        tokio::spawn(async move {
            let _slot = slot;
            let _ = conn.await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(hosts: &[&str], port: &str) -> Target {
        Target {
            port: port.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    fn location(t: &Target, method: Method, host: &str, path: &str) -> (u16, Option<String>) {
        let r = t.answer(&method, Some(host), path);
        let loc = r
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string());
        (r.status().as_u16(), loc)
    }

    #[test]
    fn get_and_head_go_to_https_on_the_same_host_and_path() {
        let t = target(&[], "");
        for m in [Method::GET, Method::HEAD] {
            assert_eq!(
                location(&t, m, "App.Example.com:80", "/a/b?c=d"),
                (308, Some("https://app.example.com/a/b?c=d".into()))
            );
        }
        let t = target(&[], ":8443");
        assert_eq!(
            location(&t, Method::GET, "[::1]:8080", "//evil.com/x"),
            (308, Some("https://[::1]:8443//evil.com/x".into()))
        );
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            assert_eq!(location(&t, m, "app.example.com", "/"), (400, None));
        }
    }

    #[test]
    fn a_hostile_host_never_reaches_location() {
        let t = target(&[], "");
        for host in [
            "evil.com@app.example.com",
            "app.example.com/evil.com",
            "app.example.com\\evil.com",
            "app.example.com:80/x",
            "app.example.com:x",
            "app.example.com:",
            "[::1",
            "[evil.com]",
            "",
            ".evil.com",
            "a b",
            "app.example.com?x",
            "app.example.com#x",
        ] {
            assert_eq!(
                location(&t, Method::GET, host, "/"),
                (400, None),
                "{host:?}"
            );
        }
        // Known hosts: only those (and below a cookie domain) are redirected.
        let t = target(&["gate.example.com", ".example.org"], "");
        assert_eq!(location(&t, Method::GET, "gate.example.com", "/").0, 308);
        assert_eq!(location(&t, Method::GET, "app.example.org", "/").0, 308);
        for host in [
            "evil.com",
            "example.org.evil.com",
            "evilexample.org",
            "gate.example.com.evil.com",
        ] {
            assert_eq!(location(&t, Method::GET, host, "/"), (400, None), "{host}");
        }
    }
}
