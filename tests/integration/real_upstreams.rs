//! gatehouse's own upstream client (`src/proxy/h1.rs`, every bodyless GET and HEAD)
//! against real servers as the upstream: nginx, and Caddy, whose HTTP/1.1 is Go's
//! net/http, as Headlamp's and the Kubernetes API server's is. What a browser or
//! kubectl gets through gatehouse must be byte for byte what the server sent: lengths,
//! chunked (gzip) bodies, HEAD, 304 revalidation, ranges, errors; and kept-alive upstream
//! connections must be reused.

use crate::support::ingress::{free_port, skip_unless_ingress, Ingress, Kind};
use crate::support::{config, idp::TestIdp, start};
use reqwest::header::{ACCEPT_ENCODING, CONTENT_LENGTH, ETAG, IF_NONE_MATCH, RANGE};
use std::path::Path;

/// The files both servers serve under `/files/`.
fn write_files(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let page: Vec<u8> = (0..3000).map(|i| b"<p>pods</p>\n"[i % 12]).collect();
    // Log lines of pseudo-random hex: compressed, still far more than a server buffers
    // before it must send without a length.
    let mut x: u32 = 12345;
    let log: Vec<u8> = (0..300_000u32)
        .map(|i| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            if i % 64 == 63 {
                b'\n'
            } else {
                b"0123456789abcdef"[(x >> 16) as usize % 16]
            }
        })
        .collect();
    std::fs::write(files.join("page.html"), &page).unwrap();
    std::fs::write(files.join("app.log"), &log).unwrap();
    (page, log)
}

fn nginx_conf(dir: &Path, port: u16) -> String {
    format!(
        r#"worker_processes 1;
pid nginx.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
    log_format conn '$connection $request';
    access_log {dir}/access.log conn;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    keepalive_requests 10000;
    gzip on;
    gzip_types text/plain text/html;
    gzip_min_length 0;
    types {{ text/html html; text/plain log; }}
    server {{
        listen 127.0.0.1:{port};
        location = /ingress-ready {{ return 200 "ready\n"; }}
        location /files/ {{ root {dir}; }}
    }}
}}
"#,
        dir = dir.display()
    )
}

fn caddyfile(dir: &Path, port: u16) -> String {
    format!(
        "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {dir}/data\n\
         \tlog {{\n\t\toutput stderr\n\t\tlevel WARN\n\t}}\n}}\n\
         http://:{port} {{\n\tbind 127.0.0.1\n\
         \thandle /ingress-ready {{\n\t\trespond \"ready\" 200\n\t}}\n\
         \thandle /files/* {{\n\t\troot * {dir}\n\t\tencode gzip\n\t\tfile_server\n\t}}\n}}\n",
        dir = dir.display()
    )
}

