//! Talking to providers that behave like the ones our users run (CONTRACTS.md §3): what
//! gatehouse refuses to follow, and what it tolerates.

use axum::response::Redirect;
use axum::routing::get;
use gatehouse::oidc::discovery::{discover, DiscoveryError};

/// A discovery endpoint that redirects elsewhere is reported, not followed (SSRF guard).
#[tokio::test]
async fn provider_redirects_are_reported_not_followed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/.well-known/openid-configuration",
        get(|| async { Redirect::temporary("http://169.254.169.254/latest/meta-data/") }),
    );
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    let err = discover(&gatehouse::oidc::http_client(), &issuer)
        .await
        .unwrap_err();
    match &err {
        DiscoveryError::Redirected(msg) => {
            assert!(
                msg.contains(&format!("{issuer}/.well-known/openid-configuration"))
                    && msg.contains("169.254.169.254")
                    && msg.contains("does not follow redirects"),
                "{msg}"
            );
        }
        other => panic!("expected a redirect error, got {other}"),
    }
    task.abort();
}
