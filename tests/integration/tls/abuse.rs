//! HTTP/2 abuse with a hand-written client (frames no library sends): a rapid-reset
//! flood (HEADERS then RST_STREAM, thousands of times), a CONTINUATION flood without
//! END_HEADERS, an oversized header list, and a `Host` that disagrees with
//! `:authority`. Each abusive connection is closed with GOAWAY (or its stream refused),
//! gatehouse's memory (VmRSS of the real binary) and CPU time stay bounded, and another
//! client is served meanwhile.

use super::{connect, cpu_time, rss_kib, Served, TestCa};
use crate::support::idp::TestIdp;
use crate::support::upstream::Upstream;
use crate::support::Browser;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix after `flags` (RFC 7541 §5.1).
fn int(out: &mut Vec<u8>, flags: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

/// A literal field without indexing, new name, no Huffman (RFC 7541 §6.2.2).
fn literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0);
    int(out, 0, 7, name.len());
    out.extend_from_slice(name.as_bytes());
    int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// A GET header block for `path` on `authority`, plus `extra` fields.
fn get_block(authority: &str, path: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    // :method GET, :scheme https (static table 2, 7).
    let mut b = vec![0x82, 0x87];
    // :path and :authority: literals with indexed names (4 and 1).
    int(&mut b, 0, 4, 4);
    int(&mut b, 0, 7, path.len());
    b.extend_from_slice(path.as_bytes());
    int(&mut b, 0, 4, 1);
    int(&mut b, 0, 7, authority.len());
    b.extend_from_slice(authority.as_bytes());
    for (name, value) in extra {
        literal(&mut b, name, value);
    }
    b
}

/// A frame read back: (type, flags, stream, payload).
type Frame = (u8, u8, u32, Vec<u8>);

/// An h2 connection to gatehouse, SETTINGS exchanged.
struct H2 {
    s: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
}

impl H2 {
    async fn open(ca: &TestCa, port: u16) -> H2 {
        let mut s = connect(ca, port, &[b"h2"]).await;
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        s.write_all(PREFACE).await.unwrap();
        s.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        let mut h2 = H2 { s };
        loop {
            let (kind, flags, _, _) = h2.read().await.expect("the server's SETTINGS");
            if kind == SETTINGS && flags & 1 == 0 {
                break;
            }
        }
        h2.s.write_all(&frame(SETTINGS, 1, 0, &[])).await.unwrap();
        h2
    }

    async fn read(&mut self) -> Option<Frame> {
        let mut head = [0u8; 9];
        self.s.read_exact(&mut head).await.ok()?;
        let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
        let mut payload = vec![0u8; len];
        self.s.read_exact(&mut payload).await.ok()?;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        Some((head[3], head[4], stream, payload))
    }

    /// Sends `bytes`; false once the server has closed the connection.
    async fn send(&mut self, bytes: &[u8]) -> bool {
        self.s.write_all(bytes).await.is_ok()
    }

    /// The answer on `stream` (10 s at most): its `:status`, or `None` when the stream
    /// was reset or the connection ended first. Frames read are kept in `frames`.
    async fn answer(&mut self, frames: &mut Vec<Frame>, stream: u32) -> Option<u16> {
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(s) = status(frames, stream) {
                    return Some(s);
                }
                if frames.iter().any(|f| f.0 == RST_STREAM && f.2 == stream) {
                    return None;
                }
                frames.push(self.read().await?);
            }
        })
        .await;
        read.unwrap_or_else(|_| panic!("no answer on stream {stream}: {frames:?}"))
    }

    /// Reads until the connection ends (20 s at most); every frame read.
    async fn drain(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(f) = self.read().await {
                frames.push(f);
            }
        })
        .await;
        assert!(
            read.is_ok(),
            "the abusive connection was never closed: {frames:?}"
        );
        frames
    }
}

/// The GOAWAY's error code among `frames`.
fn goaway(frames: &[Frame]) -> Option<u32> {
    frames
        .iter()
        .find(|f| f.0 == GOAWAY)
        .map(|f| u32::from_be_bytes([f.3[4], f.3[5], f.3[6], f.3[7]]))
}

