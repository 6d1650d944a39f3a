//! Live reload (SIGHUP, or `watch_config`): what a reload reads again, and what it may
//! change while gatehouse runs.
//!
//! A reload reads the configuration file again, and the files it names
//! (`client_secret_file`, `cookie_secret_file`, `allowed_emails_file`); the environment
//! and the flags are the ones gatehouse started with (a process cannot be given new
//! ones). The result is validated like a start-up configuration: one with problems is
//! refused whole, with every problem listed, and the running one stays.
//!
//! Some settings shape what was set up at start-up (listeners and their limits, the
//! provider's discovery and keys, the session store's connections, logging): those are
//! [`FIXED`]. A reload that changes one applies everything else, keeps the running value,
//! and names it, so the operator knows a restart is needed for it.

use super::sources::{Environment, RawConfig};
use super::{Config, ConfigError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Settings a reload cannot change: the running values stay until a restart.
pub const FIXED: &[&str] = &[
    "listen",
    "auth_listen",
    "metrics_listen",
    "tls_cert_file",
    "tls_key_file",
    "http_redirect_listen",
    "provider",
    "issuer_url",
    "provider_ca_file",
    "provider_timeout_secs",
    "provider_connect_timeout_secs",
    "access_token_audience",
    "access_token_issuer",
    "session_store",
    "redis_url",
    "redis_sentinel_master",
    "redis_sentinel_addrs",
    "redis_cluster_nodes",
    "redis_tls",
    "redis_ca_file",
    "redis_username",
    "redis_password",
    "redis_password_file",
    "redis_key_prefix",
    "redis_timeout_ms",
    "header_read_timeout_secs",
    "idle_timeout_secs",
    "max_header_bytes",
    "max_connections",
    "shutdown_grace_secs",
    "log_format",
    "log_level",
    "audit_log",
    "watch_config",
];

/// Files whose change `watch_config` notices, besides the configuration file: the
/// secrets a reload reads again. (`allowed_emails_file` is watched on its own.)
const WATCHED_FILES: &[&str] = &[
    "client_secret_file",
    "cookie_secret_file",
    "assertion_signing_key_file",
];

/// gatehouse's variables (`GATEHOUSE_*`) as they were at start-up: a reload reads the
/// same values. Nothing else of the environment is kept.
pub struct EnvSnapshot(HashMap<String, String>);

impl EnvSnapshot {
    pub fn capture(env: &dyn Environment) -> EnvSnapshot {
        EnvSnapshot(
            env.names()
                .into_iter()
                .filter(|n| n.starts_with("GATEHOUSE_"))
                .filter_map(|n| env.var(&n).map(|v| (n, v)))
                .collect(),
        )
    }
}

impl Environment for EnvSnapshot {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
    fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

/// Where the configuration comes from, kept to read it again.
pub struct Source {
    file: Option<PathBuf>,
    env: EnvSnapshot,
    flags: RawConfig,
    /// The layered values the running process started with (what [`FIXED`] keeps).
    started: RawConfig,
}

/// A configuration a reload accepted.
#[derive(Debug)]
pub struct Reloaded {
    /// The new configuration, with the running values of the fixed settings.
    pub config: Config,
    /// Fixed settings the new configuration changes: kept as they run, until a restart.
    pub kept: Vec<&'static str>,
    /// The files `watch_config` watches from now on (the secret files it names now).
    pub watched: Vec<PathBuf>,
}

impl Source {
    /// Loads the start-up configuration (file < env < flags) and keeps its sources.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Environment,
        flags: RawConfig,
    ) -> Result<(Config, Source), ConfigError> {
        let env = EnvSnapshot::capture(env);
        let (cfg, started) = build(file, &env, flags.clone())?;
        Ok((
            cfg,
            Source {
                file: file.map(Path::to_path_buf),
                env,
                flags,
                started,
            },
        ))
    }

    /// Reads the configuration again. `Err` lists every problem (the running
    /// configuration stays); `Ok` holds the new one, fixed settings as they run.
    ///
    /// The file is validated as written (a broken fixed setting is a problem like any
    /// other), then built again with every fixed setting as it runs: what derives from one
    /// (a provider preset's defaults, such as `require_email_verified` or `user_claim`)
    /// keeps deriving from the running value, never from a value that is not applied. A
    /// fixed setting counts as changed when its value with the preset's defaults does
    /// (entra's `issuer_url` follows `tenant_id`).
    pub fn reload(&self, running: &Config) -> Result<Reloaded, ConfigError> {
        let (_, raw) = build(self.file.as_deref(), &self.env, self.flags.clone())?;
        let watched = files_of(self.file.as_deref(), &raw);
        let (was, now) = (
            super::presets::effective(&self.started),
            super::presets::effective(&raw),
        );
        let kept = FIXED
            .iter()
            .copied()
            .filter(|k| was.get(k).map(|e| &e.value) != now.get(k).map(|e| &e.value))
            .collect();
        let mut pinned = raw;
        for k in FIXED {
            match self.started.get(k) {
                Some(e) => pinned.insert(k, e.clone()),
                None => pinned.remove(k),
            }
        }
        let mut config = Config::from_raw(&pinned)?;
        keep_fixed(running, &mut config);
        Ok(Reloaded {
            config,
            kept,
            watched,
        })
    }

    /// The files a change of which calls for a reload: the configuration file and the
    /// secret files named at start-up (a reload names them anew: [`Reloaded::watched`]).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        files_of(self.file.as_deref(), &self.started)
    }
}

