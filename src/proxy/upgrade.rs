//! Protocol upgrades (RFC 9110 §7.8): once both sides have switched, bytes are copied in
//! both directions until either side closes. The upgrade request itself went through the
//! normal path, so it carried the injected identity headers and the client's
//! `Sec-WebSocket-Protocol` (e.g. Headlamp's `base64.binary.k8s.io`).

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

/// A WebSocket close frame from the server side (RFC 6455 §5.5.1): code 4001, no reason.
/// Sent when the session behind the connection ends.
const CLOSE_SESSION_ENDED: [u8; 4] = [0x88, 0x02, 0x0F, 0xA1];

/// Joins the client's and the upstream's upgraded connections in a background task. At
/// `ends_at` (Unix seconds: when the session behind the upgrade expires) the connection
/// is closed, with a WebSocket close frame to the client, so an upgrade never outlives
/// its session; the client reconnects through the auth step.
pub fn splice(client: OnUpgrade, upstream: OnUpgrade, ends_at: Option<u64>) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "protocol upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        let left = ends_at
            .map(|t| std::time::Duration::from_secs(t.saturating_sub(crate::util::now_secs())));
        let ended = match left {
            Some(left) => match tokio::time::timeout(left, copy).await {
                Ok(done) => done.map(|_| ()),
                Err(_) => {
                    tracing::info!("closing an upgraded connection: its session expired");
                    let _ = client.write_all(&CLOSE_SESSION_ENDED).await;
                    let _ = client.shutdown().await;
                    Ok(())
                }
            },
            None => copy.await.map(|_| ()),
        };
        if let Err(e) = ended {
            tracing::debug!(error = %e, "upgraded connection ended with an error");
        }
    });
}
