//! A user in 200 groups (random object ids) behind nginx with its default buffers: the
//! redis store's ticket cookie gets through, the cookie store's session does not.

use super::blocking;
use crate::flow::object_id;
use crate::support::idp::TestIdp;
use crate::support::ingress::{free_port, plain_nginx_conf, skip_unless_ingress, Ingress, Kind};
use crate::support::redis::{self, RedisServer};
use crate::support::upstream::{seen, Upstream};
use crate::support::{config, start, Browser, Resp};

/// nginx as a plain reverse proxy in front of gatehouse: no buffer tuning at all, so
/// `proxy_buffer_size` (one page) and `large_client_header_buffers` (4 x 8k) are the
/// defaults a newcomer gets.
fn plain_nginx(port: u16, gatehouse: std::net::SocketAddr) -> Ingress {
    Ingress::start_with(Kind::Nginx, port, |_| {
        let locations = format!(
            r#"location / {{
            proxy_pass http://{gatehouse};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
        }}
"#
        );
        plain_nginx_conf(port, &locations, "")
    })
}

/// A user in 200 groups (random object ids) signs in through nginx in front of
/// gatehouse with `store` as its session store; returns the final answer, every URL the
/// browser visited, the browser, and nginx (for its log).
async fn two_hundred_groups_through_nginx(store: &str) -> (Resp, Vec<String>, Browser, Ingress) {
    let idp = TestIdp::start().await;
    let groups: Vec<String> = (0..200).map(|_| object_id()).collect();
    let minted = groups.clone();
    idp.tweak(move |c| c["groups"] = minted.clone().into());
    let up = Upstream::start().await;
    let redis = (store == "redis").then(|| blocking(RedisServer::start));
    let url = redis.as_ref().map(RedisServer::url).unwrap_or_default();
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/oauth2/callback");
    let mut settings = vec![
        ("session_store", store),
        ("redirect_url", callback.as_str()),
        ("trusted_proxies", "127.0.0.1"),
    ];
    if store == "redis" {
        settings.push(("redis_url", url.as_str()));
    }
    let gh = start(config(&up.url, &idp.issuer, &settings)).await;
    let addr = gh.addr;
    let nginx = blocking(|| plain_nginx(port, addr));
    let b = Browser::new();
    let (resp, visited) = b.follow(&format!("{}/reports/q3", nginx.url)).await;
    for v in &visited {
        assert!(
            v.starts_with(&nginx.url) || v.starts_with(&idp.issuer),
            "every gatehouse URL goes through nginx: {visited:?}"
        );
    }
    if resp.status == 200 {
        let echo = resp.json();
        assert_eq!(echo["path"], "/reports/q3");
        assert_eq!(seen(&echo, "x-forwarded-groups"), vec![groups.join(",")]);
        assert_eq!(seen(&echo, "x-forwarded-user"), vec!["alice@example.test"]);
    }
    drop((gh, redis));
    (resp, visited, b, nginx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_group_user_signs_in_through_nginx_with_default_buffers_on_the_redis_store() {
    if redis::skip_unless_available() || skip_unless_ingress(Kind::Nginx) {
        return;
    }
    let (resp, visited, b, nginx) = two_hundred_groups_through_nginx("redis").await;
    assert_eq!(
        resp.status,
        200,
        "{visited:?}\n{}\nnginx: {}",
        resp.body,
        nginx.log()
    );
    assert!(
        visited.iter().any(|v| v.contains("/oauth2/callback")),
        "{visited:?}"
    );
    // The cookie carries only the ticket, whatever the token's size.
    let cookie = b.cookie("_gatehouse").expect("the session cookie");
    assert!(cookie.len() < 200, "{} bytes: {cookie}", cookie.len());
    assert!(
        b.jar
            .lock()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("_gatehouse_")),
        "no chunked cookies"
    );
}

/// The control: the same sign-in with the session in cookies fails at the callback,
/// because nginx cannot take gatehouse's answer headers in its default buffer. This is
/// what the redis store is for, and proves the test above meets the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_200_group_sign_in_on_the_cookie_store_meets_nginxs_default_buffer() {
    if skip_unless_ingress(Kind::Nginx) {
        return;
    }
    let (resp, visited, _, nginx) = two_hundred_groups_through_nginx("cookie").await;
    assert_eq!(resp.status, 502, "{visited:?}\n{}", resp.body);
    assert!(
        visited
            .last()
            .is_some_and(|v| v.contains("/oauth2/callback")),
        "it fails at the callback: {visited:?}"
    );
    assert!(
        nginx.log().contains("upstream sent too big header"),
        "{}",
        nginx.log()
    );
}
