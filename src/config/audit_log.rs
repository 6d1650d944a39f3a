//! `audit_log`: where audit events go (`audit.rs`, `telemetry.rs`). A file is opened
//! here, for appending (created if missing), so a path gatehouse cannot write to is a
//! configuration problem listed with the others, not a failure after start-up.

use super::reader::Reader;
use super::AuditLog;

pub(super) fn read(r: &mut Reader) -> AuditLog {
    let value = r.str_or("audit_log", "stderr");
    match value.as_str() {
        "stderr" | "" => AuditLog::Stderr,
        "stdout" => AuditLog::Stdout,
        "off" => AuditLog::Off,
        path => {
            let path = std::path::PathBuf::from(path);
            if let Err(e) = open(&path) {
                let entry = r.raw.get("audit_log");
                r.problem(
                    entry,
                    "audit_log",
                    format!(
                        "cannot open `{}` for appending audit events: {e} (use stderr, stdout, off, or a file path gatehouse can write)",
                        path.display()
                    ),
                );
            }
            AuditLog::File(path)
        }
    }
}

/// Opens the audit file for appending, creating it if missing.
pub fn open(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    if path.is_dir() {
        return Err(std::io::Error::other("it is a directory"));
    }
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
}
