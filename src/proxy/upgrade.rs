//! Protocol upgrades (RFC 9110 §7.8): once both sides have switched, bytes are copied in
//! both directions until either side closes. The upgrade request itself went through the
//! normal path, so it carried the injected identity headers and the client's
//! `Sec-WebSocket-Protocol` (e.g. Headlamp's `base64.binary.k8s.io`).

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Joins the client's and the upstream's upgraded connections in a background task.
pub fn splice(client: OnUpgrade, upstream: OnUpgrade) {
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
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(error = %e, "upgraded connection ended with an error");
        }
    });
}