/// The configuration file and the secret files `raw` names.
fn files_of(file: Option<&Path>, raw: &RawConfig) -> Vec<PathBuf> {
    let named = WATCHED_FILES.iter().filter_map(|k| match raw.get(k) {
        Some(e) => match &e.value {
            super::sources::RawValue::Str(s) if !s.trim().is_empty() => {
                Some(PathBuf::from(s.trim()))
            }
            _ => None,
        },
        None => None,
    });
    file.map(Path::to_path_buf)
        .into_iter()
        .chain(named)
        .collect()
}

/// Layers and validates, like `Config::load`, and also returns the layered values.
fn build(
    file: Option<&Path>,
    env: &dyn Environment,
    flags: RawConfig,
) -> Result<(Config, RawConfig), ConfigError> {
    let (raw, mut problems) = Config::layer(file, env, flags)?;
    match Config::from_raw(&raw) {
        Ok(cfg) if problems.is_empty() => Ok((cfg, raw)),
        Ok(_) => Err(ConfigError { problems }),
        Err(e) => {
            problems.extend(e.problems);
            Err(ConfigError { problems })
        }
    }
}

/// Gives `new` the running values of every fixed setting (and of what they imply: the
/// preset's issuer spellings, the provider CA's certificates).
pub fn keep_fixed(running: &Config, new: &mut Config) {
    new.listen = running.listen;
    new.auth_listen = running.auth_listen;
    new.metrics_listen = running.metrics_listen;
    // The paths are fixed; the certificate they hold reloads by itself (`tls/mod.rs`).
    new.tls = running.tls.clone();
    new.http_redirect_listen = running.http_redirect_listen;
    new.provider = running.provider;
    new.preset_defaults = running.preset_defaults.clone();
    new.issuer_url = running.issuer_url.clone();
    new.issuer_aliases = running.issuer_aliases.clone();
    new.provider_ca = running.provider_ca.clone();
    new.provider_timeouts = running.provider_timeouts;
    new.access_token = running.access_token.clone();
    new.session_store = running.session_store.clone();
    new.limits = running.limits;
    new.log_format = running.log_format;
    new.log_level = running.log_level.clone();
    new.audit_log = running.audit_log.clone();
    new.watch_config = running.watch_config;
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "issuer_url = \"https://sso.example.com\"\nclient_id = \"c\"\nclient_secret = \"s\"\ncookie_secret = \"DbhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk\"\nupstream = \"http://127.0.0.1:9000\"\n";

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str, text: &str) -> Scratch {
            let path = std::env::temp_dir().join(format!(
                "gatehouse-reload-{}-{name}.toml",
                std::process::id()
            ));
            std::fs::write(&path, text).unwrap();
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn every_fixed_setting_is_a_key() {
        for k in FIXED.iter().chain(WATCHED_FILES) {
            assert!(super::super::keys::find(k).is_some(), "{k} is not a key");
        }
    }

    #[test]
    fn a_reload_keeps_fixed_settings_names_them_and_applies_the_rest() {
        let file = Scratch::new(
            "fixed",
            &format!("{BASE}listen = \"127.0.0.1:4180\"\nallowed_groups = [\"a\"]\n"),
        );
        let env: HashMap<String, String> =
            [("GATEHOUSE_MAX_CONNECTIONS".to_string(), "100".to_string())].into();
        let (running, source) = Source::load(Some(&file.0), &env, RawConfig::default()).unwrap();
        std::fs::write(
            &file.0,
            format!("{BASE}listen = \"127.0.0.1:5000\"\nallowed_groups = [\"b\"]\nissuer_url = \"https://other.example.com\"\n")
                .replacen("issuer_url = \"https://sso.example.com\"\n", "", 1),
        )
        .unwrap();
        let r = source.reload(&running).unwrap();
        assert_eq!(r.kept, vec!["listen", "issuer_url"]);
        assert_eq!(r.config.listen, running.listen);
        assert_eq!(r.config.issuer_url, "https://sso.example.com");
        assert_eq!(r.config.rules.groups, vec!["b".to_string()]);
        // The environment is the one gatehouse started with.
        assert_eq!(r.config.limits.max_connections, 100);
    }

    #[test]
    fn a_broken_reload_lists_every_problem() {
        let file = Scratch::new("broken", BASE);
        let (running, source) = Source::load(
            Some(&file.0),
            &HashMap::<String, String>::new(),
            RawConfig::default(),
        )
        .unwrap();
        std::fs::write(
            &file.0,
            format!("{BASE}allowed_grups = [\"x\"]\nmax_connections = -1\n"),
        )
        .unwrap();
        let e = source.reload(&running).unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        std::fs::remove_file(&file.0).unwrap();
        let e = source.reload(&running).unwrap_err();
        assert!(e.problems[0].contains("cannot read config file"), "{e}");
    }

    #[test]
    fn the_watched_files_are_the_config_and_the_secret_files() {
        let file = Scratch::new(
            "watched",
            &BASE.replace(
                "client_secret = \"s\"",
                "client_secret_file = \"/run/secrets/client\"",
            ),
        );
        let source = Source {
            file: Some(file.0.clone()),
            env: EnvSnapshot(HashMap::new()),
            flags: RawConfig::default(),
            started: Config::layer(
                Some(&file.0),
                &HashMap::<String, String>::new(),
                RawConfig::default(),
            )
            .unwrap()
            .0,
        };
        assert_eq!(
            source.watched_files(),
            vec![file.0.clone(), PathBuf::from("/run/secrets/client")]
        );
    }

    /// Loads `first`, rewrites the file to `then`, reloads.
    fn reload_from(name: &str, first: &str, then: &str) -> (Config, Reloaded) {
        let file = Scratch::new(name, first);
        let (running, source) = Source::load(
            Some(&file.0),
            &HashMap::<String, String>::new(),
            RawConfig::default(),
        )
        .unwrap();
        std::fs::write(&file.0, then).unwrap();
        let r = source.reload(&running).unwrap();
        (running, r)
    }

    #[test]
    fn a_kept_provider_keeps_its_preset_defaults_too() {
        // vault, tsidp, authentik, keycloak and entra each lay security defaults under the
        // configuration (who the user is, whether an unverified email counts): a provider
        // that is kept must not have its replacement's defaults applied.
        for (preset, issuer) in [
            (
                "vault",
                "https://vault.example.com/v1/identity/oidc/provider/default",
            ),
            ("tsidp", "https://sso.example.com"),
            ("authentik", "https://sso.example.com/application/o/app/"),
            ("keycloak", "https://sso.example.com/realms/r"),
        ] {
            let base = BASE.replace("https://sso.example.com", issuer);
            let (running, r) = reload_from(
                &format!("preset-{preset}"),
                &base,
                &format!("{base}provider = \"{preset}\"\n"),
            );
            assert_eq!(r.kept, vec!["provider"], "{preset}");
            assert_eq!(r.config.provider, "oidc", "{preset}");
            assert_eq!(r.config.claims.user, running.claims.user, "{preset}");
            assert_eq!(
                r.config.claims.require_email_verified, running.claims.require_email_verified,
                "{preset}"
            );
            assert_eq!(r.config.claims.groups, running.claims.groups, "{preset}");
            assert_eq!(r.config.scopes, running.scopes, "{preset}");
        }
        // And the other way: a running preset's defaults stay when the file drops it.
        let base = BASE.replace(
            "https://sso.example.com",
            "https://vault.example.com/v1/identity/oidc/provider/default",
        );
        let vault = format!("{base}provider = \"vault\"\n");
        let (running, r) = reload_from("preset-dropped", &vault, &base);
        assert_eq!(r.kept, vec!["provider"]);
        assert_eq!(r.config.provider, "vault");
        assert_eq!(r.config.claims.user, running.claims.user);
        assert!(!r.config.claims.require_email_verified);
    }

    #[test]
    fn a_fixed_setting_a_preset_derives_is_named_when_it_would_change() {
        let entra = |tenant: &str| {
            BASE.replace("issuer_url = \"https://sso.example.com\"\n", "")
                + &format!("provider = \"entra\"\ntenant_id = \"{tenant}\"\n")
        };
        let (running, r) = reload_from("entra", &entra("t-1"), &entra("t-2"));
        assert_eq!(r.kept, vec!["issuer_url"]);
        assert_eq!(r.config.issuer_url, running.issuer_url);
        assert!(
            running.issuer_url.contains("/t-1/"),
            "{}",
            running.issuer_url
        );
        // The same tenant: nothing to name.
        let (_, r) = reload_from("entra-same", &entra("t-1"), &entra("t-1"));
        assert!(r.kept.is_empty(), "{:?}", r.kept);
    }

    #[test]
    fn a_broken_fixed_setting_still_refuses_the_reload() {
        let file = Scratch::new("broken-fixed", BASE);
        let (running, source) = Source::load(
            Some(&file.0),
            &HashMap::<String, String>::new(),
            RawConfig::default(),
        )
        .unwrap();
        std::fs::write(&file.0, format!("{BASE}listen = \"nowhere\"\n")).unwrap();
        let e = source.reload(&running).unwrap_err();
        assert!(e.problems.iter().any(|p| p.contains("listen")), "{e}");
    }
}
