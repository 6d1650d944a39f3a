//! `gatehouse demo`: DEVELOPMENT ONLY. Starts the embedded development IdP, the whoami
//! upstream (unless `--upstream` names another) and gatehouse in front, all on loopback,
//! with fresh random secrets, and prints the URL to open.

use crate::config::{Config, RawConfig};
use crate::devidp::{self, DevClient};
use crate::util::random_token;
use clap::Args;
use std::net::SocketAddr;
use tokio::net::TcpListener;

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Where gatehouse listens.
    #[arg(long, default_value = "127.0.0.1:4180", allow_hyphen_values = true)]
    pub listen: SocketAddr,
    /// Where the development IdP listens (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0", allow_hyphen_values = true)]
    pub idp_listen: SocketAddr,
    /// Also serve the internal forward-auth listener here (`auth_listen`): an ingress
    /// in front of the demo asks `/oauth2/auth` on it and gets the ID token too.
    #[arg(long, allow_hyphen_values = true)]
    pub auth_listen: Option<SocketAddr>,
    /// Also serve Prometheus metrics here (`metrics_listen`): `GET /metrics` only.
    #[arg(long, allow_hyphen_values = true)]
    pub metrics_listen: Option<SocketAddr>,
    /// Where the built-in whoami upstream listens (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0", allow_hyphen_values = true)]
    pub upstream_listen: SocketAddr,
    /// Use this upstream instead of the built-in whoami page.
    #[arg(long, allow_hyphen_values = true)]
    pub upstream: Option<url::Url>,
    /// The group the login form suggests.
    #[arg(long, default_value = "developers", allow_hyphen_values = true)]
    pub group: String,
    /// ID token lifetime at the dev IdP, in seconds. gatehouse refreshes 60 s before
    /// expiry (`refresh_before_secs`), so at 60 or less every request refreshes.
    #[arg(long, default_value_t = 300, allow_hyphen_values = true)]
    pub token_ttl: u64,
    /// Another client the dev IdP accepts, as ID:SECRET:REDIRECT_URI (the redirect URI
    /// on loopback, plain http). Repeatable. bench/run.sh signs Apache with
    /// mod_auth_openidc in with it, so every peer uses the same provider.
    #[arg(
        long = "extra-client",
        value_name = "ID:SECRET:REDIRECT_URI",
        allow_hyphen_values = true
    )]
    pub extra_clients: Vec<String>,
}

/// The id of the client gatehouse itself uses at the dev IdP.
const DEMO_CLIENT_ID: &str = "gatehouse-demo";

/// Reads every `--extra-client` value; on any mistake, all of them at once.
fn extra_clients(args: &DemoArgs, ttl: u64) -> Result<Vec<DevClient>, String> {
    let mut problems = Vec::new();
    let mut clients: Vec<DevClient> = Vec::new();
    for value in &args.extra_clients {
        match extra_client(value) {
            Ok((id, secret, redirect)) => {
                if id == DEMO_CLIENT_ID || clients.iter().any(|c| c.client_id == id) {
                    problems.push(format!("--extra-client {id}: that client id is taken"));
                    continue;
                }
                clients.push(DevClient {
                    client_id: id,
                    client_secret: secret,
                    redirect_uri: redirect,
                    default_group: args.group.clone(),
                    id_token_ttl: ttl,
                });
            }
            // The value carries a secret: name the client, never echo the value.
            Err(e) => problems.push(format!("--extra-client {}: {e}", shown_id(value))),
        }
    }
    if problems.is_empty() {
        Ok(clients)
    } else {
        Err(problems.join("\n"))
    }
}

/// The id part of an `--extra-client` value, for messages (never the secret).
fn shown_id(value: &str) -> String {
    let id = value.split(':').next().unwrap_or_default();
    if id.is_empty() {
        "(no id)".into()
    } else {
        id.chars().filter(|c| !c.is_control()).take(64).collect()
    }
}

/// Splits `ID:SECRET:REDIRECT_URI` (the URI has colons of its own) and checks each part.
fn extra_client(value: &str) -> Result<(String, String, String), String> {
    let usage = "expected ID:SECRET:REDIRECT_URI";
    let (id, rest) = value.split_once(':').ok_or(usage)?;
    let (secret, redirect) = rest.split_once(':').ok_or(usage)?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the client id must be printable ASCII without spaces".into());
    }
    if secret.is_empty() {
        return Err("the secret is empty".into());
    }
    let url = url::Url::parse(redirect)
        .map_err(|e| format!("the redirect URI `{redirect}` is not a URL: {e}"))?;
    if url.scheme() != "http" || !crate::config::is_loopback(&url) {
        return Err(format!(
            "the redirect URI `{redirect}` must be http:// on loopback: the demo runs there only"
        ));
    }
    if url.fragment().is_some() {
        return Err(format!("the redirect URI `{redirect}` has a fragment"));
    }
    Ok((id.to_string(), secret.to_string(), redirect.to_string()))
}

async fn bind(addr: SocketAddr, what: &str) -> Result<(TcpListener, SocketAddr), String> {
    if !addr.ip().is_loopback() {
        return Err(format!(
            "the demo runs on loopback only; {what} address {addr} is not"
        ));
    }
    let l = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} for the {what}: {e}"))?;
    let a = l.local_addr().map_err(|e| e.to_string())?;
    Ok((l, a))
}

