//! The few HTML pages gatehouse shows itself: errors and "signed out". Self-contained, no
//! external assets, every dynamic string escaped.

use axum::response::Html;

/// Escapes text for HTML element and attribute content.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Wraps a body in the common page shell.
pub fn shell(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>{t}</title><style>body{{font-family:system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;color:#222}}\
h1{{font-size:1.4rem}}.muted{{color:#666;font-size:.9rem}}code{{background:#f3f3f3;padding:.1rem .3rem}}\
a.button{{display:inline-block;padding:.5rem 1rem;background:#2456a6;color:#fff;text-decoration:none;border-radius:4px}}\
table{{border-collapse:collapse}}td,th{{border:1px solid #ddd;padding:.3rem .6rem;text-align:left;vertical-align:top}}</style></head>\
<body>{body}</body></html>",
        t = escape(title)
    ))
}

/// `message` with its first letter in upper case (error messages start lower case so
/// they read well inside log lines).
fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// An error page: what happened, what to do, an optional action (label, link), and the
/// request id for the logs.
pub fn error_page(
    title: &str,
    message: &str,
    advice: &str,
    request_id: &str,
    action: Option<(&str, &str)>,
) -> Html<String> {
    let retry = action
        .map(|(label, u)| {
            format!(
                "<p><a class=\"button\" href=\"{}\">{}</a></p>",
                escape(u),
                escape(label)
            )
        })
        .unwrap_or_default();
    shell(
        title,
        &format!(
            "<h1>{}</h1><p>{}.</p><p>{}</p>{retry}<p class=\"muted\">Request id: <code>{}</code> (gatehouse's log has the same id)</p>",
            escape(title),
            escape(&sentence(message)),
            escape(advice),
            escape(request_id)
        ),
    )
}

/// `GET /oauth2/sign_out`: the button posts, so only this site can sign a user out.
pub fn sign_out_confirm() -> Html<String> {
    shell(
        "Sign out",
        "<h1>Sign out?</h1><p>This ends your gatehouse session (and, where the identity provider supports it, your session there).</p>\
<form method=\"post\" action=\"/oauth2/sign_out\"><button class=\"button\" type=\"submit\">Sign out</button></form>\
<form method=\"post\" action=\"/oauth2/sign_out?everywhere=1\"><button class=\"button\" type=\"submit\">Sign out everywhere</button></form>\
<p>\u{201c}Everywhere\u{201d} also ends your sessions in every other browser and device signed in here.</p>",
    )
}

/// Shown after sign-out when the provider has no end-session endpoint.
pub fn signed_out() -> Html<String> {
    shell(
        "Signed out",
        "<h1>You are signed out</h1><p>Your gatehouse session has ended. Your session at the identity provider may still be active.</p>\
<p><a class=\"button\" href=\"/oauth2/start\">Sign in again</a></p>",
    )
}
