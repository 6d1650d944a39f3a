//! Provider presets (`provider = "tsidp" | "vault" | ...`): what each provider our users
//! run needs, as data. A preset is (1) defaults laid *under* the user's configuration, so
//! every one stays overridable, and (2) checks that turn a provider's known failure into a
//! start-up problem that says how to fix it (CONTRACTS.md §3). `gatehouse check` prints
//! the defaults a preset chose.

use super::sources::{Entry, Origin, RawConfig, RawValue};

/// One provider's defaults and checks.
pub struct Preset {
    pub name: &'static str,
    /// `(key, value)` defaults; `{tenant_id}` and `{client_id}` are filled in. Lists are
    /// written as a user would write them in a variable: separated by commas.
    defaults: &'static [(&'static str, &'static str)],
    /// What a user should know, printed by `check`.
    pub notes: &'static [&'static str],
    /// ID tokens may name the issuer without its `https://` (Google's
    /// `accounts.google.com`): that spelling of the configured issuer is accepted too.
    issuer_without_scheme: bool,
    /// The provider rotates refresh tokens and refuses a used one (tsidp, Dex): several
    /// replicas on the cookie store would spend one twice.
    pub rotates_refresh_tokens: bool,
}

/// Every preset, `oidc` (no defaults) first.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "oidc",
        defaults: &[],
        notes: &[],
        rotates_refresh_tokens: false,
        issuer_without_scheme: false,
    },
    Preset {
        name: "tsidp",
        defaults: &[
            ("scopes", "openid,email,profile"),
            ("require_email_verified", "false"),
        ],
        notes: &[
            "tsidp sends no email_verified claim: its emails are trusted as they are (require_email_verified = false)",
            "tsidp accepts only the scopes openid, email and profile, and sends no groups",
            "tokens live 5 minutes and are renewed refresh_before_secs ahead; each single-use refresh token is spent once, whatever the concurrency",
            "tsidp has no end-session endpoint: sign-out ends the gatehouse session only",
        ],
        rotates_refresh_tokens: true,
        issuer_without_scheme: false,
    },
    Preset {
        name: "vault",
        defaults: &[
            ("scopes", "openid"),
            ("user_claim", "sub"),
            ("require_email_verified", "false"),
        ],
        notes: &[
            "scope openid gives only sub (the entity ID), aud, iat, exp and nonce: the user is sub, as the API server's --oidc-username-claim=sub; to map a name, add a scope whose template sets it and set user_claim",
            "Vault sends no email_verified claim: emails from its scope templates are trusted as they are (require_email_verified = false)",
            "Vault issues no refresh tokens: the session lasts until the ID token expires, then the next navigation signs in again",
            "claims such as email and groups come from the provider's scope templates: add those scopes to `scopes`",
            "keys may be EdDSA, which the Kubernetes API server cannot verify: use an RS256 key for the provider if Headlamp forwards the token",
        ],
        rotates_refresh_tokens: false,
        issuer_without_scheme: false,
    },
    Preset {
        name: "authentik",
        defaults: &[
            ("scopes", "openid,email,profile,offline_access"),
            ("user_claim", "preferred_username"),
        ],
        notes: &[
            "the issuer is https://<host>/application/o/<slug>/ with its trailing slash",
            "offline_access is requested so that refresh works",
            "recent Authentik marks emails email_verified: false; the user is mapped from preferred_username. To have Authentik vouch for emails, set email_verified in the email scope mapping",
            "an application without a signing key signs with HS256, which gatehouse and the Kubernetes API server refuse: choose a signing key for it",
        ],
        rotates_refresh_tokens: false,
        issuer_without_scheme: false,
    },
    Preset {
        name: "entra",
        defaults: &[
            ("issuer_url", "https://login.microsoftonline.com/{tenant_id}/v2.0"),
            ("scopes", "openid,email,profile,offline_access"),
            ("user_claim", "preferred_username"),
        ],
        notes: &[
            "PKCE is used although Entra's discovery does not advertise it",
            "above 200 groups Entra sends no groups claim (overage): gatehouse refuses the login and says so; assign groups to the application or use app roles",
            "user_claim may be oid, preferred_username (default) or upn; Entra's email claim is not verified",
        ],
        rotates_refresh_tokens: false,
        issuer_without_scheme: false,
    },
    Preset {
        name: "keycloak",
        defaults: &[
            ("groups_claim", "groups,realm_access.roles,resource_access.{client_id}.roles"),
            ("groups_trim_leading_slash", "true"),
            ("user_claim", "preferred_username"),
        ],
        notes: &[
            "the issuer is https://<host>/realms/<realm> (or /auth/realms/<realm> before Keycloak 17)",
            "groups merge the groups claim (a group mapper) with realm roles and this client's roles; groups_trim_leading_slash (on) turns a group mapper's full paths such as /admins into admins",
            "the user is mapped from preferred_username (the Keycloak username, always sent): Keycloak sends email_verified: false for users whose email nobody verified, and an unverified email cannot be the user",
            "sign-out goes to Keycloak's end-session endpoint with id_token_hint",
        ],
        rotates_refresh_tokens: false,
        issuer_without_scheme: false,
    },
    Preset {
        name: "dex",
        defaults: &[("scopes", "openid,email,profile,groups,offline_access")],
        notes: &[
            "groups and offline_access are requested: Dex sends groups and refresh tokens only for those scopes, and rotates refresh tokens",
        ],
        rotates_refresh_tokens: true,
        issuer_without_scheme: false,
    },
    Preset {
        name: "google",
        defaults: &[
            ("issuer_url", "https://accounts.google.com"),
            ("extra_auth_params", "access_type=offline,prompt=consent"),
        ],
        notes: &[
            "Google sends no groups; hosted_domain limits sign-in to a Workspace domain (the hd claim is checked)",
            "access_type=offline and prompt=consent are sent so that Google issues a refresh token",
            "ID tokens may carry iss accounts.google.com, without https://: both spellings are accepted",
        ],
        rotates_refresh_tokens: false,
        issuer_without_scheme: true,
    },
];

