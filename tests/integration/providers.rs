//! Talking to providers that behave like the ones our users run (CONTRACTS.md §3): what
//! gatehouse refuses to follow, and what it tolerates.

use axum::response::Redirect;
use axum::routing::get;
use gatehouse::oidc::discovery::{discover, DiscoveryError};

/// A discovery endpoint that redirects elsewhere is reported, not followed (SSRF guard).
#[tokio::test]
async fn provider_redirects_are_reported_not_followed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/.well-known/openid-configuration",
        get(|| async { Redirect::temporary("http://169.254.169.254/latest/meta-data/") }),
    );
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    let err = discover(&gatehouse::oidc::http_client(), &issuer)
        .await
        .unwrap_err();
    match &err {
        DiscoveryError::Redirected(msg) => {
            assert!(
                msg.contains(&format!("{issuer}/.well-known/openid-configuration"))
                    && msg.contains("169.254.169.254")
                    && msg.contains("does not follow redirects"),
                "{msg}"
            );
        }
        other => panic!("expected a redirect error, got {other}"),
    }
    task.abort();
}

use crate::flow::{login, world};
use crate::support::expires_at;
use crate::support::idp::{Mint, Signer};
use crate::support::upstream::seen;
use crate::support::Browser;
use serde_json::json;

/// Entra ID above 200 groups: no `groups`, `_claim_names` instead. The login is refused
/// with the reason and the fix, never silently groupless.
#[tokio::test]
async fn entra_groups_overage_is_explained_not_silently_groupless() {
    let w = world(&[]).await;
    w.idp.tweak(|c| {
        c.as_object_mut().unwrap().remove("groups");
        c["_claim_names"] = json!({"groups": "src1"});
        c["_claim_sources"] = json!({"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/x/getMemberObjects"}});
    });
    let (page, _) = Browser::new().follow(&format!("{}/", w.gh.url)).await;
    assert_eq!(page.status, 502, "{page:?}");
    assert!(
        page.body.contains("groups overage") && page.body.contains("groupMembershipClaims"),
        "{}",
        page.body
    );
}

/// Authentik with no signing key signs with the client secret (HS256): the page says
/// which setting to change.
#[tokio::test]
async fn hs256_tokens_name_the_signing_key_fix() {
    let w = world(&[]).await;
    w.idp.set_mint(Mint {
        signer: Signer::Hs256WithPublicKey,
        ..Mint::default()
    });
    let (page, _) = Browser::new().follow(&format!("{}/", w.gh.url)).await;
    assert_eq!(page.status, 502);
    assert!(page.body.contains("choose a signing key"), "{}", page.body);
}

/// Keycloak: groups from a group mapper (full paths) merged with realm and client roles.
#[tokio::test]
async fn keycloak_style_roles_and_group_paths_reach_the_upstream() {
    let w = world(&[
        (
            "groups_claim",
            "groups,realm_access.roles,resource_access.{client_id}.roles",
        ),
        ("groups_trim_leading_slash", "true"),
    ])
    .await;
    w.idp.tweak(|c| {
        c["groups"] = json!(["/admins", "/team/dev"]);
        c["realm_access"] = json!({"roles": ["admins", "offline_access"]});
        c["resource_access"] = json!({crate::support::idp::CLIENT_ID: {"roles": ["viewer"]}, "other": {"roles": ["x"]}});
    });
    let echo = login(&w, &Browser::new(), "/").await.json();
    assert_eq!(
        seen(&echo, "x-forwarded-group"),
        vec!["admins,team/dev,offline_access,viewer"]
    );
}

/// Google Workspace: `hosted_domain` is sent as `hd` and required in the token.
#[tokio::test]
async fn hosted_domain_is_requested_and_required() {
    let w = world(&[
        ("hosted_domain", "example.com"),
        ("extra_auth_params", "access_type=offline,prompt=consent"),
    ])
    .await;
    let b = Browser::new();
    let first = b.get(&format!("{}/", w.gh.url)).await;
    let authorize = first.location().unwrap();
    for p in ["hd=example.com", "access_type=offline", "prompt=consent"] {
        assert!(authorize.contains(p), "{p} in {authorize}");
    }
    w.idp.tweak(|c| c["hd"] = json!("evil.com"));
    let (page, _) = Browser::new().follow(&format!("{}/", w.gh.url)).await;
    assert_eq!(page.status, 403, "another Workspace domain is refused");
    assert!(page.body.contains("hd=example.com"), "{}", page.body);
    w.idp.tweak(|c| c["hd"] = json!("example.com"));
    let (page, _) = Browser::new().follow(&format!("{}/", w.gh.url)).await;
    assert_eq!(page.status, 200);
}

