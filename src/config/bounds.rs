//! The largest value each number setting (`Kind::Secs` and `Kind::Count` in `keys.rs`)
//! may take. Beyond these a value is a mistake, and some would break a running process:
//! a duration is added to a clock reading (the shutdown deadline, a connection's idle
//! deadline, hyper's header-read deadline), and `u64::MAX` seconds overflows it. So
//! every number setting has a bound here (a test holds the table to the key list), and
//! [`Reader`](super::reader::Reader) refuses a larger value at start-up, naming the bound.

/// One bound: the key, its largest value, that value in words, and why when the bound is
/// tighter than "no sane configuration needs more".
pub(super) struct Bound {
    pub(super) key: &'static str,
    pub(super) max: u64,
    pub(super) words: &'static str,
    pub(super) why: Option<&'static str>,
}

const fn bound(key: &'static str, max: u64, words: &'static str) -> Bound {
    Bound {
        key,
        max,
        words,
        why: None,
    }
}

const YEAR: u64 = 365 * 24 * 3600;
const DAY: u64 = 24 * 3600;
const HOUR: u64 = 3600;
/// 1 MiB, which is also Linux's default ceiling on a process's open files (`fs.nr_open`,
/// 1048576): no more connections can be open at once.
const MIB: u64 = 1 << 20;

/// Every number setting's bound.
pub(super) const BOUNDS: &[Bound] = &[
    bound("session_lifetime_secs", YEAR, "one year"),
    bound("max_age", YEAR, "one year"),
    bound("login_timeout_secs", DAY, "one day"),
    bound("session_idle_timeout_secs", YEAR, "one year"),
    bound("redis_timeout_ms", 60_000, "one minute"),
    // Above every token's lifetime it means "refresh on every request", which tests and
    // debugging use: as long as a session may live.
    bound("refresh_before_secs", YEAR, "one year"),
    bound("shutdown_grace_secs", DAY, "one day"),
    bound("upstream_timeout_secs", DAY, "one day"),
    bound("header_read_timeout_secs", HOUR, "one hour"),
    bound("idle_timeout_secs", HOUR, "one hour"),
    bound("upstream_connect_timeout_secs", HOUR, "one hour"),
    bound("provider_timeout_secs", HOUR, "one hour"),
    bound("provider_connect_timeout_secs", HOUR, "one hour"),
    Bound {
        key: "assertion_lifetime_secs",
        max: DAY,
        words: "one day",
        why: Some("an assertion cannot be taken back: keep it short (minutes)"),
    },
    Bound {
        key: "clock_skew_secs",
        max: 300,
        words: "five minutes",
        why: Some("more would accept long-expired tokens; fix the clocks instead"),
    },
    bound("max_header_bytes", MIB, "1 MiB"),
    bound(
        "max_connections",
        MIB,
        "Linux's default limit on open files",
    ),
];

/// The bound of `key`; `None` only for a key that is no number.
pub(super) fn of(key: &str) -> Option<&'static Bound> {
    BOUNDS.iter().find(|b| b.key == key)
}

/// Why `n` is refused for `key`, or `None` when it is within the bound.
pub(super) fn exceeded(key: &str, n: u64) -> Option<String> {
    let b = of(key)?;
    (n > b.max).then(|| {
        let why = b.why.map(|w| format!("; {w}")).unwrap_or_default();
        format!("{n} is too large: at most {} ({}){why}", b.max, b.words)
    })
}

#[cfg(test)]
mod tests {
    use super::super::keys::{Kind, KEYS};
    use super::*;

    #[test]
    fn every_number_setting_has_a_bound_and_only_those() {
        for k in KEYS {
            let number = matches!(k.kind, Kind::Secs | Kind::Count);
            assert_eq!(of(k.name).is_some(), number, "{}", k.name);
        }
        for b in BOUNDS {
            assert!(KEYS.iter().any(|k| k.name == b.key), "{} is no key", b.key);
        }
    }

    /// A configuration that is valid but for `extra`.
    fn with(extra: super::super::RawConfig) -> Result<super::super::Config, String> {
        let base = super::super::RawConfig::from_toml(
            r#"
            issuer_url = "https://sso.example.com/"
            upstream = "http://127.0.0.1:9"
            client_id = "x"
            client_secret = "y"
            cookie_secret = "DbhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk"
            "#,
            "base.toml",
        )
        .unwrap();
        super::super::Config::from_raw(&base.overlay(extra)).map_err(|e| e.problems.join("\n"))
    }

    #[test]
    fn every_number_setting_is_refused_past_its_bound_however_written() {
        for b in BOUNDS {
            // At the bound: accepted (from a file, as a TOML integer).
            let at =
                super::super::RawConfig::from_toml(&format!("{} = {}", b.key, b.max), "f").unwrap();
            if let Err(e) = with(at) {
                assert!(!e.contains(b.key), "{} = {} refused: {e}", b.key, b.max);
            }
            // Past it, and at u64::MAX (which used to panic a running process): refused,
            // naming the bound, from a file and from a flag or variable alike.
            for n in [b.max + 1, u64::MAX] {
                let mut flag = super::super::RawConfig::default();
                flag.set(b.key, &n.to_string());
                let mut written = vec![flag];
                if let Ok(i) = i64::try_from(n) {
                    written.push(
                        super::super::RawConfig::from_toml(&format!("{} = {i}", b.key), "f")
                            .unwrap(),
                    );
                }
                for raw in written {
                    let e = with(raw).err().unwrap_or_default();
                    let want = format!("at most {} ({})", b.max, b.words);
                    assert!(
                        e.contains(b.key) && e.contains(&want),
                        "{} = {n}: want `{want}` in: {e:?}",
                        b.key
                    );
                }
            }
        }
    }

    #[test]
    fn the_message_names_the_bound() {
        assert_eq!(exceeded("session_lifetime_secs", YEAR), None);
        assert_eq!(
            exceeded("session_lifetime_secs", YEAR + 1).as_deref(),
            Some("31536001 is too large: at most 31536000 (one year)")
        );
        assert_eq!(
            exceeded("clock_skew_secs", u64::MAX).as_deref(),
            Some("18446744073709551615 is too large: at most 300 (five minutes); more would accept long-expired tokens; fix the clocks instead")
        );
        assert_eq!(exceeded("issuer_url", u64::MAX), None);
    }
}
