//! `/oauth2/auth` (and any path below it): the verdict for Traefik ForwardAuth, nginx
//! `auth_request`, Caddy `forward_auth` and Envoy ext_authz. It runs the very same auth
//! step as the sidecar (`auth::authenticate`), then answers instead of proxying:
//!
//! - 200 (never 202: Envoy accepts only 200) with the identity in response headers
//!   (`headers::write_auth_response`) and a refreshed session's `Set-Cookie`;
//! - 401 with `WWW-Authenticate`, or a 302 to the provider for a browser navigation when
//!   the auth URL says `redirect=true` or `forward_auth_redirect` is on;
//! - 403 when a rule refuses the signed-in user;
//! - 400 when the original request carries its own copy of an identity header gatehouse
//!   emits (any spelling): an ingress that does not remove it would pass it to the app.
//!
//! What it believes about the original request is `original.rs`'s one value or unknown.
//! Rules in the query (`authz::Policy::from_query`) narrow the configured ones in every
//! form, read as `QueryForm` says: strictly where the query is the auth URL's (the bare
//! endpoint, or below it from a named nginx, ingress-nginx, Traefik or Caddy), and below
//! it from Envoy or `auto` as the original request's, whose rule keys still apply; an
//! escaped `?` (`%3F`) carrying rules is refused. No path form drops a rule.
//!
//! The ID token and `Authorization` go only into answers on the internal listener
//! (`auth_listen`, marked [`AuthListener`]): on the public one a page script could
//! `fetch('/oauth2/auth')` with the session cookie and read them.

use super::answer::{add_cookies, refusal};
use super::login::{cookies_of, safe_target};
use super::original::{Call, Original, Unknown};
use super::{is_api_request, peer_of, AppError, AppState, AuthListener, Ctx};
use crate::audit::Mode;
use crate::auth::{authenticate, AuthRequest, Decision};
use crate::authz::Policy;
use crate::config::ForwardAuthClient;
use crate::gateway::Applied;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The endpoint's path; Envoy appends the original path to it.
pub const AUTH_PATH: &str = "/oauth2/auth";

/// The query keys that are rules, in every path form.
const RULE_KEYS: [&str; 3] = ["allowed_groups", "allowed_emails", "allowed_email_domains"];

/// `redirect=true` (or `1`) in the auth URL's query; `false`/`0` or absent is no. Any other
/// value is refused: a rule swallowed into it (`redirect=true%26allowed_groups%3Dops`,
/// `redirect=true;allowed_groups=ops`) must not vanish.
fn wants_redirect(query: &str) -> Result<bool, String> {
    let mut yes = false;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k != "redirect" {
            continue;
        }
        match v.to_ascii_lowercase().as_str() {
            "true" | "1" => yes = true,
            "false" | "0" => {}
            _ => {
                return Err(format!(
                    "`redirect={}` is not true or false (a rule written inside its value would be lost)",
                    v.chars().take(100).collect::<String>()
                ))
            }
        }
    }
    Ok(yes)
}

/// A query key that reads like a rule key once case and separators are folded
/// (`Allowed_Groups`, `allowed-groups`, `allowed_group`, `allowed_groups[]`).
fn looks_like_a_rule(key: &str) -> bool {
    let folded: String = key
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    folded.starts_with("allowed")
}

/// A path below `/oauth2/auth` that carries the auth URL's query escaped (`%3F`): nginx
/// does that to `auth_request /oauth2/auth/?allowed_groups=ops;` when its location
/// proxies without a URI. Read as a path, the rule would be lost.
fn escaped_rules(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    let Some(at) = lower.find("%3f") else {
        return false;
    };
    let rest = percent_encoding::percent_decode_str(&path[at + 3..]).decode_utf8_lossy();
    url::form_urlencoded::parse(rest.as_bytes())
        .any(|(k, _)| looks_like_a_rule(&k) || k == "redirect")
}

