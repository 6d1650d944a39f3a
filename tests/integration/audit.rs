//! Audit events and W3C trace context, as an operator of the real binary sees them: one
//! JSON line per security decision on `audit_log` (stderr by default, whatever
//! `log_level`), none of them carrying a token, code, state or cookie; and the
//! `traceparent` the upstream receives, continued or fresh, with its trace id in
//! gatehouse's log beside the request id.

use crate::support::idp::{Mint, Signer, TestIdp};
use crate::support::redis::free_port;
use crate::support::upstream::{seen, Upstream};
use crate::support::{Browser, Captured, RealGatehouse, COOKIE_SECRET};
use serde_json::Value;

/// The audit events (JSON lines on the audit target) in `text`.
fn events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "gatehouse::audit")
        .collect()
}

/// Waits for the `n`th (from 1) audit event named `name`.
async fn nth_event(c: &Captured, name: &str, n: usize) -> Value {
    let needle = format!("\"event\":\"{name}\"");
    c.line(&format!("with {needle} (#{n})"), |_| {
        c.text().matches(needle.as_str()).count() >= n
    })
    .await;
    events(&c.text())
        .into_iter()
        .filter(|e| e["event"] == name)
        .nth(n - 1)
        .unwrap()
}

async fn event(c: &Captured, name: &str) -> Value {
    nth_event(c, name, 1).await
}

