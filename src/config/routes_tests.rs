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

#[test]
fn a_route_sets_its_own_skip_routes_header_set_and_assertion_the_rest_is_top_level() {
    let key = format!(
        "{}/src/assertion/testdata/p256.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let cfg = load(&format!(
        r#"
header_user = "X-Remote-User"
assertion_signing_key_file = "{key}"
assertion_issuer = "https://auth.example.com"
assertion_groups = ["dev"]

[[routes]]
host = "headlamp.example.com"
upstream = "http://headlamp:4466"
pass_authorization = "id_token"
header_id_token = ""
skip_auth_routes = ["GET=/static/**"]
assertion_audience = "headlamp"

[[routes]]
host = "grafana.example.com"
upstream = "http://grafana:3000"
header_user = "X-WEBAUTH-USER"
header_groups = "X-WEBAUTH-GROUPS"
assertion_groups = []

[[routes]]
host = "wiki.example.com"
upstream = "http://wiki"

[[routes]]
host = "ci.example.com"
"#
    ))
    .unwrap();
    let by_host = |h: &str| {
        cfg.routes
            .routes()
            .iter()
            .find(|r| r.host.to_string() == h)
            .unwrap()
    };
    let headlamp = &by_host("headlamp.example.com").own;
    let h = headlamp.headers.as_ref().unwrap();
    assert_eq!(h.authorization, crate::config::PassAuthorization::IdToken);
    assert!(h.id_token.is_none());
    assert_eq!(h.user, "x-remote-user", "the rest is the top-level set");
    assert_eq!(headlamp.skip_auth_routes.len(), 1);
    let a = headlamp.assertion.as_ref().unwrap();
    assert_eq!(a.audience.as_deref(), Some("headlamp"));
    assert_eq!(a.groups.as_deref(), Some(&["dev".to_string()][..]));

    let grafana = &by_host("grafana.example.com").own;
    let g = grafana.headers.as_ref().unwrap();
    assert_eq!(g.user, "x-webauth-user");
    assert_eq!(g.groups, ["x-webauth-groups"]);
    assert_eq!(g.authorization, crate::config::PassAuthorization::None);
    let a = grafana.assertion.as_ref().unwrap();
    assert!(a.audience.is_none(), "the route's host");
    assert_eq!(a.groups.as_deref(), Some(&[][..]), "no groups at all");

    let wiki = &by_host("wiki.example.com").own;
    assert!(wiki.headers.is_none() && wiki.assertion.is_none() && wiki.skip_auth_routes.is_empty());
    let ci = by_host("ci.example.com");
    assert!(ci.upstream.is_none(), "forward auth only");
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w.contains("auth_listen is not set")),
        "ci.example.com's checks carry the top-level token header: {:?}",
        cfg.warnings
    );
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w
                .contains("without upstream is for forward auth, but trusted_proxies is empty")),
        "{:?}",
        cfg.warnings
    );
    assert_eq!(ci.to_string(), "ci.example.com/ (forward auth only)");

    // Every set removes every other set's names from what a client sent.
    for set in cfg.header_sets() {
        let folded = set.folded();
        for name in [
            "x-webauth-user",
            "x-webauth-groups",
            "x-remote-user",
            "x-forwarded-id-token",
        ] {
            assert!(
                folded.iter().any(|f| f == name),
                "{name} not removed by {set:?}"
            );
        }
    }
    // One session serves every route: the ID token headlamp is handed bounds it.
    assert!(crate::auth::Forwards::of(&cfg).id_token);
}

#[test]
fn every_route_setting_mistake_is_listed_with_the_others() {
    let problems = load(
        r#"
[[routes]]
host = "a.example.com"
upstream = "http://a"
pass_authorization = "yes"
header_user = "X Bad"
header_email = "X-Forwarded-User"
skip_auth_routes = ["nope"]

[[routes]]
host = "b.example.com"
upstream = "http://b"
header_groups = ["Content-Length"]
header_id_token = 7
header_email = "X-Forwarded-Uri"
"#,
    )
    .unwrap_err();
    let all = problems.join("\n");
    for needle in [
        "g.toml: routes[1]: pass_authorization: `yes` is not one of none, id_token, access_token",
        "g.toml: routes[1]: header_user: `X Bad` is not a valid header name",
        "g.toml: routes[1]: header_email: `x-forwarded-user` is also header_user",
        "g.toml: routes[1]: skip_auth_routes:",
        "g.toml: routes[2]: header_groups: `content-length` is a header HTTP or gatehouse itself sets",
        "g.toml: routes[2]: `header_id_token` should be a string",
        "g.toml: routes[2]: header_email: `x-forwarded-uri` is a header HTTP or gatehouse itself sets",
    ] {
        assert!(all.contains(needle), "missing `{needle}` in:\n{all}");
    }
}

#[test]
fn a_route_assertion_setting_without_a_key_is_a_warning() {
    let cfg = load(
        r#"
[[routes]]
host = "a.example.com"
upstream = "http://a"
assertion_audience = "a"
"#,
    )
    .unwrap();
    assert!(cfg
        .warnings
        .iter()
        .any(|w| w.contains("routes[1]: assertion_audience or assertion_groups set but assertion_signing_key_file is not")));
}