/// The `:status` of the first response HEADERS on `stream` (static-table indexed).
fn status(frames: &[Frame], stream: u32) -> Option<u16> {
    let f = frames.iter().find(|f| f.0 == HEADERS && f.2 == stream)?;
    match f.3.first()? {
        0x88 => Some(200),
        0x8c => Some(400),
        0x8d => Some(404),
        _ => {
            // A literal with indexed name :status (index 8..14 share the name).
            let digits = std::str::from_utf8(f.3.get(2..5)?).ok()?;
            digits.parse().ok()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_floods_are_cut_with_goaway_in_bounded_memory_while_other_clients_are_served() {
    let (idp, up) = (TestIdp::start().await, Upstream::start().await);
    let ca = TestCa::new();
    let gh = Served::start(&ca, &ca.leaf(1), &idp, &up, &|_| String::new()).await;
    let authority = format!("localhost:{}", gh.port);
    let other = Browser::trusting(ca.pem.as_bytes());
    let healthz = format!("{}/healthz", gh.url);
    assert_eq!(other.try_get(&healthz).await, Some(200));

    // A well-formed request first: answered (the client itself works).
    let mut h2 = H2::open(&ca, gh.port).await;
    let block = get_block(&authority, "/healthz", &[]);
    assert!(
        h2.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block))
            .await
    );
    let mut frames = Vec::new();
    assert_eq!(h2.answer(&mut frames, 1).await, Some(200));
    // Host disagreeing with :authority: 400 on that stream, the connection carries on.
    let block = get_block(&authority, "/healthz", &[("host", b"evil.example")]);
    assert!(
        h2.send(&frame(HEADERS, END_HEADERS | END_STREAM, 3, &block))
            .await
    );
    assert_eq!(h2.answer(&mut frames, 3).await, Some(400));
    // Fields HTTP/2 forbids (connection-specific, RFC 9113 §8.2.2) and repeated pseudo
    // fields: that stream is reset, never served; two Content-Lengths: 400.
    let forbidden: [(u32, Vec<u8>); 4] = [
        (
            7,
            get_block(&authority, "/healthz", &[("transfer-encoding", b"chunked")]),
        ),
        (
            9,
            get_block(&authority, "/healthz", &[("connection", b"keep-alive")]),
        ),
        (
            11,
            get_block(&authority, "/healthz", &[("upgrade", b"websocket")]),
        ),
        (
            13,
            [get_block(&authority, "/healthz", &[]), vec![0x84]].concat(),
        ),
    ];
    for (id, block) in &forbidden {
        assert!(
            h2.send(&frame(HEADERS, END_HEADERS | END_STREAM, *id, block))
                .await
        );
        assert_eq!(h2.answer(&mut frames, *id).await, None, "stream {id}");
    }
    let block = get_block(
        &authority,
        "/healthz",
        &[("content-length", b"0"), ("content-length", b"0")],
    );
    assert!(
        h2.send(&frame(HEADERS, END_HEADERS | END_STREAM, 15, &block))
            .await
    );
    assert_ne!(
        h2.answer(&mut frames, 15).await,
        Some(200),
        "two Content-Lengths"
    );
    // A large but allowed header list (a chunked session cookie: 40 KB, under
    // max_header_bytes' 64 KiB, over HTTP/2's usual 16 KiB) is served, as over HTTP/1.1.
    let cookies: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| {
            (
                "cookie".to_string(),
                format!("c{i}={}", "v".repeat(8000)).into_bytes(),
            )
        })
        .collect();
    let extra: Vec<(&str, &[u8])> = cookies
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let block = get_block(&authority, "/healthz", &extra);
    let (head, tail) = block.split_at(16_000);
    let mut bytes = frame(HEADERS, END_STREAM, 17, head);
    let pieces: Vec<&[u8]> = tail.chunks(16_000).collect();
    for (i, c) in pieces.iter().enumerate() {
        let flags = if i + 1 == pieces.len() {
            END_HEADERS
        } else {
            0
        };
        bytes.extend(frame(CONTINUATION, flags, 17, c));
    }
    assert!(h2.send(&bytes).await);
    assert_eq!(
        h2.answer(&mut frames, 17).await,
        Some(200),
        "a 40 KB header list"
    );
    drop(h2);
    let before = rss_kib(gh.pid());
    let cpu_before = cpu_time(gh.pid());

    // Rapid reset: thousands of streams opened and cancelled at once.
    let mut h2 = H2::open(&ca, gh.port).await;
    let block = get_block(&authority, "/app", &[]);
    let mut batch = Vec::new();
    for i in 0..5000u32 {
        let id = 2 * i + 1;
        batch.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &block));
        batch.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    // Another client asks all along, on connections of its own.
    let meanwhile = async {
        let mut answers = Vec::new();
        for _ in 0..10 {
            let b = Browser::trusting(ca.pem.as_bytes());
            answers.push(b.try_get(&healthz).await);
        }
        answers
    };
    let flood = async {
        let _ = h2.send(&batch).await;
        h2.drain().await
    };
    let (frames, answers) = tokio::join!(flood, meanwhile);
    assert_eq!(goaway(&frames), Some(ENHANCE_YOUR_CALM), "rapid reset");
    assert!(
        answers.iter().all(|a| *a == Some(200)),
        "others: {answers:?}"
    );
    assert_eq!(
        other.try_get(&healthz).await,
        Some(200),
        "others are served"
    );

    // CONTINUATION flood: one header block that never ends.
    let mut h2 = H2::open(&ca, gh.port).await;
    assert!(
        h2.send(&frame(HEADERS, 0, 1, &get_block(&authority, "/", &[])))
            .await
    );
    let mut junk = Vec::new();
    literal(&mut junk, "x-junk", &[b'a'; 16_000]);
    let piece = frame(CONTINUATION, 0, 1, &junk);
    for _ in 0..2000 {
        if !h2.send(&piece).await {
            break;
        }
    }
    let frames = h2.drain().await;
    assert!(goaway(&frames).is_some(), "CONTINUATION flood: {frames:?}");
    assert_eq!(
        other.try_get(&healthz).await,
        Some(200),
        "others are served"
    );

    // A header list over max_header_bytes (64 KiB by default), END_HEADERS set: never
    // answered as if it were fine.
    let mut h2 = H2::open(&ca, gh.port).await;
    let mut big = Vec::new();
    for i in 0..20 {
        big.push((format!("x-big-{i}"), vec![b'b'; 8000]));
    }
    let extra: Vec<(&str, &[u8])> = big
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let block = get_block(&authority, "/healthz", &extra);
    let (first, rest) = block.split_at(16_000);
    let mut bytes = frame(HEADERS, END_STREAM, 1, first);
    let chunks: Vec<&[u8]> = rest.chunks(16_000).collect();
    for (i, c) in chunks.iter().enumerate() {
        let flags = if i + 1 == chunks.len() {
            END_HEADERS
        } else {
            0
        };
        bytes.extend(frame(CONTINUATION, flags, 1, c));
    }
    let _ = h2.send(&bytes).await;
    let mut frames = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(f) = h2.read().await {
            let done = f.0 == GOAWAY || f.0 == RST_STREAM || f.0 == HEADERS;
            frames.push(f);
            if done {
                break;
            }
        }
    })
    .await;
    let refused = goaway(&frames).is_some()
        || frames.iter().any(|f| f.0 == RST_STREAM && f.2 == 1)
        || status(&frames, 1) == Some(431);
    assert!(
        refused,
        "an oversized header list was not refused: {frames:?}"
    );
    assert_eq!(
        other.try_get(&healthz).await,
        Some(200),
        "others are served"
    );

    let after = rss_kib(gh.pid());
    let cpu = cpu_time(gh.pid()) - cpu_before;
    assert!(
        cpu < Duration::from_secs(10),
        "the floods cost {cpu:?} of CPU"
    );
    eprintln!("floods: RSS {before} -> {after} KiB, CPU {cpu:?}");
    assert!(
        after < before + 64 * 1024,
        "memory grew from {before} KiB to {after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_h2_connection_gets_goaway_after_idle_timeout() {
    let (idp, up) = (TestIdp::start().await, Upstream::start().await);
    let ca = TestCa::new();
    let gh = Served::start(&ca, &ca.leaf(1), &idp, &up, &|_| {
        "idle_timeout_secs = 1\n".into()
    })
    .await;
    let mut h2 = H2::open(&ca, gh.port).await;
    let opened = std::time::Instant::now();
    let frames = h2.drain().await;
    assert_eq!(goaway(&frames), Some(0), "a graceful GOAWAY: {frames:?}");
    let after = opened.elapsed();
    assert!(
        after >= Duration::from_millis(800),
        "cut too early: {after:?}"
    );
    assert!(after < Duration::from_secs(10), "cut too late: {after:?}");
}

