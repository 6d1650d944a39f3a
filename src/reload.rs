//! Live reload: on SIGHUP, and with `watch_config` when the configuration file or a
//! secret file changes on disk, the configuration is read again and applied to new
//! requests. What is read again and what cannot change is `config/reload.rs`'s; how the
//! workers pick the new configuration up is `http/live.rs`'s.
//!
//! The watch is a thread of its own that reads the watched files every
//! [`WATCH_EVERY`] and compares digests of their contents (not their times: a Kubernetes
//! ConfigMap or Secret update swaps a symlink, and an editor may keep the size). A change
//! is acted on once the file has read the same twice in a row, so a file caught half
//! written is not reported as broken.

use crate::config::reload::Source;
use crate::http::live::Live;
use crate::proxy::tunnels::Tunnels;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often `watch_config` reads the watched files.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Why a reload was asked for, for the log.
#[derive(Clone, Copy)]
enum Trigger {
    Signal,
    FileChanged,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "signal",
            Trigger::FileChanged => "file_changed",
        }
    }
}

/// Reloads on each SIGHUP (and file change, with `watch_config`), for as long as the
/// process runs. The signal is taken over before this returns, so a SIGHUP sent once
/// gatehouse answers is never the default action (which ends the process).
pub fn start(live: Arc<Live>, tunnels: Arc<Tunnels>, source: Source) {
    let (tx, rx) = mpsc::unbounded_channel::<Trigger>();
    let watched = Arc::new(Mutex::new(WatchState::of(source.watched_files(), 0)));
    if live.config().watch_config {
        watch(Arc::clone(&watched), tx.clone());
    }
    listen_for_hangup(tx);
    tokio::spawn(run(live, tunnels, Arc::new(source), watched, rx));
}

async fn run(
    live: Arc<Live>,
    tunnels: Arc<Tunnels>,
    source: Arc<Source>,
    watched: Watched,
    mut rx: mpsc::UnboundedReceiver<Trigger>,
) {
    while let Some(trigger) = rx.recv().await {
        let (l, source, w) = (Arc::clone(&live), Arc::clone(&source), Arc::clone(&watched));
        // Reading files is blocking I/O: off the runtime's threads.
        match tokio::task::spawn_blocking(move || reload_once(&l, &source, &w, trigger)).await {
            Ok(true) => recheck(&live, &tunnels),
            Ok(false) => {}
            Err(_) => tracing::error!(
                "the configuration reload stopped unexpectedly; the running configuration stays"
            ),
        }
    }
}

/// After a reload: the open WebSockets the new rules would not let through are closed
/// (close code 4003), each an audit event. The rest stay open.
fn recheck(live: &Live, tunnels: &Tunnels) {
    let auth = live.auth();
    let closed = tunnels.recheck(|a| crate::auth::still_admitted(&auth, a));
    for admitted in &closed {
        crate::audit::websocket_revoked(admitted);
    }
    if !closed.is_empty() {
        tracing::info!(
            websockets_closed = closed.len(),
            "closed the WebSockets the reloaded rules no longer let through"
        );
    }
}

