//! Real Redis for the session-store tests: Debian's `redis-server` (and `redis-sentinel`,
//! `redis-cli`) started as child processes on ephemeral loopback ports, each in a temp
//! directory of its own with nothing persisted (`save ""`, `appendonly no`), and stopped
//! by pid (kill, then wait) when dropped. Three shapes:
//! - [`RedisServer`]: one standalone server, optionally with a password or an ACL user;
//!   it can be killed and restarted on the same port, empty ("restarted without
//!   persistence");
//! - [`SentinelSet`] (`sentinel.rs`): a master, a replica and three Sentinels watching
//!   master `gatehouse`, fast to fail over;
//! - [`Cluster`] (`cluster.rs`): three masters covering all 16384 slots, with helpers to
//!   find a key's master and to move a slot (MOVED and ASK).
//!
//! Readiness is always polled (`INFO`, `ROLE`, `CLUSTER INFO`), never slept for. The
//! harness is blocking: from an async test call it through `spawn_blocking` (or
//! `block_in_place` on the multi-thread runtime). It talks to
//! Redis with its own small RESP client (`resp.rs`), not with the production crate.
//! When the binaries are missing, a developer run skips with a loud message and a CI run
//! (`CI` set) fails, as for the other peers. Tests never use 6379 or 26379, so the
//! system services the Debian packages may start do not matter.

mod cluster;
mod resp;
mod sentinel;

pub use cluster::Cluster;
pub use resp::{query, Conn, Reply};
pub use sentinel::SentinelSet;

use super::TempDir;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a process may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// `redis-server` (`GATEHOUSE_REDIS_SERVER` overrides, e.g. for a Valkey build).
pub fn server_binary() -> PathBuf {
    binary("GATEHOUSE_REDIS_SERVER", "/usr/bin/redis-server")
}

/// `redis-cli` (`GATEHOUSE_REDIS_CLI` overrides).
pub fn cli_binary() -> PathBuf {
    binary("GATEHOUSE_REDIS_CLI", "/usr/bin/redis-cli")
}

fn binary(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// `Some(reason)` when the Redis programs are missing. Sentinels run as
/// `redis-server --sentinel`; Debian's `redis-sentinel` package ships the same binary
/// under that name, so it is checked too when the default path is used.
pub fn missing() -> Option<String> {
    let hint = "apt-get install -y redis-server redis-sentinel (or run ./scripts/test.sh)";
    let mut need = vec![server_binary(), cli_binary()];
    if std::env::var_os("GATEHOUSE_REDIS_SERVER").is_none() {
        need.push(PathBuf::from("/usr/bin/redis-sentinel"));
    }
    need.into_iter()
        .find(|p| !p.is_file())
        .map(|p| format!("{} is missing: {hint}", p.display()))
}

/// Skips (developer run) or fails (CI) when Redis is missing. Returns true to skip.
pub fn skip_unless_available() -> bool {
    match missing() {
        None => false,
        Some(reason) if std::env::var_os("CI").is_some() => {
            panic!("redis missing in CI: {reason}")
        }
        Some(reason) => {
            eprintln!("\n!!! SKIPPING redis test: {reason} !!!\n");
            true
        }
    }
}

/// What kind of process a [`RedisServer`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Server,
    Sentinel,
}

/// One `redis-server` (or, inside [`SentinelSet`], one Sentinel) on `127.0.0.1:port`.
pub struct RedisServer {
    pub port: u16,
    mode: Mode,
    /// (user, password) that commands from the harness authenticate with.
    auth: Option<(String, String)>,
    /// The configuration it was started with, written again on restart.
    conf: String,
    child: Option<Child>,
    dir: TempDir,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl RedisServer {
    /// A standalone server without authentication.
    pub fn start() -> RedisServer {
        RedisServer::start_with_config("")
    }

    /// A standalone server with `extra` appended to its configuration (one directive a line).
    pub fn start_with_config(extra: &str) -> RedisServer {
        let extra = extra.to_string();
        RedisServer::launch(Mode::Server, None, move |_| extra.clone())
    }

    /// A server that refuses unauthenticated commands. User `default` sets
    /// `requirepass`; any other user is an ACL user with every right, and the default
    /// user is switched off.
    pub fn start_with_auth(user: &str, pass: &str) -> RedisServer {
        assert!(
            !user.contains(char::is_whitespace) && !pass.contains(char::is_whitespace),
            "no whitespace in test credentials"
        );
        let conf = if user == "default" {
            format!("requirepass {pass}\n")
        } else {
            format!("user default off\nuser {user} on >{pass} ~* &* +@all\n")
        };
        let auth = Some((user.to_string(), pass.to_string()));
        RedisServer::launch(Mode::Server, auth, move |_| conf.clone())
    }

    /// Starts a process whose configuration is the common part plus `extra(dir)`, on a
    /// fresh port; tries another port when the one picked was taken meanwhile.
    fn launch(
        mode: Mode,
        auth: Option<(String, String)>,
        extra: impl Fn(&Path) -> String,
    ) -> RedisServer {
        let dir = TempDir::new(match mode {
            Mode::Server => "redis",
            Mode::Sentinel => "sentinel",
        });
        let mut last_log = String::new();
        for _ in 0..8 {
            // A failed try may have left files (a cluster node's `nodes.conf`).
            dir.empty();
            let port = free_port();
            let conf = format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\nsave \"\"\nappendonly no\n\
                 dir {dir}\n{extra}",
                dir = dir.path.display(),
                extra = extra(&dir.path)
            );
            match spawn_ready(mode, &dir.path, &conf, port, auth_ref(&auth)) {
                Ok(child) => {
                    return RedisServer {
                        port,
                        mode,
                        auth,
                        conf,
                        child: Some(child),
                        dir,
                    }
                }
                Err(log) if log.contains("Address already in use") => last_log = log,
                Err(log) => panic!("{mode:?} on port {port} did not start; its log:\n{log}"),
            }
        }
        panic!("no free port for {mode:?} after 8 tries; last log:\n{last_log}");
    }