fn hex(v: &Value, len: usize) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The fields every event has.
fn assert_common(e: &Value, mode: &str, route: &str) {
    assert!(hex(&e["request_id"], 16), "{e}");
    assert!(hex(&e["trace_id"], 32), "{e}");
    assert_eq!(e["client"], "127.0.0.1", "{e}");
    assert_eq!(e["mode"], mode, "{e}");
    assert_eq!(e["route"], route, "{e}");
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn audit_every_decision_of_a_session_is_one_json_line_even_at_log_level_error_and_none_leaks_a_secret(
) {
    let idp = TestIdp::start().await;
    let up = Upstream::start().await;
    let port = free_port();
    let flags = [
        "--log-level",
        "error",
        "--allowed-groups",
        "admins",
        "--bearer-tokens",
        "true",
        "--header-id-token",
        "X-Forwarded-Id-Token",
    ];
    let (gh, err) = RealGatehouse::start_capturing(port, &up.url, &idp.issuer, &flags).await;
    let host = format!("127.0.0.1:{port}");
    let mut secrets: Vec<String> = vec![COOKIE_SECRET.into()];

    // Alice signs in (groups admins, dev) and reaches the app.
    let alice = Browser::new();
    let (landed, _) = alice.follow(&format!("{}/app?tab=1", gh.url)).await;
    assert_eq!(landed.status, 200, "{landed:?}");
    let echo: Value = serde_json::from_str(&landed.body).unwrap();
    secrets.extend(seen(&echo, "x-forwarded-id-token"));
    let signed_in = event(&err, "sign_in").await;
    assert_common(&signed_in, "endpoint", &format!("{host}/oauth2/callback"));
    assert_eq!(signed_in["user"], "alice@example.test");
    assert_eq!(signed_in["sub"], "alice");
    assert_eq!(signed_in["email"], "alice@example.test");
    assert_eq!(signed_in["groups"], 2, "the count, not the list");
    assert!(hex(&signed_in["session"], 16), "{signed_in}");
    assert_eq!(signed_in["level"], "INFO");

    // The forward-auth URL's rule refuses her: mode forward_auth, the rule and its source.
    let r = alice
        .get(&format!("{}/oauth2/auth?allowed_groups=ops", gh.url))
        .await;
    assert_eq!(r.status, 403);
    let denied = event(&err, "denied").await;
    // From a peer that is no trusted proxy the original request is unknown.
    assert_common(&denied, "forward_auth", "");
    assert_eq!(
        (&denied["rule"], &denied["rule_source"], &denied["user"]),
        (
            &"allowed_groups".into(),
            &"query".into(),
            &"alice@example.test".into()
        )
    );

    // A check carrying its own copy of an identity header: refused, named, never its value.
    let r = alice
        .send(
            reqwest::Method::GET,
            &format!("{}/oauth2/auth", gh.url),
            &[("x_forwarded_user", "spoofed-admin-value")],
        )
        .await;
    assert_eq!(r.status, 400);
    let e = event(&err, "identity_header_refused").await;
    assert_common(&e, "forward_auth", "");
    assert_eq!(e["header"], "x_forwarded_user");
    secrets.push("spoofed-admin-value".into());

    // Mallory (group guests) signs in, and the configured rule refuses her at the proxy.
    *idp.state.next_sub.lock().unwrap() = "mallory".into();
    idp.tweak(|c| c["groups"] = serde_json::json!(["guests"]));
    let mallory = Browser::new();
    let (refused, _) = mallory
        .follow(&format!("{}/admin?x=secret-query", gh.url))
        .await;
    assert_eq!(refused.status, 403);
    let denied = nth_event(&err, "denied", 2).await;
    assert_common(&denied, "proxy", &format!("{host}/admin"));
    assert_eq!(
        (&denied["rule"], &denied["rule_source"], &denied["user"]),
        (
            &"allowed_groups".into(),
            &"config".into(),
            &"mallory@example.test".into()
        )
    );
    assert_eq!(denied["level"], "WARN");

    // A callback whose state is not the one this browser's login started.
    let eve = Browser::new();
    assert_eq!(
        eve.get(&format!("{}/oauth2/start?rd=/", gh.url))
            .await
            .status,
        302
    );
    let code = "code-value-0f3a9";
    let state = "state-value-77c1d";
    let r = eve
        .get(&format!(
            "{}/oauth2/callback?code={code}&state={state}",
            gh.url
        ))
        .await;
    assert_eq!(r.status, 400);
    let failed = event(&err, "sign_in_failed").await;
    assert_common(&failed, "endpoint", &format!("{host}/oauth2/callback"));
    assert_eq!(failed["reason"], "state_mismatch");
    secrets.extend([code.to_string(), state.to_string()]);

    // Bearer tokens that do not verify: a bad signature, an expired one.
    let claims = serde_json::json!({"iss": idp.issuer, "sub": "bot", "aud": crate::support::idp::CLIENT_ID,
        "exp": gatehouse::util::now_secs() + 300, "iat": gatehouse::util::now_secs()});
    let forged = idp.state.keys.sign(
        &Mint {
            signer: Signer::Rsa2,
            ..Mint::default()
        },
        &claims,
    );
    let mut old = claims.clone();
    old["exp"] = (gatehouse::util::now_secs() - 600).into();
    old["iat"] = (gatehouse::util::now_secs() - 900).into();
    let expired = idp.state.keys.sign(&Mint::default(), &old);
    for (token, reason, n) in [(&forged, "bad_signature", 1), (&expired, "expired", 2)] {
        let r = Browser::new()
            .send(
                reqwest::Method::GET,
                &format!("{}/api/pods?token=x", gh.url),
                &[("authorization", &bearer(token))],
            )
            .await;
        assert_eq!(r.status, 401);
        let e = nth_event(&err, "bearer_refused", n).await;
        assert_common(&e, "proxy", &format!("{host}/api/pods"));
        assert_eq!(e["reason"], reason, "{e}");
        secrets.push(token.clone());
    }

    // Back-channel logout: a token that does not verify, then Mallory's sessions end.
    let r = crate::backchannel::post_logout(&gh.url, "not-a-logout-token").await;
    assert_eq!(r.status, 400);
    let e = event(&err, "backchannel_logout_refused").await;
    assert_common(&e, "endpoint", &format!("{host}/oauth2/backchannel_logout"));
    assert_eq!(e["reason"], "invalid_logout_token");
    let logout = idp.state.keys.sign(
        &Mint {
            typ: Some("logout+jwt".into()),
            ..Mint::default()
        },
        &crate::backchannel::logout_claims(&idp.issuer, None, Some("mallory")),
    );
    assert_eq!(
        crate::backchannel::post_logout(&gh.url, &logout)
            .await
            .status,
        200
    );
    let e = event(&err, "backchannel_logout").await;
    assert_eq!(
        (&e["sub"], &e["by"]),
        (&"mallory".into(), &"sub".into()),
        "{e}"
    );
    secrets.push(logout);

    // Alice signs out.
    for b in [&alice, &mallory, &eve] {
        secrets.extend(b.jar.lock().unwrap().values().cloned());
    }
    let r = alice
        .post_form(&format!("{}/oauth2/sign_out", gh.url), &[])
        .await;
    assert!(r.status < 400, "{r:?}");
    let out = event(&err, "sign_out").await;
    assert_common(&out, "endpoint", &format!("{host}/oauth2/sign_out"));
    assert_eq!(
        (&out["user"], &out["everywhere"]),
        (&"alice@example.test".into(), &false.into())
    );
    assert_eq!(
        out["session"], signed_in["session"],
        "one session, one digest"
    );

    let text = err.text();
    let all = events(&text);
    for e in &all {
        let route = e["route"].as_str().unwrap();
        assert!(
            !route.contains('?') && !route.contains("secret-query"),
            "{e}"
        );
    }
    assert!(
        all.len() >= 9,
        "sign_in x2, denied x2, sign_in_failed, bearer_refused x2, back-channel x2: {text}"
    );
    for s in secrets.iter().filter(|s| s.len() >= 8) {
        assert!(!text.contains(s.as_str()), "{s} leaked into:\n{text}");
    }
    // log_level = error: nothing but errors in the log, yet every audit event above.
    assert!(!text.contains("gatehouse serving"), "{text}");
}

#[tokio::test]
async fn audit_log_file_takes_the_events_off_stderr() {
    let idp = TestIdp::start().await;
    let up = Upstream::start().await;
    let port = free_port();
    let file =
        std::env::temp_dir().join(format!("gatehouse-audit-{}-{port}.log", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let path = file.to_string_lossy().into_owned();
    let (gh, err) =
        RealGatehouse::start_capturing(port, &up.url, &idp.issuer, &["--audit-log", &path]).await;
    let b = Browser::new();
    assert_eq!(b.follow(&format!("{}/", gh.url)).await.0.status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let lines = loop {
        let lines = events(&std::fs::read_to_string(&file).unwrap_or_default());
        if !lines.is_empty() || std::time::Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["event"], "sign_in");
    // The log itself is on stderr (text at info), without the audit event.
    let logged = err
        .line("`user logged in`", |l| l.contains("user logged in"))
        .await;
    assert!(!logged.starts_with('{'), "{logged}");
    assert!(!err.text().contains("gatehouse::audit"), "{}", err.text());
    drop(gh);
    let _ = std::fs::remove_file(&file);
}

#[test]
fn audit_log_that_cannot_be_opened_is_listed_with_the_other_problems() {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    for (k, _) in std::env::vars() {
        if k.starts_with("GATEHOUSE_") {
            c.env_remove(k);
        }
    }
    let out = c
        .args(["check", "--issuer-url", "https://sso.example.com"])
        .args(["--client-id", "c", "--client-secret", "s"])
        .args(["--cookie-secret", COOKIE_SECRET])
        .args(["--audit-log", "/nonexistent-gatehouse-dir/audit.log"])
        .args(["--log-level", "loud"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("audit_log") && text.contains("/nonexistent-gatehouse-dir/audit.log"),
        "{text}"
    );
    assert!(text.contains("log_level"), "every problem at once: {text}");
}

#[tokio::test]
async fn audit_a_refused_refresh_and_an_idle_session_each_end_with_their_event() {
    let idp = TestIdp::start().await;
    let up = Upstream::start().await;
    let port = free_port();
    // Every request refreshes (the tokens live 300 s); two idle seconds end a session.
    let flags = [
        "--refresh-before-secs",
        "1000",
        "--session-idle-timeout-secs",
        "2",
    ];
    let (gh, err) = RealGatehouse::start_capturing(port, &up.url, &idp.issuer, &flags).await;
    let host = format!("127.0.0.1:{port}");

    let ada = Browser::new();
    assert_eq!(ada.follow(&format!("{}/", gh.url)).await.0.status, 200);
    let signed_in = event(&err, "sign_in").await;
    idp.state
        .refresh_fails
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r = ada.get(&format!("{}/reports?id=7", gh.url)).await;
    assert_eq!(r.status, 302, "back to the provider");
    let e = event(&err, "refresh_failed").await;
    assert_common(&e, "proxy", &format!("{host}/reports"));
    assert_eq!(e["user"], "alice@example.test");
    assert_eq!(e["provider_error"], "invalid_grant", "{e}");
    assert_eq!(e["session"], signed_in["session"]);
    idp.state
        .refresh_fails
        .store(false, std::sync::atomic::Ordering::SeqCst);

    let bob = Browser::new();
    *idp.state.next_sub.lock().unwrap() = "bob".into();
    assert_eq!(bob.follow(&format!("{}/", gh.url)).await.0.status, 200);
    // The session's last use is recorded to the second: wait out the timeout on the clock.
    let used = gatehouse::util::now_secs();
    while gatehouse::util::now_secs() < used + 3 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let r = bob.get(&format!("{}/later", gh.url)).await;
    assert_eq!(r.status, 302);
    let e = event(&err, "session_ended_idle").await;
    assert_common(&e, "proxy", &format!("{host}/later"));
    assert_eq!(
        (&e["user"], &e["idle_timeout_secs"]),
        (&"bob@example.test".into(), &2.into())
    );
}
