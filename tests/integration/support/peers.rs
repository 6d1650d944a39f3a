//! Real programs as test peers, started on ephemeral loopback ports and stopped by pid:
//! the certified `oidc-provider` (node, `tests/interop/op.mjs`) and headless Chromium
//! (`tests/interop/browser-login.mjs`). When one is missing, a developer run skips with a
//! loud message; a CI run (`CI` set) fails.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// `Some(reason)` when the interop peers are missing.
pub fn missing(need_browser: bool) -> Option<String> {
    let dir = interop_dir();
    if !dir.join("node_modules/oidc-provider").exists() {
        return Some(format!(
            "{}/node_modules is missing: run `npm ci --prefix tests/interop`",
            dir.display()
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node is not installed".into());
    }
    let chromium =
        std::env::var("GATEHOUSE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if need_browser && !std::path::Path::new(&chromium).exists() {
        return Some(format!(
            "{chromium} is missing: `apt-get install -y chromium`"
        ));
    }
    None
}

/// Skips (developer run) or fails (CI) when peers are missing. Returns true to skip.
pub fn skip_unless_available(need_browser: bool) -> bool {
    match missing(need_browser) {
        None => false,
        Some(reason) if std::env::var_os("CI").is_some() => {
            panic!("interop peer missing in CI: {reason}")
        }
        Some(reason) => {
            eprintln!("\n!!! SKIPPING interop test: {reason} !!!\n");
            true
        }
    }
}

/// A running oidc-provider.
pub struct NodeOp {
    pub issuer: String,
    child: Child,
    /// What it was started with, to start it again on the same port.
    args: Vec<String>,
}

impl Drop for NodeOp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NodeOp {
    /// Stops the provider (the process is killed and reaped).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again with the same settings on the same port (same issuer; new keys,
    /// and no memory of earlier grants), off the async runtime.
    pub async fn restart(&mut self) {
        self.stop();
        let port = reqwest::Url::parse(&self.issuer)
            .ok()
            .and_then(|u| u.port())
            .expect("the issuer has a port");
        let mut args = self.args.clone();
        args.extend(["--port".to_string(), port.to_string()]);
        let again = tokio::task::spawn_blocking(move || NodeOp::spawn_ready(&args))
            .await
            .expect("restart op.mjs");
        assert_eq!(again.issuer, self.issuer, "the same issuer after a restart");
        // `again.args` names the port; keep the original ones.
        let original = std::mem::take(&mut self.args);
        *self = again;
        self.args = original;
    }

    /// Starts `op.mjs` and waits for its ready line (blocking; call from spawn_blocking).
    pub fn start(
        client_id: &str,
        secret: &str,
        redirect_uri: &str,
        post_logout: &str,
        id_token_ttl: u64,
    ) -> NodeOp {
        NodeOp::start_with(
            client_id,
            secret,
            redirect_uri,
            post_logout,
            id_token_ttl,
            &[],
        )
    }

    /// Starts the OP for the test client with gatehouse at `base` (callback
    /// `<base>/oauth2/callback`, post-logout `<base>/bye`), off the async runtime.
    pub async fn for_gatehouse_at(base: &str, quirks: &[&str]) -> NodeOp {
        let (cb, bye) = (format!("{base}/oauth2/callback"), format!("{base}/bye"));
        let quirks: Vec<String> = quirks.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let (id, secret) = (super::idp::CLIENT_ID, super::idp::CLIENT_SECRET);
            NodeOp::start_with(id, secret, &cb, &bye, 300, &quirks)
        })
        .await
        .expect("start op.mjs")
    }

    /// Like [`NodeOp::start`], with op.mjs's provider-quirk options (`--issuer-path`,
    /// `--no-refresh-token`, `--claims-in-userinfo-only`, ...; see tests/interop/README.md).
    pub fn start_with(
        client_id: &str,
        secret: &str,
        redirect_uri: &str,
        post_logout: &str,
        id_token_ttl: u64,
        quirks: &[String],
    ) -> NodeOp {
        let mut args: Vec<String> = [
            "--client-id",
            client_id,
            "--client-secret",
            secret,
            "--redirect-uri",
            redirect_uri,
            "--post-logout-redirect-uri",
            post_logout,
            "--id-token-ttl",
            &id_token_ttl.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(quirks.iter().cloned());
        NodeOp::spawn_ready(&args)
    }

    /// Runs `op.mjs` with `args` (on any free port unless they name one) and waits for
    /// its ready line.
    fn spawn_ready(args: &[String]) -> NodeOp {
        // A node process that never gets ready (seen once under load: no ready line for
        // minutes) is killed and started again, rather than hanging the whole run.
        for attempt in 1..=3 {
            let mut child = Command::new("node")
                .arg(interop_dir().join("op.mjs"))
                .args(["--port", "0"])
                .args(args)
                .arg("--exit-on-stdin-close")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start node op.mjs");
            let stdout = child.stdout.take().expect("op stdout");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(line);
            });
            match rx.recv_timeout(std::time::Duration::from_secs(30)) {
                Ok(line) => {
                    let v: serde_json::Value = serde_json::from_str(line.trim())
                        .unwrap_or_else(|e| panic!("op.mjs ready line {line:?}: {e}"));
                    return NodeOp {
                        issuer: v["issuer"].as_str().expect("issuer").to_string(),
                        child,
                        args: args.to_vec(),
                    };
                }
                Err(_) => {
                    eprintln!(
                        "op.mjs gave no ready line within 30 s (attempt {attempt}); restarting it"
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        panic!("op.mjs never became ready (3 attempts of 30 s)");
    }
}

/// Runs a real login in headless Chromium; returns browser-login.mjs's JSON verdict.
pub fn browser_login(
    url: &str,
    user: &str,
    groups: &str,
    expect_origin: &str,
) -> serde_json::Value {
    let out = Command::new("node")
        .arg(interop_dir().join("browser-login.mjs"))
        .args([
            "--url",
            url,
            "--user",
            user,
            "--groups",
            groups,
            "--expect-origin",
            expect_origin,
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("run browser-login.mjs");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("browser-login output {text:?}: {e}"))
}

/// Logs in at `oidc-provider` like a browser would, without one: follows `start` (an app
/// URL behind gatehouse or an ingress) to the OP's login form, posts it, and follows the
/// redirects back; returns the page the login lands on. `context` is printed if the form
/// is never reached (e.g. an ingress peer's log).
pub async fn op_form_login(
    b: &crate::support::Browser,
    start: &str,
    user: &str,
    groups: &str,
    context: impl Fn() -> String,
) -> crate::support::Resp {
    let (form, visited) = b.follow(start).await;
    assert!(
        form.status == 200 && form.body.contains("Test OP login"),
        "never reached the provider's login form from {start}: {visited:?}\n{form:?}\n{}",
        context()
    );
    // The form posts to `/interaction/<uid>/login`, relative to the page it is on.
    let at = reqwest::Url::parse(visited.last().expect("visited")).expect("url");
    let action = format!("{}/login", at.as_str().split('?').next().unwrap_or(""));
    let posted = b
        .post_form(&action, &[("login", user), ("groups", groups)])
        .await;
    assert!(
        (300..400).contains(&posted.status),
        "login form post: {}",
        posted.status
    );
    let location = posted.location().expect("location");
    let next = at.join(&location).expect("join");
    b.follow(next.as_str()).await.0
}
