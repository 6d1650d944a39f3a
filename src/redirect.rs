//! Validation of post-login targets (`rd`): the classic open-redirect hole.
//!
//! Trusts nothing. A target is accepted only as a plain same-site path, or as an absolute
//! `http(s)://` URL whose host is allowed, in which case only its path and query are kept.
//! Anything odd (backslashes, whitespace or control characters, raw or percent-encoded,
//! `//` at the start, dot segments, other schemes) is refused; the caller uses `/` instead.

use percent_encoding::percent_decode_str;

/// Longest target accepted.
const MAX_LEN: usize = 2048;

fn has_forbidden_chars(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
}

/// Decodes percent-escapes until the text stops changing (at most 3 rounds), so
/// `%2509` cannot hide a tab from one round of checks.
fn fully_decoded(s: &str) -> Option<String> {
    let mut cur = s.to_string();
    for _ in 0..3 {
        let next = percent_decode_str(&cur).decode_utf8().ok()?.into_owned();
        if next == cur {
            return Some(cur);
        }
        cur = next;
    }
    Some(cur)
}

fn safe_path(path: &str) -> bool {
    if !path.starts_with('/') || path.starts_with("//") {
        return false;
    }
    let only_path = path.split(['?', '#']).next().unwrap_or("");
    !only_path.split('/').any(|seg| seg == "." || seg == "..")
}

/// A URL's path (no query) that is safe as it is and once percent-decoded: an absolute
/// target must meet the same rules as a path target (`/%2F/evil.com` is refused as both).
fn safe_decoded_path(path: &str) -> bool {
    safe_path(path)
        && fully_decoded(path).is_some_and(|d| !has_forbidden_chars(&d) && safe_path(&d))
}

/// True when `host` equals an allowed entry, or is below an entry written as `.domain`.
/// `.example.com` allows `example.com` and `a.example.com`, never `evilexample.com` or
/// `example.com.evil.com`.
pub fn host_allowed(host: &str, allowed: &[&str]) -> bool {
    let host = host.to_ascii_lowercase();
    allowed.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        match a.strip_prefix('.') {
            Some(domain) => {
                host == domain
                    || host
                        .strip_suffix(domain)
                        .is_some_and(|rest| rest.ends_with('.'))
            }
            None => host == a,
        }
    })
}

/// True when `host` with `port` (`None`: the scheme's default) is covered by an
/// `allowed_redirect_domains` entry: `host`, `.domain` (whole labels), each optionally with
/// `:port`. An entry without a port allows only the default port.
pub fn redirect_domain_allowed(host: &str, port: Option<u16>, entries: &[String]) -> bool {
    entries.iter().any(|e| {
        let (name, want_port) = match e.rsplit_once(':') {
            Some((n, p)) => match p.parse::<u16>() {
                Ok(p) => (n, Some(p)),
                Err(_) => return false,
            },
            None => (e.as_str(), None),
        };
        want_port == port && host_allowed(host, &[name])
    })
}

/// Returns the safe target for `raw`, or `None` (the caller falls back to `/`).
/// An absolute URL on `own_host` (where the callback lands) is reduced to its path and
/// query; one on a host listed in `other_hosts` (`allowed_redirect_domains`) is kept whole,
/// so the user returns to that app.
pub fn validate_target(raw: &str, own_host: &str, other_hosts: &[String]) -> Option<String> {
    if let Some(path) = validate_return_to(raw, &[own_host]) {
        return Some(path);
    }
    if other_hosts.is_empty() || has_forbidden_chars(raw) || raw.len() > MAX_LEN {
        return None;
    }
    let lower = raw.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return None;
    }
    let path_only = raw.split(['?', '#']).next().unwrap_or("");
    if has_forbidden_chars(&fully_decoded(path_only)?) {
        return None;
    }
    let mut url = url::Url::parse(raw).ok()?;
    let host = url.host_str()?.to_string();
    if !url.username().is_empty()
        || url.password().is_some()
        || !redirect_domain_allowed(&host, url.port(), other_hosts)
        || !safe_decoded_path(url.path())
    {
        return None;
    }
    url.set_fragment(None);
    Some(url.into())
}

