//! https upstreams against a real nginx serving TLS with a private CA: with
//! `upstream_ca_file` gatehouse reaches it (GET through hyper's client, a POST with a
//! body, the identity headers arriving); without it, or with a certificate for another
//! name, the answer is a 502 that names the certificate problem; an upstream that asks
//! for a client certificate gets gatehouse's (`upstream_client_cert_file`), and without
//! one refuses it.

use crate::support::ingress::{free_port, plain_nginx_conf, skip_unless_ingress, Ingress, Kind};
use crate::support::{config, idp::TestIdp, start, TempDir};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use std::path::{Path, PathBuf};

/// A private CA, a server certificate for `names`, and a client certificate, as PEM
/// files in `dir`: (ca, server cert, server key, client cert, client key).
pub(crate) fn pki(dir: &Path, names: &[&str]) -> [PathBuf; 5] {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "gatehouse upstream test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let mut server =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    server
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    let server_key = KeyPair::generate().unwrap();
    let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key).unwrap();
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client
        .distinguished_name
        .push(DnType::CommonName, "gatehouse");
    let client_key = KeyPair::generate().unwrap();
    let client_cert = client.signed_by(&client_key, &ca_cert, &ca_key).unwrap();
    let files = [
        ("ca.pem", ca_cert.pem()),
        ("server.pem", server_cert.pem()),
        ("server.key", server_key.serialize_pem()),
        ("client.pem", client_cert.pem()),
        ("client.key", client_key.serialize_pem()),
    ];
    files.map(|(name, pem)| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    })
}

/// nginx: `/ingress-ready` on `port` (plain), TLS on `tls` and, asking for a client
/// certificate signed by the CA, on `mtls`.
fn tls_conf(port: u16, tls: u16, mtls: u16, pki: &[PathBuf; 5]) -> String {
    let [ca, cert, key, _, _] = pki.each_ref().map(|p| p.display().to_string());
    let app = r#"
        location = /hello { return 200 "over $ssl_protocol for $http_x_forwarded_user\n"; }
        location = /echo { return 200 "$request_method $content_length\n"; }
    "#;
    let servers = format!(
        r#"server {{
        listen 127.0.0.1:{tls} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        {app}
    }}
    server {{
        listen 127.0.0.1:{mtls} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {ca};
        ssl_verify_client on;
        {app}
    }}"#
    );
    plain_nginx_conf(port, "", &servers)
}

struct Tls {
    _server: Ingress,
    _dir: TempDir,
    pki: [PathBuf; 5],
    tls: u16,
    mtls: u16,
}

async fn nginx_with_tls(names: &'static [&'static str]) -> Option<Tls> {
    if skip_unless_ingress(Kind::Nginx) {
        return None;
    }
    let dir = TempDir::new("upstream-tls");
    let pki = pki(dir.path(), names);
    let (port, tls, mtls) = (free_port(), free_port(), free_port());
    let files = pki.clone();
    let server = tokio::task::spawn_blocking(move || {
        Ingress::start_with(Kind::Nginx, port, |_| tls_conf(port, tls, mtls, &files))
    })
    .await
    .unwrap();
    Some(Tls {
        _server: server,
        _dir: dir,
        pki,
        tls,
        mtls,
    })
}

