//! The log and audit layers: what reaches which stream, at which level.

use super::*;
use std::sync::{Arc, Mutex};

/// A stream kept in memory.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
    fn writer(&self) -> BoxMakeWriter {
        let me = self.clone();
        BoxMakeWriter::new(move || me.clone())
    }
}

/// Runs `f` under the two layers; returns what the log and the audit stream got.
fn capture(format: LogFormat, level: &str, audit: Option<&Buf>, f: impl FnOnce()) -> String {
    let log = Buf::default();
    let sub = Registry::default().with(layers(
        format,
        EnvFilter::new(level),
        log.writer(),
        audit.map(Buf::writer),
    ));
    tracing::subscriber::with_default(sub, f);
    log.text()
}

fn audit_event() {
    tracing::info!(target: "gatehouse::audit", event = "sign_in", user = "ada", "x");
}

#[test]
fn audit_events_reach_their_own_sink_whatever_the_level_and_never_the_log() {
    for level in ["error", "warn", "info", "trace"] {
        let audit = Buf::default();
        let log = capture(LogFormat::Text, level, Some(&audit), || {
            audit_event();
            tracing::info!("an ordinary line");
            tracing::error!("an error line");
        });
        let lines: Vec<serde_json::Value> = audit
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{level}: {lines:?}");
        assert_eq!(lines[0]["target"], "gatehouse::audit");
        assert_eq!(lines[0]["event"], "sign_in", "fields at the top level");
        assert_eq!(lines[0]["user"], "ada");
        assert!(!log.contains("sign_in"), "{level}: in the log too: {log}");
        assert!(log.contains("an error line"));
        assert_eq!(
            log.contains("an ordinary line"),
            level != "error" && level != "warn"
        );
        assert!(!audit.text().contains("error line"));
    }
}

#[test]
fn audit_events_in_the_log_stream_are_json_once_beside_text_lines() {
    // audit_log = stderr: both layers write to the same stream.
    let shared = Buf::default();
    let sub = Registry::default().with(layers(
        LogFormat::Text,
        EnvFilter::new("warn"),
        shared.writer(),
        Some(shared.writer()),
    ));
    tracing::subscriber::with_default(sub, || {
        audit_event();
        tracing::warn!("a text line");
    });
    let text = shared.text();
    let audit: Vec<&str> = text.lines().filter(|l| l.contains("sign_in")).collect();
    assert_eq!(audit.len(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(audit[0]).unwrap();
    assert_eq!(v["target"], "gatehouse::audit");
    assert!(text
        .lines()
        .any(|l| l.contains("a text line") && !l.starts_with('{')));
}

#[test]
fn json_logs_leave_audit_events_to_the_audit_layer() {
    let audit = Buf::default();
    let log = capture(LogFormat::Json, "info", Some(&audit), || {
        audit_event();
        tracing::info!("plain");
    });
    assert!(!log.contains("sign_in"), "{log}");
    assert!(log.contains("plain"));
    assert_eq!(audit.text().lines().count(), 1);
}

#[test]
fn off_sends_audit_events_nowhere() {
    let log = capture(LogFormat::Text, "trace", None, audit_event);
    assert!(!log.contains("sign_in"), "{log}");
}

#[test]
fn an_audit_file_that_cannot_be_opened_is_an_error() {
    let dir = std::env::temp_dir();
    let bad = AuditLog::File(dir.join("no-such-dir-gatehouse/audit.log"));
    assert!(audit_writer(&bad)
        .unwrap_err()
        .contains("no-such-dir-gatehouse"));
    assert!(
        audit_writer(&AuditLog::File(dir.clone())).is_err(),
        "a directory"
    );
    assert!(audit_writer(&AuditLog::Off).unwrap().is_none());
}

#[test]
fn a_value_from_a_client_never_starts_a_line_of_its_own_in_the_text_log() {
    // What clients can put in a logged value: a JWT header's `kid` (the back-channel
    // logout's refusal), a callback's `iss`, a refused `rd`, percent-decoded or
    // JSON-unescaped into newlines, carriage returns and terminal escapes.
    let forged = "x\n2026-12-07T12:00:00.000000Z  INFO user logged in user=admin\r\u{1b}[2K\u{7}";
    let log = capture(LogFormat::Text, "info", None, || {
        tracing::info!(reason = %forged, "back-channel logout refused");
        tracing::info!(reason = forged, "a str value");
        tracing::info!(reason = ?forged, "a Debug value");
        tracing::info!("in the message: {forged}");
        let span = tracing::info_span!("request", rd = %forged);
        span.in_scope(|| tracing::info!(tab = "a\tb", "in a span"));
    });
    assert_eq!(log.lines().count(), 5, "{log}");
    // (The level's colour is the formatter's own escape sequence; the client's is not.)
    assert!(
        !log.contains('\r') && !log.contains("\u{1b}[2K") && !log.contains('\u{7}'),
        "{log:?}"
    );
    assert!(
        log.contains("reason=x\\n2026-12-07T12:00:00.000000Z  INFO user logged in user=admin"),
        "{log}"
    );
    // Ordinary lines read as before: the message bare, then name=value.
    let plain = capture(LogFormat::Text, "info", None, || {
        tracing::info!(user = %"ada", n = 3, "user logged in");
    });
    assert!(
        plain.trim_end().ends_with("user logged in user=ada n=3"),
        "{plain}"
    );
}
