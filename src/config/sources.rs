//! Where configuration values come from: a TOML file, the environment and flags.
//!
//! Each source yields a [`RawConfig`] of untyped values tagged with their origin; they are
//! layered defaults < file < env < flags by [`RawConfig::overlay`], then typed and checked
//! in `validate.rs`. The environment is read through [`Environment`] so tests pass a map
//! instead of mutating the process environment.

use super::keys::{self, Kind, KEYS};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// An untyped value as a source gave it.
#[derive(Clone, PartialEq)]
pub enum RawValue {
    Str(String),
    List(Vec<String>),
    Bool(bool),
    Int(i64),
}

/// Where a value came from, for error messages ("GATEHOUSE_LISTEN: ...").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(String),
    Env(String),
    Flag(String),
    /// A provider preset's default (`provider = "..."`).
    Preset(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{p}"),
            Origin::Env(n) => write!(f, "env {n}"),
            Origin::Flag(n) => write!(f, "flag --{n}"),
            Origin::Preset(n) => write!(f, "the {n} preset"),
        }
    }
}

/// One value with its origin.
#[derive(Clone)]
pub struct Entry {
    pub value: RawValue,
    pub origin: Origin,
}

/// Untyped configuration: key name -> value.
#[derive(Clone, Default)]
pub struct RawConfig {
    entries: BTreeMap<&'static str, Entry>,
}

/// Read access to environment variables.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Environment for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl RawConfig {
    /// Parses a TOML document. Unknown keys and values of the wrong type are problems.
    pub fn from_toml(text: &str, path: &str) -> Result<RawConfig, Vec<String>> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            vec![format!("{path}: not valid TOML: {}", e.message())]
        })?;
        let mut raw = RawConfig::default();
        let mut problems = Vec::new();
        for (name, value) in table {
            let Some(key) = keys::find(&name) else {
                problems.push(format!("{path}: unknown key `{name}`{}", suggest(&name)));
                continue;
            };
            let origin = Origin::File(path.to_string());
            match toml_value(key.kind, &value) {
                Some(value) => {
                    raw.entries.insert(key.name, Entry { value, origin });
                }
                None => problems.push(format!(
                    "{path}: `{name}` should be {}",
                    kind_words(key.kind)
                )),
            }
        }
        if problems.is_empty() {
            Ok(raw)
        } else {
            Err(problems)
        }
    }

    /// Reads every `GATEHOUSE_<KEY>` variable that is set.
    pub fn from_env(env: &dyn Environment) -> RawConfig {
        let mut raw = RawConfig::default();
        for key in KEYS {
            let name = key.env_name();
            if let Some(v) = env.var(&name) {
                let origin = Origin::Env(name);
                raw.entries.insert(
                    key.name,
                    Entry {
                        value: RawValue::Str(v),
                        origin,
                    },
                );
            }
        }
        raw
    }

    /// Builds a layer from flag values (key name, value).
    pub fn from_pairs(pairs: &[(&'static str, String)]) -> RawConfig {
        let mut raw = RawConfig::default();
        for (name, v) in pairs {
            if let Some(key) = keys::find(name) {
                let origin = Origin::Flag(key.flag_name());
                raw.entries.insert(
                    key.name,
                    Entry {
                        value: RawValue::Str(v.clone()),
                        origin,
                    },
                );
            }
        }
        raw
    }

    /// Returns `self` with every value of `top` laid over it.
    pub fn overlay(mut self, top: RawConfig) -> RawConfig {
        self.entries.extend(top.entries);
        self
    }

    /// Sets a value as if it came from a flag (used by `demo`).
    pub fn set(&mut self, name: &'static str, value: &str) {
        self.entries.insert(
            name,
            Entry {
                value: RawValue::Str(value.to_string()),
                origin: Origin::Flag(name.replace('_', "-")),
            },
        );
    }

    /// Sets one entry with its origin.
    pub fn insert(&mut self, name: &'static str, entry: Entry) {
        self.entries.insert(name, entry);
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }
}

fn toml_value(kind: Kind, value: &toml::Value) -> Option<RawValue> {
    match (kind, value) {
        (_, toml::Value::String(s)) => Some(RawValue::Str(s.clone())),
        (Kind::List, toml::Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(RawValue::List),
        (Kind::Bool, toml::Value::Boolean(b)) => Some(RawValue::Bool(*b)),
        (Kind::Secs | Kind::Count, toml::Value::Integer(i)) => Some(RawValue::Int(*i)),
        _ => None,
    }
}

fn kind_words(kind: Kind) -> &'static str {
    match kind {
        Kind::Str => "a string",
        Kind::List => "a string or an array of strings",
        Kind::Bool => "true or false",
        Kind::Secs => "a whole number of seconds",
        Kind::Count => "a whole number",
    }
}

/// " (did you mean `x`?)" for a near miss, else "".
fn suggest(name: &str) -> String {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let n = norm(name);
    KEYS.iter()
        .find(|k| k.name == n || k.name.contains(n.as_str()) || n.contains(k.name))
        .map(|k| format!(" (did you mean `{}`?)", k.name))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_unknown_keys_and_bad_types_are_all_reported() {
        let err = RawConfig::from_toml("listen = 5\nissuer-url = \"x\"\nbogus = 1\n", "g.toml")
            .err()
            .unwrap();
        assert_eq!(err.len(), 3, "{err:?}");
        assert!(err.iter().any(|p| p.contains("did you mean `issuer_url`")));
    }

    #[test]
    fn later_layers_win() {
        let file =
            RawConfig::from_toml("listen = \"127.0.0.1:1\"\nupstream = \"http://a\"", "f").unwrap();
        let env: HashMap<String, String> =
            [("GATEHOUSE_LISTEN".to_string(), "127.0.0.1:2".to_string())].into();
        let flags = RawConfig::from_pairs(&[("upstream", "http://b".to_string())]);
        let raw = file.overlay(RawConfig::from_env(&env)).overlay(flags);
        assert!(raw.get("listen").unwrap().value == RawValue::Str("127.0.0.1:2".into()));
        assert!(raw.get("upstream").unwrap().value == RawValue::Str("http://b".into()));
        assert_eq!(
            raw.get("upstream").unwrap().origin,
            Origin::Flag("upstream".into())
        );
    }
}
