//! The command line: `serve`, `check`, `demo`, `secret`, `whoami`. Configuration flags are
//! generated from the key list in `config/keys.rs`, so flags, environment variables and
//! TOML keys can never drift apart.

use crate::config::keys::KEYS;
use crate::config::list::quoted;
use crate::config::{Config, ConfigError, ProcessEnv, RawConfig};
use clap::error::ErrorKind;
use clap::{Arg, ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "gatehouse",
    version,
    about = "An identity-aware reverse proxy: OpenID Connect login in front of Headlamp or any web app"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the proxy.
    Serve(ConfigArgs),
    /// Validate a configuration and list every problem; with --online, also ask the
    /// provider (issuer, keys, algorithms, scopes, clock) and print the API server settings.
    Check {
        #[command(flatten)]
        args: ConfigArgs,
        /// Contact the provider and report what `serve` would meet.
        #[arg(long)]
        online: bool,
    },
    /// DEVELOPMENT ONLY: a dev identity provider, a demo upstream and gatehouse, on loopback.
    Demo(Box<crate::demo::DemoArgs>),
    /// Print a fresh random cookie secret.
    Secret,
    /// Run a tiny upstream that shows the identity headers it receives.
    Whoami {
        #[arg(long, default_value = "127.0.0.1:4181", allow_hyphen_values = true)]
        listen: SocketAddr,
    },
}

/// `--config FILE` plus one flag per configuration key.
#[derive(Args, Debug, Clone)]
pub struct ConfigArgs {
    /// TOML configuration file (see config/gatehouse.example.toml).
    #[arg(long, short = 'c', allow_hyphen_values = true)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub flags: ConfigFlags,
}

/// Parses the command line. Option values may begin with `-` (`gatehouse secret` prints one
/// that does once in 64 runs), so a forgotten value would silently swallow the next option
/// (`--cookie-secret --upstream http://x`): an option given where a value belongs is
/// refused first, naming the option whose value is missing.
pub fn parse_args<I, T>(argv: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let argv: Vec<std::ffi::OsString> = argv.into_iter().map(Into::into).collect();
    let mut cmd = Cli::command();
    cmd.build();
    if let Some(e) = value_is_an_option(&cmd, &argv) {
        return Err(e);
    }
    Cli::try_parse_from(argv)
}

