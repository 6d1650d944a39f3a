//! The threading model, like nginx's workers: one single-threaded runtime per CPU, each
//! with its own upstream connection pool, so a request never crosses threads (no work
//! stealing, no cross-thread wake-ups between the client and the upstream connection).
//! One acceptor hands new connections to the workers in turn, so the load is spread
//! evenly whatever the kernel does with wake-ups (a shared accept queue left one worker
//! with most connections in bench/run.sh, and throughput swung by a third between runs).
//! On shutdown, requests in flight get `shutdown_grace` to finish; the workers are waited
//! for at most a second longer, so a worker stuck in one request never keeps the process.
//! With TLS on `listen`, each connection's handshake and protocol (HTTP/2 or HTTP/1.1)
//! are `tls.rs`'s, on the worker; what a request gets, whatever carried it, is
//! `dispatch.rs`'s. `auth_listen` is always plain HTTP/1.1.

use super::AppState;
use crate::config::ServerLimits;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// The client's address, and whether its connection is TLS, as recorded for each
/// connection.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// A connection for a worker: the stream, the client, and whether it came in on the
/// internal forward-auth listener (`auth_listen`).
type Handed = (std::net::TcpStream, SocketAddr, bool);

/// Counts open client connections across workers; the guard gives its slot back.
pub(super) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        crate::metrics::connection_closed();
    }
}

/// Past `max_connections`: a quick, complete 503 instead of a slot.
async fn refuse(mut stream: TcpStream) {
    const BODY: &str = "gatehouse is at its connection limit (max_connections); retry shortly\n";
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        BODY.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(BODY.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Serves the connections handed to one worker: HTTP/1.1 with upgrades, a header-read
/// timeout (slow-loris guard), a bounded header size, and a shared connection cap. On
/// `stop`, each connection finishes its in-flight request and closes, within the grace.
async fn serve_worker(
    state: Arc<AppState>,
    mut rx: mpsc::UnboundedReceiver<Handed>,
    mut stopped: watch::Receiver<()>,
    open: Arc<AtomicUsize>,
    limits: ServerLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let tunnels = Arc::clone(&state.tunnels);
    let peak = Arc::new(AtomicUsize::new(0));
    tokio::spawn(tidy(
        Arc::clone(&open),
        Arc::clone(&tunnels),
        Arc::clone(&peak),
    ));
    loop {
        let (stream, peer, internal) = tokio::select! {
            handed = rx.recv() => match handed {
                Some(h) => h,
                None => break,
            },
            _ = stopped.changed() => break,
        };
        let Ok(stream) = TcpStream::from_std(stream) else {
            continue;
        };
        // An upgraded connection (WebSocket) leaves hyper, and `open`, once it switches:
        // it counts against the cap through `tunnels`.
        let now = open.fetch_add(1, Ordering::Relaxed) + tunnels.count();
        peak.fetch_max(now + 1, Ordering::Relaxed);
        if now >= limits.max_connections {
            open.fetch_sub(1, Ordering::Relaxed);
            crate::metrics::connection_refused();
            tracing::warn!(%peer, max = limits.max_connections, "connection refused: max_connections reached");
            tokio::spawn(refuse(stream));
            continue;
        }
        let slot = Slot(Arc::clone(&open));
        crate::metrics::connection_opened();
        let conn = Conn {
            base: Arc::clone(&state),
            peer: Peer {
                addr: peer,
                tls: false,
            },
            internal,
            limits,
            stop: stopped.clone(),
        };
        // `auth_listen` stays plain http (internal); `listen` speaks TLS when configured.
        match (&tls, internal) {
            (Some(acceptor), false) => {
                tokio::spawn(super::tls::serve(acceptor.clone(), stream, conn, slot));
            }
            _ => {
                tokio::spawn(serve_h1(stream, conn, slot));
            }
        }
    }
    // Stopping. WebSockets never finish by themselves: close them now, with a frame.
    tunnels.close_all();
}

/// What every request on one client connection shares.
pub(super) struct Conn {
    pub(super) base: Arc<AppState>,
    pub(super) peer: Peer,
    /// It came in on `auth_listen`.
    pub(super) internal: bool,
    pub(super) limits: ServerLimits,
    /// Changes when gatehouse stops.
    pub(super) stop: watch::Receiver<()>,
}

/// Serves one HTTP/1.1 connection (plain, or TLS without `h2` in ALPN): upgrades, a
/// header-read timeout (slow-loris guard), a bounded header size (`wire.rs`), and on
/// stop, the in-flight request finishes within the grace. Generic over the stream, so the
/// plain path is the same code as ever.
pub(super) async fn serve_h1<S>(stream: S, conn: Conn, slot: Slot)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Conn {
        base,
        peer,
        internal,
        limits,
        mut stop,
    } = conn;
    let (stream, wire) =
        super::wire::Watched::new(stream, limits.max_header_bytes, limits.idle_timeout);
    let heads = std::cell::Cell::new(0u64);
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let started = crate::metrics::Timer::start();
        let index = heads.replace(heads.get() + 1);
        let refused = super::framing::refusal(&req, wire.is_ambiguous(index));
        super::dispatch::respond(&base, peer, internal, req, refused, false, started)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper adds the header-read timeout to a clock reading unchecked: its bound in
    // `config/bounds.rs` is what keeps that from overflowing.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    let served = builder
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    let _slot = slot;
    tokio::pin!(served);
    tokio::select! {
        _ = served.as_mut() => {}
        _ = stop.changed() => {
            served.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.shutdown_grace, served).await;
        }
    }
}

