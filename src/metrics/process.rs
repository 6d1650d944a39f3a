//! The standard process metrics (`process_*`), read from /proc/self at scrape time on
//! Linux; elsewhere only the start time is written (noted at start-up).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Unix seconds when `note_start` ran (0: not noted).
static NOTED: AtomicU64 = AtomicU64::new(0);

pub(super) fn note_start() {
    let _ = NOTED.compare_exchange(
        0,
        crate::util::now_secs(),
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
}

/// The kernel's clock tick for /proc times: USER_HZ, 100 on every Linux ABI.
const USER_HZ: f64 = 100.0;

/// When the process started, in Unix seconds (whole: the last reload's default).
pub(super) fn start_secs() -> u64 {
    match linux::start_time() {
        Some(t) => t as u64,
        None => {
            note_start();
            NOTED.load(Ordering::Relaxed)
        }
    }
}

pub(super) fn render(out: &mut String) {
    let start = linux::start_time().unwrap_or_else(|| start_secs() as f64);
    family(
        out,
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        "gauge",
        start,
    );
    let Some(stat) = linux::stat() else {
        return;
    };
    family(
        out,
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        "counter",
        stat.cpu_ticks as f64 / USER_HZ,
    );
    if let Some((rss, vsize)) = linux::memory() {
        family(
            out,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            "gauge",
            rss as f64,
        );
        family(
            out,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            "gauge",
            vsize as f64,
        );
    }
    if let Some(n) = linux::open_fds() {
        family(
            out,
            "process_open_fds",
            "Number of open file descriptors.",
            "gauge",
            n as f64,
        );
    }
    if let Some(n) = linux::max_fds() {
        family(
            out,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            "gauge",
            n as f64,
        );
    }
}

fn family(out: &mut String, name: &str, help: &str, kind: &str, v: f64) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
    );
}

mod linux {
    use super::USER_HZ;

    pub struct Stat {
        pub cpu_ticks: u64,
        pub start_ticks: u64,
    }

    /// utime + stime and starttime from /proc/self/stat (after the command's closing
    /// parenthesis, which the command name itself may contain).
    pub fn stat() -> Option<Stat> {
        let text = std::fs::read_to_string("/proc/self/stat").ok()?;
        let rest = &text[text.rfind(')')? + 1..];
        // Fields from the 3rd (state) on: utime is the 14th, stime the 15th, starttime
        // the 22nd of the whole line.
        let f: Vec<&str> = rest.split_whitespace().collect();
        let at = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        Some(Stat {
            cpu_ticks: at(14)?.saturating_add(at(15)?),
            start_ticks: at(22)?,
        })
    }

    /// Boot time (Unix seconds) plus the process's start in ticks since boot.
    pub fn start_time() -> Option<f64> {
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let btime: u64 = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        Some(btime as f64 + stat()?.start_ticks as f64 / USER_HZ)
    }

    /// Resident and virtual size in bytes, from /proc/self/status (kB there).
    pub fn memory() -> Option<(u64, u64)> {
        let text = std::fs::read_to_string("/proc/self/status").ok()?;
        let kb = |key: &str| -> Option<u64> {
            let v = text.lines().find_map(|l| l.strip_prefix(key))?;
            v.split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
                .map(|k| k * 1024)
        };
        Some((kb("VmRSS:")?, kb("VmSize:")?))
    }

    pub fn open_fds() -> Option<usize> {
        // The directory's own descriptor is among the entries while it is read.
        Some(
            std::fs::read_dir("/proc/self/fd")
                .ok()?
                .count()
                .saturating_sub(1),
        )
    }

    pub fn max_fds() -> Option<u64> {
        let text = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = text.lines().find(|l| l.starts_with("Max open files"))?;
        line["Max open files".len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_are_read_from_proc() {
        // A fresh test process may not have used a clock tick of CPU yet: use one.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut x = 0u64;
        while linux::stat().unwrap().cpu_ticks == 0 && std::time::Instant::now() < deadline {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let mut out = String::new();
        render(&mut out);
        for name in [
            "process_start_time_seconds",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
        ] {
            let v: f64 = out
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing: {out}"))
                .parse()
                .unwrap();
            assert!(v > 0.0, "{name} {v}");
        }
        let start = linux::start_time().unwrap();
        let now = crate::util::now_secs() as f64;
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "{start} vs {now}"
        );
    }
}