/// A 502 JSON answer, and its message.
async fn bad_gateway(url: &str) -> String {
    let r = reqwest::Client::new()
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502, "{url}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "upstream_tls_failed", "{body}");
    body["message"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn an_https_upstream_behind_a_private_ca_works_with_upstream_ca_file_and_is_a_502_naming_it_without(
) {
    let Some(n) = nginx_with_tls(&["localhost"]).await else {
        return;
    };
    let idp = TestIdp::start().await;
    let ca = n.pki[0].display().to_string();
    let upstream = format!("https://localhost:{}", n.tls);
    let gh = start(config(
        &upstream,
        &idp.issuer,
        &[
            ("upstream_ca_file", ca.as_str()),
            ("skip_auth_routes", "/**"),
        ],
    ))
    .await;
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/hello", gh.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.starts_with("over TLSv1."), "{text}");
    // A spoofed identity is still stripped on the way (the skip route has none).
    let r = client
        .post(format!("{}/echo", gh.url))
        .header("x-forwarded-user", "root")
        .body("twelve bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "POST 12\n");
    let r = client
        .get(format!("{}/hello", gh.url))
        .header("x-forwarded-user", "root")
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(
        text.starts_with("over TLSv1.") && text.trim_end().ends_with(" for"),
        "{text}"
    );

    // The same upstream without its CA: a 502 that says what to do.
    let gh = start(config(
        &upstream,
        &idp.issuer,
        &[("skip_auth_routes", "/**")],
    ))
    .await;
    let message = bad_gateway(&format!("{}/hello", gh.url)).await;
    assert!(
        message.contains("does not trust") && message.contains("upstream_ca_file"),
        "{message}"
    );
}

#[tokio::test]
async fn a_certificate_for_another_name_is_a_502_naming_the_host() {
    let Some(n) = nginx_with_tls(&["app.internal.test"]).await else {
        return;
    };
    let idp = TestIdp::start().await;
    let ca = n.pki[0].display().to_string();
    let gh = start(config(
        &format!("https://localhost:{}", n.tls),
        &idp.issuer,
        &[
            ("upstream_ca_file", ca.as_str()),
            ("skip_auth_routes", "/**"),
        ],
    ))
    .await;
    let message = bad_gateway(&format!("{}/hello", gh.url)).await;
    assert!(message.contains("not valid for the host"), "{message}");
}

#[tokio::test]
async fn an_upstream_asking_for_a_client_certificate_gets_gatehouses() {
    let Some(n) = nginx_with_tls(&["localhost"]).await else {
        return;
    };
    let idp = TestIdp::start().await;
    let [ca, _, _, cert, key] = n.pki.each_ref().map(|p| p.display().to_string());
    let upstream = format!("https://localhost:{}", n.mtls);
    let gh = start(config(
        &upstream,
        &idp.issuer,
        &[
            ("upstream_ca_file", ca.as_str()),
            ("upstream_client_cert_file", cert.as_str()),
            ("upstream_client_key_file", key.as_str()),
            ("skip_auth_routes", "/**"),
        ],
    ))
    .await;
    let r = reqwest::get(format!("{}/hello", gh.url)).await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);

    // Without the client certificate nginx refuses: never a 200.
    let gh = start(config(
        &upstream,
        &idp.issuer,
        &[
            ("upstream_ca_file", ca.as_str()),
            ("skip_auth_routes", "/**"),
        ],
    ))
    .await;
    let r = reqwest::get(format!("{}/hello", gh.url)).await.unwrap();
    assert_ne!(r.status(), 200);
}

#[test]
fn tls_files_are_checked_at_start_up_with_every_problem_listed() {
    let dir = TempDir::new("upstream-tls-config");
    let pki = pki(dir.path(), &["localhost"]);
    let [ca, cert, key, client, _] = pki.each_ref().map(|p| p.display().to_string());
    let problems = |pairs: &[(&'static str, &str)]| -> Vec<String> {
        let mut raw = gatehouse::config::RawConfig::default();
        raw.set("issuer_url", "https://sso.example.com");
        raw.set("client_id", "c");
        raw.set("client_secret", "s");
        raw.set("cookie_secret", crate::support::COOKIE_SECRET);
        for (k, v) in pairs {
            raw.set(k, v);
        }
        match gatehouse::config::Config::from_raw(&raw) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems,
        }
    };
    assert!(problems(&[
        ("upstream", "https://localhost:8443"),
        ("upstream_ca_file", &ca)
    ])
    .is_empty());
    let p = problems(&[
        ("upstream", "https://localhost:8443"),
        ("upstream_ca_file", &key),
        ("upstream_client_cert_file", &client),
    ]);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].contains("no PEM certificate"), "{p:?}");
    assert!(p[1].contains("go together"), "{p:?}");
    let p = problems(&[
        ("upstream", "http://localhost:8080"),
        ("upstream_ca_file", &ca),
    ]);
    assert!(
        p.iter().any(|p| p.contains("only to an https upstream")),
        "{p:?}"
    );
    let p = problems(&[
        ("upstream", "https://localhost:8443"),
        ("upstream_client_cert_file", &cert),
        ("upstream_client_key_file", &pki[4].display().to_string()),
    ]);
    assert!(p.iter().any(|p| p.contains("do not go together")), "{p:?}");
}
