//! A WebSocket through gatehouse to an https upstream: a real nginx terminating TLS with
//! a private CA (`upstream_ca_file`) in front of the echo upstream. The upgrade goes
//! over the TLS connection, the identity rides on it, and frames flow both ways.

use crate::proxy::check_websocket;
use crate::support::ingress::{free_port, plain_nginx_conf, skip_unless_ingress, Ingress, Kind};
use crate::support::upstream::Upstream;
use crate::support::{config, idp::TestIdp, start, Browser, TempDir};
use crate::upstream_tls::pki;

#[tokio::test]
async fn a_websocket_reaches_an_https_upstream_with_the_identity_on_it() {
    if skip_unless_ingress(Kind::Nginx) {
        return;
    }
    let echo = Upstream::start().await;
    let dir = TempDir::new("upstream-tls-ws");
    let [ca, cert, key, _, _] = pki(dir.path(), &["localhost"]);
    let (port, tls) = (free_port(), free_port());
    let backend = echo.addr;
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let _nginx = tokio::task::spawn_blocking(move || {
        let servers = format!(
            r#"server {{
        listen 127.0.0.1:{tls} ssl;
        ssl_certificate {cert_s};
        ssl_certificate_key {key_s};
        location / {{
            proxy_pass http://{backend};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 30s;
        }}
    }}"#
        );
        Ingress::start_with(Kind::Nginx, port, |_| plain_nginx_conf(port, "", &servers))
    })
    .await
    .unwrap();
    let idp = TestIdp::start().await;
    let ca = ca.display().to_string();
    let gh = start(config(
        &format!("https://localhost:{tls}"),
        &idp.issuer,
        &[("upstream_ca_file", ca.as_str())],
    ))
    .await;
    let b = Browser::new();
    let (resp, _) = b.follow(&format!("{}/", gh.url)).await;
    assert_eq!(
        resp.status, 200,
        "signed in through the https upstream: {resp:?}"
    );
    check_websocket(&gh.url, &b.cookie_header(), "alice@example.test").await;
}
