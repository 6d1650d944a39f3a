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
    #[arg(long, default_value = "127.0.0.1:4180")]
    pub listen: SocketAddr,
    /// Where the development IdP listens (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub idp_listen: SocketAddr,
    /// Where the built-in whoami upstream listens (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub upstream_listen: SocketAddr,
    /// Use this upstream instead of the built-in whoami page.
    #[arg(long)]
    pub upstream: Option<url::Url>,
    /// The group the login form suggests.
    #[arg(long, default_value = "developers")]
    pub group: String,
    /// ID token lifetime at the dev IdP, in seconds. gatehouse refreshes 60 s before
    /// expiry (`refresh_before_secs`), so at 60 or less every request refreshes.
    #[arg(long, default_value_t = 300)]
    pub token_ttl: u64,
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
    let client = DevClient {
        client_id: "gatehouse-demo".into(),
        client_secret: random_token(24),
        redirect_uri: redirect.clone(),
        default_group: args.group.clone(),
        id_token_ttl: args.token_ttl.max(30),
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
    let cfg = Config::from_raw(&raw).map_err(|e| e.to_string())?;
    crate::telemetry::init(cfg.log_format, &cfg.log_level);

    let idp = devidp::app(issuer.clone(), client)?;
    tokio::spawn(async move { axum::serve(idp_l, idp).await });

    println!("gatehouse demo: DEVELOPMENT ONLY. The built-in identity provider lets anyone sign in as anyone.");
    println!("  identity provider: {issuer}");
    println!("  upstream: {upstream}");
    println!("  gatehouse:  http://{gh_addr}/");
    println!("Open http://{gh_addr}/ in a browser (use this exact host: cookies are per host). Ctrl-C stops.");
    let state = crate::http::AppState::new(cfg).map_err(|e| e.to_string())?;
    crate::http::serve(state, gh_l, crate::cli::shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}