/// How a query is read, by where it sits and who asks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum QueryForm {
    /// The bare `/oauth2/auth?...`, or below it from a named ingress other than Envoy
    /// (whose auth URL is fixed): every key must be a rule or `redirect`.
    AuthUrl,
    /// Below the endpoint under `auto`: Envoy's original query, or a fixed auth URL with
    /// a trailing slash. Rule keys apply; a near miss of one, or a value that hides one
    /// (`redirect=true%26allowed_groups%3Dops`), is refused; the rest is the app's.
    Ambiguous,
    /// Below the endpoint from a named Envoy: the original request's own query. Rule keys
    /// apply (they can only narrow) and a near miss is refused; the rest is the app's.
    Original,
}

/// The rules of the query and whether it asks for a redirect.
fn query_rules(query: &str, form: QueryForm) -> Result<(Option<Policy>, bool), String> {
    if form == QueryForm::AuthUrl {
        return Ok((Policy::from_query(query)?, wants_redirect(query)?));
    }
    let mut rules = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if RULE_KEYS.contains(&k.as_ref()) {
            rules.append_pair(&k, &v);
        } else if looks_like_a_rule(&k) {
            return Err(format!(
                "`{}` looks like a rule but is not one (gatehouse knows {})",
                k.chars().take(100).collect::<String>(),
                RULE_KEYS.join(", ")
            ));
        } else if form == QueryForm::Ambiguous && hides_a_rule(&v) {
            return Err(format!(
                "the value of `{}` holds a rule (`{}`) that would be lost; write each rule as a parameter of its own",
                k.chars().take(100).collect::<String>(),
                v.chars().take(100).collect::<String>()
            ));
        }
    }
    Ok((Policy::from_query(&rules.finish())?, false))
}

/// A parameter value that holds `allowed_...=` once split on `&`/`;` (and decoded once
/// more): a rule that a templating layer escaped into another parameter.
fn hides_a_rule(value: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
    [value, decoded.as_ref()].iter().any(|v| {
        v.split(['&', ';']).any(|part| {
            part.split_once('=')
                .is_some_and(|(k, _)| looks_like_a_rule(k))
        })
    })
}

/// The ingress setting that removes a client's identity headers, for the refusal page.
fn removal_fix(client: ForwardAuthClient) -> &'static str {
    match client {
        ForwardAuthClient::Traefik => "In Traefik, list every identity header in the middleware's authResponseHeaders and set aliasHeadersStrategy: delete on the entry point.",
        ForwardAuthClient::Nginx => "In nginx, set every identity header in the protected location with proxy_set_header from the auth answer (an empty value removes the client's copy), and keep underscores_in_headers off.",
        ForwardAuthClient::IngressNginx => "In ingress-nginx, list every identity header in nginx.ingress.kubernetes.io/auth-response-headers, and keep enable-underscores-in-headers off.",
        ForwardAuthClient::Caddy => "In Caddy (2.11.2 or later), name every identity header in forward_auth's copy_headers; before 2.11.2, remove them with request_header -Name in front of forward_auth.",
        ForwardAuthClient::Envoy => "In Envoy, remove the identity headers as the request arrives (Envoy Gateway: ClientTrafficPolicy headers.earlyRequestHeaders.remove; plain Envoy: a header_mutation filter before ext_authz) and set headers_with_underscores_action: DROP_HEADER.",
        ForwardAuthClient::Auto => "The ingress must remove client copies of identity headers: Traefik authResponseHeaders with aliasHeadersStrategy: delete, nginx proxy_set_header, Caddy copy_headers (2.11.2+), Envoy earlyRequestHeaders.remove. Set forward_auth_client to name yours.",
    }
}

/// Logs the fix once per identity header (a handful of names at most).
fn warn_once(ours: &str, fix: &str) {
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let Ok(mut seen) = SEEN.lock() else { return };
    if seen.iter().any(|s| s == ours) || seen.len() >= 64 {
        return;
    }
    seen.push(ours.to_string());
    tracing::warn!(header = ours, "forward-auth: a request carried its own copy of identity header {ours}; it was refused with 400. {fix}");
}

