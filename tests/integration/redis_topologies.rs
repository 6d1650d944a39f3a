//! The redis store on the topologies production runs, with real Redis from the harness
//! (`support/redis.rs`): a Sentinel failover mid-traffic loses no session; a
//! three-master Cluster spreads sessions over every master and keeps serving a session
//! whose slot moves while it is in use (ASK, then MOVED); a user in 200 groups signs in
//! through nginx with its default buffers (and, as the control, with the cookie store
//! the callback's cookies are too big for them); an ACL user's password comes from a
//! file or the environment, a wrong one is a 503 naming Redis and its refusal, and one
//! given as a flag is refused at start-up.
//!
//! Harness calls block, so every test runs on the multi-thread runtime and makes them
//! through [`blocking`]: gatehouse's Redis client runs on this runtime too, and must
//! keep running while the harness waits for a failover or moves a slot.

use crate::support::idp::{Mint, TestIdp};
use crate::support::ingress::{free_port, skip_unless_ingress, Ingress, Kind};
use crate::support::redis::{self, Conn, RedisServer, Reply};
use crate::support::redis::{Cluster, SentinelSet};
use crate::support::upstream::{seen, Upstream};
use crate::support::{config, start, start_unready, Browser, RealGatehouse, Resp};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a replica may serve a session from its cache (`session::redis::CACHE_FOR`).
const CACHE_FOR: Duration = gatehouse::session::redis::CACHE_FOR;

/// Runs blocking harness code without stalling the runtime's other worker.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Signs `sub` in at gatehouse `gh` (the test IdP logs in whoever `next_sub` names).
async fn sign_in(idp: &TestIdp, gh: &str, sub: &str) -> Browser {
    *idp.state.next_sub.lock().unwrap() = sub.to_string();
    let b = Browser::new();
    let (resp, visited) = b.follow(&format!("{gh}/home/{sub}")).await;
    assert_eq!(resp.status, 200, "{sub} signs in: {resp:?}\n{visited:?}");
    assert_eq!(
        seen(&resp.json(), "x-forwarded-user"),
        vec![format!("{sub}@example.test")]
    );
    b
}

/// One request as an API client would send it (a login would be a 401, not a redirect).
async fn api_get(b: &Browser, url: &str) -> Resp {
    b.send(reqwest::Method::GET, url, &[("accept", "application/json")])
        .await
}

/// The session entries (`gatehouse:{<id>}:s`) a node holds.
fn session_keys(node: &RedisServer) -> Vec<String> {
    let reply = node.cmd(&["KEYS", "gatehouse:{*}:s"]);
    let mut keys: Vec<String> = reply.items().iter().filter_map(Reply::text).collect();
    keys.sort();
    keys
}

/// Whether `r` is gatehouse's "session store down" answer naming Redis.
fn names_redis(r: &Resp) -> bool {
    r.status == 503
        && r.headers
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or("").contains("json"))
        && r.json()["error"] == "session_store_unavailable"
        && r.json()["message"].as_str().unwrap_or("").contains("Redis")
}

/// What a request of the traffic loop got, and when it was sent.
struct Outcome {
    sent: Instant,
    user: String,
    status: u16,
    body: String,
}

/// Users sending requests one after another each, round-robin over `replicas`, until
/// `stop` is set (30 s at most).
fn traffic(
    users: Arc<Vec<(String, Browser)>>,
    replicas: Vec<String>,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Vec<Outcome>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut loops = Vec::new();
        for i in 0..users.len() {
            let (users, replicas, stop, out) = (
                Arc::clone(&users),
                replicas.clone(),
                Arc::clone(&stop),
                Arc::clone(&out),
            );
            loops.push(tokio::spawn(async move {
                let (user, b) = &users[i];
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let gh = &replicas[(i + n) % replicas.len()];
                    let sent = Instant::now();
                    let r = api_get(b, &format!("{gh}/work/{user}/{n}")).await;
                    out.lock().unwrap().push(Outcome {
                        sent,
                        user: user.clone(),
                        status: r.status,
                        body: r.body,
                    });
                    n += 1;
                }
            }));
        }
        for l in loops {
            l.await.unwrap();
        }
    })
}