/// The error for `--name` followed by another option of the same subcommand, when `--name`
/// needs a value.
fn value_is_an_option(cmd: &clap::Command, argv: &[std::ffi::OsString]) -> Option<clap::Error> {
    let words: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let sub = cmd.find_subcommand(words.get(1)?)?;
    let find = |w: &str| {
        let option = w.split('=').next().unwrap_or(w);
        sub.get_arguments().find(|a| {
            a.get_long().is_some_and(|l| option == format!("--{l}"))
                || a.get_short().is_some_and(|s| option == format!("-{s}"))
        })
    };
    let needs_value = |a: &Arg| {
        matches!(a.get_action(), ArgAction::Set | ArgAction::Append)
            && !matches!(a.get_num_args(), Some(n) if n.min_values() == 0)
    };
    let mut i = 2;
    while let Some(w) = words.get(i) {
        if w == "--" {
            break;
        }
        match find(w) {
            Some(a) if needs_value(a) && !w.contains('=') => {
                if let Some(next) = words.get(i + 1).filter(|n| find(n).is_some()) {
                    let name = a.get_long().map_or_else(
                        || format!("-{}", a.get_short().unwrap_or('?')),
                        |l| format!("--{l}"),
                    );
                    // Only the option's name: `--client-secret=VALUE` carries a secret.
                    let next = next.split('=').next().unwrap_or_default();
                    let mut sub = sub.clone();
                    return Some(sub.error(
                        ErrorKind::InvalidValue,
                        format!("a value is required for '{name}' but none was supplied (the next argument, '{next}', is an option)"),
                    ));
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    None
}

/// The configuration flags that were given, as (key, value).
#[derive(Debug, Clone, Default)]
pub struct ConfigFlags(pub Vec<(&'static str, String)>);

impl FromArgMatches for ConfigFlags {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(ConfigFlags(
            KEYS.iter()
                .filter_map(|k| m.get_one::<String>(k.name).map(|v| (k.name, v.clone())))
                .collect(),
        ))
    }
    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = ConfigFlags::from_arg_matches(m)?;
        Ok(())
    }
}

impl Args for ConfigFlags {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        KEYS.iter().fold(cmd, |c, k| {
            let arg = Arg::new(k.name)
                .long(k.flag_name())
                .value_name("VALUE")
                .help(format!("{} [env {}]", k.help, k.env_name()))
                .action(ArgAction::Set);
            // `--forward-auth-redirect` alone means true; `--forward-auth-redirect false` works
            // too. Every other value may begin with `-` (a secret, a group name).
            let arg = if k.kind == crate::config::keys::Kind::Bool {
                arg.num_args(0..=1).default_missing_value("true")
            } else {
                arg.allow_hyphen_values(true)
            };
            c.arg(arg)
        })
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        ConfigFlags::augment_args(cmd)
    }
}

impl ConfigArgs {
    /// Loads file < env < flags and validates, and keeps the sources to read them again
    /// on a reload (`serve`).
    pub fn load_for_reload(&self) -> Result<(Config, crate::config::reload::Source), ConfigError> {
        crate::config::reload::Source::load(
            self.config.as_deref(),
            &ProcessEnv,
            RawConfig::from_pairs(&self.flags.0),
        )
    }

    /// Loads file < env < flags and validates.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(
            self.config.as_deref(),
            &ProcessEnv,
            RawConfig::from_pairs(&self.flags.0),
        )
    }
}

/// The provider preset and what it chose, for `check`.
fn print_preset(cfg: &Config) {
    println!("provider: {}", cfg.provider);
    for (k, v) in &cfg.preset_defaults {
        println!("  preset default: {k} = {v}");
    }
    if let Some(p) = crate::config::presets::PRESETS
        .iter()
        .find(|p| p.name == cfg.provider)
    {
        for note in p.notes {
            println!("  note: {note}");
        }
    }
}

/// Every list setting that is set or has a default, one item per quoted string, so a
/// user sees how many groups (scopes, ...) gatehouse read.
fn print_lists(cfg: &Config) {
    println!("lists, as read (items are separated by commas only):");
    for l in cfg.lists.iter().filter(|l| l.count > 0 || l.from.is_some()) {
        println!("  {l}");
    }
}

/// One line saying who may enter, for `check`.
/// Which ingress `/oauth2/auth` believes, and where its answers carry the ID token.
/// Where sessions live, for `check`.
fn describe_sessions(cfg: &Config) -> String {
    let idle = cfg.cookie.idle_timeout.map_or_else(
        || "no idle timeout".to_string(),
        |d| format!("idle timeout {} s", d.as_secs()),
    );
    let lifetime = format!(
        "lifetime {} s, {idle}",
        cfg.cookie.session_lifetime.as_secs()
    );
    match &cfg.session_store {
        crate::config::StoreSettings::Cookie => format!("cookie store (sealed in the cookie; ended sessions are known to this replica only), {lifetime}"),
        crate::config::StoreSettings::Redis(r) => format!(
            "redis store at {} (key prefix {}, {} ms per call{}{}), {lifetime}",
            crate::session::redis::describe(r),
            r.key_prefix,
            r.timeout.as_millis(),
            if r.username.is_some() { ", ACL user" } else { "" },
            if r.password.is_some() { ", password set" } else { "" },
        ),
    }
}

fn describe_listener(cfg: &Config) -> String {
    let redirect = cfg
        .http_redirect_listen
        .map(|a| format!("; plain http on {a} redirects GET and HEAD to https"))
        .unwrap_or_default();
    match &cfg.tls {
        Some(t) => format!(
            "https on {} (TLS 1.3 and 1.2; HTTP/2 and HTTP/1.1 by ALPN), certificate {} (expires {}) and key {}, both checked and reloaded when they change{redirect}",
            cfg.listen,
            t.cert_file.display(),
            crate::tls::not_after(&t.initial).map_or("unknown".into(), |at| {
                crate::tls::expiry::describe(at, crate::util::now_secs())
            }),
            t.key_file.display()
        ),
        None => format!("plain http on {} (HTTP/1.1)", cfg.listen),
    }
}

fn describe_forward_auth(cfg: &Config) -> String {
    use crate::config::ForwardAuthClient as C;
    let client = match cfg.forward_auth_client {
        C::Auto => "auto (every header describing the original request must agree)",
        C::Nginx => "nginx (X-Forwarded-Uri, -Method, -Host, -Proto only)",
        C::IngressNginx => "ingress-nginx (X-Original-URL and X-Original-Method only)",
        C::Traefik => "traefik (X-Forwarded-Uri, -Method, -Host, -Proto only)",
        C::Caddy => "caddy (X-Forwarded-Uri, -Method, -Host, -Proto only)",
        C::Envoy => "envoy (the path below /oauth2/auth and the check's method)",
    };
    let tokens = match cfg.auth_listen {
        Some(a) => format!("the ID token only in answers on auth_listen {a}"),
        None => "no ID token in any answer (auth_listen is not set)".to_string(),
    };
    format!("client {client}; {tokens}")
}

fn describe_access(cfg: &Config) -> String {
    let r = &cfg.rules;
    let mut parts = Vec::new();
    let list = |name: &str, v: &[String]| format!("{name} {}", quoted(v));
    if !r.groups.is_empty() {
        parts.push(list("allowed_groups", &r.groups));
    }
    if !r.emails.is_empty() {
        parts.push(list("allowed_emails", &r.emails));
    }
    if let Some(f) = &r.emails_file {
        // The file as read, one address per line: what it allows is plain to see.
        const SHOWN: usize = 100;
        let n = f.emails.len();
        let shown = f.emails.get(..SHOWN).unwrap_or(&f.emails);
        let rest = if n > SHOWN {
            format!(" and {} more", n - SHOWN)
        } else {
            String::new()
        };
        parts.push(format!(
            "allowed_emails_file {} ({n} address(es): {}{rest}; re-read when it changes)",
            f.path.display(),
            quoted(shown)
        ));
    }
    if !r.email_domains.is_empty() {
        parts.push(list("allowed_email_domains", &r.email_domains));
    }
    let claims: Vec<String> = r.claims.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !claims.is_empty() {
        parts.push(list("required_claims", &claims));
    }
    let mut line = if parts.is_empty() {
        "every user who can sign in at the provider".to_string()
    } else {
        parts.join("; ")
    };
    let skips: Vec<String> = cfg.skip_auth_routes.iter().map(|r| r.to_string()).collect();
    if !skips.is_empty() {
        line.push_str(&format!("; no login for {}", skips.join(", ")));
    }
    if cfg.bearer.is_some() {
        line.push_str("; bearer tokens accepted");
    }
    line
}

/// `GATEHOUSE_*` variables in the process environment that gatehouse does not read.
fn env_warnings() -> Vec<String> {
    crate::config::sources::unknown_env_vars(&ProcessEnv)
}

fn print_problems(e: &ConfigError) {
    eprintln!("gatehouse: {e}");
    eprintln!("(configuration comes from --config FILE, GATEHOUSE_* variables and flags; see `gatehouse serve --help`)");
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

async fn serve(cfg: Config, source: crate::config::reload::Source) -> Result<(), String> {
    crate::metrics::started();
    crate::telemetry::init(cfg.log_format, &cfg.log_level, &cfg.audit_log)?;
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    if let Some(p) = crate::config::presets::PRESETS
        .iter()
        .find(|p| p.name == cfg.provider && !p.notes.is_empty())
    {
        for note in p.notes {
            tracing::info!(provider = p.name, "{note}");
        }
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    match &cfg.upstream {
        Some(u) => {
            tracing::info!(listen = %cfg.listen, upstream = %u, issuer = %cfg.issuer_url, "gatehouse serving")
        }
        None => {
            tracing::info!(listen = %cfg.listen, issuer = %cfg.issuer_url, "gatehouse serving in auth-only mode: /oauth2/auth for forward-auth, no upstream")
        }
    }
    let auth = match cfg.auth_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} (auth_listen): {e}"))?;
            tracing::info!(auth_listen = %addr, "forward-auth listener: /oauth2/auth answers here carry the ID token; keep this port off every public route");
            Some(l)
        }
        None => None,
    };
    if let Some(addr) = cfg.metrics_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} (metrics_listen): {e}"))?;
        tracing::info!(metrics_listen = %addr, "Prometheus metrics at /metrics on this port only");
        crate::metrics::enable();
        tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(l).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
    }
    if let Some(addr) = cfg.http_redirect_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} (http_redirect_listen): {e}"))?;
        tracing::info!(http_redirect_listen = %addr, "plain http here redirects GET and HEAD to https");
        let cfg = cfg.clone();
        tokio::spawn(async move { crate::http::redirect_listener::serve(l, &cfg).await });
    }
    if let Some(tls) = &cfg.tls {
        let (expires, now) = (crate::tls::not_after(&tls.initial), crate::util::now_secs());
        let shown = expires.map_or("unknown".into(), |t| crate::tls::expiry::describe(t, now));
        tracing::info!(tls_cert_file = %tls.cert_file.display(), expires = %shown, "serving https on listen (HTTP/2 and HTTP/1.1); the certificate reloads when its files change");
        crate::tls::warn_if_expiring(&tls.cert_file, expires, now);
    }
    let state = crate::http::AppState::new(cfg).map_err(|e| e.to_string())?;
    crate::reload::start(Arc::clone(&state.live), Arc::clone(&state.tunnels), source);
    crate::http::serve_with_auth(state, listener, auth, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn whoami(listen: SocketAddr) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!(
        "whoami upstream: http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    axum::serve(listener, crate::whoami::app())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gatehouse: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Secret => {
            println!("{}", crate::config::secret::generate());
            Ok(())
        }
        Command::Check { args, online } => match args.load() {
            Ok(cfg) => {
                for w in env_warnings().iter().chain(&cfg.warnings) {
                    println!("warning: {w}");
                }
                let upstream = match (&cfg.upstream, cfg.routes.routes().len()) {
                    (Some(u), _) => u.to_string(),
                    (None, 0) => "auth-only (no upstream)".to_string(),
                    (None, n) => format!("{n} route(s)"),
                };
                println!(
                    "configuration OK: {} -> {} (issuer {}, client {})",
                    cfg.listen, upstream, cfg.issuer_url, cfg.client_id
                );
                if !cfg.routes.is_empty() {
                    println!("routes (most specific first; a request no route matches gets 404):");
                    for line in crate::gateway::describe(&cfg.routes) {
                        println!("{line}");
                    }
                }
                println!("access: {}", describe_access(&cfg));
                println!("forward auth: {}", describe_forward_auth(&cfg));
                println!("sessions: {}", describe_sessions(&cfg));
                let off = || "off (assertion_signing_key_file is not set)".to_string();
                let assertion = cfg.assertion.as_ref().map_or_else(off, |a| a.describe());
                println!(
                    "identity assertion ({}): {assertion}",
                    cfg.headers.assertion
                );
                println!("listener: {}", describe_listener(&cfg));
                print_lists(&cfg);
                print_preset(&cfg);
                if online {
                    let findings = runtime.block_on(crate::online::check(&cfg));
                    for f in &findings {
                        println!("{f}");
                    }
                    print!("{}", crate::online::apiserver_settings(&cfg));
                    let errors = findings
                        .iter()
                        .filter(|f| matches!(f, crate::online::Finding::Error(_)))
                        .count();
                    if errors > 0 {
                        eprintln!("gatehouse: {errors} problem(s) with the provider (see the error: lines)");
                        return ExitCode::from(1);
                    }
                }
                Ok(())
            }
            Err(e) => {
                for w in env_warnings() {
                    eprintln!("warning: {w}");
                }
                print_problems(&e);
                return ExitCode::from(1);
            }
        },
        Command::Serve(args) => match args.load_for_reload() {
            Ok((mut cfg, source)) => {
                cfg.warnings.splice(0..0, env_warnings());
                runtime.block_on(serve(cfg, source))
            }
            Err(e) => {
                for w in env_warnings() {
                    eprintln!("warning: {w}");
                }
                print_problems(&e);
                return ExitCode::from(2);
            }
        },
        Command::Demo(args) => runtime.block_on(crate::demo::run(*args)),
        Command::Whoami { listen } => runtime.block_on(whoami(listen)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys::Kind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        parse_args(std::iter::once("gatehouse").chain(args.iter().copied()))
    }

    fn flags(cli: Cli) -> Vec<(&'static str, String)> {
        match cli.command {
            Command::Serve(a) | Command::Check { args: a, .. } => a.flags.0,
            _ => panic!("not serve or check"),
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_value_of_every_option_may_begin_with_a_hyphen() {
        for sub in ["serve", "check"] {
            for k in KEYS.iter().filter(|k| k.kind != Kind::Bool) {
                let flag = format!("--{}", k.flag_name());
                for value in ["-x3Jq_secret", "--looks-like-an-option", "-"] {
                    let cli = parse(&[sub, &flag, value, "-c", "x.toml"])
                        .unwrap_or_else(|e| panic!("{sub} {flag} {value}: {e}"));
                    let got = flags(cli);
                    assert!(
                        got.contains(&(k.name, value.to_string())),
                        "{flag} {value}: {got:?}"
                    );
                    let eq = format!("{flag}={value}");
                    let got = flags(parse(&[sub, &eq]).unwrap());
                    assert!(got.contains(&(k.name, value.to_string())), "{eq}: {got:?}");
                }
            }
        }
        let cli = parse(&["check", "--config", "-odd.toml", "--online"]).unwrap();
        match cli.command {
            Command::Check { args, online } => {
                assert_eq!(args.config, Some(PathBuf::from("-odd.toml")));
                assert!(online);
            }
            _ => panic!("not check"),
        }
        let cli = parse(&[
            "demo",
            "--group",
            "-devs",
            "--extra-client",
            "-app:-s3cret:http://127.0.0.1:9/cb",
        ])
        .unwrap();
        match cli.command {
            Command::Demo(d) => {
                assert_eq!(d.group, "-devs");
                assert_eq!(d.extra_clients, ["-app:-s3cret:http://127.0.0.1:9/cb"]);
            }
            _ => panic!("not demo"),
        }
    }

    #[test]
    fn a_missing_value_is_still_named_as_missing() {
        for args in [
            &["check", "--cookie-secret"][..],
            &[
                "check",
                "--cookie-secret",
                "--upstream",
                "http://127.0.0.1:1",
            ],
            &["check", "--client-secret", "--online"],
            &["serve", "--client-id", "-c", "x.toml"],
            &["serve", "--upstream", "--help"],
            &["demo", "--group", "--listen", "127.0.0.1:1"],
        ] {
            let e = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} parsed"));
            let shown = e.to_string();
            assert!(
                shown.contains("a value is required for '--"),
                "{args:?}: {shown}"
            );
        }
        // a boolean flag alone still means true, and does not swallow the next option
        let got =
            flags(parse(&["check", "--forward-auth-redirect", "--upstream", "http://a"]).unwrap());
        assert!(
            got.contains(&("forward_auth_redirect", "true".into())),
            "{got:?}"
        );
        assert!(got.contains(&("upstream", "http://a".into())), "{got:?}");
    }
}
