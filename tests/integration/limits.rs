//! What a hostile or slow client can hold of the listener: the header-read timeout
//! (slow loris), the header size limit, and the connection cap; none of them may keep a
//! normal request from being served promptly.

use crate::flow::world;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens a connection and sends `bytes` without finishing the request.
async fn dangle(addr: std::net::SocketAddr, bytes: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes.as_bytes()).await.unwrap();
    s
}

/// What a new connection is told, read to its end within 2 s (a refusal is immediate).
async fn refused_at_once(addr: std::net::SocketAddr) -> String {
    let mut extra = dangle(addr, "").await;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), extra.read_to_end(&mut buf))
        .await
        .expect("the refusal is quick")
        .unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn slow_loris_connections_are_cut_and_never_block_others() {
    let w = world(&[("header_read_timeout_secs", "1")]).await;
    let mut loris = Vec::new();
    for _ in 0..200 {
        loris.push(dangle(w.gh.addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: a").await);
    }
    // A normal request is served promptly while they hang.
    let started = Instant::now();
    let r = reqwest::get(format!("{}/healthz", w.gh.url)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // And each of them is cut once its headers take longer than the timeout.
    let mut first = loris.remove(0);
    let mut buf = Vec::new();
    let cut = tokio::time::timeout(Duration::from_secs(5), first.read_to_end(&mut buf)).await;
    assert!(
        cut.is_ok(),
        "a connection that never finished its headers was kept open"
    );
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let w = world(&[("max_header_bytes", "16384")]).await;
    let big = "a".repeat(20_000);
    let r = reqwest::Client::new()
        .get(format!("{}/healthz", w.gh.url))
        .header("x-big", big)
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status(), 431, "{r:?}"),
        Err(e) => assert!(e.is_request() || e.is_connect(), "{e}"),
    }
    let ok = reqwest::get(format!("{}/healthz", w.gh.url)).await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn past_the_connection_cap_the_excess_gets_a_quick_503() {
    let w = world(&[("max_connections", "5")]).await;
    // Five keep-alive connections, each proven accepted by a full answer, then left open.
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut s = dangle(w.gh.addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut got = Vec::new();
        let mut chunk = [0u8; 512];
        while !String::from_utf8_lossy(&got).ends_with("ok\n") {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&chunk[..n]);
        }
        held.push(s);
    }
    let started = Instant::now();
    let text = refused_at_once(w.gh.addr).await;
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("max_connections"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(1));
    // Closing the held ones frees their slots.
    drop(held);
    let mut ok = false;
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(format!("{}/healthz", w.gh.url)).await {
            if r.status() == 200 {
                ok = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "slots come back when connections close");
}

/// SIGTERM drains: the request in flight finishes, new connections are refused, an open
/// WebSocket gets a close frame (1001, going away), and the process exits within the
/// grace period.
#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_and_refuses_new_ones() {
    let idp = crate::support::idp::TestIdp::start().await;
    let up = crate::support::upstream::Upstream::start().await;
    let port = crate::support::ingress::free_port();
    let mut gh = crate::support::RealGatehouse::start(
        port,
        &up.url,
        &idp.issuer,
        &[
            "--skip-auth-routes",
            "/slow,/ws",
            "--shutdown-grace-secs",
            "10",
        ],
    )
    .await;
    let url = gh.url.clone();
    let (_, _, mut ws) = crate::proxy::websocket(&url, "/ws", "")
        .await
        .expect("a websocket on a public route");
    // The upstream's /slow answers after 5 s.
    let before = crate::support::upstream::SLOW_STARTED.load(std::sync::atomic::Ordering::SeqCst);
    let slow = tokio::spawn(reqwest::get(format!("{url}/slow")));
    // Wait until the slow request is in flight: the upstream has it.
    use std::sync::atomic::Ordering;
    let mut in_flight = false;
    for _ in 0..250 {
        if crate::support::upstream::SLOW_STARTED.load(Ordering::SeqCst) > before {
            in_flight = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(in_flight, "the slow request never reached the upstream");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &gh.child.id().to_string()])
        .status();
    // New connections are refused once the signal is handled.
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the listener is closed on SIGTERM");
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    match tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
        Ok(Some(Ok(Message::Close(Some(frame))))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected a close frame at once, got {other:?}"),
    }
    let answered = slow.await.unwrap().expect("the in-flight request finished");
    assert_eq!(answered.status(), 200);
    let mut exited = None;
    for _ in 0..200 {
        if let Ok(Some(status)) = gh.child.try_wait() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        exited.is_some_and(|s| s.success()),
        "exited cleanly: {exited:?}"
    );
}

/// A request still in flight when `shutdown_grace_secs` runs out does not keep the
/// process: it is cut, and gatehouse exits within the grace period (plus the second its
/// workers get to wind down).
///
/// This test used to stick a worker thread outright, by replacing `allowed_emails_file`
/// with a FIFO that the worker re-read on its own thread and blocked on. The file is now
/// re-read by a thread of its own (`authz.rs`; see
/// `an_emails_file_whose_read_hangs_never_holds_a_request`), and no request path blocks
/// its worker any more, so nothing from outside can stick one: a request the upstream
/// answers later than the grace is what is left to outlast. The bound for a worker that
/// never comes back (`join_within` in `http/workers.rs`) is tested there.
#[tokio::test]
async fn sigterm_exits_within_the_grace_period_even_with_a_request_in_flight() {
    let idp = crate::support::idp::TestIdp::start().await;
    let up = crate::support::upstream::Upstream::start().await;
    let port = crate::support::ingress::free_port();
    let grace = Duration::from_secs(2);
    let mut gh = crate::support::RealGatehouse::start(
        port,
        &up.url,
        &idp.issuer,
        &["--skip-auth-routes", "/slow", "--shutdown-grace-secs", "2"],
    )
    .await;
    // The upstream's /slow answers after 5 s, past the grace.
    use std::sync::atomic::Ordering;
    let before = crate::support::upstream::SLOW_STARTED.load(Ordering::SeqCst);
    let slow = tokio::spawn(reqwest::get(format!("{}/slow", gh.url)));
    let mut in_flight = false;
    for _ in 0..250 {
        if crate::support::upstream::SLOW_STARTED.load(Ordering::SeqCst) > before {
            in_flight = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(in_flight, "the slow request never reached the upstream");
    let signalled = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &gh.child.id().to_string()])
        .status();
    let mut exited = None;
    while signalled.elapsed() < grace + Duration::from_secs(8) {
        if let Ok(Some(status)) = gh.child.try_wait() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = signalled.elapsed();
    exited.unwrap_or_else(|| panic!("still running {took:?} after SIGTERM"));
    // The grace period, the second gatehouse adds, and time for a loaded machine.
    assert!(
        took < grace + Duration::from_millis(2500),
        "exited after {took:?}"
    );
    assert!(
        took >= grace - Duration::from_millis(100),
        "the request in flight was not given its grace: exited after {took:?}"
    );
    // The slow request was never answered: its connection closed with the process.
    let cut = tokio::time::timeout(Duration::from_secs(2), slow)
        .await
        .expect("the connection ends with the process")
        .unwrap();
    assert!(cut.is_err(), "the request got an answer: {cut:?}");
}

/// `allowed_emails_file` is re-read off the request path: a file whose reading never
/// ends (a FIFO nobody writes to; a hung network mount behaves alike) holds up only the
/// thread that re-reads it. Requests are answered from the last good list meanwhile, and
/// a bad list read later (two addresses on one line) leaves that list in place.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_emails_file_whose_read_hangs_never_holds_a_request() {
    use std::os::unix::fs::OpenOptionsExt;
    /// Linux's `O_NONBLOCK`: such an open of a FIFO for writing succeeds only while a
    /// reader has it open, which tells the test that the re-reader is inside it.
    const O_NONBLOCK: i32 = 0o4000;
    let dir = std::env::temp_dir().join(format!("gh-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("emails");
    std::fs::write(&file, "alice@example.test\n").unwrap();
    let (w, b) = crate::flow::logged_in(&[("allowed_emails_file", file.to_str().unwrap())]).await;
    let fifo = || {
        std::fs::remove_file(&file).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&file)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo");
    };
    let reader_inside = || async {
        for _ in 0..500 {
            let opened = std::fs::File::options()
                .write(true)
                .custom_flags(O_NONBLOCK)
                .open(&file);
            if let Ok(writer) = opened {
                return writer;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("nothing opened the file again: it must be re-read off the request path");
    };
    let answered = |what: &'static str| {
        let (url, cookie) = (format!("{}/", w.gh.url), b.cookie_header());
        async move {
            for _ in 0..5 {
                let r = reqwest::Client::new()
                    .get(&url)
                    .header("cookie", &cookie)
                    .header("accept", "application/json")
                    .send();
                let r = tokio::time::timeout(Duration::from_secs(2), r)
                    .await
                    .unwrap_or_else(|_| panic!("{what}: a request waited for the file"))
                    .unwrap();
                assert_eq!(r.status(), 200, "{what}: alice is on the last good list");
            }
        }
    };
    fifo();
    // The re-reader is now blocked reading the FIFO: nobody writes to it.
    let writer = reader_inside().await;
    answered("while the re-read hangs").await;
    // What it finally reads merges two addresses on one line: refused, the list stays.
    {
        use std::io::Write;
        let mut writer = writer;
        writer
            .write_all(b"alice@example.test, bob@example.test\n")
            .unwrap();
    }
    // A new FIFO is a change: once the re-reader is inside it, it has dealt with the last.
    fifo();
    let writer = reader_inside().await;
    answered("after a bad list").await;
    drop(writer);
    std::fs::remove_dir_all(&dir).ok();
}

/// Open WebSockets hold their place under the connection cap after they switch protocols,
/// so a client cannot get past `max_connections` by upgrading.
#[tokio::test]
async fn open_websockets_count_against_the_connection_cap() {
    let (w, b) = crate::flow::logged_in(&[("max_connections", "3")]).await;
    let cookie = b.cookie_header();
    // The login's keep-alive connections go; their places come back once gatehouse
    // sees them close.
    drop(b);
    let ws = || crate::proxy::websocket(&w.gh.url, "/ws", &cookie);
    let mut open = Vec::new();
    for _ in 0..100 {
        if let Ok((_, _, first)) = ws().await {
            open.push(first);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..2 {
        let (_, _, more) = ws().await.expect("a websocket under the cap");
        open.push(more);
    }
    let text = refused_at_once(w.gh.addr).await;
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    drop(open);
    let mut ok = false;
    for _ in 0..100 {
        if ws().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "closing them gives the places back");
}

/// A request body that stops arriving is cut after `idle_timeout_secs`; a quiet client
/// waiting on a slow answer is not (only what the client owes is timed).
#[tokio::test]
async fn a_trickling_body_is_cut_but_a_slow_answer_is_not() {
    let (w, b) = crate::flow::logged_in(&[("idle_timeout_secs", "1")]).await;
    let cookie = b.cookie_header();
    let mut s = dangle(
        w.gh.addr,
        &format!("POST /upload HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nContent-Length: 100\r\n\r\n0123456789"),
    )
    .await;
    let started = Instant::now();
    let mut buf = Vec::new();
    let cut = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(cut.is_ok(), "a connection whose body stopped was kept open");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "cut before idle_timeout: {:?}",
        started.elapsed()
    );
    // The upstream's /slow answers after 5 s, well past the idle timeout.
    let r = b.get(&format!("{}/slow", w.gh.url)).await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// Configuration refuses durations no clock can hold (`config/bounds.rs`), and the
/// running code adds durations to clock readings checked all the same: a `Config` built in
/// code with `Duration::MAX` as the idle time and the grace still serves a request body
/// that arrives in pieces (`last + idle` panicked the connection) and shuts down cleanly
/// (`grace + 1 s` panicked the shutdown).
#[tokio::test]
async fn durations_no_clock_can_hold_never_panic_a_running_gatehouse() {
    let idp = crate::support::idp::TestIdp::start().await;
    let up = crate::support::upstream::Upstream::start().await;
    let mut cfg = crate::support::config(&up.url, &idp.issuer, &[("skip_auth_routes", "/upload")]);
    cfg.limits.idle_timeout = Duration::MAX;
    cfg.limits.shutdown_grace = Duration::MAX;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = gatehouse::http::AppState::new(cfg).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gatehouse::http::serve_with_auth(
        state,
        listener,
        None,
        async move {
            let _ = stopped.await;
        },
    ));
    crate::support::wait_until_ok(&format!("http://{addr}/readyz")).await;
    let mut s = dangle(
        addr,
        "POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 10\r\n\r\n01234",
    )
    .await;
    // Not a wait for readiness: the pause makes gatehouse find the body unfinished (and
    // look at the idle deadline) before the rest arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(b"56789").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    stop.send(()).unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("shut down");
    assert!(
        matches!(stopped, Ok(Ok(()))),
        "the shutdown failed or panicked: {stopped:?}"
    );
}