/// A spec-conforming provider may keep scope claims out of the ID token: with
/// `userinfo = auto` (the default) they are fetched and merged, after checking `sub`.
#[tokio::test]
async fn claims_only_at_userinfo_still_reach_the_upstream() {
    let w = world(&[]).await;
    w.idp.tweak(|c| {
        let o = c.as_object_mut().unwrap();
        for k in ["email", "groups", "preferred_username"] {
            o.remove(k);
        }
    });
    *w.idp.state.userinfo.lock().unwrap() = Some(json!({
        "sub": "alice", "email": "alice@example.test", "email_verified": true,
        "groups": ["ops"], "preferred_username": "alice", "iss": "https://evil.example"
    }));
    let echo = login(&w, &Browser::new(), "/").await.json();
    assert_eq!(seen(&echo, "x-forwarded-email"), vec!["alice@example.test"]);
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["alice@example.test"]);
    assert_eq!(seen(&echo, "x-forwarded-group"), vec!["ops"]);
    let calls = w.idp.state.userinfo_calls.lock().unwrap().clone();
    assert!(
        calls.len() == 1 && calls[0].starts_with("Bearer at-"),
        "one userinfo call with the access token: {calls:?}"
    );

    // Another subject at userinfo: the sign-in is refused, and says why.
    *w.idp.state.userinfo.lock().unwrap() = Some(json!({"sub": "mallory", "email": "m@x"}));
    let (page, _) = Browser::new().follow(&format!("{}/", w.gh.url)).await;
    assert_eq!(page.status, 502, "{page:?}");
    assert!(page.body.contains("`mallory`"), "{}", page.body);
}

#[tokio::test]
async fn an_unverified_email_from_userinfo_passes_no_email_rule() {
    let w = world(&[
        ("allowed_email_domains", "example.test"),
        ("user_claim", "preferred_username"),
    ])
    .await;
    w.idp.tweak(|c| {
        let o = c.as_object_mut().unwrap();
        o.remove("email");
        o.remove("email_verified");
    });
    // A string boolean, as some providers send it.
    *w.idp.state.userinfo.lock().unwrap() = Some(json!({
        "sub": "alice", "email": "alice@example.test", "email_verified": "false"
    }));
    let (page, _) = Browser::new().follow(&format!("{}/", w.gh.url)).await;
    assert_eq!(page.status, 403, "{page:?}");
    assert!(page.body.contains("email_verified"), "{}", page.body);
}

#[tokio::test]
async fn userinfo_false_never_calls_it_and_auto_skips_complete_tokens() {
    let w = world(&[]).await;
    *w.idp.state.userinfo.lock().unwrap() = Some(json!({"sub": "alice"}));
    login(&w, &Browser::new(), "/").await;
    assert!(
        w.idp.state.userinfo_calls.lock().unwrap().is_empty(),
        "the ID token has every mapped claim: no userinfo call"
    );
    // Without userinfo the user claim (email) is missing: the sign-in is refused and
    // says which claim, instead of falling back to `sub`.
    let w = world(&[("userinfo", "false")]).await;
    w.idp.tweak(|c| {
        c.as_object_mut().unwrap().remove("email");
    });
    *w.idp.state.userinfo.lock().unwrap() = Some(json!({"sub": "alice", "email": "a@x"}));
    let (page, _) = Browser::new().follow(&format!("{}/", w.gh.url)).await;
    assert!(w.idp.state.userinfo_calls.lock().unwrap().is_empty());
    assert_eq!(page.status, 502, "{page:?}");
    assert!(
        page.body.contains("no `email` claim") && page.body.contains("does not fall back"),
        "{}",
        page.body
    );
}

