//! Second adversarial review of issue 14 (items 2, 4, 5, 6, 7), kept as reproductions:
//! each test asserts what the README or the issue promises and FAILS on main at 7bc5ae8.
//! Names start with `review2_` so one filter runs them all.

use crate::flow::{login, world};
use crate::support::idp::{Mint, TestIdp};
use crate::support::upstream::{seen, Upstream};
use crate::support::{config, start, Browser, Resp};
use crate::support::{expires_at, with_bearer};
use serde_json::{json, Value};

fn now() -> i64 {
    gatehouse::util::now_secs() as i64
}

// ---------------------------------------------------------------------------------------
// Item 4 (and the README's "the signed ID token's own claims always win"): userinfo.
// ---------------------------------------------------------------------------------------

/// Finding A. Userinfo claims are merged only where the ID token has no claim of that
/// name, but `claim_at` prefers a top-level claim whose *name* is the dotted path. A
/// userinfo answer with a key `realm_access.roles` therefore shadows the signed ID token's
/// nested `realm_access.roles` (the Keycloak preset's groups path): the user's groups,
/// and so `allowed_groups` and the upstream's `X-Forwarded-Groups` (Kubernetes RBAC via
/// Headlamp), come from userinfo instead of the ID token.
#[tokio::test]
async fn review2_userinfo_never_shadows_the_id_tokens_dotted_groups_claim() {
    let w = world(&[
        ("groups_claim", "realm_access.roles"),
        ("allowed_groups", "cluster-admins"),
        ("userinfo", "true"),
    ])
    .await;
    w.idp.tweak(|c| {
        c.as_object_mut().unwrap().remove("groups");
        c["realm_access"] = json!({"roles": ["viewer"]});
    });
    *w.idp.state.userinfo.lock().unwrap() = Some(json!({
        "sub": "alice", "realm_access.roles": ["cluster-admins"]
    }));
    let (page, _) = Browser::new().follow(&format!("{}/", w.gh.url)).await;
    assert_eq!(
        page.status,
        403,
        "the ID token says realm_access.roles = [viewer]; userinfo's dotted key made the user \
         a cluster-admin: {}",
        &page.body[..page.body.len().min(600)]
    );
}