/// How often a worker looks whether a wave of connections has ended.
const TIDY_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// How many connections (client connections and open upgrades, all workers) must have
/// ended since the last look for a worker to hand its free memory back.
const TIDY_DROP: usize = 64;

/// After a wave of connections ends (a thousand WebSockets closing, a load test), each
/// worker's heap keeps pages that the wave left partly used, and RSS stays above idle
/// for good. Every [`TIDY_EVERY`], a worker that has seen at least [`TIDY_DROP`] fewer
/// connections than at the peak since its last look hands its free memory back
/// (`memory::collect_this_thread`). Under steady load it does nothing.
async fn tidy(
    open: Arc<AtomicUsize>,
    tunnels: Arc<crate::proxy::tunnels::Tunnels>,
    peak: Arc<AtomicUsize>,
) {
    loop {
        tokio::time::sleep(TIDY_EVERY).await;
        let now = open.load(Ordering::Relaxed) + tunnels.count();
        if peak.swap(now, Ordering::Relaxed) >= now + TIDY_DROP {
            crate::memory::collect_this_thread();
        }
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

/// The next connection from either listener; `true` for the internal one.
async fn accept_either(
    main: &TcpListener,
    auth: Option<&TcpListener>,
) -> std::io::Result<(TcpStream, SocketAddr, bool)> {
    match auth {
        None => main.accept().await.map(|(s, p)| (s, p, false)),
        Some(auth) => tokio::select! {
            a = main.accept() => a.map(|(s, p)| (s, p, false)),
            a = auth.accept() => a.map(|(s, p)| (s, p, true)),
        },
    }
}

/// Accepts on `listener` (and the internal forward-auth listener `auth`, if any) and
/// serves on the workers until `shutdown` completes.
pub(super) async fn run(
    state: Arc<AppState>,
    listener: TcpListener,
    auth: Option<TcpListener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Dropping `stop` (shutdown, or this future being cancelled) stops every worker.
    let (stop, stopped) = watch::channel(());
    let grace = state.cfg.limits.shutdown_grace;
    let open = Arc::new(AtomicUsize::new(0));
    // One acceptor for every worker: the certificate it serves is swapped in one place.
    let acceptor = match &state.cfg.tls {
        Some(files) => Some(super::tls::acceptor(files)?),
        None => None,
    };
    let mut senders = Vec::new();
    let mut threads = Vec::new();
    for i in 0..worker_count() {
        let (tx, rx) = mpsc::unbounded_channel::<Handed>();
        senders.push(tx);
        let state = state.for_worker();
        let stopped = stopped.clone();
        let open = Arc::clone(&open);
        let open_after = Arc::clone(&open);
        let tunnels = Arc::clone(&state.tunnels);
        let limits = state.cfg.limits;
        let tls = acceptor.clone();
        let thread = std::thread::Builder::new()
            .name(format!("gatehouse-worker-{i}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(serve_worker(state, rx, stopped, open, limits, tls));
                // Let in-flight connections finish (each bounded by the grace period) and
                // upgraded ones send their close frames.
                rt.block_on(async {
                    // Checked: a grace no clock can reach means no deadline, never a panic.
                    let deadline = tokio::time::Instant::now().checked_add(limits.shutdown_grace);
                    while (open_after.load(Ordering::Relaxed) > 0 || tunnels.count() > 0)
                        && deadline.map_or(true, |d| tokio::time::Instant::now() < d)
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                });
                Ok::<(), std::io::Error>(())
            })?;
        threads.push(thread);
    }
    tokio::pin!(shutdown);
    let mut next = 0usize;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = accept_either(&listener, auth.as_ref()) => match accepted {
                Ok((stream, peer, internal)) => {
                    let _ = stream.set_nodelay(true);
                    let Ok(stream) = stream.into_std() else { continue };
                    if senders[next % senders.len()].send((stream, peer, internal)).is_err() {
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
    // New connections are refused from now on; in-flight ones drain (`serve_worker`).
    drop(listener);
    drop(auth);
    drop(senders);
    drop(stop);
    join_within(threads, grace.saturating_add(JOIN_MARGIN)).await
}

/// How long past `shutdown_grace` the workers get to wind down (close frames, dropping
/// their runtimes) before the process leaves without them.
const JOIN_MARGIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Waits for the worker threads, but no longer than `limit`. A worker busy with one
/// request (CPU-bound work, a blocking call) never gets back to its loop to see the stop,
/// and must not keep the process alive past its grace period: it is left behind, and the
/// process's exit ends it. That is an error, so the exit status says requests were cut.
async fn join_within(
    threads: Vec<std::thread::JoinHandle<std::io::Result<()>>>,
    limit: std::time::Duration,
) -> std::io::Result<()> {
    let (done, joined) = tokio::sync::oneshot::channel();
    // A thread of its own, not `spawn_blocking`: dropping a runtime waits for its
    // blocking tasks, so a stuck join would hold the exit after all.
    std::thread::Builder::new()
        .name("gatehouse-join".into())
        .spawn(move || {
            for t in threads {
                match t.join() {
                    Ok(Err(e)) => tracing::warn!(error = %e, "a worker stopped with an error"),
                    Err(_) => tracing::error!("a worker thread panicked"),
                    Ok(Ok(())) => {}
                }
            }
            let _ = done.send(());
        })?;
    match tokio::time::timeout(limit, joined).await {
        Ok(_) => Ok(()),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "a worker was still busy with a request {limit:.0?} after shutdown began \
                 (shutdown_grace_secs plus {JOIN_MARGIN:?}); exiting without it"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A worker that never comes back (stuck in a blocking call) is left behind after the
    /// limit, as an error; workers that finish are simply joined. Nothing from outside
    /// can stick a worker any more (the one way, a re-read of `allowed_emails_file` on the
    /// worker, moved to a thread of its own), so this is tested here with a thread.
    #[tokio::test]
    async fn a_worker_stuck_past_the_limit_is_left_behind_as_an_error() {
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        let threads = vec![
            std::thread::spawn(|| Ok(())),
            std::thread::spawn(move || {
                let _ = stuck.recv();
                Ok(())
            }),
        ];
        let started = Instant::now();
        let joined = join_within(threads, Duration::from_millis(200)).await;
        let err = joined.expect_err("a stuck worker is an error");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("still busy"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let _ = release.send(());
        let done = vec![std::thread::spawn(|| Ok(()))];
        assert!(join_within(done, Duration::MAX).await.is_ok());
    }
}
