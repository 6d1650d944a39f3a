//! The identity header names a configuration gives (`header_user` and the rest) must be
//! names of their own: gatehouse sets each once, beside the client's headers
//! (`headers::Additions`), so a name two roles share would be sent twice, and a name
//! that HTTP or gatehouse already uses (`Host`, `Content-Length`, `X-Forwarded-For`...)
//! would overwrite or contradict it, or break the request's framing.

use super::reader::Reader;
use super::HeaderNames;

/// Names identity headers may not take (compared folded: case, and `_` or any other
/// separator for `-`, as `headers::normalise` reads names).
const RESERVED: &[&str] = &[
    "host",
    "cookie",
    "authorization",
    "proxy-authorization",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    // What an ingress says of the original request in a forward-auth check.
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-original-uri",
    "x-original-method",
    "x-original-url",
    "x-real-ip",
    "x-request-id",
    "traceparent",
    "tracestate",
];

/// Adds a problem for each identity header name that repeats another or is reserved.
pub(super) fn check(r: &mut Reader, h: &HeaderNames) {
    for (key, msg) in problems(h) {
        let entry = r.raw.get(key);
        r.problem(entry, key, msg);
    }
}

/// Each identity header name of `h` that repeats another or is reserved: the setting
/// that gave it and what is wrong.
pub(super) fn problems(h: &HeaderNames) -> Vec<(&'static str, String)> {
    let roles = [
        ("header_user", &h.user),
        ("header_email", &h.email),
        ("header_preferred_username", &h.preferred_username),
    ]
    .into_iter()
    .chain(h.groups.iter().map(|g| ("header_groups", g)))
    .chain(h.id_token.iter().map(|t| ("header_id_token", t)))
    .chain(std::iter::once(("assertion_header", &h.assertion)));
    let mut seen: Vec<(&str, &axum::http::HeaderName)> = Vec::new();
    let mut found = Vec::new();
    for (key, name) in roles {
        if RESERVED.contains(&crate::headers::normalise(name.as_str()).as_str()) {
            found.push((
                key,
                format!("`{name}` is a header HTTP or gatehouse itself sets; choose another name"),
            ));
        } else if let Some((other, _)) = seen
            .iter()
            .find(|(_, n)| crate::headers::same_header(n.as_str(), name.as_str()))
        {
            let also = if *other == key {
                "appears twice".to_string()
            } else {
                format!("is also {other}")
            };
            found.push((
                key,
                format!("`{name}` {also}: each identity header needs a name of its own"),
            ));
        }
        seen.push((key, name));
    }
    found
}

#[cfg(test)]
mod tests {
    use crate::config::sources::RawConfig;
    use crate::config::Config;

    fn problems(extra: &[(&str, &str)]) -> Vec<String> {
        let mut vars: std::collections::HashMap<String, String> = [
            ("GATEHOUSE_ISSUER_URL", "https://sso.example.com"),
            ("GATEHOUSE_UPSTREAM", "http://127.0.0.1:4466"),
            ("GATEHOUSE_CLIENT_ID", "c"),
            ("GATEHOUSE_CLIENT_SECRET", "s"),
            (
                "GATEHOUSE_COOKIE_SECRET",
                "DbhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk",
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        match Config::from_raw(&RawConfig::from_env(&vars)) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems,
        }
    }

    #[test]
    fn the_defaults_and_distinct_names_pass() {
        assert_eq!(problems(&[]), Vec::<String>::new());
        assert_eq!(
            problems(&[
                ("GATEHOUSE_HEADER_USER", "X-Remote-User"),
                ("GATEHOUSE_HEADER_GROUPS", "X-Remote-Group"),
            ]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn shared_and_reserved_names_are_refused_all_at_once() {
        let all = problems(&[
            ("GATEHOUSE_HEADER_EMAIL", "x-forwarded-user"),
            ("GATEHOUSE_HEADER_GROUPS", "X-Groups,X-Groups"),
            ("GATEHOUSE_HEADER_PREFERRED_USERNAME", "Content_Length"),
            ("GATEHOUSE_HEADER_ID_TOKEN", "X-Forwarded-For"),
            ("GATEHOUSE_HEADER_USER", "X-User"),
            ("GATEHOUSE_HEADER_EMAIL", "x_user"),
        ])
        .join("\n");
        for needle in [
            "header_email (from env GATEHOUSE_HEADER_EMAIL): `x_user` is also header_user",
            "header_groups (from env GATEHOUSE_HEADER_GROUPS): `x-groups` appears twice",
            "header_preferred_username (from env GATEHOUSE_HEADER_PREFERRED_USERNAME): `content_length` is a header HTTP or gatehouse itself sets",
            "header_id_token (from env GATEHOUSE_HEADER_ID_TOKEN): `x-forwarded-for` is a header",
        ] {
            assert!(all.contains(needle), "missing `{needle}` in:\n{all}");
        }
    }
}