#[test]
fn a_route_can_take_the_request_host_as_audience_and_a_shared_audience_is_warned_of() {
    let key = format!(
        "{}/src/assertion/testdata/p256.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let cfg = load(&format!(
        r#"
assertion_signing_key_file = "{key}"
assertion_issuer = "https://auth.example.com"
assertion_audience = "headlamp"

[[routes]]
host = "headlamp.example.com"
upstream = "http://headlamp:4466"

[[routes]]
host = "preview.example.com"
upstream = "http://preview"
assertion_audience = ""

[[routes]]
host = "wiki.example.com"
upstream = "http://wiki"
assertion_groups = []
"#
    ))
    .unwrap();
    let own = |h: &str| {
        &cfg.routes
            .routes()
            .iter()
            .find(|r| r.host.to_string() == h)
            .unwrap()
            .own
    };
    // `""`, as at the top level: the request's host, not the top-level audience.
    let preview = own("preview.example.com").assertion.as_ref().unwrap();
    assert_eq!(preview.audience, None, "the host, as the README says");
    // Headlamp and the wiki both take `headlamp`: the wiki could replay what it gets to
    // Headlamp. Said at start-up, naming both.
    let shared: Vec<&String> = cfg
        .warnings
        .iter()
        .filter(|w| w.contains("assertion audience `headlamp`"))
        .collect();
    assert_eq!(shared.len(), 1, "{:?}", cfg.warnings);
    assert!(
        shared[0].contains("headlamp.example.com") && shared[0].contains("wiki.example.com"),
        "{shared:?}"
    );
    assert!(!shared[0].contains("preview"), "{shared:?}");
}

#[test]
fn a_route_to_an_upstream_another_route_hands_authorization_removes_the_clients() {
    let cfg = load(
        r#"
[[routes]]
host = "headlamp.example.com"
upstream = "http://headlamp:4466"
pass_authorization = "id_token"

[[routes]]
host = "headlamp.example.com"
path_prefix = "/plugins"
upstream = "http://headlamp:4466"

[[routes]]
host = "wiki.example.com"
upstream = "http://wiki"
"#,
    )
    .unwrap();
    let route = |h: &str, p: &str| {
        cfg.routes
            .routes()
            .iter()
            .find(|r| r.host.to_string() == h && r.path_prefix == p)
            .unwrap()
    };
    let plugins = route("headlamp.example.com", "/plugins");
    let set = plugins.own.headers.as_ref().unwrap();
    assert!(set.strip_client_authorization);
    assert_eq!(set.authorization, crate::config::PassAuthorization::None);
    // The wiki is handed no token by any route: its clients keep their own.
    assert!(route("wiki.example.com", "/").own.headers.is_none());
    assert!(!cfg.headers.strip_client_authorization);
    let described = crate::gateway::describe(&cfg.routes).join("\n");
    assert!(
        described.contains("/plugins -> http://headlamp:4466: the top-level rules only; headers")
            && described.contains("the client's Authorization removed"),
        "{described}"
    );
}

#[test]
fn prefixes_that_differ_only_in_case_cover_the_same_requests() {
    let problems = load(
        r#"
[[routes]]
host = "a.example.com"
path_prefix = "/Admin"
upstream = "http://a"

[[routes]]
host = "a.example.com"
path_prefix = "/admin"
upstream = "http://b"
"#,
    )
    .unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("routes[2]: covers exactly what routes[1] covers")),
        "{problems:?}"
    );
}

/// The README's complete gateway example loads as written (its files stood in for by
/// test files), with no problem and no warning: the docs keep up with the code.
#[test]
fn the_readmes_multi_app_example_loads_without_a_warning() {
    let readme = include_str!("../../README.md");
    let at = readme
        .find("A complete gateway in front of three apps")
        .expect("the example's lead-in");
    let body = &readme[at..];
    let start = body.find("```toml\n").expect("its TOML block") + "```toml\n".len();
    let end = start + body[start..].find("```").expect("the block's end");
    let dir = std::env::temp_dir().join(format!("gatehouse-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["auth.example.com".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let text = body[start..end]
        .replace("/etc/gatehouse/client-secret", &file("cs", "s\n"))
        .replace(
            "/etc/gatehouse/cookie-secret",
            &file("ck", "DbhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk\n"),
        )
        .replace("/etc/gatehouse/tls/tls.crt", &file("tls.crt", &cert.pem()))
        .replace(
            "/etc/gatehouse/tls/tls.key",
            &file("tls.key", &key.serialize_pem()),
        )
        .replace(
            "/etc/gatehouse/assertion/key.pem",
            &format!(
                "{}/src/assertion/testdata/p256.pem",
                env!("CARGO_MANIFEST_DIR")
            ),
        );
    let loaded = RawConfig::from_toml_with_problems(&text, "README.md")
        .map(|(raw, problems)| (Config::from_raw(&raw), problems));
    let _ = std::fs::remove_dir_all(&dir);
    let (cfg, problems) = loaded.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let cfg = cfg.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.routes.routes().len(), 5);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
}