/// Polls until `b` gets 200 as `user` from `url` (10 s at most).
async fn until_ok(b: &Browser, url: &str, user: &str) -> Resp {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = api_get(b, url).await;
        if r.status == 200 {
            assert_eq!(
                seen(&r.json(), "x-forwarded-user"),
                vec![format!("{user}@example.test")]
            );
            return r;
        }
        assert!(
            r.status == 503 && names_redis(&r),
            "{user}: only 200 or a 503 naming Redis, got {} {}",
            r.status,
            r.body
        );
        assert!(
            Instant::now() < deadline,
            "{user} did not get 200 again within 10 s: {} {}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_mid_traffic_loses_no_session() {
    if redis::skip_unless_available() {
        return;
    }
    let mut set = blocking(SentinelSet::start);
    let idp = TestIdp::start().await;
    let up = Upstream::start().await;
    let addrs = set.sentinel_addrs().join(",");
    let settings = [
        ("session_store", "redis"),
        ("redis_sentinel_master", set.master_name()),
        ("redis_sentinel_addrs", addrs.as_str()),
    ];
    // Two replicas sharing the Sentinel set, as a Deployment with two pods would.
    let a = start(config(&up.url, &idp.issuer, &settings)).await;
    let b = start(config(&up.url, &idp.issuer, &settings)).await;
    let replicas = vec![a.url.clone(), b.url.clone()];

    let mut users = Vec::new();
    for i in 0..4 {
        let sub = format!("user{i}");
        let gh = &replicas[i % 2];
        let browser = sign_in(&idp, gh, &sub).await;
        users.push((sub, browser));
    }
    let old = blocking(|| set.current_master_port());
    blocking(|| {
        // WAIT counts only this connection's writes: one write after gatehouse's, on the
        // same replication stream, acknowledged by the replica, means theirs arrived too.
        let mut c = Conn::open(old, None).unwrap();
        assert_eq!(
            c.cmd(&["SET", "test:marker", "1"]).unwrap(),
            Reply::Status("OK".into())
        );
        assert_eq!(c.cmd(&["WAIT", "1", "2000"]).unwrap(), Reply::Int(1));
    });
    let before = blocking(|| session_keys(set.server(old)));
    assert_eq!(
        before.len(),
        users.len(),
        "one entry per session: {before:?}"
    );
    let users = Arc::new(users);
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let loop_task = traffic(
        Arc::clone(&users),
        replicas.clone(),
        Arc::clone(&stop),
        Arc::clone(&outcomes),
    );
    // Traffic flows before the master dies.
    until_answered(&outcomes, 4 * users.len()).await;
    let killed_at = Instant::now();
    let (set, new) = tokio::task::spawn_blocking(move || {
        let killed = set.kill_master();
        assert_eq!(killed, old);
        let new = set.wait_for_failover(old, Duration::from_secs(15));
        (set, new)
    })
    .await
    .unwrap();
    let failed_over_at = Instant::now();
    assert_ne!(new, old);
    // Sentinel declares the master down after a second (down-after-milliseconds), so by
    // now no replica serves any session from its cache: each 200 below was read from
    // the new master.
    assert!(killed_at.elapsed() > CACHE_FOR);

    for (i, (user, browser)) in users.iter().enumerate() {
        let gh = &replicas[i % 2];
        until_ok(browser, &format!("{gh}/after/{user}"), user).await;
        let other = &replicas[(i + 1) % 2];
        until_ok(browser, &format!("{other}/after/{user}"), user).await;
    }
    stop.store(true, Ordering::SeqCst);
    loop_task.await.unwrap();
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());

    let during = outcomes
        .iter()
        .filter(|o| o.sent >= killed_at && o.sent < failed_over_at)
        .count();
    assert!(during > 0, "the traffic ran through the failover");
    let bad: Vec<String> = outcomes
        .iter()
        .filter(|o| {
            !(o.status == 200
                || o.status == 503
                    && serde_json::from_str::<serde_json::Value>(&o.body)
                        .is_ok_and(|j| j["message"].as_str().unwrap_or("").contains("Redis")))
        })
        .map(|o| format!("{} {} {}", o.user, o.status, o.body))
        .collect();
    assert!(
        bad.is_empty(),
        "during the failover only 200 or a 503 naming Redis, never 500, 401 or a login: {bad:#?}\n{}",
        set.logs()
    );
    eprintln!(
        "{} requests, {} during the failover ({:?}), {} answered 503",
        outcomes.len(),
        during,
        failed_over_at - killed_at,
        outcomes.iter().filter(|o| o.status == 503).count()
    );

    // Every session is on the new master; a new sign-in lands there too.
    let after = blocking(|| session_keys(set.server(new)));
    assert_eq!(after, before, "no session lost in the failover");
    let late = sign_in(&idp, &a.url, "late").await;
    let r = api_get(&late, &format!("{}/late", b.url)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let now = blocking(|| session_keys(set.server(new)));
    assert_eq!(now.len(), before.len() + 1, "{now:?}");
}

/// Polls until the traffic loop has recorded `n` answers (10 s at most).
async fn until_answered(out: &Mutex<Vec<Outcome>>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.lock().unwrap().len() < n {
        assert!(Instant::now() < deadline, "the traffic loop got no answers");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The key a sign-in added, given the keys before and after it.
fn added(before: &[String], after: &[String]) -> String {
    let new: Vec<&String> = after.iter().filter(|k| !before.contains(k)).collect();
    assert_eq!(new.len(), 1, "one new session entry: {new:?}");
    new[0].clone()
}

/// Every session entry in the cluster, by master port.
fn cluster_sessions(cluster: &Cluster) -> Vec<(u16, Vec<String>)> {
    cluster
        .node_ports()
        .into_iter()
        .map(|p| (p, session_keys(cluster.node(p))))
        .collect()
}

fn all_keys(by_node: &[(u16, Vec<String>)]) -> Vec<String> {
    let mut v: Vec<String> = by_node.iter().flat_map(|(_, k)| k.clone()).collect();
    v.sort();
    v
}

/// Polls until the test IdP has answered `n` more refreshes than `from` (15 s at most),
/// each of them a round of Redis calls in the session's slot (lock, read, write, free).
async fn until_refreshed(
    idp: &TestIdp,
    from: usize,
    n: usize,
    phase: &str,
    out: &Mutex<Vec<Outcome>>,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(15);
    while idp.refreshes() < from + n {
        assert!(
            Instant::now() < deadline,
            "{phase}: {} refreshes in 15 s, expected {n}; the last answer: {:?}",
            idp.refreshes() - from,
            out.lock()
                .unwrap()
                .last()
                .map(|o| format!("{} {}", o.status, o.body))
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    idp.refreshes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_spreads_sessions_over_every_master_and_follows_a_moving_slot() {
    if redis::skip_unless_available() {
        return;
    }
    let cluster = blocking(Cluster::start);
    let idp = TestIdp::start().await;
    // Tokens live 20 s and are refreshed 60 s ahead: every request that reads the
    // session from Redis refreshes it, so the traffic below takes the refresh lock,
    // reads and rewrites the entry in the slot that moves.
    idp.set_mint(Mint {
        ttl: 20,
        ..Mint::default()
    });
    let up = Upstream::start().await;
    let seeds = cluster.seed_nodes().join(",");
    let gh = start(config(
        &up.url,
        &idp.issuer,
        &[
            ("session_store", "redis"),
            ("redis_cluster_nodes", seeds.as_str()),
            ("refresh_before_secs", "60"),
        ],
    ))
    .await;

    // Sign users in until every master holds sessions (24 at least).
    let mut users: Vec<(String, Browser, String)> = Vec::new();
    let mut by_node = blocking(|| cluster_sessions(&cluster));
    while users.len() < 24 || by_node.iter().any(|(_, keys)| keys.is_empty()) {
        assert!(
            users.len() < 60,
            "sessions never reached every master: {by_node:?}"
        );
        let sub = format!("user{}", users.len());
        let b = sign_in(&idp, &gh.url, &sub).await;
        let now = blocking(|| cluster_sessions(&cluster));
        let key = added(&all_keys(&by_node), &all_keys(&now));
        users.push((sub, b, key));
        by_node = now;
    }
    for (port, keys) in &by_node {
        assert!(!keys.is_empty(), "master {port} holds no session");
        for k in keys {
            assert_eq!(blocking(|| cluster.master_port_for_key(k)), *port);
        }
    }

    // The first user's slot moves to another master while the user works.
    let (user, b, key) = users.remove(0);
    let slot = blocking(|| cluster.slot_for_key(&key));
    let from = blocking(|| cluster.master_port_for_key(&key));
    let to = *cluster.node_ports().iter().find(|p| **p != from).unwrap();
    // The test IdP mints refreshed tokens for `next_sub`, which must stay the user's.
    *idp.state.next_sub.lock().unwrap() = user.clone();
    let mover = Arc::new(vec![(user.clone(), b)]);
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let loop_task = traffic(
        Arc::clone(&mover),
        vec![gh.url.clone()],
        Arc::clone(&stop),
        Arc::clone(&outcomes),
    );
    let n = until_refreshed(&idp, idp.refreshes(), 2, "before the move", &outcomes).await;
    // Step 1: the slot is migrating, the entry still on its old master; new keys (the
    // refresh lock) are created on the new one (ASK).
    blocking(|| cluster.start_slot_migration(slot, to));
    let n = until_refreshed(&idp, n, 3, "slot migrating", &outcomes).await;
    // Step 2: the entry itself moves; the old master answers ASK for it.
    blocking(|| {
        let reply =
            cluster
                .node(from)
                .cmd(&["MIGRATE", "127.0.0.1", &to.to_string(), &key, "0", "5000"]);
        assert_eq!(reply, Reply::Status("OK".into()), "MIGRATE {key}");
        assert_eq!(
            cluster.node(from).cmd(&["GET", &key]),
            Reply::Error(format!("ASK {slot} 127.0.0.1:{to}")),
            "the old master sends clients on for the entry"
        );
    });
    let n = until_refreshed(&idp, n, 3, "entry migrated (ASK)", &outcomes).await;
    // Step 3: the new master owns the slot; the old one answers MOVED.
    blocking(|| cluster.finish_slot_migration(slot, to));
    until_refreshed(&idp, n, 3, "slot moved (MOVED)", &outcomes).await;
    stop.store(true, Ordering::SeqCst);
    loop_task.await.unwrap();

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let bad: Vec<String> = outcomes
        .iter()
        .filter(|o| o.status != 200)
        .map(|o| format!("{} {}", o.status, o.body))
        .collect();
    assert!(
        bad.is_empty(),
        "every answer 200 while the slot moved ({} requests): {bad:#?}",
        outcomes.len()
    );
    assert_eq!(blocking(|| cluster.master_port_for_key(&key)), to);
    let on_new = blocking(|| session_keys(cluster.node(to)));
    assert!(on_new.contains(&key), "{key} is on {to}: {on_new:?}");

    // Every user still works, the mover included.
    for (sub, b, _) in mover
        .iter()
        .map(|(s, b)| (s, b, ()))
        .chain(users.iter().map(|(s, b, _)| (s, b, ())))
    {
        *idp.state.next_sub.lock().unwrap() = sub.clone();
        let r = api_get(b, &format!("{}/finally/{sub}", gh.url)).await;
        assert_eq!(r.status, 200, "{sub}: {} {}", r.status, r.body);
        assert_eq!(
            seen(&r.json(), "x-forwarded-user"),
            vec![format!("{sub}@example.test")]
        );
    }
}

/// A random Entra-style object id (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`): groups of
/// these do not compress away.
fn object_id() -> String {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).unwrap();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// nginx as a plain reverse proxy in front of gatehouse: no buffer tuning at all, so
/// `proxy_buffer_size` (one page) and `large_client_header_buffers` (4 x 8k) are the
/// defaults a newcomer gets.
fn plain_nginx(port: u16, gatehouse: std::net::SocketAddr) -> Ingress {
    Ingress::start_with(Kind::Nginx, port, |_| {
        format!(
            r#"worker_processes 1;
pid nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/f;
    uwsgi_temp_path tmp/u; scgi_temp_path tmp/s;
    server {{
        listen 127.0.0.1:{port};
        location = /ingress-ready {{ return 200 "ready\n"; }}
        location / {{
            proxy_pass http://{gatehouse};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
        }}
    }}
}}
"#
        )
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

/// A file in the temp directory holding `text`, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "gatehouse-{name}-{}-{}",
            std::process::id(),
            gatehouse::util::random_token(6)
        ));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether `text` names Redis refusing the credentials.
fn names_auth_failure(text: &str) -> bool {
    text.contains("Redis") && (text.contains("WRONGPASS") || text.contains("username-password"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_signs_in_with_a_password_file_and_a_wrong_password_is_a_503_naming_redis() {
    if redis::skip_unless_available() {
        return;
    }
    let server = blocking(|| RedisServer::start_with_auth("gatehouse", "s3cret-acl"));
    let idp = TestIdp::start().await;
    let up = Upstream::start().await;
    let url = server.url();
    let good = TempFile::new("redis-password", "s3cret-acl\n");
    let gh = start(config(
        &up.url,
        &idp.issuer,
        &[
            ("session_store", "redis"),
            ("redis_url", url.as_str()),
            ("redis_username", "gatehouse"),
            ("redis_password_file", good.path()),
        ],
    ))
    .await;
    let b = sign_in(&idp, &gh.url, "alice").await;
    assert_eq!(blocking(|| session_keys(&server)).len(), 1);

    // The same Redis with a wrong password: not ready, and the signed-in user's
    // requests get a 503 that names Redis and its refusal, never a login or a 500.
    let bad = TempFile::new("redis-password", "not-the-password\n");
    let wrong = start_unready(config(
        &up.url,
        &idp.issuer,
        &[
            ("session_store", "redis"),
            ("redis_url", url.as_str()),
            ("redis_username", "gatehouse"),
            ("redis_password_file", bad.path()),
        ],
    ))
    .await;
    let readyz = format!("{}/readyz", wrong.url);
    let deadline = Instant::now() + Duration::from_secs(10);
    let reason = loop {
        let r = Browser::new().get(&readyz).await;
        assert_eq!(r.status, 503, "{}", r.body);
        let reason = r.json()["reason"].as_str().unwrap_or("").to_string();
        if names_auth_failure(&reason) {
            break reason;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never named the refused password: {reason}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("/readyz with a wrong password: {reason}");
    assert!(!reason.contains("not-the-password"), "{reason}");
    let r = api_get(&b, &format!("{}/reports", wrong.url)).await;
    assert!(names_redis(&r), "{} {}", r.status, r.body);
    let message = r.json()["message"].as_str().unwrap_or("").to_string();
    assert!(names_auth_failure(&message), "{message}");
    let page = b.get(&format!("{}/reports", wrong.url)).await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(names_auth_failure(&page.body), "{}", page.body);
    // A new sign-in cannot be kept either: 503 at the callback, not a loop.
    *idp.state.next_sub.lock().unwrap() = "bob".into();
    let (end, _) = Browser::new().follow(&format!("{}/", wrong.url)).await;
    assert_eq!(end.status, 503, "{}", end.body);
    assert!(end.body.contains("Redis"), "{}", end.body);
}

/// Runs the real binary with `args` (and `env`) and waits for it to exit (10 s at most);
/// (exit code, stderr).
fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    for (k, _) in std::env::vars() {
        if k.starts_with("GATEHOUSE_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gatehouse {args:?} was still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    (status.code(), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_password_never_comes_from_a_flag_but_does_from_the_environment() {
    if redis::skip_unless_available() {
        return;
    }
    let server = blocking(|| RedisServer::start_with_auth("gatehouse", "s3cret-acl"));
    let idp = TestIdp::start().await;
    let up = Upstream::start().await;
    let url = server.url();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let common = [
        "serve",
        "--listen",
        listen.as_str(),
        "--upstream",
        up.url.as_str(),
        "--issuer-url",
        idp.issuer.as_str(),
        "--client-id",
        crate::support::idp::CLIENT_ID,
        "--client-secret",
        crate::support::idp::CLIENT_SECRET,
        "--cookie-secret",
        crate::support::COOKIE_SECRET,
        "--cookie-secure",
        "false",
        "--session-store",
        "redis",
        "--redis-url",
        url.as_str(),
        "--redis-username",
        "gatehouse",
    ];
    // As a flag, every user of the machine could read it in `ps`: refused at start-up.
    let mut args = common.to_vec();
    args.extend(["--redis-password", "s3cret-acl"]);
    let (code, stderr) = blocking(|| run_to_exit(&args, &[]));
    assert!(code.is_some_and(|c| c != 0), "exit {code:?}: {stderr}");
    assert!(
        stderr.contains("redis_password") && stderr.contains("redis_password_file"),
        "the refusal names the setting and the way to give it: {stderr}"
    );
    assert!(
        !stderr.contains("s3cret-acl"),
        "the password is not echoed: {stderr}"
    );

    // From the environment it works: the real binary signs a user in.
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(common)
        .env("GATEHOUSE_REDIS_PASSWORD", "s3cret-acl")
        .env("GATEHOUSE_WORKERS", "2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let real = RealGatehouse {
        child,
        url: format!("http://{listen}"),
    };
    crate::support::wait_until_ok(&format!("{}/readyz", real.url)).await;
    let b = sign_in(&idp, &real.url, "carol").await;
    let r = api_get(&b, &format!("{}/again", real.url)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(blocking(|| session_keys(&server)).len(), 1);
}
