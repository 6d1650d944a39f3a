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

/// The text log's fields, each value with its control characters escaped (`\n`, `\r`,
/// `\u{1b}`, ...): one event is always one line, whatever a client put in a value that is
/// logged (a JWT header's `kid`, a callback's `iss`, a refused `rd`), so no one can
/// append lines that look like gatehouse's own. (The JSON formats escape them already.)
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync {
    use std::fmt::Write as _;
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        if field.name() != "message" {
            write!(w, "{field}=")?;
        }
        write!(Escaping(w), "{value:?}")
    })
    .delimited(" ")
}

/// Writes through, control characters escaped as Rust writes them.
struct Escaping<W>(W);

impl<W: std::fmt::Write> std::fmt::Write for Escaping<W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(char::is_control) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(self.0, "{}", c.escape_default())?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
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
        LogFormat::Text => base
            .fmt_fields(escaped_fields())
            .with_filter(filter.and(not_audit))
            .boxed(),
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