/// Finding B. With the email in the ID token but no `email_verified` there, the merged
/// claims take `email_verified: true` from userinfo, which vouched for *another* address.
/// The unverified ID-token address then passes `allowed_email_domains` and reaches the
/// upstream as `X-Forwarded-Email`.
#[tokio::test]
async fn review2_email_verified_from_userinfo_never_vouches_for_another_address() {
    let w = world(&[
        ("user_claim", "preferred_username"),
        ("allowed_email_domains", "corp.example"),
        ("userinfo", "true"),
    ])
    .await;
    w.idp.tweak(|c| {
        c["email"] = json!("ceo@corp.example");
        c.as_object_mut().unwrap().remove("email_verified");
    });
    *w.idp.state.userinfo.lock().unwrap() = Some(json!({
        "sub": "alice", "email": "alice@gmail.example", "email_verified": true
    }));
    let (page, _) = Browser::new().follow(&format!("{}/", w.gh.url)).await;
    let leaked = serde_json::from_str::<Value>(&page.body)
        .ok()
        .map(|echo| seen(&echo, "x-forwarded-email"))
        .unwrap_or_default();
    assert_ne!(
        page.status, 200,
        "ceo@corp.example was never verified (userinfo verified alice@gmail.example), yet \
         it passed allowed_email_domains; the upstream saw X-Forwarded-Email {leaked:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Item 7: a session (or the one-request session of a bearer token) never outlives the
// token it forwards.
// ---------------------------------------------------------------------------------------

/// Finding C. A bearer token is accepted up to `clock_skew_secs` after its `exp` (the
/// leeway of `verify`), and no check compares the one-request session's `expires_at`
/// (= `exp`) with now, as `load_session` does for cookies. The upstream is handed the
/// expired token (`X-Forwarded-Id-Token`) and the identity it stood for.
#[tokio::test]
async fn review2_an_expired_bearer_token_never_reaches_the_upstream() {
    let w = world(&[("bearer_tokens", "true")]).await;
    let t = now();
    let claims = json!({"iss": w.idp.issuer, "sub": "ci-bot", "aud": crate::support::idp::CLIENT_ID,
        "exp": t - 10, "iat": t - 310, "email": "ci@example.test", "email_verified": true});
    let token = w.idp.state.keys.sign(&Mint::default(), &claims);
    let r = with_bearer(&format!("{}/api/x", w.gh.url), &token).await;
    let forwarded = serde_json::from_str::<Value>(&r.body)
        .ok()
        .map(|echo| seen(&echo, "x-forwarded-id-token"))
        .unwrap_or_default();
    assert!(
        forwarded.is_empty(),
        "a token that expired 10 s ago went upstream (status {}), with the session's \
         expires_at in the past",
        r.status
    );
    assert_eq!(r.status, 401, "{r:?}");
}

/// Finding D. AKS mode: the forwarded access token's verified `exp` bounds the session, but
/// `check_access_token` reads it with `as_u64`, so an `exp` sent as a JSON float (which
/// `verify` accepts, and `seconds()` reads everywhere else) is lost: the session outlives
/// the access token it forwards (here by three minutes, bounded only by the ID token).
#[tokio::test]
async fn review2_a_float_exp_on_the_forwarded_access_token_still_bounds_the_session() {
    const AKS: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";
    let v1 = TestIdp::start().await;
    let w = world(&[
        ("access_token_audience", AKS),
        ("access_token_issuer", &v1.issuer),
    ])
    .await;
    let (st, iss) = (std::sync::Arc::clone(&v1.state), v1.issuer.clone());
    w.idp.set_mint(Mint {
        ttl: 300,
        body_tweak: std::sync::Arc::new(move |b, _| {
            let t = now();
            b["access_token"] = json!(st.keys.sign(
                &Mint::default(),
                &json!({"iss": iss, "sub": "alice", "aud": AKS,
                    "exp": (t + 120) as f64 + 0.5, "iat": t}),
            ));
            b["expires_in"] = json!(3600);
        }),
        ..Mint::default()
    });
    let b = Browser::new();
    assert_eq!(login(&w, &b, "/").await.status, 200);
    let at = expires_at(&w.gh.url, &b).await as i64;
    assert!(
        at <= now() + 121,
        "the forwarded access token expires in 120 s, the session in {} s",
        at - now()
    );
}

// ---------------------------------------------------------------------------------------
// Item 5: the client's address.
// ---------------------------------------------------------------------------------------

/// Finding E. Through a trusted, appending load balancer, `X-Real-IP` and `Forwarded`
/// name the right client (203.0.113.9), but `X-Forwarded-For` goes upstream whole, the
/// client's own `6.6.6.6` first. Every upstream that takes the leftmost X-Forwarded-For
/// entry (Express with `trust proxy`, the common `split(',')[0]` idiom, many log
/// pipelines and rate limiters) believes 6.6.6.6: the issue's own example.
#[tokio::test]
async fn review2_no_address_left_of_the_believed_client_reaches_the_upstream() {
    let idp = TestIdp::start().await;
    let up = Upstream::start().await;
    let gh = start(config(
        &up.url,
        &idp.issuer,
        &[
            ("trusted_proxies", "127.0.0.1/32"),
            ("skip_auth_routes", "GET=/public/**"),
        ],
    ))
    .await;
    let r = Browser::new()
        .send(
            reqwest::Method::GET,
            &format!("{}/public/x", gh.url),
            &[("x-forwarded-for", "6.6.6.6, 203.0.113.9")],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let echo = r.json();
    assert_eq!(seen(&echo, "x-real-ip"), vec!["203.0.113.9"]);
    let xff = seen(&echo, "x-forwarded-for").join(", ");
    assert!(
        !xff.contains("6.6.6.6"),
        "the upstream's X-Forwarded-For is `{xff}`: its leftmost entry is the client's \
         forgery"
    );
}

// ---------------------------------------------------------------------------------------
// Item 6: one list rule for every list, files included.
// ---------------------------------------------------------------------------------------

/// Finding F. `allowed_emails_file` is a list in a file, but no line of it meets the list
/// rule: a line with a comma or a space (`alice@x, bob@x`, the way every other email list
/// is written) is taken whole as one "address" that nobody has, without a word at
/// start-up or in `check` (which prints every other list as read). Both users are then
/// refused. Either the line is refused at start-up with the fix, or it is read as the
/// addresses it names; never silently merged.
#[tokio::test]
async fn review2_an_emails_file_line_never_merges_two_addresses_silently() {
    let dir = std::env::temp_dir().join(format!("gh-review2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, line) in [
        ("commas.txt", "alice@example.test, bob@example.test\n"),
        ("spaces.txt", "alice@example.test bob@example.test\n"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, line).unwrap();
        let idp = TestIdp::start().await;
        let up = Upstream::start().await;
        let mut raw = gatehouse::config::RawConfig::default();
        for (k, v) in [
            ("upstream", up.url.as_str()),
            ("issuer_url", idp.issuer.as_str()),
            ("client_id", crate::support::idp::CLIENT_ID),
            ("client_secret", crate::support::idp::CLIENT_SECRET),
            ("cookie_secret", crate::support::COOKIE_SECRET),
            ("cookie_secure", "false"),
            ("listen", "127.0.0.1:0"),
            ("allowed_emails_file", path.to_str().unwrap()),
        ] {
            raw.set(k, v);
        }
        let Ok(cfg) = gatehouse::config::Config::from_raw(&raw) else {
            continue; // refused at start-up: what the list rule asks for
        };
        let gh = start(cfg).await;
        let b = Browser::new();
        let (page, _) = b.follow(&format!("{}/", gh.url)).await;
        assert_eq!(
            page.status, 200,
            "{name}: {line:?} was accepted at start-up, yet alice@example.test is refused: \
             the line became one address"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------
// Item 2 (shutdown) and "never panic on input": durations.
// ---------------------------------------------------------------------------------------

/// Finding G. Durations have no upper bound. `check` accepts
/// `shutdown_grace_secs = 18446744073709551615`, and `serve` then panics on SIGTERM
/// (`grace + 1 s` overflows: exit 101 with a backtrace instead of the orderly drain);
/// `idle_timeout_secs` as large panics a connection task on every request body that
/// arrives in pieces (`last + idle` overflows an Instant). They must be refused at start-up.
#[test]
fn review2_durations_that_overflow_an_instant_are_refused_at_start_up() {
    for key in ["shutdown_grace_secs", "idle_timeout_secs"] {
        let mut raw = gatehouse::config::RawConfig::default();
        for (k, v) in [
            ("upstream", "http://127.0.0.1:9"),
            ("issuer_url", "http://127.0.0.1:9/"),
            ("client_id", "x"),
            ("client_secret", "y"),
            ("cookie_secret", crate::support::COOKIE_SECRET),
            (key, "18446744073709551615"),
        ] {
            raw.set(k, v);
        }
        assert!(
            gatehouse::config::Config::from_raw(&raw).is_err(),
            "{key} = u64::MAX accepted: it panics the process (or a connection) later"
        );
    }
}

/// Finding H. A refresh failure is kept (60 s for "no new ID token", 2 s for a provider
/// outage) under the session id and refresh token, with `serve_until` computed from the
/// session that ran the refresh. Another cookie of the same session (same id, same
/// refresh token: a provider that does not rotate it) gets that failure, and
/// `load_session` serves it while `now < serve_until`, never comparing with *its own*
/// `expires_at`. So an older, long-expired cookie (S0, a copy taken earlier) is served,
/// and its expired access token goes upstream. Takes ~65 s: a success is kept 60 s first.
#[tokio::test]
async fn review2_a_kept_refresh_failure_never_serves_an_older_expired_cookie() {
    let w = world(&[
        ("pass_authorization", "access_token"),
        ("refresh_before_secs", "100"),
    ])
    .await;
    let minted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = std::sync::Arc::clone(&minted);
    w.idp.set_mint(Mint {
        ttl: 150,
        body_tweak: std::sync::Arc::new(move |b, refresh| {
            log.lock()
                .unwrap()
                .push(b["access_token"].as_str().unwrap().to_string());
            if refresh {
                // OIDC Core 12.2, and no rotation: the refresh token stays the same.
                let o = b.as_object_mut().unwrap();
                o.remove("id_token");
                o.remove("refresh_token");
                b["expires_in"] = json!(200);
            } else {
                b["expires_in"] = json!(2);
            }
        }),
        ..Mint::default()
    });
    // Sign in by hand, stopping at the callback: S0 is the cookie it sets.
    let b = Browser::new();
    let mut r = b.get(&format!("{}/", w.gh.url)).await;
    while !r.set_cookies().iter().any(|c| c.starts_with("_gatehouse=")) {
        let next = reqwest::Url::parse(&r.url)
            .unwrap()
            .join(&r.location().expect("a redirect on the way to the callback"))
            .unwrap();
        r = b.get(next.as_str()).await;
    }
    let s0 = b.cookie("_gatehouse").unwrap();
    // S0 (access token for 2 s) is due at once: refresh 1 gives S1, same id and token.
    let first = api(&b, &w.gh.url, "/one").await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_ne!(b.cookie("_gatehouse").unwrap(), s0, "S1 stored");
    let a0 = minted.lock().unwrap()[0].clone();
    // After the kept success (60 s), S1 is due and the kept ID token too: refresh 2 brings
    // no ID token and fails closed; the failure is kept with serve_until = S1's end.
    tokio::time::sleep(std::time::Duration::from_secs(62)).await;
    let second = api(&b, &w.gh.url, "/two").await;
    assert_eq!(second.status, 200, "S1 still serves: {second:?}");
    // The old cookie S0, expired a minute ago, now meets that kept failure.
    let old = Browser::new();
    old.jar
        .lock()
        .unwrap()
        .insert("_gatehouse".to_string(), s0.clone());
    let late = api(&old, &w.gh.url, "/three").await;
    let auth = serde_json::from_str::<Value>(&late.body)
        .ok()
        .map(|echo| seen(&echo, "authorization"))
        .unwrap_or_default();
    assert_eq!(
        late.status, 401,
        "S0 expired ~60 s ago and was served; the upstream got Authorization {auth:?} (the \
         sign-in's access token was Bearer {a0}, expires_in 2 s)"
    );
}

/// A GET as an API client (401 rather than a redirect when there is no session).
async fn api(b: &Browser, gh: &str, path: &str) -> Resp {
    b.send(
        reqwest::Method::GET,
        &format!("{gh}{path}"),
        &[("accept", "application/json")],
    )
    .await
}