/// `gatehouse check --online` against a live provider: what is right, what is wrong with
/// the fix, and the API server settings to apply.
#[tokio::test]
async fn check_online_reports_the_provider_and_prints_apiserver_settings() {
    let idp = crate::support::idp::TestIdp::start().await;
    let groups = ["--groups-claim", "realm_access.roles"];
    let (code, said) = crate::support::check_online(&idp.issuer, &groups).await;
    assert_eq!(code, Some(0), "{said}");
    for needle in [
        "ok: discovery at",
        "matches byte for byte",
        "usable signing key(s)",
        "clock within",
        &format!("--oidc-issuer-url={}", idp.issuer),
        &format!("--oidc-client-id={}", crate::support::idp::CLIENT_ID),
        "kind: AuthenticationConfiguration",
        "expression: 'claims.realm_access.roles'",
    ] {
        assert!(said.contains(needle), "missing {needle:?} in:\n{said}");
    }
    // A trailing slash the provider does not have: named, exit 1.
    let (code, said) = crate::support::check_online(&format!("{}/", idp.issuer), &[]).await;
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("error:") && said.contains("only a trailing slash differs"),
        "{said}"
    );
    // Nothing listening: unreachable, exit 1.
    let (code, said) = crate::support::check_online("http://127.0.0.1:9", &[]).await;
    assert_eq!(code, Some(1));
    assert!(said.contains("error: cannot reach"), "{said}");
}

/// The AKS case: an access token for the AKS server application, issued by the v1
/// issuer, is verified and forwarded in place of the ID token.
#[tokio::test]
async fn a_verified_access_token_is_forwarded_instead_of_the_id_token() {
    const AKS: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";
    let v1 = crate::support::idp::TestIdp::start().await;
    let now = gatehouse::util::now_secs() as i64;
    let access = |aud: &str| {
        v1.state.keys.sign(
            &Mint::default(),
            &json!({"iss": v1.issuer, "sub": "alice", "aud": aud, "exp": now + 600,
                "iat": now, "appid": "headlamp"}),
        )
    };
    let good = access(AKS);
    let w = world(&[
        ("access_token_audience", AKS),
        ("access_token_issuer", &v1.issuer),
    ])
    .await;
    let forwarded = good.clone();
    w.idp.set_mint(Mint {
        body_tweak: std::sync::Arc::new(move |b, _| b["access_token"] = json!(forwarded)),
        ..Mint::default()
    });
    let echo = login(&w, &Browser::new(), "/").await.json();
    assert_eq!(seen(&echo, "x-forwarded-id-token"), vec![good.clone()]);
    assert_eq!(seen(&echo, "authorization"), vec![format!("Bearer {good}")]);
    assert_eq!(seen(&echo, "x-forwarded-user"), vec!["alice@example.test"]);

    for (bad, why) in [
        (access("https://graph.microsoft.com"), "graph.microsoft.com"),
        ("opaque".to_string(), "not a well-formed JWT"),
    ] {
        w.idp.set_mint(Mint {
            body_tweak: std::sync::Arc::new(move |b, _| b["access_token"] = json!(bad)),
            ..Mint::default()
        });
        let (page, _) = Browser::new().follow(&format!("{}/", w.gh.url)).await;
        assert_eq!(page.status, 502, "{page:?}");
        assert!(
            page.body.contains("access token to forward was refused") && page.body.contains(why),
            "{}",
            page.body
        );
    }
}