/// A `:path` that is not a path (`?query`, `*` for GET) reaches neither a skip route's
/// match nor the upstream: gatehouse would match `/` while the upstream got the target
/// as written. A real path on the same connection is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_path_that_is_not_a_path_is_refused_before_the_upstream() {
    let (idp, up) = (TestIdp::start().await, Upstream::start().await);
    let ca = TestCa::new();
    let gh = Served::start(&ca, &ca.leaf(1), &idp, &up, &|_| {
        "skip_auth_routes = [\"GET=/\"]\n".into()
    })
    .await;
    let authority = format!("localhost:{}", gh.port);
    let mut h2 = H2::open(&ca, gh.port).await;
    let mut frames = Vec::new();
    let mut stream = 1;
    for path in ["?x=1", "*", "?"] {
        let block = get_block(&authority, path, &[]);
        assert!(
            h2.send(&frame(HEADERS, END_STREAM | END_HEADERS, stream, &block))
                .await
        );
        assert_eq!(h2.answer(&mut frames, stream).await, Some(400), "{path}");
        stream += 2;
    }
    let block = get_block(&authority, "/?x=1", &[]);
    assert!(
        h2.send(&frame(HEADERS, END_STREAM | END_HEADERS, stream, &block))
            .await
    );
    assert_eq!(h2.answer(&mut frames, stream).await, Some(200));
}