/// Returns the safe target for `raw`, or `None` (the caller falls back to `/`).
/// `allowed_hosts` are the hosts an absolute URL may point at (the request's own host).
pub fn validate_return_to(raw: &str, allowed_hosts: &[&str]) -> Option<String> {
    if raw.is_empty() || raw.len() > MAX_LEN || has_forbidden_chars(raw) {
        return None;
    }
    // The path decides where a browser goes: it must stay safe once decoded. The query
    // may hold encoded spaces and the like.
    let path_only = raw.split(['?', '#']).next().unwrap_or("");
    let decoded = fully_decoded(path_only)?;
    if has_forbidden_chars(&decoded) {
        return None;
    }
    if raw.starts_with('/') {
        return (safe_path(raw) && safe_path(&decoded)).then(|| raw.to_string());
    }
    // Absolute URLs: only with an explicit `//` authority (so `https:evil.com` is out).
    let lower = raw.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return None;
    }
    let url = url::Url::parse(raw).ok()?;
    let host = url.host_str()?;
    if !url.username().is_empty() || url.password().is_some() || !host_allowed(host, allowed_hosts)
    {
        return None;
    }
    if !safe_decoded_path(url.path()) {
        return None;
    }
    let mut target = url.path().to_string();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    safe_path(&target).then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &[&str] = &["app.example.com"];

    #[test]
    fn contracts_section_4_open_redirects_are_refused() {
        for bad in [
            "/\\evil.com",
            "/\\t/evil.com",
            "/\t/evil.com",
            "/ /evil.com",
            "/%09/evil.com",
            "/%2509/evil.com",
            "/./\\evil.com",
            "/./../../\\evil.com",
            "/../evil.com",
            "//evil.com",
            "///evil.com",
            "/%2F/evil.com",
            "/%5Cevil.com",
            "https:evil.com",
            "https://evil.com/",
            "http://app.example.com.evil.com/",
            "https://app.example.com@evil.com/",
            "https://user:pw@app.example.com/",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "evil.com",
            "",
        ] {
            assert_eq!(validate_return_to(bad, HOSTS), None, "accepted {bad:?}");
        }
    }

    #[test]
    fn ordinary_targets_are_kept() {
        assert_eq!(validate_return_to("/", HOSTS).as_deref(), Some("/"));
        assert_eq!(
            validate_return_to("/headlamp/c/main/pods?ns=a%20b", HOSTS).as_deref(),
            Some("/headlamp/c/main/pods?ns=a%20b")
        );
        assert_eq!(
            validate_return_to("https://app.example.com/x?y=1", HOSTS).as_deref(),
            Some("/x?y=1")
        );
    }

    #[test]
    fn other_apps_are_reachable_only_when_listed_with_their_port() {
        let allowed = vec![
            ".example.com".to_string(),
            "admin.example.org:8443".to_string(),
        ];
        let own = "auth.example.com";
        let ok = |raw: &str| validate_target(raw, own, &allowed);
        assert_eq!(
            ok("https://headlamp.example.com/c/main?x=1#frag").as_deref(),
            Some("https://headlamp.example.com/c/main?x=1")
        );
        assert_eq!(
            ok("https://example.com/").as_deref(),
            Some("https://example.com/")
        );
        assert_eq!(
            ok("https://admin.example.org:8443/x").as_deref(),
            Some("https://admin.example.org:8443/x")
        );
        assert_eq!(ok("https://auth.example.com/x").as_deref(), Some("/x"));
        assert_eq!(ok("/local").as_deref(), Some("/local"));
        for bad in [
            "https://evilexample.com/",
            "https://example.com.evil.com/",
            "https://a.example.com:8443/",
            "https://admin.example.org/",
            "https://admin.example.org:9443/",
            "https://user@a.example.com/",
            "https://a.example.com@evil.com/",
            "https://a.example.com\\@evil.com/",
            "https://a.example.com/%09/x",
            "https://a.example.com//evil.com",
            "javascript://a.example.com/%0aalert(1)",
            "ftp://a.example.com/",
            "https:a.example.com",
            "//a.example.com/",
        ] {
            assert_eq!(ok(bad), None, "accepted {bad:?}");
        }
        assert_eq!(validate_target("https://a.example.com/", own, &[]), None);
    }

    #[test]
    fn absolute_targets_meet_the_path_rules_once_decoded() {
        // Found by fuzz/redirect_target (`http://Example.com/%2F` with `.example.com`
        // allowed): an absolute target's path was checked only as it stood, so it let
        // through encoded slashes and dot segments that a path target may not carry.
        assert_eq!(validate_return_to("/%2F/evil.com", HOSTS), None);
        for bad in [
            "https://app.example.com/%2F/evil.com",
            "https://app.example.com/%2f%2fevil.com",
            "https://app.example.com/%2e%2e%2f%2fevil.com",
            "https://app.example.com/a/%2e%2e%2Fb",
        ] {
            assert_eq!(validate_return_to(bad, HOSTS), None, "accepted {bad:?}");
        }
        let allowed = vec![".example.com".to_string()];
        let own = "auth.example.com";
        for bad in [
            "http://Example.com/%2F",
            "https://a.example.com/%2F/evil.com",
            "https://a.example.com/x/%2e%2e%2f%2fevil.com",
        ] {
            assert_eq!(
                validate_target(bad, own, &allowed),
                None,
                "accepted {bad:?}"
            );
        }
        // Other escapes, and any in the query, are still fine.
        assert_eq!(
            validate_return_to("https://app.example.com/caf%C3%A9?next=%2F%2Fx", HOSTS).as_deref(),
            Some("/caf%C3%A9?next=%2F%2Fx")
        );
        assert_eq!(
            validate_target(
                "https://a.example.com/caf%C3%A9?next=%2F%2Fx",
                own,
                &allowed
            )
            .as_deref(),
            Some("https://a.example.com/caf%C3%A9?next=%2F%2Fx")
        );
    }

    #[test]
    fn domain_allow_list_matches_whole_labels_only() {
        let allowed = [".example.com"];
        assert!(host_allowed("example.com", &allowed));
        assert!(host_allowed("a.b.example.com", &allowed));
        assert!(!host_allowed("evilexample.com", &allowed));
        assert!(!host_allowed("example.com.evil.com", &allowed));
        assert!(!host_allowed("evil.com", &["example.com"]));
    }
}