/// AKS: the session ends no later than the forwarded access token, on every path that
/// builds or extends it: sign-in (its verified `exp` and `expires_in`), a refresh with an
/// ID token, and a refresh without one (OIDC Core 12.2), whatever `expires_in` says.
#[tokio::test]
async fn the_forwarded_access_token_bounds_every_session_it_is_in() {
    const AKS: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";
    let v1 = crate::support::idp::TestIdp::start().await;
    let v1_state = std::sync::Arc::clone(&v1.state);
    let v1_issuer = v1.issuer.clone();
    // Access tokens living `ttl` seconds; the response says `expires_in`; a refresh
    // answer without an ID token when `drop_id`.
    let mint = move |ttl: i64, expires_in: i64, drop_id: bool| {
        let (st, iss) = (std::sync::Arc::clone(&v1_state), v1_issuer.clone());
        Mint {
            ttl: 300,
            body_tweak: std::sync::Arc::new(move |b, refresh| {
                let now = gatehouse::util::now_secs() as i64;
                b["access_token"] = json!(st.keys.sign(
                    &Mint::default(),
                    &json!({"iss": iss, "sub": "alice", "aud": AKS, "exp": now + ttl, "iat": now}),
                ));
                b["expires_in"] = json!(expires_in);
                if refresh && drop_id {
                    b.as_object_mut().unwrap().remove("id_token");
                }
            }),
            ..Mint::default()
        }
    };
    let now = || gatehouse::util::now_secs() as i64;
    let near = |at: u64, want: i64| (at as i64 - (now() + want)).abs() <= 3;
    let aks = [
        ("access_token_audience", AKS),
        ("access_token_issuer", v1.issuer.as_str()),
    ];

    // Sign-in: the ID token lives 300 s, the access token 600 s, expires_in says 100.
    let w = world(&aks).await;
    w.idp.set_mint(mint(600, 100, false));
    let b = Browser::new();
    assert_eq!(login(&w, &b, "/").await.status, 200);
    let at = expires_at(&w.gh.url, &b).await;
    assert!(near(at, 100), "sign-in: expires_in bounds it: {at}");
    // Sign-in: the access token's own exp comes first.
    w.idp.set_mint(mint(120, 3600, false));
    let b = Browser::new();
    assert_eq!(login(&w, &b, "/").await.status, 200);
    let at = expires_at(&w.gh.url, &b).await;
    assert!(
        near(at, 120),
        "sign-in: the access token's exp bounds it: {at}"
    );

    // Refreshes, each due at once.
    let mut extra = aks.to_vec();
    extra.push(("refresh_before_secs", "100000"));
    let w = world(&extra).await;
    w.idp.set_mint(mint(600, 3600, false));
    let b = Browser::new();
    assert_eq!(login(&w, &b, "/").await.status, 200);
    // Without an ID token, expires_in says an hour, the new access token lives 2 minutes.
    w.idp.set_mint(mint(120, 3600, true));
    let at = expires_at(&w.gh.url, &b).await;
    assert!(near(at, 120), "refresh without ID token: {at}");
    let echo = b
        .send(
            reqwest::Method::GET,
            &format!("{}/x", w.gh.url),
            &[("accept", "application/json")],
        )
        .await
        .json();
    let forwarded = crate::interop::decode(&seen(&echo, "x-forwarded-id-token")[0]);
    assert_eq!(
        forwarded["aud"],
        json!(AKS),
        "the new access token is forwarded"
    );
    assert!(near(forwarded["exp"].as_u64().unwrap(), 120));
    // Without an ID token, expires_in is the shorter.
    w.idp.set_mint(mint(600, 90, true));
    let at = expires_at(&w.gh.url, &b).await;
    assert!(
        near(at, 90),
        "refresh without ID token, expires_in first: {at}"
    );
    // With an ID token, expires_in is the shorter.
    w.idp.set_mint(mint(600, 50, false));
    let at = expires_at(&w.gh.url, &b).await;
    assert!(near(at, 50), "refresh with an ID token: {at}");
}

