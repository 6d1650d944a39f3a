//! Logging: `tracing` to stderr, as text or JSON, at the configured level (`RUST_LOG`
//! overrides); and audit events (`audit.rs`, target `gatehouse::audit`) beside it, always
//! as JSON lines and whatever the level, to `audit_log`. Secrets and tokens are never
//! logged: types holding them redact `Debug`.
//!
//! Two layers, each with its own filter, so neither level nor `RUST_LOG` can silence an
//! audit event, and an audit event never appears twice:
//! - the log: `log_level` (or `RUST_LOG`), every target but the audit one;
//! - the audit stream: the audit target alone, at INFO and above (every audit event), to
//!   `audit_log`: stderr (the log's own stream), stdout, a file (appended), or nowhere.

use crate::audit::TARGET;
use crate::config::{AuditLog, LogFormat};
use tracing::{Level, Subscriber};
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt, Targets};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// The log's filter: `RUST_LOG` when set, else `level` with the chatty crates at warn.
fn log_filter(level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},hyper=warn,reqwest=warn")))
}

/// Where the audit stream goes; `None` for `off`. A file that cannot be opened is an
/// error (configuration checks it first, `config/audit_log.rs`).
fn audit_writer(sink: &AuditLog) -> Result<Option<BoxMakeWriter>, String> {
    Ok(match sink {
        AuditLog::Stderr => Some(BoxMakeWriter::new(std::io::stderr)),
        AuditLog::Stdout => Some(BoxMakeWriter::new(std::io::stdout)),
        AuditLog::Off => None,
        AuditLog::File(path) => {
            let file = crate::config::audit_log::open(path).map_err(|e| {
                format!(
                    "audit_log: cannot open `{}` for appending: {e}",
                    path.display()
                )
            })?;
            // One write per event (the formatter buffers the line), under a lock.
            Some(BoxMakeWriter::new(std::sync::Mutex::new(file)))
        }
    })
}

/// The two layers over a registry; `log` and `audit` say where each writes.
fn layers<S>(
    format: LogFormat,
    filter: EnvFilter,
    log: BoxMakeWriter,
    audit: Option<BoxMakeWriter>,
) -> Vec<Box<dyn Layer<S> + Send + Sync>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let not_audit = filter_fn(|m| m.target() != TARGET);
    let base = tracing_subscriber::fmt::layer()
        .with_writer(log)
        .with_target(false);
    let log_layer = match format {
        LogFormat::Json => base.json().with_filter(filter.and(not_audit)).boxed(),
        LogFormat::Text => base.with_filter(filter.and(not_audit)).boxed(),
    };
    let mut all = vec![log_layer];
    if let Some(w) = audit {
        // The event's fields at the top level beside `target`, which says "audit" to
        // whatever reads a shared stream; spans carry nothing an event does not.
        let audit_layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(true)
            .with_writer(w)
            .with_filter(Targets::new().with_target(TARGET, Level::INFO));
        all.push(audit_layer.boxed());
    }
    all
}

/// Installs the global subscriber (a second call is a no-op); fails only when the audit
/// file cannot be opened.
pub fn init(format: LogFormat, level: &str, audit: &AuditLog) -> Result<(), String> {
    let audit = audit_writer(audit)?;
    let log = BoxMakeWriter::new(std::io::stderr);
    let _ = Registry::default()
        .with(layers(format, log_filter(level), log, audit))
        .try_init();
    Ok(())
}

#[cfg(test)]
#[path = "telemetry_tests.rs"]
mod tests;