/// Reads and applies the configuration once; logs the outcome.
fn reload_once(live: &Live, source: &Source, watched: &Watched, trigger: Trigger) -> bool {
    let running = live.config();
    let reloaded = match source.reload(&running) {
        Ok(r) => r,
        Err(e) => {
            crate::metrics::config_reloaded(false);
            crate::audit::config_reload(trigger.as_str(), false, e.problems.len(), "");
            // One line, whatever the log format: every problem, as start-up lists them.
            tracing::error!(
                trigger = trigger.as_str(),
                problems = e.problems.len(),
                "configuration reload refused, the running configuration stays; {} problem(s): {}",
                e.problems.len(),
                e.problems.join(" | ")
            );
            return false;
        }
    };
    for w in &reloaded.config.warnings {
        tracing::warn!("{w}");
    }
    let files = reloaded.watched;
    if let Err(e) = live.apply(reloaded.config) {
        crate::metrics::config_reloaded(false);
        crate::audit::config_reload(trigger.as_str(), false, 1, "");
        tracing::error!(trigger = trigger.as_str(), error = %e, "configuration reload refused; the running configuration stays");
        return false;
    }
    // What was applied is the watch's new baseline (and a secret file named anew is
    // watched from now on).
    match watched.lock() {
        Ok(mut w) => *w = WatchState::of(files, w.generation + 1),
        Err(poisoned) => {
            let mut w = poisoned.into_inner();
            *w = WatchState::of(files, w.generation + 1);
        }
    }
    crate::metrics::config_reloaded(true);
    crate::audit::config_reload(trigger.as_str(), true, 0, &reloaded.kept.join(","));
    if reloaded.kept.is_empty() {
        tracing::info!(trigger = trigger.as_str(), "configuration reloaded");
    } else {
        tracing::warn!(
            trigger = trigger.as_str(),
            restart_needed = %reloaded.kept.join(", "),
            "configuration reloaded, except settings that cannot change while gatehouse runs: they keep their running values until a restart"
        );
    }
    true
}

#[cfg(unix)]
fn listen_for_hangup(tx: mpsc::UnboundedSender<Trigger>) {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            // Registered now (`signal` installs the handler); received in a task.
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    if tx.send(Trigger::Signal).is_err() {
                        return;
                    }
                }
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the configuration is not reloaded on it")
        }
    }
}

#[cfg(not(unix))]
fn listen_for_hangup(_tx: mpsc::UnboundedSender<Trigger>) {}

/// What a file holds now: a digest of its contents, `None` when it cannot be read.
fn digest(path: &PathBuf) -> Option<ring::digest::Digest> {
    std::fs::read(path)
        .ok()
        .map(|bytes| ring::digest::digest(&ring::digest::SHA256, &bytes))
}

/// What `watch_config` watches, and what those files held when last applied; each
/// reload replaces it (a reload may name other secret files).
struct WatchState {
    files: Vec<PathBuf>,
    applied: Vec<Option<Vec<u8>>>,
    generation: u64,
}

impl WatchState {
    fn of(files: Vec<PathBuf>, generation: u64) -> WatchState {
        WatchState {
            applied: read(&files),
            files,
            generation,
        }
    }
}

type Watched = Arc<Mutex<WatchState>>;

/// Digests of what `files` hold now.
fn read(files: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    files
        .iter()
        .map(|f| digest(f).map(|d| d.as_ref().to_vec()))
        .collect()
}

/// The files being watched, what was applied of them, and the reload that applied it.
fn current(watched: &Watched) -> (Vec<PathBuf>, Vec<Option<Vec<u8>>>, u64) {
    let w = match watched.lock() {
        Ok(w) => w,
        Err(poisoned) => poisoned.into_inner(),
    };
    (w.files.clone(), w.applied.clone(), w.generation)
}

/// Watches the `watched` files; sends a trigger when one changed from what was applied
/// and then read the same twice. After each reload, what it applied is the baseline.
fn watch(watched: Watched, tx: mpsc::UnboundedSender<Trigger>) {
    let (files, _, _) = current(&watched);
    let shown: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let spawned = std::thread::Builder::new()
        .name("gatehouse-config-watch".into())
        .spawn(move || {
            let (mut files, mut applied, mut seen) = current(&watched);
            let mut last = applied.clone();
            loop {
                std::thread::sleep(WATCH_EVERY);
                let (named, baseline, generation) = current(&watched);
                if generation != seen {
                    (files, applied, seen) = (named, baseline, generation);
                }
                let now = read(&files);
                // Acted on once it reads the same twice: not in the middle of a write.
                if now == last && now != applied {
                    applied = now.clone();
                    if tx.send(Trigger::FileChanged).is_err() {
                        return;
                    }
                }
                last = now;
            }
        });
    match spawned {
        Ok(_) => {
            tracing::info!(files = %shown.join(", "), "watch_config: reloading when these files change")
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot start watch_config's thread; reload with SIGHUP")
        }
    }
}
