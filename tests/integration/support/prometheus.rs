//! The real Prometheus server (Debian package `prometheus`, which brings `promtool`) as a
//! test peer: started on an ephemeral loopback port with a scrape config of our own and a
//! temporary TSDB, ready when `/-/ready` says so, stopped by pid. When it is missing, a
//! developer run skips with a loud message and a CI run (`CI` set) fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const PROMTOOL: &str = "/usr/bin/promtool";

/// Skips (developer run) or fails (CI) when Prometheus is missing. Returns true to skip.
pub fn skip_unless_available() -> bool {
    let missing = [PROMETHEUS, PROMTOOL]
        .into_iter()
        .find(|p| !Path::new(p).is_file());
    match missing {
        None => false,
        Some(p) if std::env::var_os("CI").is_some() => {
            panic!("{p} missing in CI: apt-get install --no-install-recommends prometheus")
        }
        Some(p) => {
            eprintln!("\n!!! SKIPPING Prometheus test: {p} is missing: apt-get install --no-install-recommends prometheus !!!\n");
            true
        }
    }
}

/// Runs promtool with `args`, `stdin` piped in; returns (exit code, stdout, stderr).
pub fn promtool(args: &[&str], stdin: Option<&str>) -> (Option<i32>, String, String) {
    use std::io::Write;
    let mut child = Command::new(PROMTOOL)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running Prometheus scraping one target every second.
pub struct Prometheus {
    pub url: String,
    child: Child,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`) at `/metrics` every second; waits
    /// until it is ready (at most 30 s).
    pub async fn start(target: &str) -> Prometheus {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("gatehouse-prom-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: gatehouse\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = super::redis::free_port();
        let child = Command::new(PROMETHEUS)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("prometheus.log")).unwrap(),
            ))
            .spawn()
            .expect("start prometheus");
        let mut p = Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            child,
            dir,
        };
        let ready = format!("{}/-/ready", p.url);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(&ready).await {
                if r.status() == 200 {
                    return p;
                }
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited ({status}): {}", p.log());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 30 s: {}",
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// The instant query's result: each series' labels and value.
    pub async fn query(&self, expr: &str) -> Vec<(serde_json::Value, f64)> {
        let r = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["status"], "success", "{expr}: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                let v = s["value"][1]
                    .as_str()
                    .unwrap_or("NaN")
                    .parse()
                    .unwrap_or(f64::NAN);
                (s["metric"].clone(), v)
            })
            .collect()
    }

    /// Polls `expr` until its single result equals `want` (at most 30 s: scrapes come
    /// every second).
    pub async fn wait_for(&self, expr: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.query(expr).await;
            if got.len() == 1 && got[0].1 == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{expr}: wanted {want}, Prometheus has {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
