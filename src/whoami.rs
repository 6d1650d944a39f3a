//! `gatehouse whoami`: a tiny upstream that shows the identity headers it received,
//! standing in for Headlamp in the demo, the benchmark and the tests. It trusts the
//! headers blindly, exactly like Headlamp does: that is what it demonstrates.

use crate::http::pages::{escape, shell};
use axum::extract::Request;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The headers shown, in this order.
pub const SHOWN: &[&str] = &[
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-group",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-id-token",
    "authorization",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];

/// The claims of a JWT, decoded without verification (display only).
fn jwt_claims(token: &str) -> Option<serde_json::Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

async fn show(req: Request) -> Response {
    let h = req.headers();
    let get = |n: &str| {
        h.get_all(n)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let wants_json = h
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        let map: serde_json::Map<String, serde_json::Value> = SHOWN
            .iter()
            .map(|n| (n.to_string(), serde_json::Value::String(get(n))))
            .collect();
        return Json(serde_json::json!({"method": req.method().as_str(), "path": req.uri().to_string(), "headers": map})).into_response();
    }
    let rows: String = SHOWN
        .iter()
        .map(|n| {
            let v = get(n);
            let v = if v.len() > 80 {
                format!("{}… ({} bytes)", &v[..80], v.len())
            } else {
                v
            };
            format!(
                "<tr><th>{}</th><td><code>{}</code></td></tr>",
                escape(n),
                escape(&v)
            )
        })
        .collect();
    let claims = h
        .get("x-forwarded-id-token")
        .and_then(|v| v.to_str().ok())
        .and_then(jwt_claims)
        .and_then(|c| serde_json::to_string_pretty(&c).ok())
        .map(|c| format!("<h2>ID token claims</h2><pre>{}</pre>", escape(&c)))
        .unwrap_or_default();
    let user = get("x-forwarded-user");
    shell(
        "whoami",
        &format!(
            "<h1>Hello, {}</h1><p>This page is the upstream app behind gatehouse. It received <code>{} {}</code> with these headers:</p>\
<table>{rows}</table>{claims}<p><a href=\"/oauth2/sign_out\">Sign out</a></p>",
            escape(if user.is_empty() { "nobody" } else { &user }),
            escape(req.method().as_str()),
            escape(&req.uri().to_string()),
        ),
    )
    .into_response()
}

/// The whoami app.
pub fn app() -> Router {
    Router::new().fallback(show)
}
