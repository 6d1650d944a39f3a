//! Redis credentials: an ACL user's password from a file or the environment; a wrong
//! one is a 503 naming Redis and its refusal; one given as a flag is refused.

use super::{api_get, blocking, names_redis, session_keys, sign_in};
use crate::support::idp::TestIdp;
use crate::support::ingress::free_port;
use crate::support::redis::{self, RedisServer};
use crate::support::upstream::Upstream;
use crate::support::{config, start, start_unready, Browser, RealGatehouse};
use std::time::{Duration, Instant};

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
