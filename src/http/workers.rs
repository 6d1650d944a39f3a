//! The threading model, like nginx's workers: one single-threaded runtime per CPU, each
//! with its own upstream connection pool, so a request never crosses threads (no work
//! stealing, no cross-thread wake-ups between the client and the upstream connection).
//! One acceptor hands new connections to the workers in turn, so the load is spread
//! evenly whatever the kernel does with wake-ups (a shared accept queue left one worker
//! with most connections in bench/run.sh, and throughput swung by a third between runs).

use super::{app, AppState};
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The client's address, as recorded for each connection.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

type Handed = (std::net::TcpStream, SocketAddr);

/// A worker's end of the hand-off: the connections the acceptor gave it.
struct Handoff {
    rx: mpsc::UnboundedReceiver<Handed>,
    local: SocketAddr,
}

impl Listener for Handoff {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Some((stream, peer)) = self.rx.recv().await else {
                // The acceptor is gone: shutting down; graceful shutdown ends the worker.
                return std::future::pending().await;
            };
            match TcpStream::from_std(stream) {
                Ok(s) => return (s, peer),
                Err(e) => tracing::warn!(error = %e, "could not adopt a connection"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl Connected<IncomingStream<'_, Handoff>> for Peer {
    fn connect_info(stream: IncomingStream<'_, Handoff>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

/// How many workers: one per CPU (`GATEHOUSE_WORKERS` overrides).
fn worker_count() -> usize {
    std::env::var("GATEHOUSE_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .filter(|w| *w > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

/// Accepts on `listener` and serves on the workers until `shutdown` completes.
pub(super) async fn run(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    // Dropping `stop` (shutdown, or this future being cancelled) stops every worker.
    let (stop, stopped) = tokio::sync::watch::channel(());
    let mut senders = Vec::new();
    let mut threads = Vec::new();
    for i in 0..worker_count() {
        let (tx, rx) = mpsc::unbounded_channel::<Handed>();
        senders.push(tx);
        let state = state.for_worker();
        let mut stopped = stopped.clone();
        let thread = std::thread::Builder::new()
            .name(format!("gatehouse-worker-{i}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let app = app(state).into_make_service_with_connect_info::<Peer>();
                    axum::serve(Handoff { rx, local }, app)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.changed().await;
                        })
                        .await
                })
            })?;
        threads.push(thread);
    }
    tokio::pin!(shutdown);
    let mut next = 0usize;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let Ok(stream) = stream.into_std() else { continue };
                    if senders[next % senders.len()].send((stream, peer)).is_err() {
                        tracing::error!("a worker is gone; stopping");
                        break;
                    }
                    next = next.wrapping_add(1);
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(senders);
    drop(stop);
    tokio::task::spawn_blocking(move || {
        for t in threads {
            match t.join() {
                Ok(Err(e)) => tracing::warn!(error = %e, "a worker stopped with an error"),
                Err(_) => tracing::error!("a worker thread panicked"),
                Ok(Ok(())) => {}
            }
        }
    })
    .await
    .map_err(std::io::Error::other)
}
