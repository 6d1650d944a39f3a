//! A tiny blocking RESP2 client, enough for the harness to set Redis up, poll it and
//! check what a test left in it: one TCP connection, commands sent as arrays of bulk
//! strings, replies read whole. Not a model of the production client (the harness must
//! not depend on the crate it helps to test).

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a harness command may take (connect, and each read and write).
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// One RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR ...`, `-MOVED ...`, `-NOAUTH ...`: the whole line after the `-`.
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    /// A null bulk string or null array.
    Nil,
    Array(Vec<Reply>),
}

impl Reply {
    /// A status or bulk string as text.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Status(s) => Some(s.clone()),
            Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The elements of an array reply; empty for anything else.
    pub fn items(&self) -> &[Reply] {
        match self {
            Reply::Array(a) => a,
            _ => &[],
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
}

/// One connection to a Redis server or Sentinel on `127.0.0.1`.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Connects, and authenticates first when `auth` (user, password) is given.
    pub fn open(port: u16, auth: Option<(&str, &str)>) -> io::Result<Conn> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            reader: BufReader::new(stream),
        };
        if let Some((user, pass)) = auth {
            match conn.cmd(&["AUTH", user, pass])? {
                Reply::Status(_) => {}
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!("AUTH {user}: {other:?}"),
                    ))
                }
            }
        }
        Ok(conn)
    }

    /// Sends one command and reads its reply (a Redis error is an `Ok(Reply::Error)`).
    pub fn cmd(&mut self, args: &[&str]) -> io::Result<Reply> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&out)?;
        read_reply(&mut self.reader)
    }
}

/// One command on a fresh connection to `port` (no authentication).
pub fn query(port: u16, args: &[&str]) -> io::Result<Reply> {
    Conn::open(port, None)?.cmd(args)
}

fn read_reply(r: &mut impl BufRead) -> io::Result<Reply> {
    let line = read_line(r)?;
    let (kind, rest) = line.split_at(1.min(line.len()));
    match kind {
        "+" => Ok(Reply::Status(rest.to_string())),
        "-" => Ok(Reply::Error(rest.to_string())),
        ":" => Ok(Reply::Int(number(rest)?)),
        "$" => {
            let Ok(len) = usize::try_from(number(rest)?) else {
                return Ok(Reply::Nil);
            };
            let mut buf = vec![0u8; len + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(len);
            Ok(Reply::Bulk(buf))
        }
        "*" => {
            let Ok(n) = usize::try_from(number(rest)?) else {
                return Ok(Reply::Nil);
            };
            (0..n)
                .map(|_| read_reply(r))
                .collect::<io::Result<_>>()
                .map(Reply::Array)
        }
        _ => Err(bad(format!("not a RESP2 reply: {line:?}"))),
    }
}

/// One line without its CRLF; an error at end of stream.
fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    let trimmed = line.trim_end_matches(['\r', '\n']);
    Ok(trimmed.to_string())
}

fn number(s: &str) -> io::Result<i64> {
    s.parse().map_err(|_| bad(format!("not a number: {s:?}")))
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
