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
    /// `[[routes]]` (`config/routes.rs`): only a file can hold them.
    pub routes: Option<FileRoutes>,
}

/// The `[[routes]]` tables as a file wrote them, read in `config/routes.rs`.
#[derive(Clone)]
pub struct FileRoutes {
    /// The file, for messages.
    pub path: String,
    pub tables: Vec<toml::Table>,
}

/// Read access to environment variables.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
    /// The names of every variable that is set (for warning about misspelt ones).
    fn names(&self) -> Vec<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn names(&self) -> Vec<String> {
        std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .collect()
    }
}

impl Environment for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
    fn names(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }
}

/// `GATEHOUSE_*` variables that are not configuration keys but are read all the same: by
/// gatehouse at run time (`GATEHOUSE_WORKERS`, `http/workers.rs`) and by its test harness
/// (the peers the interop tests run). None of them is warned about.
pub const OTHER_ENV_VARS: &[&str] = &[
    "GATEHOUSE_WORKERS",
    "GATEHOUSE_CHROMIUM",
    "GATEHOUSE_NGINX",
    "GATEHOUSE_CADDY",
    "GATEHOUSE_TRAEFIK",
    "GATEHOUSE_ENVOY",
];

/// One warning for every `GATEHOUSE_*` variable gatehouse does not read, with the nearest
/// setting's variable when there is a near miss (`GATEHOUSE_UPSTRAEM`).
pub fn unknown_env_vars(env: &dyn Environment) -> Vec<String> {
    let mut names: Vec<String> = env
        .names()
        .into_iter()
        .filter(|n| n.starts_with("GATEHOUSE_"))
        .filter(|n| !OTHER_ENV_VARS.contains(&n.as_str()))
        .filter(|n| !KEYS.iter().any(|k| k.env_name() == *n))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let hint = nearest(&n["GATEHOUSE_".len()..])
                .map(|k| format!(" (did you mean `{}`?)", k.env_name()))
                .unwrap_or_default();
            format!("env {n} is not a gatehouse setting and is ignored{hint}")
        })
        .collect()
}

impl RawConfig {
    /// Parses a TOML document. Unknown keys and values of the wrong type are problems.
    pub fn from_toml(text: &str, path: &str) -> Result<RawConfig, Vec<String>> {
        let (raw, problems) = RawConfig::from_toml_with_problems(text, path)?;
        if problems.is_empty() {
            Ok(raw)
        } else {
            Err(problems)
        }
    }

    /// Parses a TOML document, keeping every key it understands next to the problems
    /// (unknown keys, values of the wrong type), so that validation can still report what
    /// else is wrong in the same run. Only a document that is not TOML at all is an `Err`.
    pub fn from_toml_with_problems(
        text: &str,
        path: &str,
    ) -> Result<(RawConfig, Vec<String>), Vec<String>> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            vec![format!("{path}: not valid TOML: {}", e.message())]
        })?;
        let mut raw = RawConfig::default();
        let mut problems = Vec::new();
        for (name, value) in table {
            if name == "routes" {
                match super::routes::tables(value) {
                    Some(tables) => {
                        let path = path.to_string();
                        raw.routes = Some(FileRoutes { path, tables });
                    }
                    None => problems.push(format!("{path}: `routes` should be an array of tables: write each app as a [[routes]] section")),
                }
                continue;
            }
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
        Ok((raw, problems))
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
        self.routes = top.routes.or(self.routes);
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

    /// Removes one entry (the key is then unset in this layer).
    pub fn remove(&mut self, name: &str) {
        self.entries.remove(name);
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
    nearest(name)
        .map(|k| format!(" (did you mean `{}`?)", k.name))
        .unwrap_or_default()
}

/// The key a misspelt name most likely meant: case and `-` for `_` ignored, then the
/// fewest single-character edits (a swap of neighbours counts as one), within about one
/// edit per four characters; failing that, a key that contains the name or is contained
/// in it (`groups`, `allowed_groups_list`).
pub fn nearest(name: &str) -> Option<&'static keys::Key> {
    let n = name.to_ascii_lowercase().replace('-', "_");
    let budget = (n.chars().count() / 4).clamp(1, 3);
    let by_edits = KEYS
        .iter()
        .map(|k| (edit_distance(&n, k.name), k))
        .filter(|(d, _)| *d <= budget)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k);
    by_edits.or_else(|| {
        KEYS.iter()
            .find(|k| n.len() >= 4 && (k.name.contains(n.as_str()) || n.contains(k.name)))
    })
}

/// Optimal string alignment distance: insertions, omissions, substitutions and
/// transpositions of adjacent characters each cost one.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: distance between a[..i] and b[..j]
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
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
    fn near_misses_of_every_kind_get_the_key_they_meant() {
        for (typo, meant) in [
            ("client_secert", "client_secret"), // transposition
            ("clientsecret", "client_secret"),  // omission
            ("upstreamm", "upstream"),          // insertion
            ("cookie_secrat", "cookie_secret"), // substitution
            ("allowed_group", "allowed_groups"),
            ("issuer-url", "issuer_url"),
            ("Issuer_URL", "issuer_url"),
            ("upstraem", "upstream"),
        ] {
            assert_eq!(
                suggest(typo),
                format!(" (did you mean `{meant}`?)"),
                "{typo}"
            );
        }
        // far from every key: no guess
        for far in ["bogus", "x", "zzzzzzzzzzzz"] {
            assert_eq!(suggest(far), "", "{far}");
        }
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn a_toml_typo_keeps_the_other_keys_for_validation() {
        let (raw, problems) = RawConfig::from_toml_with_problems(
            "client_secert = \"s\"\nupstream = \"http://a\"\n",
            "g.toml",
        )
        .unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("did you mean `client_secret`"));
        assert!(raw.get("upstream").is_some());
        assert!(RawConfig::from_toml_with_problems("= x", "g.toml").is_err());
    }

    #[test]
    fn unknown_gatehouse_variables_are_warned_about_with_a_suggestion() {
        let env: HashMap<String, String> = [
            ("GATEHOUSE_UPSTRAEM", "http://a"),
            ("GATEHOUSE_UPSTREAM", "http://a"),
            ("GATEHOUSE_CLIENT_SECERT", "s"),
            ("GATEHOUSE_NOTHING_LIKE_IT", "1"),
            ("GATEHOUSE_WORKERS", "2"),
            ("GATEHOUSE_CHROMIUM", "/usr/bin/chromium"),
            ("GATEHOUSE_NGINX", "/usr/sbin/nginx"),
            ("PATH", "/bin"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let w = unknown_env_vars(&env);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[0].contains("GATEHOUSE_CLIENT_SECERT") && w[0].contains("`GATEHOUSE_CLIENT_SECRET`")
        );
        assert!(w[1].contains("GATEHOUSE_NOTHING_LIKE_IT") && !w[1].contains("did you mean"));
        assert!(w[2].contains("GATEHOUSE_UPSTRAEM") && w[2].contains("`GATEHOUSE_UPSTREAM`"));
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
