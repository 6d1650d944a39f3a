//! A decoder for chunked response bodies (RFC 9112 §7.1), for the upstream client in
//! `h1.rs`. It works on the connection's read buffer, hands data out without copying,
//! and is strict: sizes are bounded and overflow-checked, every line ends in CRLF, and
//! trailers are read (bounded) and dropped, as nginx does.

use bytes::{Buf, Bytes, BytesMut};

/// Longest chunk-size line (with extensions) or trailer line.
const MAX_LINE: usize = 4096;
/// Most trailer bytes in one body.
const MAX_TRAILERS: usize = 16 * 1024;

/// Why a chunked body cannot be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("a chunk size that is not hexadecimal or too large")]
    BadSize,
    #[error("a chunk-size or trailer line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("a line that does not end in CRLF")]
    BadLineEnd,
    #[error("chunk data not followed by CRLF")]
    MissingCrlf,
    #[error("more than {MAX_TRAILERS} bytes of trailers")]
    TrailersTooLarge,
}

/// What one step of decoding produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Body bytes (never empty).
    Data(Bytes),
    /// The buffer holds no complete piece: read more.
    NeedMore,
    /// The last chunk and the trailers were read; nothing of the body is left.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// Decoding state of one chunked body.
#[derive(Debug)]
pub struct Chunked {
    state: State,
    trailer_bytes: usize,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::Size,
            trailer_bytes: 0,
        }
    }
}

impl Chunked {
    /// Decodes from the front of `buf`, consuming what it used.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        loop {
            match self.state {
                State::Size => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Step::NeedMore);
                    };
                    let size = parse_size(&line)?;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(n).freeze();
                    self.state = match left - n as u64 {
                        0 => State::DataEnd,
                        more => State::Data(more),
                    };
                    return Ok(Step::Data(data));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError::MissingCrlf);
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Step::NeedMore);
                    };
                    if line.is_empty() {
                        self.state = State::Done;
                    } else {
                        self.trailer_bytes += line.len();
                        if self.trailer_bytes > MAX_TRAILERS {
                            return Err(ChunkError::TrailersTooLarge);
                        }
                    }
                }
                State::Done => return Ok(Step::Done),
            }
        }
    }
}

/// Takes one CRLF-terminated line off `buf`, without its CRLF; `None` until it is whole.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, ChunkError> {
    let Some(lf) = memchr::memchr(b'\n', buf) else {
        return if buf.len() > MAX_LINE {
            Err(ChunkError::LineTooLong)
        } else {
            Ok(None)
        };
    };
    if lf > MAX_LINE {
        return Err(ChunkError::LineTooLong);
    }
    if lf == 0 || buf[lf - 1] != b'\r' || buf[..lf - 1].contains(&b'\r') {
        return Err(ChunkError::BadLineEnd);
    }
    let mut line = buf.split_to(lf + 1);
    line.truncate(lf - 1);
    Ok(Some(line))
}

/// `chunk-size [ chunk-ext ]`: hexadecimal, then optional whitespace and `;`-extensions
/// (ignored). At most 16 digits, checked for overflow.
fn parse_size(line: &[u8]) -> Result<u64, ChunkError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(ChunkError::BadSize);
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        let d = (b as char).to_digit(16).ok_or(ChunkError::BadSize)?;
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(d)))
            .ok_or(ChunkError::BadSize)?;
    }
    let rest = line[digits..].trim_ascii_start();
    if rest.is_empty()
        || (rest[0] == b';' && !rest.iter().any(|b| b.is_ascii_control() && *b != b'\t'))
    {
        Ok(size)
    } else {
        Err(ChunkError::BadSize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces at every split point pair; returns the body or the error.
    fn decode_split(wire: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut dec = Chunked::default();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        let mut points: Vec<usize> = cuts.to_vec();
        points.push(wire.len());
        for end in points {
            buf.extend_from_slice(&wire[fed..end]);
            fed = end;
            loop {
                match dec.step(&mut buf)? {
                    Step::Data(d) => {
                        assert!(!d.is_empty());
                        body.extend_from_slice(&d)
                    }
                    Step::NeedMore => break,
                    Step::Done => return Ok((body, buf.len() + wire.len() - fed)),
                }
            }
        }
        Ok((body, usize::MAX))
    }

    fn every_split(wire: &[u8]) -> Result<(Vec<u8>, usize), ChunkError> {
        let whole = decode_split(wire, &[])?;
        for i in 0..=wire.len() {
            for j in i..=wire.len() {
                assert_eq!(
                    decode_split(wire, &[i, j]).as_ref(),
                    Ok(&whole),
                    "split at {i},{j}"
                );
            }
        }
        Ok(whole)
    }

    #[test]
    fn decodes_sizes_extensions_and_trailers_at_every_split() {
        let wire = b"5\r\nhello\r\n1A ; name=\"v\"\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-t: 1\r\n\r\nNEXT";
        let (body, left) = every_split(wire).unwrap();
        assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz");
        // What follows the body (a pipelined response) is left in the buffer.
        assert_eq!(left, 4);
        assert_eq!(every_split(b"0\r\n\r\n").unwrap(), (Vec::new(), 0));
        assert_eq!(
            every_split(b"000a\r\n0123456789\r\n0\r\n\r\n").unwrap().0,
            b"0123456789"
        );
    }

    #[test]
    fn refuses_malformed_bodies() {
        let bad: &[(&[u8], ChunkError)] = &[
            (b"g\r\n", ChunkError::BadSize),
            (b"\r\n", ChunkError::BadSize),
            (b"-1\r\n", ChunkError::BadSize),
            (b"0x5\r\nhello\r\n", ChunkError::BadSize),
            (b"5 junk\r\nhello\r\n", ChunkError::BadSize),
            (b"5;\0\r\nhello\r\n", ChunkError::BadSize),
            (b"10000000000000000\r\n", ChunkError::BadSize),
            (b"FFFFFFFFFFFFFFFFF\r\n", ChunkError::BadSize),
            (b"5\nhello\r\n", ChunkError::BadLineEnd),
            (b"5\r\r\nhello\r\n", ChunkError::BadLineEnd),
            (b"5\r\nhelloXY0\r\n\r\n", ChunkError::MissingCrlf),
            (b"5\r\nhello\n0\r\n\r\n", ChunkError::MissingCrlf),
            (b"0\r\nx-t: 1\n\r\n", ChunkError::BadLineEnd),
        ];
        for (wire, want) in bad {
            assert_eq!(
                decode_split(wire, &[]),
                Err(want.clone()),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        let long = [b"1".repeat(MAX_LINE + 10), b"\r\n".to_vec()].concat();
        assert_eq!(decode_split(&long, &[]), Err(ChunkError::LineTooLong));
        let mut endless = b"0\r\n".to_vec();
        for _ in 0..2000 {
            endless.extend_from_slice(b"x-trailer: 0123456789\r\n");
        }
        assert_eq!(
            decode_split(&endless, &[]),
            Err(ChunkError::TrailersTooLarge)
        );
    }

    #[test]
    fn the_largest_size_is_read_without_overflow() {
        assert_eq!(parse_size(b"FFFFFFFFFFFFFFFF"), Ok(u64::MAX));
        assert_eq!(parse_size(b"7fffffffffffffff;a=b"), Ok(i64::MAX as u64));
    }
}