/// `/oauth2/auth%3F...`: the bare endpoint with its `?` escaped by the ingress. Not a
/// route of its own, so without this the check would go to the app behind gatehouse.
pub(crate) fn escaped_bare(path: &str) -> bool {
    path.as_bytes()
        .get(..AUTH_PATH.len() + 3)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"/oauth2/auth%3f"))
}

/// What the refusal says when the ingress escaped the auth URL's `?`.
pub(super) const ESCAPED_QUERY: &str = "the auth URL's query arrived escaped (`%3F` in the path): nginx does this to `auth_request /oauth2/auth?...` when the auth location proxies without a URI of its own, and the rules in it would be lost. Put the query on proxy_pass in that location (proxy_pass http://gatehouse:4181/oauth2/auth?allowed_groups=...;)";

/// Logs `message` the first time `flag` is raised, never again in this process.
fn warn_first_time(flag: &AtomicBool, message: &str) {
    if !flag.swap(true, Ordering::Relaxed) {
        tracing::warn!("{message}");
    }
}

/// Skip routes were not applied to a check in Envoy's form under `auto`.
static AUTO_BELOW: AtomicBool = AtomicBool::new(false);
const AUTO_BELOW_WARNING: &str = "forward-auth: a check below /oauth2/auth (Envoy's form, or an auth URL with a trailing slash) with forward_auth_client = auto: skip_auth_routes do not apply to it, since a fixed auth URL looks the same. With Envoy, set forward_auth_client = envoy";

/// An answer on the public listener left the token out.
static TOKENS_WITHHELD: AtomicBool = AtomicBool::new(false);
const TOKENS_WITHHELD_WARNING: &str = "forward-auth on the public listener: the answer carries no ID token, no Authorization and no identity assertion (a page script could read them there). If the app needs one of them (Headlamp needs the token), set auth_listen and point the ingress's auth URL at that port";

/// The `[[routes]]` entry a check is for (`None` without routes), or why there is none:
/// the original request's host (and, when some route has a `path_prefix`, its path) must
/// be known from the ingress, and match a route. Never the top-level rules alone: a
/// route's rules are stricter, and a request the table cannot place (an unknown host, a
/// path servers read differently) must not escape them.
fn check_route(
    table: &crate::gateway::RouteTable,
    original: &Original,
) -> Result<Option<usize>, &'static str> {
    if table.is_empty() {
        return Ok(None);
    }
    // As the proxy path reads a `Host`: the table's own parsing, no URL parser's.
    let authority = original.authority().ok_or("the original request's host is unknown (the ingress is not in trusted_proxies, or does not send it), so no [[routes]] entry can be chosen")?;
    let path = match original.path.as_deref().filter(|_| original.decides_skip) {
        Some(p) => p.split('?').next().unwrap_or(p),
        None if table.has_prefixes() => return Err("the original request's path is unknown (forward_auth_client = auto below /oauth2/auth), and routes with a path_prefix need it"),
        None => "/",
    };
    match table.lookup(Some(authority), path) {
        Some(i) => Ok(Some(i)),
        None => Err("no [[routes]] entry covers the original request's host and path"),
    }
}

