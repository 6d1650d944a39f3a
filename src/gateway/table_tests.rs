//! The route table's matching, as a table of cases: specificity, case and ports, and
//! hostile `Host` values and paths that must match nothing.

use super::*;

fn route(host: &str, prefix: &str, upstream: &str) -> Route {
    Route {
        host: HostPattern::parse(host).unwrap(),
        path_prefix: prefix.to_string(),
        upstream: Some(Url::parse(upstream).unwrap()),
        rules: AccessRules::default(),
        own: RouteSettings::default(),
    }
}

fn table() -> RouteTable {
    // Deliberately least specific first: the table orders them.
    RouteTable::new(vec![
        route("*.example.com", "/", "http://wild"),
        route("*.apps.example.com", "/", "http://apps-wild"),
        route("grafana.example.com", "/", "http://grafana"),
        route("grafana.example.com", "/api", "http://grafana-api"),
        route("grafana.example.com", "/api/admin/", "http://grafana-admin"),
        route("10.0.0.7", "/", "http://by-ip"),
        route("[::1]".trim_matches(['[', ']']), "/", "http://v6"),
    ])
}

fn upstream_for(t: &RouteTable, host: Option<&str>, path: &str) -> Option<String> {
    t.lookup(host, path).map(|i| {
        t.routes()[i]
            .upstream
            .as_ref()
            .unwrap()
            .host_str()
            .unwrap_or("")
            .to_string()
    })
}

#[test]
fn the_most_specific_route_wins_whatever_the_file_order() {
    let t = table();
    for (host, path, want) in [
        ("grafana.example.com", "/", Some("grafana")),
        ("grafana.example.com", "/dashboards", Some("grafana")),
        ("grafana.example.com", "/api", Some("grafana-api")),
        ("grafana.example.com", "/api/", Some("grafana-api")),
        ("grafana.example.com", "/api/health", Some("grafana-api")),
        ("grafana.example.com", "/apis", Some("grafana")),
        ("grafana.example.com", "/api/admin", Some("grafana-api")),
        (
            "grafana.example.com",
            "/api/admin/users",
            Some("grafana-admin"),
        ),
        ("x.apps.example.com", "/", Some("apps-wild")),
        ("a.b.apps.example.com", "/x", Some("apps-wild")),
        ("apps.example.com", "/", Some("wild")),
        ("other.example.com", "/", Some("wild")),
        ("example.com", "/", None),
        ("10.0.0.7", "/", Some("by-ip")),
        ("10.0.0.7:8443", "/", Some("by-ip")),
        ("[::1]:443", "/", Some("v6")),
        ("[::1]", "/", Some("v6")),
        ("unknown.test", "/", None),
    ] {
        assert_eq!(
            upstream_for(&t, Some(host), path).as_deref(),
            want,
            "{host} {path}"
        );
    }
}

#[test]
fn hosts_match_without_case_port_or_trailing_dot() {
    let t = table();
    for host in [
        "GRAFANA.Example.COM",
        "grafana.example.com:443",
        "grafana.example.com.",
        "grafana.example.com.:8080",
    ] {
        assert_eq!(
            upstream_for(&t, Some(host), "/").as_deref(),
            Some("grafana"),
            "{host}"
        );
    }
}

#[test]
fn hostile_hosts_match_no_route() {
    let t = table();
    for host in [
        "",
        ":443",
        "grafana.example.com.evil.com",
        "evilexample.com",
        "grafana.example.com@evil.com",
        "evil.com#.example.com",
        "evil.com/.example.com",
        "evil.com\\.example.com",
        "x.example.com:99999",
        "x.example.com:80:80",
        "x.example.com:http",
        "grafana.example.com ",
        " grafana.example.com",
        "grafana..example.com",
        "*.example.com",
        "[::1",
        "[not-an-ip]:80",
        "[::1]x",
        "\u{0434}.example.com",
        "x.example.com\0",
    ] {
        assert_eq!(upstream_for(&t, Some(host), "/"), None, "{host:?}");
    }
    assert_eq!(upstream_for(&t, None, "/"), None, "no Host at all");
}

