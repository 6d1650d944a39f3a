//! Protocol upgrades (RFC 9110 §7.8): once both sides have switched, bytes are copied in
//! both directions until either side closes. The upgrade request itself went through the
//! normal path, so it carried the injected identity headers and the client's
//! `Sec-WebSocket-Protocol` (e.g. Headlamp's `base64.binary.k8s.io`).

use super::tunnels::{Tunnels, Why};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// WebSocket close frames from the server side (RFC 6455 §5.5.1), no reason text:
/// code 4001 when the session behind the connection ends, 1001 (going away) on shutdown.
const CLOSE_SESSION_ENDED: [u8; 4] = [0x88, 0x02, 0x0F, 0xA1];
const CLOSE_GOING_AWAY: [u8; 4] = [0x88, 0x02, 0x03, 0xE9];
/// Close frame, code 4003: the rules changed (a reload) and no longer let it through.
const CLOSE_REVOKED: [u8; 4] = [0x88, 0x02, 0x0F, 0xA3];

/// Buffer per direction of an upgraded connection. WebSocket traffic through a dashboard
/// is small frames (watch events, keystrokes); Headlamp keeps several sockets open per
/// tab, so the buffer is most of what an open one costs (tokio's default is 8 KiB).
const SPLICE_BUF: usize = 4 * 1024;

/// What ties an upgraded connection to the session that opened it.
pub struct Tether {
    /// The session that opened it (its end closes the connection), if any.
    pub session: Option<crate::proxy::tunnels::Owner>,
    /// What let it through (a reload's new rules are asked again).
    pub admitted: Option<crate::proxy::tunnels::Admitted>,
    /// When the session expires (Unix seconds).
    pub ends_at: Option<u64>,
    /// The protocol is WebSocket, so a close frame can say why it ends.
    pub websocket: bool,
}

/// Joins the client's and the upstream's upgraded connections in a background task,
/// registered in `tunnels`. The connection is closed, with a WebSocket close frame to the
/// client, at `ends_at`, when the session ends (signed out, or ended on another replica or by the provider), or on shutdown, so
/// an upgrade never outlives its session; the client reconnects through the auth step.
pub fn splice(client: OnUpgrade, upstream: OnUpgrade, tunnels: Arc<Tunnels>, tether: Tether) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "protocol upgrade did not complete");
                return;
            }
        };
        let registration = tunnels.register_admitted(tether.session, tether.admitted);
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        let expiry = async {
            match tether.ends_at {
                Some(t) => {
                    let left = t.saturating_sub(crate::util::now_secs());
                    tokio::time::sleep(std::time::Duration::from_secs(left)).await;
                    Why::SessionEnded
                }
                None => std::future::pending().await,
            }
        };
        let why = tokio::select! {
            done = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, SPLICE_BUF, SPLICE_BUF) => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, "upgraded connection ended with an error");
                }
                return;
            }
            why = expiry => why,
            why = registration.asked() => why,
        };
        match why {
            Why::SessionEnded => {
                tracing::info!("closing an upgraded connection: its session ended")
            }
            Why::ShuttingDown => tracing::debug!("closing an upgraded connection: shutting down"),
            Why::Revoked => tracing::info!(
                "closing an upgraded connection: the reloaded rules no longer let it through"
            ),
        }
        if tether.websocket {
            let frame = match why {
                Why::SessionEnded => &CLOSE_SESSION_ENDED,
                Why::ShuttingDown => &CLOSE_GOING_AWAY,
                Why::Revoked => &CLOSE_REVOKED,
            };
            let _ = client.write_all(frame).await;
        }
        let _ = client.shutdown().await;
        let _ = upstream.shutdown().await;
    });
}