/// The preset a configuration names (`oidc` when unset); `Err` lists the valid names.
pub fn select(raw: &RawConfig) -> Result<&'static Preset, String> {
    let name = match raw.get("provider").map(|e| &e.value) {
        Some(RawValue::Str(s)) => s.trim().to_ascii_lowercase(),
        _ => "oidc".into(),
    };
    let name = if name.is_empty() { "oidc".into() } else { name };
    PRESETS.iter().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        format!("provider: `{name}` is not one of {}", names.join(", "))
    })
}

/// `raw` as its preset completes it: the values the configuration is built from, preset
/// defaults included (a key the user left unset may still have a value here).
pub fn effective(raw: &RawConfig) -> RawConfig {
    match select(raw) {
        Ok(p) => p.apply(raw),
        Err(_) => raw.clone(),
    }
}

fn raw_str(raw: &RawConfig, key: &str) -> Option<String> {
    match raw.get(key).map(|e| &e.value) {
        Some(RawValue::Str(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

impl Preset {
    /// The defaults this preset lays under `raw` (those the user did not set), with
    /// placeholders filled in. A default that needs a missing placeholder is left out.
    pub fn defaults_for(&self, raw: &RawConfig) -> Vec<(&'static str, String)> {
        self.defaults
            .iter()
            .filter(|(k, _)| raw.get(k).is_none())
            .filter_map(|(k, v)| {
                let mut v = v.to_string();
                for (ph, key) in [("{tenant_id}", "tenant_id"), ("{client_id}", "client_id")] {
                    if v.contains(ph) {
                        v = v.replace(ph, &raw_str(raw, key)?);
                    }
                }
                Some((*k, v))
            })
            .collect()
    }

    /// The spellings of `issuer` besides itself that this provider's ID tokens may carry
    /// in `iss` (none for most providers: `iss` is compared byte for byte).
    pub fn issuer_aliases(&self, issuer: &str) -> Vec<String> {
        issuer
            .strip_prefix("https://")
            .or_else(|| issuer.strip_prefix("http://"))
            .filter(|_| self.issuer_without_scheme)
            .map(|bare| vec![bare.to_string()])
            .unwrap_or_default()
    }

    /// `raw` with this preset's defaults underneath.
    pub fn apply(&self, raw: &RawConfig) -> RawConfig {
        let mut base = RawConfig::default();
        for (k, v) in self.defaults_for(raw) {
            base.insert(
                k,
                Entry {
                    value: RawValue::Str(v),
                    origin: Origin::Preset(self.name.to_string()),
                },
            );
        }
        base.overlay(raw.clone())
    }

    /// Start-up problems for this provider's known pitfalls.
    pub fn check(&self, raw: &RawConfig, scopes: &[String], issuer: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.name == "entra"
            && raw.get("issuer_url").is_none()
            && raw_str(raw, "tenant_id").is_none()
        {
            problems.push("tenant_id is required with provider = \"entra\" (the Directory (tenant) ID of the app registration), or set issuer_url".into());
        }
        if let Some(p) = self.scope_problem(scopes) {
            problems.push(p);
        }
        // A plain-http loopback issuer is a local stand-in (development, tests): its
        // form is not the real provider's, so only the real thing is checked.
        let stand_in = url::Url::parse(issuer)
            .is_ok_and(|u| u.scheme() == "http" && super::reader::is_loopback(&u));
        if let Some(p) = self
            .issuer_problem(issuer)
            .filter(|_| !issuer.is_empty() && !stand_in)
        {
            problems.push(p);
        }
        problems
    }

    fn scope_problem(&self, scopes: &[String]) -> Option<String> {
        let extra: Vec<&str> = scopes
            .iter()
            .map(String::as_str)
            .filter(|s| !matches!(*s, "openid" | "email" | "profile"))
            .collect();
        (self.name == "tsidp" && !extra.is_empty()).then(|| {
            format!(
                "scopes: tsidp accepts only openid, email and profile and refuses any other scope with invalid_scope; remove {}",
                extra.join(", ")
            )
        })
    }

    fn issuer_problem(&self, issuer: &str) -> Option<String> {
        let path = url::Url::parse(issuer)
            .map(|u| u.path().to_string())
            .unwrap_or_default();
        // `/v1/identity/oidc/provider/<name>`, or with a Vault Enterprise namespace
        // `/v1/<ns>/identity/oidc/provider/<name>`.
        let vault_name = path
            .strip_prefix("/v1/")
            .and_then(|rest| rest.split_once("identity/oidc/provider/"))
            .filter(|(ns, _)| ns.is_empty() || ns.ends_with('/'))
            .map(|(_, name)| name)
            .unwrap_or("");
        match self.name {
            "vault" if vault_name.is_empty() || vault_name.contains('/') => Some(format!(
                "issuer_url: a Vault issuer ends in /v1/identity/oidc/provider/<name> (e.g. https://vault.example.com/v1/identity/oidc/provider/default; with a namespace /v1/<ns>/identity/oidc/provider/<name>); `{issuer}` does not, and Vault would answer `invalid child issuer \"provider\"` or 404"
            )),
            "authentik" if !(issuer.contains("/application/o/") && issuer.ends_with('/')) => Some(format!(
                "issuer_url: an Authentik issuer is https://<host>/application/o/<slug>/ WITH the trailing slash (tokens carry it byte for byte); `{issuer}` is not"
            )),
            "entra" if !(issuer.starts_with("https://login.microsoftonline.com/") && issuer.ends_with("/v2.0")) => Some(format!(
                "issuer_url: the Entra ID v2 issuer is https://login.microsoftonline.com/<tenant>/v2.0; `{issuer}` is not (the v1 issuer https://sts.windows.net/<tenant>/ issues tokens gatehouse cannot use for sign-in)"
            )),
            "keycloak" if !issuer.contains("/realms/") => Some(format!(
                "issuer_url: a Keycloak issuer is https://<host>/realms/<realm> (or /auth/realms/<realm> before Keycloak 17); `{issuer}` is not"
            )),
            "google" if issuer != "https://accounts.google.com" => Some(format!(
                "issuer_url: Google's issuer is https://accounts.google.com; `{issuer}` is not"
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&'static str, &str)]) -> RawConfig {
        let mut r = RawConfig::default();
        for (k, v) in pairs {
            r.set(k, v);
        }
        r
    }

    #[test]
    fn defaults_fill_only_what_the_user_left_unset() {
        let r = raw(&[
            ("provider", "entra"),
            ("tenant_id", "t-1"),
            ("scopes", "openid"),
        ]);
        let p = select(&r).unwrap();
        let d = p.defaults_for(&r);
        assert!(d.contains(&(
            "issuer_url",
            "https://login.microsoftonline.com/t-1/v2.0".to_string()
        )));
        assert!(d.iter().all(|(k, _)| *k != "scopes"), "{d:?}");
        let applied = p.apply(&r);
        assert_eq!(
            applied.get("issuer_url").unwrap().origin,
            Origin::Preset("entra".into())
        );
        assert!(select(&raw(&[("provider", "okta")])).is_err());
        assert_eq!(select(&raw(&[])).unwrap().name, "oidc");
    }

    #[test]
    fn known_pitfalls_are_start_up_problems() {
        let tsidp = select(&raw(&[("provider", "tsidp")])).unwrap();
        let scopes = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert!(tsidp
            .check(
                &RawConfig::default(),
                &scopes("openid email profile"),
                "https://idp.tail.ts.net"
            )
            .is_empty());
        let p = tsidp.check(
            &RawConfig::default(),
            &scopes("openid groups offline_access"),
            "x",
        );
        assert!(p[0].contains("remove groups, offline_access"), "{p:?}");
        let vault = select(&raw(&[("provider", "vault")])).unwrap();
        for (issuer, ok) in [
            (
                "https://vault.example.com/v1/identity/oidc/provider/default",
                true,
            ),
            (
                "https://vault.example.com/v1/team-a/identity/oidc/provider/default",
                true,
            ),
            (
                "https://vault.example.com/v1/team-aidentity/oidc/provider/default",
                false,
            ),
            ("https://vault.example.com/v1/identity/oidc", false),
            (
                "https://vault.example.com/v1/identity/oidc/provider/",
                false,
            ),
            (
                "https://vault.example.com/v1/identity/oidc/provider/a/b",
                false,
            ),
        ] {
            let p = vault.check(&RawConfig::default(), &scopes("openid"), issuer);
            assert_eq!(p.is_empty(), ok, "{issuer}: {p:?}");
            if !ok {
                assert!(p[0].contains("invalid child issuer"), "{p:?}");
            }
        }
        let ak = select(&raw(&[("provider", "authentik")])).unwrap();
        assert!(ak
            .check(
                &RawConfig::default(),
                &[],
                "https://ak.example.com/application/o/headlamp/"
            )
            .is_empty());
        assert!(!ak
            .check(
                &RawConfig::default(),
                &[],
                "https://ak.example.com/application/o/headlamp"
            )
            .is_empty());
        let entra = select(&raw(&[("provider", "entra")])).unwrap();
        let p = entra.check(&raw(&[("provider", "entra")]), &[], "");
        assert!(p[0].contains("tenant_id is required"), "{p:?}");
        assert!(!entra
            .check(&RawConfig::default(), &[], "https://sts.windows.net/t/")
            .is_empty());
        let kc = select(&raw(&[("provider", "keycloak")])).unwrap();
        assert!(kc
            .check(&RawConfig::default(), &[], "https://kc/auth/realms/main")
            .is_empty());
        assert!(!kc
            .check(&RawConfig::default(), &[], "https://kc/main")
            .is_empty());
    }

    #[test]
    fn only_google_accepts_its_issuer_without_the_scheme() {
        let google = "https://accounts.google.com";
        for p in PRESETS {
            let want: Vec<String> = match p.name {
                "google" => vec!["accounts.google.com".into()],
                _ => vec![],
            };
            assert_eq!(p.issuer_aliases(google), want, "{}", p.name);
        }
        // Through the configuration, as the verifier gets it.
        let cfg = |provider: &str| {
            let r = raw(&[
                ("provider", provider),
                ("issuer_url", google),
                ("client_id", "c"),
                ("client_secret", "s"),
                ("upstream", "http://127.0.0.1:9"),
                (
                    "cookie_secret",
                    "DbhHMlgjId0RSNsoe2eA2ixZNeUIJ5VRtNEIaUoHMxk",
                ),
            ]);
            crate::config::Config::from_raw(&r).map(|c| c.issuer_aliases)
        };
        assert_eq!(cfg("google").unwrap(), vec!["accounts.google.com"]);
        assert!(cfg("oidc").unwrap().is_empty());
    }

    #[test]
    fn list_defaults_are_written_with_commas() {
        use crate::config::keys::{find, Kind};
        use crate::config::list::{parse, Written};
        let mut lists = 0;
        for p in PRESETS {
            let is_list = |k: &&str| find(k).is_some_and(|k| k.kind == Kind::List);
            for (k, v) in p.defaults.iter().filter(|(k, _)| is_list(k)) {
                let parsed = parse(k, Written::Text(v));
                assert!(parsed.is_ok(), "{} preset, {k}: {parsed:?}", p.name);
                lists += 1;
            }
        }
        assert!(lists >= 5, "{lists}");
    }
}
