//! Live reload against the real binary: a changed `allowed_groups` applies to the next
//! request after SIGHUP while the sessions and the WebSockets the new rules allow carry
//! on (those they refuse are closed, 4003); a broken file
//! is refused with every problem logged and the running configuration stays; a rotated
//! cookie secret (new first, old after) keeps existing sessions, in both stores; a new
//! client secret file is used for the next token call; settings that cannot change while
//! running are named and keep their values; `watch_config` reloads on a Kubernetes-style
//! ConfigMap update without a signal.

use crate::proxy::websocket;
use crate::support::idp::{self, TestIdp};
use crate::support::redis::RedisServer;
use crate::support::upstream::{seen, Upstream};
use crate::support::{wait_until_ok, Browser, Resp, COOKIE_SECRET};
use futures_util::{SinkExt, StreamExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// A second cookie secret (base64 of 32 random bytes).
const OTHER_SECRET: &str = "q3Vh8cT0m5Yb2LwXnJ4eR7sKfA9dG1pZoU6iE0yHcWM";

/// The real binary with `--config <file>`, its log kept in a file to read.
pub(crate) struct Served {
    child: std::process::Child,
    pub(crate) url: String,
    dir: crate::support::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    pub(crate) fn config(&self) -> PathBuf {
        self.dir.path().join("gatehouse.toml")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gatehouse.log")).unwrap_or_default()
    }

    /// Stops the process and starts it again on the same files.
    async fn restart(mut self) -> Served {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let config = self.config();
        let port: u16 = self
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap();
        let dir = std::mem::replace(&mut self.dir, crate::support::TempDir::new("reload-old"));
        serve_path(dir, &config, port).await
    }

    pub(crate) fn hangup(&self) {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "SIGHUP sent");
    }

    /// Waits until the log holds `needle` `times` times (a reload's outcome).
    pub(crate) async fn logged(&self, needle: &str, times: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let log = self.log();
            if log.matches(needle).count() >= times {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "the log never said {needle:?} {times} time(s):\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Writes `text` to `path` in one step (a rename), as a deploy tool would.
pub(crate) fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The configuration file's common part: the test IdP, plain-http cookies.
pub(crate) fn base(idp: &TestIdp, upstream: &Upstream, port: u16) -> String {
    format!(
        "listen = \"127.0.0.1:{port}\"\nupstream = \"{}\"\nissuer_url = \"{}\"\nclient_id = \"{}\"\ncookie_secure = false\n",
        upstream.url,
        idp.issuer,
        idp::CLIENT_ID
    )
}

/// Starts the binary on `file_text` (written to its config file in a new directory,
/// beside `files`), listening on `port`.
pub(crate) async fn serve(file_text: &str, port: u16, files: &[(&str, &str)]) -> Served {
    let dir = crate::support::TempDir::new("reload");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(&config, file_text).unwrap();
    serve_path(dir, &config, port).await
}

/// Starts the binary with `--config <config>`, its log in `dir`.
async fn serve_path(dir: crate::support::TempDir, config: &Path, port: u16) -> Served {
    let log = std::fs::File::create(dir.path().join("gatehouse.log")).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .current_dir(dir.path())
        .env("GATEHOUSE_WORKERS", "2")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the gatehouse binary");
    let url = format!("http://127.0.0.1:{port}");
    let served = Served { child, url, dir };
    wait_until_ok(&format!("{}/readyz", served.url)).await;
    served
}

pub(crate) fn free_port() -> u16 {
    crate::support::redis::free_port()
}

/// Signs `sub` in (the test IdP logs in whoever `next_sub` names, in groups admins, dev).
pub(crate) async fn sign_in(idp: &TestIdp, gh: &str, sub: &str) -> Browser {
    *idp.state.next_sub.lock().unwrap() = sub.to_string();
    let b = Browser::new();
    let (resp, visited) = b.follow(&format!("{gh}/app")).await;
    assert_eq!(resp.status, 200, "{sub} signs in: {resp:?}\n{visited:?}");
    b
}

async fn api_get(b: &Browser, url: &str) -> Resp {
    b.send(reqwest::Method::GET, url, &[("accept", "application/json")])
        .await
}

/// Waits until `b`'s request to `url` answers `status` (a reload reached the workers).
async fn until_status(b: &Browser, url: &str, status: u16) -> Resp {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = api_get(b, url).await;
        if r.status == status {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "never {status} at {url}; last {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_new_allowed_groups_to_the_next_request_keeps_allowed_websockets_and_sessions_and_closes_refused_ones(
) {
    let (idp, upstream) = (TestIdp::start().await, Upstream::start().await);
    // bob is also in ops; alice (admins, dev) is not.
    idp.tweak(|claims| {
        if claims["sub"] == "bob" {
            claims["groups"] = serde_json::json!(["admins", "ops"]);
        }
    });
    let port = free_port();
    let common = base(&idp, &upstream, port);
    let groups = |g: &str| {
        format!(
            "{common}client_secret = \"{}\"\ncookie_secret = \"{COOKIE_SECRET}\"\nallowed_groups = [\"{g}\"]\n",
            idp::CLIENT_SECRET
        )
    };
    let gh = serve(&groups("admins"), port, &[]).await;
    let alice = sign_in(&idp, &gh.url, "alice").await;
    let bob = sign_in(&idp, &gh.url, "bob").await;
    let (_, _, mut alices_ws) = websocket(&gh.url, "/ws", &alice.cookie_header())
        .await
        .expect("a WebSocket through gatehouse");
    let (_, _, mut bobs_ws) = websocket(&gh.url, "/ws", &bob.cookie_header())
        .await
        .expect("a WebSocket through gatehouse");

    // Only ops is allowed now: alice's next request is refused by the new rule.
    write(&gh.config(), &groups("ops"));
    gh.hangup();
    let refused = until_status(&alice, &format!("{}/app", gh.url), 403).await;
    assert!(refused.body.contains("allowed_groups"), "{refused:?}");
    gh.logged("configuration reloaded", 1).await;
    // The audit trail records that the rules may have changed.
    gh.logged("\"event\":\"config_reloaded\",\"trigger\":\"signal\"", 1)
        .await;

    // bob's WebSocket, opened before the reload, is still allowed and carries messages
    // both ways.
    bobs_ws
        .send(Message::text("after the reload"))
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(5), bobs_ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => assert!(t.as_str().contains("after the reload"), "{t}"),
        other => panic!("an allowed WebSocket did not survive the reload: {other:?}"),
    }
    assert_eq!(api_get(&bob, &format!("{}/app", gh.url)).await.status, 200);
    // alice's is closed: the new rules would not let it through (4003), and the audit
    // trail says whose.
    match tokio::time::timeout(Duration::from_secs(5), alices_ws.next()).await {
        Ok(Some(Ok(Message::Close(Some(frame))))) => assert_eq!(u16::from(frame.code), 4003),
        other => panic!("a refused WebSocket stayed open: {other:?}"),
    }
    let log = gh.logged("\"event\":\"websocket_revoked\"", 1).await;
    let revoked = log
        .lines()
        .find(|l| l.contains("websocket_revoked"))
        .unwrap();
    assert!(revoked.contains("alice@example.test"), "{revoked}");
    assert_eq!(
        log.matches("websocket_revoked").count(),
        1,
        "bob's stays: {log}"
    );

    // And the session survived: allowed again, with the cookie alice already has.
    write(&gh.config(), &groups("dev"));
    gh.hangup();
    let back = until_status(&alice, &format!("{}/app", gh.url), 200).await;
    assert_eq!(
        seen(&back.json(), "x-forwarded-user"),
        vec!["alice@example.test"]
    );
    gh.logged("configuration reloaded", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_is_refused_with_every_problem_listed_and_the_running_configuration_stays() {
    let (idp, upstream) = (TestIdp::start().await, Upstream::start().await);
    let port = free_port();
    let metrics_port = free_port();
    let common = format!(
        "{}metrics_listen = \"127.0.0.1:{metrics_port}\"\n",
        base(&idp, &upstream, port)
    );
    let good = format!(
        "{common}client_secret = \"{}\"\ncookie_secret = \"{COOKIE_SECRET}\"\nallowed_groups = [\"admins\"]\n",
        idp::CLIENT_SECRET
    );
    let gh = serve(&good, port, &[]).await;
    let metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    let alice = sign_in(&idp, &gh.url, "alice").await;

    // Three problems at once: an unknown key, a weak cookie secret, a bad upstream; and
    // a rule that would lock alice out if any of it were applied.
    write(
        &gh.config(),
        &format!(
            "{}client_secret = \"{}\"\ncookie_secret = \"short\"\nallowed_groups = [\"ops\"]\nallowed_grups = [\"x\"]\n",
            common.replace(&upstream.url, "not a url"),
            idp::CLIENT_SECRET
        ),
    );
    gh.hangup();
    let log = gh.logged("configuration reload refused", 1).await;
    let refusal = log
        .lines()
        .find(|l| l.contains("configuration reload refused"))
        .unwrap()
        .to_string();
    for problem in ["allowed_grups", "cookie_secret", "upstream"] {
        assert!(refusal.contains(problem), "{problem} is named: {refusal}");
    }
    assert!(refusal.contains("3 problem"), "{refusal}");
    gh.logged("\"event\":\"config_reload_refused\"", 1).await;
    assert!(
        !refusal.contains("short\""),
        "a secret is never echoed: {refusal}"
    );
    let still = api_get(&alice, &format!("{}/app", gh.url)).await;
    assert_eq!(
        still.status, 200,
        "the running configuration stays: {still:?}"
    );

    // An unreadable file is a refusal too, not a crash.
    std::fs::write(gh.config(), "this is = = not toml").unwrap();
    gh.hangup();
    gh.logged("configuration reload refused", 2).await;
    assert_eq!(
        api_get(&alice, &format!("{}/app", gh.url)).await.status,
        200
    );
    // The failures show where a Prometheus alert looks.
    let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    assert!(
        text.contains("gatehouse_config_reloads_total{result=\"failed\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("gatehouse_config_last_reload_successful 0"),
        "{text}"
    );

    // Fixed, the next SIGHUP applies it.
    write(&gh.config(), &good.replace("[\"admins\"]", "[\"ops\"]"));
    gh.hangup();
    until_status(&alice, &format!("{}/app", gh.url), 403).await;
    let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    assert!(
        text.contains("gatehouse_config_reloads_total{result=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("gatehouse_config_last_reload_successful 1"),
        "{text}"
    );
}

/// With `store` ("cookie" or a Redis URL), a rotated cookie secret keeps sessions.
async fn rotation_keeps_sessions(store: Option<&RedisServer>) {
    let (idp, upstream) = (TestIdp::start().await, Upstream::start().await);
    let port = free_port();
    let store_lines = match store {
        Some(r) => format!("session_store = \"redis\"\nredis_url = \"{}\"\n", r.url()),
        None => String::new(),
    };
    let text = format!(
        "{}client_secret = \"{}\"\ncookie_secret_file = \"cookie.secret\"\n{store_lines}",
        base(&idp, &upstream, port),
        idp::CLIENT_SECRET
    );
    let gh = serve(
        &text,
        port,
        &[("cookie.secret", &format!("{COOKIE_SECRET}\n"))],
    )
    .await;
    let secret_file = gh.dir.path().join("cookie.secret");
    let alice = sign_in(&idp, &gh.url, "alice").await;

    // Rotation, step 1: the new secret first, the old one after it.
    write(&secret_file, &format!("{OTHER_SECRET}\n{COOKIE_SECRET}\n"));
    gh.hangup();
    gh.logged("configuration reloaded", 1).await;
    let r = api_get(&alice, &format!("{}/app", gh.url)).await;
    assert_eq!(
        r.status, 200,
        "alice's session (old secret) still opens: {r:?}"
    );
    let bob = sign_in(&idp, &gh.url, "bob").await;

    // Step 2: the old secret goes. Bob's session was sealed with the new one.
    write(&secret_file, &format!("{OTHER_SECRET}\n"));
    gh.hangup();
    gh.logged("configuration reloaded", 2).await;
    let r = until_status(&alice, &format!("{}/app", gh.url), 401).await;
    assert!(
        r.body.contains("sign in") || r.body.contains("login"),
        "{r:?}"
    );
    let r = api_get(&bob, &format!("{}/app", gh.url)).await;
    assert_eq!(
        r.status, 200,
        "bob's session, sealed with the new secret: {r:?}"
    );
    assert_eq!(
        seen(&r.json(), "x-forwarded-user"),
        vec!["bob@example.test"]
    );

    // A restart (a rolling deploy after the rotation) knows only the new secret: bob's
    // session, written under the new key, still opens.
    let gh = gh.restart().await;
    let r = api_get(&bob, &format!("{}/app", gh.url)).await;
    assert_eq!(r.status, 200, "bob's session after a restart: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_cookie_secret_keeps_existing_sessions_on_the_cookie_store() {
    rotation_keeps_sessions(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_cookie_secret_keeps_existing_sessions_on_the_redis_store() {
    if crate::support::redis::skip_unless_available() {
        return;
    }
    let redis = RedisServer::start();
    rotation_keeps_sessions(Some(&redis)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_secret_file_is_used_for_the_next_sign_in() {
    let (idp, upstream) = (TestIdp::start().await, Upstream::start().await);
    let port = free_port();
    let text = format!(
        "{}client_secret_file = \"client.secret\"\ncookie_secret = \"{COOKIE_SECRET}\"\n",
        base(&idp, &upstream, port)
    );
    let gh = serve(&text, port, &[("client.secret", "an-old-secret\n")]).await;

    // The provider refuses the old secret: sign-in fails and says so.
    *idp.state.next_sub.lock().unwrap() = "alice".into();
    let (refused, _) = Browser::new().follow(&format!("{}/app", gh.url)).await;
    assert_ne!(refused.status, 200, "{refused:?}");
    assert!(refused.body.contains("client"), "{refused:?}");

    write(
        &gh.dir.path().join("client.secret"),
        &format!("{}\n", idp::CLIENT_SECRET),
    );
    gh.hangup();
    gh.logged("configuration reloaded", 1).await;
    sign_in(&idp, &gh.url, "alice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_that_cannot_change_are_named_and_keep_their_running_values() {
    let (idp, upstream) = (TestIdp::start().await, Upstream::start().await);
    let port = free_port();
    let common = base(&idp, &upstream, port);
    let rest = format!(
        "client_secret = \"{}\"\ncookie_secret = \"{COOKIE_SECRET}\"\n",
        idp::CLIENT_SECRET
    );
    let gh = serve(
        &format!("{common}{rest}allowed_groups = [\"admins\"]\n"),
        port,
        &[],
    )
    .await;
    let alice = sign_in(&idp, &gh.url, "alice").await;

    let other_port = free_port();
    write(
        &gh.config(),
        &format!(
            "{}{rest}allowed_groups = [\"ops\"]\nmax_connections = 7\n",
            common.replace(&port.to_string(), &other_port.to_string())
        ),
    );
    gh.hangup();
    let log = gh.logged("cannot change while gatehouse runs", 1).await;
    let warning = log
        .lines()
        .find(|l| l.contains("cannot change while gatehouse runs"))
        .unwrap();
    assert!(
        warning.contains("listen") && warning.contains("max_connections"),
        "{warning}"
    );
    // The rest applied; the old port still serves, the new one is not opened.
    until_status(&alice, &format!("{}/app", gh.url), 403).await;
    assert!(
        reqwest::get(format!("http://127.0.0.1:{other_port}/healthz"))
            .await
            .is_err(),
        "listen keeps its running value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_config_reloads_on_a_configmap_style_update_without_a_signal() {
    let (idp, upstream) = (TestIdp::start().await, Upstream::start().await);
    let port = free_port();
    let common = base(&idp, &upstream, port);
    let version = |groups: &str| {
        format!(
            "{common}client_secret = \"{}\"\ncookie_secret = \"{COOKIE_SECRET}\"\nallowed_groups = [\"{groups}\"]\nwatch_config = true\n",
            idp::CLIENT_SECRET
        )
    };
    // A ConfigMap volume: gatehouse.toml -> ..data/gatehouse.toml, ..data -> ..v1; an
    // update writes ..v2 and swaps the ..data link in one rename.
    let dir = crate::support::TempDir::new("reload");
    let mount = dir.path().to_path_buf();
    std::fs::create_dir(mount.join("..v1")).unwrap();
    std::fs::write(mount.join("..v1/gatehouse.toml"), version("admins")).unwrap();
    std::os::unix::fs::symlink("..v1", mount.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/gatehouse.toml", mount.join("gatehouse.toml")).unwrap();
    let config = mount.join("gatehouse.toml");
    let gh = serve_path(dir, &config, port).await;
    let alice = sign_in(&idp, &gh.url, "alice").await;

    std::fs::create_dir(mount.join("..v2")).unwrap();
    std::fs::write(mount.join("..v2/gatehouse.toml"), version("ops")).unwrap();
    std::os::unix::fs::symlink("..v2", mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    until_status(&alice, &format!("{}/app", gh.url), 403).await;
    gh.logged("configuration reloaded", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_through_a_skip_route_is_closed_when_a_reload_removes_the_route() {
    let (idp, upstream) = (TestIdp::start().await, Upstream::start().await);
    let port = free_port();
    let common = format!(
        "{}client_secret = \"{}\"\ncookie_secret = \"{COOKIE_SECRET}\"\n",
        base(&idp, &upstream, port),
        idp::CLIENT_SECRET
    );
    let gh = serve(
        &format!("{common}skip_auth_routes = [\"/public/**\", \"/feed\"]\n"),
        port,
        &[],
    )
    .await;
    let (_, _, mut feed) = websocket(&gh.url, "/feed", "")
        .await
        .expect("a WebSocket through a skip route, no sign-in");
    let (_, _, mut public) = websocket(&gh.url, "/public/ws", "")
        .await
        .expect("a WebSocket through a skip route, no sign-in");

    // /feed needs a sign-in now; /public/** still does not.
    write(
        &gh.config(),
        &format!("{common}skip_auth_routes = [\"/public/**\"]\n"),
    );
    gh.hangup();
    match tokio::time::timeout(Duration::from_secs(10), feed.next()).await {
        Ok(Some(Ok(Message::Close(Some(frame))))) => assert_eq!(u16::from(frame.code), 4003),
        other => panic!("the WebSocket of a route that needs a sign-in now stayed open: {other:?}"),
    }
    public.send(Message::text("still public")).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), public.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => assert!(t.as_str().contains("still public"), "{t}"),
        other => panic!("a still-public WebSocket did not survive the reload: {other:?}"),
    }
    let log = gh.logged("\"event\":\"websocket_revoked\"", 1).await;
    let revoked = log
        .lines()
        .find(|l| l.contains("websocket_revoked"))
        .unwrap();
    assert!(revoked.contains("/feed"), "{revoked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_config_follows_a_secret_file_that_a_reload_names_anew() {
    let (idp, upstream) = (TestIdp::start().await, Upstream::start().await);
    let port = free_port();
    let version = |file: &str| {
        format!(
            "{}client_secret = \"{}\"\ncookie_secret_file = \"{file}\"\nwatch_config = true\n",
            base(&idp, &upstream, port),
            idp::CLIENT_SECRET
        )
    };
    let secret = format!("{COOKIE_SECRET}\n");
    let gh = serve(
        &version("a.secret"),
        port,
        &[("a.secret", &secret), ("b.secret", &secret)],
    )
    .await;
    // The file names another secret file: a reload, by the watch.
    write(&gh.config(), &version("b.secret"));
    gh.logged("configuration reloaded", 1).await;
    let alice = sign_in(&idp, &gh.url, "alice").await;
    // The watch reads the file it names now: a rotation there reloads by itself, and
    // the old one, no longer named, is not watched.
    write(
        &gh.dir.path().join("b.secret"),
        &format!("{OTHER_SECRET}\n{COOKIE_SECRET}\n"),
    );
    gh.logged("configuration reloaded", 2).await;
    write(
        &gh.dir.path().join("a.secret"),
        &format!("{OTHER_SECRET}\n"),
    );
    write(
        &gh.dir.path().join("b.secret"),
        &format!("{OTHER_SECRET}\n"),
    );
    let r = until_status(&alice, &format!("{}/app", gh.url), 401).await;
    assert_eq!(r.status, 401);
    let log = gh.logged("configuration reloaded", 3).await;
    assert_eq!(log.matches("configuration reloaded").count(), 3, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rechecks_websockets_against_the_rules_and_upstream_of_their_route() {
    let (idp, upstream, moved) = (
        TestIdp::start().await,
        Upstream::start().await,
        Upstream::start().await,
    );
    let port = free_port();
    let config = |root_group: &str, feed: &str| {
        format!(
            "listen = \"127.0.0.1:{port}\"\nissuer_url = \"{}\"\nclient_id = \"{}\"\ncookie_secure = false\nclient_secret = \"{}\"\ncookie_secret = \"{COOKIE_SECRET}\"\n\n[[routes]]\nhost = \"127.0.0.1\"\nupstream = \"{u}\"\nallowed_groups = [\"{root_group}\"]\n\n[[routes]]\nhost = \"127.0.0.1\"\npath_prefix = \"/live\"\nupstream = \"{u}\"\nallowed_groups = [\"dev\"]\n\n[[routes]]\nhost = \"127.0.0.1\"\npath_prefix = \"/feed\"\nupstream = \"{feed}\"\n",
            idp.issuer,
            idp::CLIENT_ID,
            idp::CLIENT_SECRET,
            u = upstream.url,
        )
    };
    let gh = serve(&config("dev", &upstream.url), port, &[]).await;
    let alice = sign_in(&idp, &gh.url, "alice").await;
    let mut open = Vec::new();
    for path in ["/ws", "/live/ws", "/feed/ws"] {
        let (_, _, ws) = websocket(&gh.url, path, &alice.cookie_header())
            .await
            .expect("a WebSocket through a route");
        open.push(ws);
    }
    // `/` now wants ops (alice is in dev), `/feed` goes to another upstream, `/live`
    // is as it was.
    write(&gh.config(), &config("ops", &moved.url));
    gh.hangup();
    gh.logged("configuration reloaded", 1).await;
    let mut feed = open.pop().unwrap();
    let mut live = open.pop().unwrap();
    let mut root = open.pop().unwrap();
    for (what, ws) in [("tightened route", &mut root), ("moved route", &mut feed)] {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                assert_eq!(u16::from(frame.code), 4003, "{what}")
            }
            other => panic!("the WebSocket of a {what} stayed open: {other:?}"),
        }
    }
    live.send(Message::text("still here")).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), live.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => assert!(t.as_str().contains("still here"), "{t}"),
        other => panic!("the WebSocket of an unchanged route did not survive: {other:?}"),
    }
    let log = gh.logged("\"event\":\"websocket_revoked\"", 2).await;
    assert_eq!(log.matches("websocket_revoked").count(), 2, "{log}");
}
