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