#[test]
fn paths_a_server_could_read_as_another_match_nothing_when_prefixes_exist() {
    let t = table();
    for path in [
        "/api/../admin",
        "/x/../api/admin/users",
        "/api/./admin/",
        "/api%2fadmin/users",
        "/api/%2e%2e/x",
        "/api/%2E%2E/x",
        "/api\\admin",
        "//api/admin/",
        "/api/admin//users",
        "/api/%5cadmin",
        "relative",
        // Dot segments once parameters are dropped or escapes decoded.
        "/api/..;/admin",
        "/api/.;x/admin/",
        "/api/%2e./x",
        "/api/.%2E/x",
        "/api/%252e%252e/x/../y",
        "/api/;x/admin/",
        "/api/%00/admin/",
        "/api%09/admin/",
        "/api%",
        "/api%4",
        "/api%zz",
        // A raw `#` ends the path for nginx and WHATWG URL parsers (`/api/admin#x` is
        // `/api/admin` to them) and is no request target's: forward auth reads the path
        // from a header, where it arrives as sent.
        "/api/admin#x",
        "/api#/admin/",
        "/api/admin/#",
        "/x#/../api/admin/",
    ] {
        assert_eq!(
            upstream_for(&t, Some("grafana.example.com"), path),
            None,
            "{path}"
        );
    }
    // Without any prefix the path is the upstream's business alone.
    let plain = RouteTable::new(vec![route("a.example.com", "/", "http://a")]);
    assert_eq!(
        upstream_for(&plain, Some("a.example.com"), "/x/../y").as_deref(),
        Some("a")
    );
}

#[test]
fn prefixes_match_the_path_as_the_most_lenient_server_reads_it() {
    let t = table();
    let at = |path: &str| upstream_for(&t, Some("grafana.example.com"), path);
    // Escapes of ordinary characters and `;parameters` (Tomcat, Jetty, Spring drop them)
    // reach the route whose prefix the upstream would see, never a more open one.
    for path in [
        "/api/%61dmin/",
        "/api/%61%64%6D%69%6E/users",
        "/%61pi/admin/x",
        "/api;x/admin/",
        "/api/admin;jsessionid=1/users",
        "/api/admin%3bx/users",
        "/api/admin/;x",
    ] {
        assert_eq!(at(path).as_deref(), Some("grafana-admin"), "{path}");
    }
    for path in ["/api;a=b", "/ap%69", "/api%3B", "/api/%2561dmin/"] {
        assert_eq!(at(path).as_deref(), Some("grafana-api"), "{path}");
    }
    // Only what reads as `/api` is covered by it: not `/apis`, nor an escaped
    // character that merely looks like a prefix boundary.
    for path in [
        "/apis",
        "/apis;x/admin/",
        "/api%20/admin/",
        "/api%3f/admin/",
        "/;x",
    ] {
        assert_eq!(at(path).as_deref(), Some("grafana"), "{path}");
    }
}

#[test]
fn route_hosts_are_checked_when_read() {
    for good in [
        "a.example.com",
        "*.example.com",
        "localhost",
        "10.1.2.3",
        "::1",
        "A.Example.Com",
    ] {
        assert!(HostPattern::parse(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "*",
        "*.",
        "*.com",
        "a.*.example.com",
        "*example.com",
        "https://a.example.com",
        "a.example.com:443",
        "a.example.com/x",
        "a b.example.com",
        "-a.example.com",
        "*.10.0.0.1",
    ] {
        assert!(HostPattern::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(
        HostPattern::parse("*.Example.com").unwrap().to_string(),
        "*.example.com"
    );
}

#[test]
fn a_path_that_meets_a_prefix_only_without_case_matches_no_route() {
    let t = table();
    // Express, ASP.NET Core and IIS serve /API/Admin/users as /api/admin/users; a
    // case-sensitive server as another path: neither route is sure, so neither.
    for path in [
        "/API/admin/users",
        "/api/ADMIN/users",
        "/Api",
        "/API/",
        "/%41PI/health",
    ] {
        assert_eq!(
            upstream_for(&t, Some("grafana.example.com"), path),
            None,
            "{path}"
        );
    }
    // Not a prefix in any case: the host's own route, as before.
    for (path, want) in [
        ("/APIs", "grafana"),
        ("/Dashboards", "grafana"),
        ("/api/Admin", "grafana-api"),
    ] {
        assert_eq!(
            upstream_for(&t, Some("grafana.example.com"), path).as_deref(),
            Some(want),
            "{path}"
        );
    }
}