    /// `redis://127.0.0.1:PORT` (no credentials; see [`RedisServer::url_with_auth`]).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis://user:pass@127.0.0.1:PORT` for a server started with authentication.
    pub fn url_with_auth(&self) -> String {
        match &self.auth {
            Some((user, pass)) => format!("redis://{user}:{pass}@127.0.0.1:{}", self.port),
            None => self.url(),
        }
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The pid while it runs (for `/proc/PID/stat`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Stops the process (SIGKILL, then reaped); the port and the directory are kept.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it if it runs and starts it again on the same port with the same
    /// configuration. Nothing was persisted, so a server comes back empty.
    pub fn restart(&mut self) {
        self.kill();
        let auth = auth_ref(&self.auth);
        match spawn_ready(self.mode, &self.dir.path, &self.conf, self.port, auth) {
            Ok(child) => self.child = Some(child),
            Err(log) => panic!("restart on port {} failed; its log:\n{log}", self.port),
        }
    }

    /// One command, authenticated as the server was started; an error when it cannot
    /// be reached (a Redis error reply is an `Ok(Reply::Error)`).
    pub fn try_cmd(&self, args: &[&str]) -> io::Result<Reply> {
        Conn::open(self.port, auth_ref(&self.auth))?.cmd(args)
    }

    /// [`RedisServer::try_cmd`] that panics when the server cannot be reached.
    pub fn cmd(&self, args: &[&str]) -> Reply {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("{args:?} on port {}: {e}", self.port))
    }

    /// The role it reports (`ROLE`): "master", "slave" or "sentinel".
    pub fn role(&self) -> Option<String> {
        self.try_cmd(&["ROLE"]).ok()?.items().first()?.text()
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("redis.log")).unwrap_or_default()
    }

    /// The directory it runs in (configuration, log, `nodes.conf`).
    pub fn dir(&self) -> &Path {
        &self.dir.path
    }
}

fn auth_ref(auth: &Option<(String, String)>) -> Option<(&str, &str)> {
    auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
}

/// Writes `conf` into `dir`, starts the process and waits until this very process (by
/// pid) answers on `port`. `Err(its log)` when it exited first or never answered.
fn spawn_ready(
    mode: Mode,
    dir: &Path,
    conf: &str,
    port: u16,
    auth: Option<(&str, &str)>,
) -> Result<Child, String> {
    let conf_path = dir.join("redis.conf");
    std::fs::write(&conf_path, conf)
        .unwrap_or_else(|e| panic!("write {}: {e}", conf_path.display()));
    let log_path = dir.join("redis.log");
    let log = std::fs::File::create(&log_path).expect("create redis.log");
    let mut cmd = Command::new(server_binary());
    cmd.arg(&conf_path);
    if mode == Mode::Sentinel {
        cmd.arg("--sentinel");
    }
    let mut child = cmd
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", server_binary().display()));
    let pid = child.id().to_string();
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return Err(read_log());
        }
        // Another test's server may hold the port if ours failed to bind: ask for the
        // pid, not just for PONG.
        let info = Conn::open(port, auth).and_then(|mut c| c.cmd(&["INFO", "server"]));
        if info.is_ok_and(|i| info_field(&i, "process_id").as_deref() == Some(pid.as_str())) {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("not ready after {START_TIMEOUT:?}\n{}", read_log()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A field of an `INFO` reply (`name:value` lines).
pub fn info_field(info: &Reply, name: &str) -> Option<String> {
    let text = info.text()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// A port that was free a moment ago (bind 127.0.0.1:0, read it, drop the socket).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Polls `check` every 20 ms until it gives a value; panics with `what` (and the last
/// state `check` reported through `Err`) after `timeout`.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(state) if Instant::now() > deadline => {
                panic!("{what}: not within {timeout:?}; last: {state}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