pub async fn auth(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let mut ctx = Ctx::new(&st.cfg, req.method(), req.headers(), peer_of(&req));
    let internal = req.extensions().get::<AuthListener>().is_some();
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let below = path
        .strip_prefix(AUTH_PATH)
        .filter(|rest| rest.starts_with('/'))
        .map(|rest| match req.uri().query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_string(),
        });
    let client = st.cfg.forward_auth_client;
    if escaped_bare(path) || (client != ForwardAuthClient::Envoy && escaped_rules(path)) {
        return ctx.fail(AppError::BadAuthQuery(ESCAPED_QUERY.into()));
    }
    let form = match (below.is_some(), client) {
        (false, _) => QueryForm::AuthUrl,
        (true, ForwardAuthClient::Envoy) => QueryForm::Original,
        (true, ForwardAuthClient::Auto) => QueryForm::Ambiguous,
        (true, _) => QueryForm::AuthUrl,
    };
    let (extra, redirect_param) = match query_rules(query, form) {
        Ok(rules) => rules,
        // There the query is the checked request's own (Envoy, or `auto` below): say so.
        Err(e) if form != QueryForm::AuthUrl => {
            return ctx.fail(AppError::BadAuthQuery(format!(
                "the checked request's own query has a rule parameter gatehouse cannot apply ({e}); rule keys there narrow access like the auth URL's"
            )))
        }
        Err(e) => return ctx.fail(AppError::BadAuthQuery(e)),
    };
    let original = Original::read(&Call {
        headers: req.headers(),
        trusted: ctx.forwarded.trusted,
        client,
        own_method: req.method(),
        below: below.as_deref(),
    })
    .unwrap_or_else(|why| {
        match why {
            Unknown::Untrusted => tracing::debug!(request_id = %ctx.request_id, trace_id = %ctx.trace.trace_id(), "forward-auth: the original request is unknown: {why}"),
            _ => tracing::info!(request_id = %ctx.request_id, trace_id = %ctx.trace.trace_id(), "forward-auth: the original request is unknown ({why}): no skip route applies, the post-login target is /"),
        }
        Original::unknown(req.method())
    });
    ctx.api = is_api_request(&original.method, req.headers());
    if below.is_some() && !original.decides_skip && !st.cfg.skip_auth_routes.is_empty() {
        warn_first_time(&AUTO_BELOW, AUTO_BELOW_WARNING);
    }
    // Any route's header set: every name gatehouse may emit, whichever app this is for.
    let alias =
        (st.cfg.header_sets()).find_map(|n| crate::headers::emitted_alias(req.headers(), n));
    if let Some((theirs, ours)) = alias {
        let fix = removal_fix(client);
        warn_once(ours.as_str(), fix);
        crate::audit::identity_header_refused(
            &ctx.audit(Mode::ForwardAuth, original.route()),
            theirs.as_str(),
        );
        return ctx.fail(AppError::ClientIdentityHeader {
            header: theirs.as_str().chars().take(100).collect(),
            ours: ours.as_str().to_string(),
            fix,
        });
    }

    // With `[[routes]]`: the app the original request is for decides the rules, skip
    // routes, header set and assertion; a check for no app is refused.
    let route = match check_route(&st.cfg.routes, &original) {
        Ok(route) => route,
        Err(why) => {
            tracing::info!(request_id = %ctx.request_id, trace_id = %ctx.trace.trace_id(), "forward-auth: refused, {why}");
            return ctx.fail(AppError::NoRouteForCheck { why });
        }
    };
    let applied = Applied::of(&st.cfg, route);
    // The route's rules and the query's, both applied; on the stack, not allocated.
    let route_rules = route.and_then(|i| st.auth.route_policies.get(i)?.as_ref());
    let (both, one);
    let rules: &[&Policy] = match (route_rules, extra.as_ref()) {
        (Some(r), Some(q)) => {
            both = [r, q];
            &both
        }
        (Some(p), None) | (None, Some(p)) => {
            one = [p];
            &one
        }
        (None, None) => &[],
    };

    let cookies = cookies_of(req.headers());
    let audit = ctx.audit(Mode::ForwardAuth, original.route());
    let ar = AuthRequest {
        cookies: &cookies,
        headers: req.headers(),
        method: &original.method,
        // A method override (any spelling) would let the app run another method than the
        // one a skip route allowed, and only the ingress could remove it: no skip then.
        path: original.path.as_deref().filter(|_| {
            original.decides_skip && !crate::headers::has_method_override(req.headers())
        }),
        extra: rules,
        skip: applied.skip_auth_routes,
        audit: &audit,
    };
    let decision = authenticate(&st.auth, &ar).await;
    let mut resp = StatusCode::OK.into_response();
    match decision {
        Decision::Allow {
            session,
            set_cookies,
        } => {
            let names = applied.headers;
            let carries_token = names.id_token.is_some()
                || names.authorization != crate::config::PassAuthorization::None
                || applied.assertion.is_some();
            if !internal && carries_token {
                warn_first_time(&TOKENS_WITHHELD, TOKENS_WITHHELD_WARNING);
            }
            let values = session.values(names);
            crate::headers::write_auth_response(resp.headers_mut(), names, &values, internal);
            // Like the tokens, only on the internal listener: on the public one a page
            // script could fetch it and present it to the app from elsewhere.
            // Its audience, unless the policy names one: the original host, read as the
            // route was chosen.
            if let Some(policy) = applied.assertion.filter(|_| internal) {
                let host = original.authority();
                let h = resp.headers_mut();
                super::assertion::attach(h, &st.cfg, policy, &session, host);
            }
            add_cookies(&mut resp, set_cookies);
        }
        Decision::Public { rule } => {
            tracing::debug!(request_id = %ctx.request_id, trace_id = %ctx.trace.trace_id(), %rule, "skip_auth_routes: allowed without login");
        }
        refused => {
            let rd = original.url.as_deref().or(original.path.as_deref());
            let target = safe_target(&st.cfg, &ctx, rd);
            let redirect = redirect_param || st.cfg.forward_auth_redirect;
            return refusal(&st, &ctx, refused, target, redirect).await;
        }
    }
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        h.insert("x-request-id", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of IP-literal routes and one host route, as `[[routes]]` would give.
    fn ip_table() -> crate::gateway::RouteTable {
        use crate::gateway::{HostPattern, Route, RouteTable};
        let route = |host: &str| Route {
            host: HostPattern::parse(host).unwrap(),
            path_prefix: "/".into(),
            upstream: None,
            rules: Default::default(),
            own: Default::default(),
        };
        RouteTable::new(vec![
            route("127.0.0.1"),
            route("10.0.0.1"),
            route("::1"),
            route("app.example.com"),
        ])
    }

    fn checked(host: &str) -> Option<usize> {
        let original = Original {
            method: axum::http::Method::GET,
            path: Some("/x".into()),
            url: Some(format!("http://{host}/x")),
            decides_skip: true,
        };
        check_route(&ip_table(), &original).ok().flatten()
    }

    #[test]
    fn a_check_is_placed_by_the_host_as_a_proxied_request_is() {
        let t = ip_table();
        for host in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "10.0.0.1",
            "[::1]",
            "[::1]:4181",
            "app.example.com",
            "APP.example.com.",
            "app.example.com:443",
            // Spellings a URL parser turns into an IP address, which no ingress routes to
            // the app at that address and the proxy path matches to no route.
            "2130706433",
            "0x7f.0.0.1",
            "0177.0.0.1",
            "127.1",
            "10.1",
            "167772161",
            "[0:0:0:0:0:0:0:1]",
            "[::0:1]",
        ] {
            assert_eq!(
                checked(host),
                t.lookup(Some(host), "/x"),
                "{host}: forward auth and the proxy place it differently"
            );
        }
        assert_eq!(checked("2130706433"), None);
        // The audience of an assertion is read from the same authority.
        let o = |url: &str| Original {
            url: Some(url.into()),
            ..Original::unknown(&axum::http::Method::GET)
        };
        assert_eq!(o("https://[::1]:4181/a/b").authority(), Some("[::1]:4181"));
        assert_eq!(o("http://2130706433/").authority(), Some("2130706433"));
        assert_eq!(
            o("http://app.example.com").authority(),
            Some("app.example.com")
        );
    }

    #[test]
    fn redirect_flag() {
        assert_eq!(wants_redirect("redirect=true&allowed_groups=a"), Ok(true));
        assert_eq!(wants_redirect("redirect=1"), Ok(true));
        assert_eq!(wants_redirect("redirect=false"), Ok(false));
        assert_eq!(wants_redirect(""), Ok(false));
        for swallowed in [
            "redirect=true%26allowed_groups%3Dops",
            "redirect=true;allowed_groups=ops",
            "redirect=allowed_groups=ops",
            "redirect=",
            "redirect=yes",
        ] {
            assert!(wants_redirect(swallowed).is_err(), "{swallowed}");
        }
    }

    #[test]
    fn near_misses_of_rule_keys_are_refused_below_the_endpoint() {
        for key in [
            "Allowed_Groups",
            "allowed-groups",
            "allowed_group",
            "allowed_groups[]",
            "ALLOWED_GROUPS",
            "allowed_groups ",
            "allowedEmails",
        ] {
            let q = format!("{}=ops", urlencode(key));
            for form in [
                QueryForm::AuthUrl,
                QueryForm::Ambiguous,
                QueryForm::Original,
            ] {
                assert!(query_rules(&q, form).is_err(), "{key} {form:?}");
            }
        }
        assert!(query_rules("ns=a&watch=true&redirect=%2Fx", QueryForm::Ambiguous).is_ok());
    }

    fn urlencode(s: &str) -> String {
        url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
    }

    #[test]
    fn an_escaped_query_with_rules_is_recognised() {
        assert!(escaped_rules("/oauth2/auth/%3Fallowed_groups=ops"));
        assert!(escaped_rules("/oauth2/auth%3fallowed_groups=ops"));
        assert!(escaped_rules("/oauth2/auth/%3Fredirect=true"));
        assert!(escaped_rules("/oauth2/auth/%3Fallowed%5Fgroups=ops"));
        assert!(!escaped_rules("/oauth2/auth/docs/what%3F"));
        assert!(!escaped_rules("/oauth2/auth/a%3Fb=c"));
        assert!(!escaped_rules("/oauth2/auth/plain"));
    }

    #[test]
    fn every_path_form_keeps_the_query_rules() {
        use QueryForm::*;
        for form in [AuthUrl, Ambiguous, Original] {
            let (rules, _) = query_rules("allowed_groups=admins", form).unwrap();
            assert!(
                rules.is_some(),
                "{form:?}: a trailing slash must not drop the rule"
            );
        }
        // The app's own parameters are not rules, and not an error, below the endpoint.
        for form in [Ambiguous, Original] {
            let (none, redirect) = query_rules("ns=kube-system&watch=1", form).unwrap();
            assert!(none.is_none() && !redirect);
        }
        // A fixed auth URL (bare, or below it from a named nginx/Traefik/Caddy) is strict.
        assert!(query_rules("ns=kube-system", AuthUrl).is_err());
        // A rule hidden in another value is refused where the query may be the auth URL.
        for hidden in [
            "redirect=true%26allowed_groups%3Dops",
            "redirect=true;allowed_groups=ops",
            "redirect=allowed_groups=ops",
        ] {
            assert!(query_rules(hidden, Ambiguous).is_err(), "{hidden}");
            assert!(query_rules(hidden, AuthUrl).is_err(), "{hidden}");
            assert!(
                query_rules(hidden, Original).is_ok(),
                "{hidden}: the app's own"
            );
        }
        // `redirect` below is the app's own parameter (`?redirect=/home`), never a setting.
        let (mixed, redirect) =
            query_rules("x=1&allowed_emails=a%40x.org&redirect=%2Fhome", Ambiguous).unwrap();
        assert!(mixed.is_some() && !redirect);
        // An empty rule refuses, in every form.
        for form in [AuthUrl, Ambiguous, Original] {
            assert!(query_rules("allowed_groups=", form).is_err());
        }
        assert!(query_rules("bogus=1", AuthUrl).is_err());
    }
}