/// `max_age` and `acr_values` are requested, and the token must honour them.
#[tokio::test]
async fn max_age_and_acr_values_are_requested_and_checked() {
    let w = world(&[("max_age", "300"), ("acr_values", "mfa")]).await;
    let first = Browser::new().get(&format!("{}/", w.gh.url)).await;
    let authorize = first.location().unwrap();
    assert!(
        authorize.contains("max_age=300") && authorize.contains("acr_values=mfa"),
        "{authorize}"
    );
    let now = gatehouse::util::now_secs() as i64;
    w.idp.tweak(|c| c["acr"] = json!("mfa"));
    let (page, _) = Browser::new().follow(&format!("{}/", w.gh.url)).await;
    assert_eq!(page.status, 502, "no auth_time although max_age was asked");
    assert!(page.body.contains("auth_time"), "{}", page.body);
    w.idp.tweak(move |c| {
        c["acr"] = json!("pwd");
        c["auth_time"] = json!(now);
    });
    let (page, _) = Browser::new().follow(&format!("{}/", w.gh.url)).await;
    assert_eq!(page.status, 403, "a weaker authentication than required");
    assert!(page.body.contains("`pwd`"), "{}", page.body);
    w.idp.tweak(move |c| {
        c["acr"] = json!("mfa");
        c["auth_time"] = json!(now - 3600);
    });
    let (page, _) = Browser::new().follow(&format!("{}/", w.gh.url)).await;
    assert_eq!(page.status, 502);
    assert!(
        page.body.contains("longer ago than max_age"),
        "{}",
        page.body
    );
    w.idp.tweak(move |c| {
        c["acr"] = json!("mfa");
        c["auth_time"] = json!(now);
    });
    let (page, _) = Browser::new().follow(&format!("{}/", w.gh.url)).await;
    assert_eq!(page.status, 200);
}