/// Runs the demo until Ctrl-C.
pub async fn run(args: DemoArgs) -> Result<(), String> {
    let (idp_l, idp_addr) = bind(args.idp_listen, "identity provider").await?;
    let (gh_l, gh_addr) = bind(args.listen, "gatehouse").await?;
    let auth = match args.auth_listen {
        Some(a) => Some(bind(a, "forward-auth listener").await?),
        None => None,
    };
    let metrics = match args.metrics_listen {
        Some(a) => Some(bind(a, "metrics listener").await?),
        None => None,
    };
    let upstream = match &args.upstream {
        Some(u) => u.to_string(),
        None => {
            let (up_l, up_addr) = bind(args.upstream_listen, "upstream").await?;
            tokio::spawn(async move { axum::serve(up_l, crate::whoami::app()).await });
            format!("http://{up_addr}")
        }
    };
    let issuer = format!("http://{idp_addr}");
    let redirect = format!("http://{gh_addr}/oauth2/callback");
    let ttl = args.token_ttl.max(30);
    let others = extra_clients(&args, ttl)?;
    let client = DevClient {
        client_id: DEMO_CLIENT_ID.into(),
        client_secret: random_token(24),
        redirect_uri: redirect.clone(),
        default_group: args.group.clone(),
        id_token_ttl: ttl,
    };
    let mut raw = RawConfig::default();
    raw.set("upstream", &upstream);
    raw.set("issuer_url", &issuer);
    raw.set("client_id", &client.client_id);
    raw.set("client_secret", &client.client_secret);
    raw.set("cookie_secret", &crate::config::secret::generate());
    raw.set("cookie_secure", "false");
    raw.set("redirect_url", &redirect);
    raw.set("listen", &gh_addr.to_string());
    raw.set("post_logout_redirect_url", &format!("http://{gh_addr}/"));
    if let Some((_, a)) = &auth {
        raw.set("auth_listen", &a.to_string());
    }
    if let Some((_, a)) = &metrics {
        raw.set("metrics_listen", &a.to_string());
    }
    let cfg = Config::from_raw(&raw).map_err(|e| e.to_string())?;
    crate::telemetry::init(cfg.log_format, &cfg.log_level, &cfg.audit_log)?;

    let mut clients = vec![client];
    clients.extend(others.iter().cloned());
    let idp = devidp::app(issuer.clone(), clients)?;
    tokio::spawn(async move { axum::serve(idp_l, idp).await });

    println!("gatehouse demo: DEVELOPMENT ONLY. The built-in identity provider lets anyone sign in as anyone.");
    println!("  identity provider: {issuer}");
    for c in &others {
        println!("  extra client: {} -> {}", c.client_id, c.redirect_uri);
    }
    println!("  upstream: {upstream}");
    println!("  gatehouse:  http://{gh_addr}/");
    if let Some((_, a)) = &auth {
        println!("  forward-auth listener: http://{a}/oauth2/auth");
    }
    if let Some((l, a)) = metrics {
        println!("  metrics: http://{a}/metrics");
        crate::metrics::enable();
        tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(l).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
    }
    println!("Open http://{gh_addr}/ in a browser (use this exact host: cookies are per host). Ctrl-C stops.");
    let state = crate::http::AppState::new(cfg).map_err(|e| e.to_string())?;
    let auth = auth.map(|(l, _)| l);
    crate::http::serve_with_auth(state, gh_l, auth, crate::cli::shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        demo: DemoArgs,
    }

    fn parsed(values: &[&str]) -> Result<Vec<DevClient>, String> {
        let mut argv = vec!["demo".to_string()];
        for v in values {
            argv.push(format!("--extra-client={v}"));
        }
        extra_clients(&Cli::parse_from(argv).demo, 60)
    }

    #[test]
    fn an_extra_client_keeps_the_colons_of_its_redirect_uri() {
        let c = parsed(&["apache:s3cr:et?:http://127.0.0.1:8080/oauth2/callback"]);
        // the secret ends at the second colon; the rest is the URI, which then is not http
        assert!(c.is_err());
        let c = parsed(&[
            "apache:s3cret:http://127.0.0.1:8080/oauth2/callback",
            "other:x:http://localhost:9/cb",
        ])
        .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].client_id, "apache");
        assert_eq!(c[0].client_secret, "s3cret");
        assert_eq!(c[0].redirect_uri, "http://127.0.0.1:8080/oauth2/callback");
        assert_eq!(c[0].id_token_ttl, 60);
        assert_eq!(c[0].default_group, "developers");
    }

    #[test]
    fn every_bad_extra_client_is_named_and_no_secret_is_echoed() {
        let err = parsed(&[
            "nocolons",
            "a:only-two",
            ":s:http://127.0.0.1/cb",
            "b::http://127.0.0.1/cb",
            "c:topsecret:https://127.0.0.1/cb",
            "d:topsecret:http://sso.example.com/cb",
            "e:topsecret:http://[::1]:1/cb#frag",
            "gatehouse-demo:topsecret:http://127.0.0.1/cb",
            "f:topsecret:http://127.0.0.1/cb",
            "f:topsecret:http://127.0.0.1/cb2",
        ])
        .unwrap_err();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 9, "{err}");
        for (line, needle) in lines.iter().zip([
            "nocolons: expected ID:SECRET:REDIRECT_URI",
            "a: expected ID:SECRET:REDIRECT_URI",
            "(no id): the client id must be printable",
            "b: the secret is empty",
            "c: the redirect URI `https://127.0.0.1/cb` must be http:// on loopback",
            "d: the redirect URI `http://sso.example.com/cb` must be http:// on loopback",
            "e: the redirect URI `http://[::1]:1/cb#frag` has a fragment",
            "gatehouse-demo: that client id is taken",
            "f: that client id is taken",
        ]) {
            assert!(line.contains(needle), "{line:?} lacks {needle:?}");
        }
        assert!(
            !err.contains("topsecret") && !err.contains("only-two"),
            "{err}"
        );
    }
}