/// Status, the headers a test compares, and the body, as a client gets them.
async fn get(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    headers: &[(reqwest::header::HeaderName, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = client.request(method, url);
    for (n, v) in headers {
        req = req.header(n, *v);
    }
    let r = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = r.status().as_u16();
    let h = r.headers().clone();
    let body = r
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("{url}: body: {e}"));
    (status, h, body.to_vec())
}

async fn check(kind: Kind) {
    if skip_unless_ingress(kind) {
        return;
    }
    let port = free_port();
    let (tx, rx) = std::sync::mpsc::channel();
    let server = tokio::task::spawn_blocking(move || {
        Ingress::start_with(kind, port, |dir| {
            tx.send(write_files(dir)).unwrap();
            match kind {
                Kind::Nginx => nginx_conf(dir, port),
                _ => caddyfile(dir, port),
            }
        })
    })
    .await
    .unwrap();
    let (page, log) = rx.recv().unwrap();
    let idp = TestIdp::start().await;
    let gh = start(config(
        &server.url,
        &idp.issuer,
        &[("skip_auth_routes", "/files/**")],
    ))
    .await;
    let client = reqwest::Client::new();
    let name = kind.name();
    let both = |path: &str| (format!("{}{path}", server.url), format!("{}{path}", gh.url));

    // Plain bodies, with a length.
    for (path, want) in [("/files/page.html", &page), ("/files/app.log", &log)] {
        let (direct, through) = both(path);
        let (s, h, body) = get(&client, reqwest::Method::GET, &through, &[]).await;
        assert_eq!(s, 200, "{name} {path}");
        assert!(
            body == *want,
            "{name} {path}: {} bytes, want {}",
            body.len(),
            want.len()
        );
        let (_, dh, _) = get(&client, reqwest::Method::GET, &direct, &[]).await;
        assert_eq!(
            h.get(ETAG),
            dh.get(ETAG),
            "{name} {path}: the validator is kept"
        );
    }

    // Compressed on the fly: the server sends it chunked (no length); the client gets
    // the very same bytes.
    let gzip = [(ACCEPT_ENCODING, "gzip")];
    let (direct, through) = both("/files/app.log");
    let (ds, dh, dbody) = get(&client, reqwest::Method::GET, &direct, &gzip).await;
    assert_eq!(ds, 200);
    assert!(
        dh.get(CONTENT_LENGTH).is_none(),
        "{name} should stream gzip without a length: {dh:?}"
    );
    let (s, h, body) = get(&client, reqwest::Method::GET, &through, &gzip).await;
    assert_eq!(s, 200);
    assert_eq!(
        h.get("content-encoding").map(|v| v.as_bytes()),
        Some(&b"gzip"[..])
    );
    assert!(
        body == dbody,
        "{name}: gzip body differs ({} vs {} bytes)",
        body.len(),
        dbody.len()
    );
    assert!(body.len() < log.len(), "{name}: the body is compressed");

    // HEAD: the length of the body, and no body.
    let (_, through) = both("/files/page.html");
    let (s, h, body) = get(&client, reqwest::Method::HEAD, &through, &[]).await;
    assert_eq!((s, body.len()), (200, 0), "{name} HEAD");
    assert_eq!(
        h.get(CONTENT_LENGTH)
            .map(|v| v.to_str().unwrap().to_string()),
        Some(page.len().to_string()),
        "{name} HEAD"
    );

    // Revalidation: 304, no body, the connection still good for the next request.
    let (_, h, _) = get(&client, reqwest::Method::GET, &through, &[]).await;
    let etag = h.get(ETAG).expect("an ETag").to_str().unwrap().to_string();
    let (s, _, body) = get(
        &client,
        reqwest::Method::GET,
        &through,
        &[(IF_NONE_MATCH, &etag)],
    )
    .await;
    assert_eq!((s, body.len()), (304, 0), "{name} revalidation");

    // A range of the log, and a missing file.
    let (_, through_log) = both("/files/app.log");
    let (s, _, body) = get(
        &client,
        reqwest::Method::GET,
        &through_log,
        &[(RANGE, "bytes=1000-1999")],
    )
    .await;
    assert_eq!(s, 206, "{name} range");
    assert!(body == log[1000..2000], "{name} range body");
    let (_, missing) = both("/files/none.txt");
    let (s, _, _) = get(&client, reqwest::Method::GET, &missing, &[]).await;
    assert_eq!(s, 404, "{name} missing file");

    // Kept-alive: a run of requests from one client goes over very few upstream
    // connections (nginx logs each request's connection number).
    if kind == Kind::Nginx {
        for _ in 0..50 {
            let (s, _, _) = get(&client, reqwest::Method::GET, &through, &[]).await;
            assert_eq!(s, 200);
        }
        let access = std::fs::read_to_string(server.dir.join("access.log")).unwrap();
        let mut conns: Vec<&str> = access
            .lines()
            .filter(|l| l.contains("/files/page.html"))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let requests = conns.len();
        conns.sort_unstable();
        conns.dedup();
        assert!(requests >= 50, "{access}");
        assert!(
            conns.len() <= 4,
            "{requests} requests through gatehouse used {} upstream connections",
            conns.len()
        );
    }
}

#[tokio::test]
async fn nginx_as_the_upstream() {
    check(Kind::Nginx).await;
}

#[tokio::test]
async fn caddy_as_the_upstream() {
    check(Kind::Caddy).await;
}