/// Signs in (`userinfo = true`, plus `settings`) with the ID token's claims changed by
/// `id` and the userinfo endpoint answering `info`; the page the browser lands on.
async fn signed_in_with(
    settings: &[(&'static str, &str)],
    id: impl Fn(&mut serde_json::Value) + Send + Sync + 'static,
    info: serde_json::Value,
) -> crate::support::Resp {
    let mut all = vec![("userinfo", "true")];
    all.extend_from_slice(settings);
    let w = world(&all).await;
    w.idp.tweak(id);
    *w.idp.state.userinfo.lock().unwrap() = Some(info);
    let (page, _) = Browser::new().follow(&format!("{}/", w.gh.url)).await;
    assert!(
        !w.idp.state.userinfo_calls.lock().unwrap().is_empty(),
        "userinfo was asked"
    );
    page
}

/// The headers the upstream saw on `page` (none when it is not the upstream's echo).
fn upstream_saw(page: &crate::support::Resp, name: &str) -> Vec<String> {
    serde_json::from_str(&page.body)
        .map(|echo| seen(&echo, name))
        .unwrap_or_default()
}

/// The signed ID token's own claims always win, by any path a mapping reads: a userinfo
/// claim spelled like a dotted path, or one under a name the ID token holds, or groups
/// the ID token says are held elsewhere, is never read in place of the token's.
#[tokio::test]
async fn userinfo_never_stands_in_for_an_id_token_claim_by_any_path() {
    // The user claim as a dotted path: the token's nested value, never userinfo's key.
    let page = signed_in_with(
        &[("user_claim", "attributes.login")],
        |c| c["attributes"] = json!({"login": "alice"}),
        json!({"sub": "alice", "attributes.login": "root"}),
    )
    .await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(upstream_saw(&page, "x-forwarded-user"), vec!["alice"]);
    // The preferred username alike.
    let page = signed_in_with(
        &[("preferred_username_claim", "profile.nick")],
        |c| c["profile"] = json!({"nick": "al"}),
        json!({"sub": "alice", "profile.nick": "admin"}),
    )
    .await;
    assert_eq!(
        upstream_saw(&page, "x-forwarded-preferred-username"),
        vec!["al"],
        "{page:?}"
    );
    // The token's `realm_access` lists no roles: a userinfo key spelled as the path adds
    // none.
    let page = signed_in_with(
        &[
            ("groups_claim", "realm_access.roles"),
            ("allowed_groups", "cluster-admins"),
        ],
        |c| {
            c.as_object_mut().unwrap().remove("groups");
            c["realm_access"] = json!({"account": "x"});
        },
        json!({"sub": "alice", "realm_access.roles": ["cluster-admins"]}),
    )
    .await;
    assert_eq!(page.status, 403, "{page:?}");
    // Groups overage: the token says its groups are held elsewhere, and userinfo's list is
    // not them; the sign-in is refused as without userinfo.
    let page = signed_in_with(
        &[("allowed_groups", "cluster-admins")],
        |c| {
            c.as_object_mut().unwrap().remove("groups");
            c["_claim_names"] = json!({"groups": "src1"});
            c["_claim_sources"] = json!({"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/x/getMemberObjects"}});
        },
        json!({"sub": "alice", "groups": ["cluster-admins"]}),
    )
    .await;
    assert_eq!(page.status, 502, "{page:?}");
    assert!(page.body.contains("groups overage"), "{}", page.body);
    // What the token says nothing about, userinfo still supplies (dotted names too).
    let page = signed_in_with(
        &[
            ("groups_claim", "realm_access.roles"),
            ("allowed_groups", "ops"),
        ],
        |c| {
            c.as_object_mut().unwrap().remove("groups");
        },
        json!({"sub": "alice", "realm_access.roles": ["ops"]}),
    )
    .await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(upstream_saw(&page, "x-forwarded-groups"), vec!["ops"]);
}

/// `email_verified` vouches only for the address of the source that sent it (OIDC Core
/// §5.1): the ID token's flag never for userinfo's address, userinfo's never for another
/// address than its own.
#[tokio::test]
async fn a_verification_flag_vouches_only_for_its_own_sources_address() {
    let domain_rule = [
        ("user_claim", "preferred_username"),
        ("allowed_email_domains", "corp.example"),
    ];
    // The ID token vouches for no address of its own; userinfo's comes unvouched.
    let page = signed_in_with(
        &domain_rule,
        |c| {
            c.as_object_mut().unwrap().remove("email");
            c["email_verified"] = json!(true);
        },
        json!({"sub": "alice", "email": "ceo@corp.example"}),
    )
    .await;
    assert_eq!(page.status, 403, "{page:?}");
    // The email as the user: userinfo's flag for another address refuses the sign-in.
    let page = signed_in_with(
        &[],
        |c| {
            c["email"] = json!("ceo@corp.example");
            c.as_object_mut().unwrap().remove("email_verified");
        },
        json!({"sub": "alice", "email": "alice@gmail.example", "email_verified": true}),
    )
    .await;
    assert_ne!(page.status, 200, "{page:?}");
    assert!(
        page.body.contains("ceo@corp.example") && page.body.contains("has not verified"),
        "{}",
        page.body
    );
    // A mapped email at another claim (`email_claim = upn`) pairs with the flag alike.
    let page = signed_in_with(
        &[("email_claim", "upn"), ("user_claim", "preferred_username")],
        |c| {
            let o = c.as_object_mut().unwrap();
            o.remove("email");
            o.remove("email_verified");
            c["upn"] = json!("ceo@corp.example");
        },
        json!({"sub": "alice", "upn": "alice@gmail.example", "email_verified": true}),
    )
    .await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(upstream_saw(&page, "x-forwarded-email").is_empty());
    // The same address in both, vouched for by userinfo: that counts.
    let page = signed_in_with(
        &domain_rule,
        |c| {
            c["email"] = json!("alice@corp.example");
            c.as_object_mut().unwrap().remove("email_verified");
        },
        json!({"sub": "alice", "email": "alice@corp.example", "email_verified": "true"}),
    )
    .await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(
        upstream_saw(&page, "x-forwarded-email"),
        vec!["alice@corp.example"]
    );
}

/// Rules that read claims (`required_claims`, and `hosted_domain`'s `hd`) read the signed
/// ID token only: userinfo's `hd`, or a `phone_number_verified` it sends, never satisfies
/// them.
#[tokio::test]
async fn rules_on_claims_are_met_by_the_signed_id_token_only() {
    let page = signed_in_with(
        &[("hosted_domain", "example.com")],
        |c| {
            c.as_object_mut().unwrap().remove("hd");
        },
        json!({"sub": "alice", "hd": "example.com"}),
    )
    .await;
    assert_eq!(page.status, 403, "{page:?}");
    assert!(page.body.contains("hd=example.com"), "{}", page.body);
    let page = signed_in_with(
        &[("required_claims", "phone_number_verified=true")],
        |c| c["phone_number"] = json!("+1 555 0100"),
        json!({"sub": "alice", "phone_number": "+1 555 0100", "phone_number_verified": true}),
    )
    .await;
    assert_eq!(page.status, 403, "{page:?}");
}
