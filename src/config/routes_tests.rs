//! `[[routes]]` as read from a file: what is accepted, and every mistake listed at once.

use super::super::sources::RawConfig;
use super::super::Config;

const BASE: &str = "issuer_url = \"https://sso.example.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\ncookie_secret = \"DbhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk\"\n";

fn load(extra: &str) -> Result<Config, Vec<String>> {
    let (raw, mut problems) =
        RawConfig::from_toml_with_problems(&format!("{BASE}{extra}"), "g.toml").unwrap();
    match Config::from_raw(&raw) {
        Ok(cfg) if problems.is_empty() => Ok(cfg),
        Ok(_) => Err(problems),
        Err(e) => {
            problems.extend(e.problems);
            Err(problems)
        }
    }
}

#[test]
fn routes_are_read_in_order_of_specificity_with_their_rules() {
    let cfg = load(
        r#"
[[routes]]
host = "*.apps.example.com"
upstream = "http://wild:8080"

[[routes]]
host = "Grafana.Example.com"
path_prefix = "/api"
upstream = "https://grafana-api"
allowed_groups = ["Domain Admins", "ops"]
allowed_emails = "bob@example.com"
allowed_email_domains = [".example.com"]

[[routes]]
host = "grafana.example.com"
upstream = "http://grafana:3000"
"#,
    )
    .unwrap();
    let shown: Vec<String> = cfg.routes.routes().iter().map(|r| r.to_string()).collect();
    assert_eq!(
        shown,
        [
            "grafana.example.com/api -> https://grafana-api",
            "grafana.example.com/ -> http://grafana:3000",
            "*.apps.example.com/ -> http://wild:8080",
        ]
    );
    let api = &cfg.routes.routes()[0].rules;
    assert_eq!(api.groups, ["Domain Admins", "ops"]);
    assert_eq!(api.emails, ["bob@example.com"]);
    assert_eq!(api.email_domains, [".example.com"]);
    assert!(cfg.routes.routes()[1].rules.is_empty());
    assert!(cfg.upstream.is_none());
    assert!(
        cfg.upstream_tls.is_some(),
        "an https route gets the TLS client"
    );
    assert!(
        !cfg.warnings.iter().any(|w| w.contains("auth-only")),
        "{:?}",
        cfg.warnings
    );
}

#[test]
fn without_routes_the_single_upstream_is_unchanged() {
    let cfg = load("upstream = \"http://app:8080\"\n").unwrap();
    assert!(cfg.routes.is_empty());
    assert_eq!(cfg.upstream.unwrap().as_str(), "http://app:8080/");
}

#[test]
fn every_route_mistake_is_listed_with_the_others() {
    let problems = load(
        r#"
upstream = "http://app:8080"
listen = "nowhere"

[[routes]]
host = "a.example.com"
upstream = "http://a"
allowd_groups = ["x"]

[[routes]]
host = "A.example.com"
path_prefix = "/"
upstream = "http://a2"

[[routes]]
host = "*.com"
path_prefix = "app"
upstream = "ftp://b"

[[routes]]
path_prefix = "/x/../y"
upstream = "http://user:pw@c/path"
allowed_emails = ["not-an-email"]
allowed_email_domains = ["a@b.com"]
allowed_groups = "Domain Admins"

[[routes]]
host = "d.example.com:8443"
allowed_groups = 5

[[routes]]
host = "e.example.com"
path_prefix = "/admin;x"
upstream = "http://e"
"#,
    )
    .unwrap_err();
    let all = problems.join("\n");
    for needle in [
        "g.toml: routes[1]: unknown key `allowd_groups`",
        "g.toml: routes[2]: covers exactly what routes[1] covers (a.example.com/)",
        "g.toml: routes[3]: host: `*.com` is not a host name",
        "g.toml: routes[3]: path_prefix: `app` is not a path starting with /",
        "g.toml: routes[3]: upstream: `ftp://b` is not an http(s) URL",
        "g.toml: routes[4]: host is required",
        "g.toml: routes[4]: path_prefix: `/x/../y`",
        "g.toml: routes[4]: upstream: `http://***@c/path` must not carry a user name or password",
        "g.toml: routes[4]: allowed_emails: `not-an-email` is not an email address",
        "g.toml: routes[4]: allowed_email_domains: `a@b.com` is not a domain",
        "g.toml: routes[5]: host: `d.example.com:8443`",
        "g.toml: routes[5]: upstream is required",
        "g.toml: routes[5]: `allowed_groups` should be a string or an array of strings",
        "g.toml: routes[6]: path_prefix: `/admin;x` is not a path starting with / (no %, ?, #, ;,",
        "upstream and [[routes]] are both set",
        "listen (from g.toml): `nowhere` is not an address",
    ] {
        assert!(all.contains(needle), "missing `{needle}` in:\n{all}");
    }
    assert!(!all.contains("pw"), "no password shown: {all}");
    assert!(
        !all.contains("Domain Admins"),
        "a group name with a space is one group: {all}"
    );
}

#[test]
fn routes_that_are_not_tables_are_refused() {
    for bad in ["routes = \"a.example.com\"\n", "routes = [1, 2]\n"] {
        let problems = load(bad).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`routes` should be an array of tables")),
            "{problems:?}"
        );
    }
}