/// A connection that sends no request but keeps sending PINGs (each resets the silence
/// rule) is held no longer than an idle HTTP/1.1 keep-alive connection: GOAWAY after
/// `header_read_timeout` without a request, and dropped `idle_timeout` after that even
/// though the PINGs go on (a review finding: it used to keep its slot for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_connection_that_only_pings_is_closed_like_an_idle_keep_alive() {
    let (idp, up) = (TestIdp::start().await, Upstream::start().await);
    let ca = TestCa::new();
    let gh = Served::start(&ca, &ca.leaf(1), &idp, &up, &|_| {
        "header_read_timeout_secs = 1\nidle_timeout_secs = 2\n".into()
    })
    .await;
    let mut h2 = H2::open(&ca, gh.port).await;
    let opened = std::time::Instant::now();
    let (mut goaway_at, mut frames) = (None, Vec::new());
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if !h2.send(&frame(PING, 0, 0, &[7u8; 8])).await {
                return;
            }
            match tokio::time::timeout(Duration::from_millis(200), h2.read()).await {
                Ok(None) => return,
                Ok(Some(f)) => {
                    if f.0 == GOAWAY && goaway_at.is_none() {
                        goaway_at = Some(opened.elapsed());
                    }
                    frames.push(f);
                }
                Err(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a pinging connection was never dropped: {frames:?}"
    );
    let goaway_at = goaway_at.expect("a GOAWAY before the drop");
    assert!(
        goaway_at >= Duration::from_millis(800),
        "too early: {goaway_at:?}"
    );
    assert!(
        goaway_at < Duration::from_secs(4),
        "too late: {goaway_at:?}"
    );
    // A request right away on a new connection is served as usual.
    let mut fresh = H2::open(&ca, gh.port).await;
    let block = get_block(&format!("localhost:{}", gh.port), "/healthz", &[]);
    assert!(
        fresh
            .send(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &block))
            .await
    );
    assert_eq!(fresh.answer(&mut Vec::new(), 1).await, Some(200));
}
