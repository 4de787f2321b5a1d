//! Line framing with a hard size cap, shared by the agent and the host.
//!
//! [`LineFramer`] is sans-I/O: feed it bytes as they arrive and take complete
//! lines out. It never holds more than [`MAX_MESSAGE_BYTES`] plus one read
//! chunk, so a peer that never sends a newline cannot make us buffer without
//! limit. [`LineReader`] wraps it around a blocking reader.

use std::io::Read;

/// The largest line (without its newline) either side accepts: 1 MiB.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// A framing failure; the connection cannot continue after one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// A line exceeded the cap.
    #[error("message exceeds {limit} bytes")]
    TooLong {
        /// The cap that was exceeded.
        limit: usize,
    },
    /// The peer closed the connection in the middle of a line.
    #[error("connection closed mid-message ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes received since the last newline.
        buffered: usize,
    },
}

/// Splits a byte stream into newline-terminated lines of bounded length.
#[derive(Debug)]
pub struct LineFramer {
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already searched for a newline.
    scanned: usize,
    limit: usize,
}

impl Default for LineFramer {
    fn default() -> Self {
        LineFramer::new(MAX_MESSAGE_BYTES)
    }
}

impl LineFramer {
    /// A framer accepting lines of at most `limit` bytes.
    pub fn new(limit: usize) -> LineFramer {
        LineFramer {
            buf: Vec::new(),
            scanned: 0,
            limit,
        }
    }

    /// Appends received bytes. Call [`next_line`](Self::next_line) until it
    /// returns `Ok(None)` before pushing again, so the buffer stays bounded.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line (without `\n`, and without a trailing `\r`),
    /// `Ok(None)` when more bytes are needed, or an error once the pending
    /// line is longer than the cap.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        match self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            Some(offset) => {
                let end = self.scanned + offset;
                if end > self.limit {
                    return Err(FrameError::TooLong { limit: self.limit });
                }
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.scanned = 0;
                Ok(Some(line))
            }
            None if self.buf.len() > self.limit => Err(FrameError::TooLong { limit: self.limit }),
            None => {
                self.scanned = self.buf.len();
                Ok(None)
            }
        }
    }

    /// Bytes received but not yet returned as a line.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes the bytes received past the last line returned, leaving the
    /// framer empty: what follows an upgrading reply belongs to the
    /// [`stream`](crate::stream) frames, not to a line.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        self.scanned = 0;
        std::mem::take(&mut self.buf)
    }
}

/// Reads capped lines from a blocking reader.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    framer: LineFramer,
}

impl<R: Read> LineReader<R> {
    /// A reader with the default cap, [`MAX_MESSAGE_BYTES`].
    pub fn new(inner: R) -> LineReader<R> {
        LineReader::with_limit(inner, MAX_MESSAGE_BYTES)
    }

    /// A reader with a custom cap.
    pub fn with_limit(inner: R, limit: usize) -> LineReader<R> {
        LineReader {
            inner,
            framer: LineFramer::new(limit),
        }
    }

    /// The next line; `Ok(None)` on a clean end of stream. Framing errors are
    /// returned as `InvalidData` wrapping a [`FrameError`].
    pub fn read_line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(line) = self.framer.next_line().map_err(invalid_data)? {
                return Ok(Some(line));
            }
            let n = self.inner.read(&mut chunk)?;
            if n == 0 {
                return match self.framer.buffered() {
                    0 => Ok(None),
                    buffered => Err(invalid_data(FrameError::Truncated { buffered })),
                };
            }
            self.framer.push(&chunk[..n]);
        }
    }

    /// The wrapped reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Takes the bytes read past the last line returned (see
    /// [`LineFramer::take_buffered`]).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        self.framer.take_buffered()
    }
}

fn invalid_data(err: FrameError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, err)
}

/// Serialises `value` as one line (compact JSON never contains a raw
/// newline) and appends `\n`. Fails if the line would exceed the cap.
pub fn encode_line<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let mut line = serde_json::to_vec(value).map_err(EncodeError::Json)?;
    if line.len() > MAX_MESSAGE_BYTES {
        return Err(EncodeError::TooLong {
            len: line.len(),
            limit: MAX_MESSAGE_BYTES,
        });
    }
    line.push(b'\n');
    Ok(line)
}

/// Why a message could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The value does not serialise (a map with non-string keys, ...).
    #[error("message does not serialise as json")]
    Json(#[source] serde_json::Error),
    /// The encoded message is larger than the cap.
    #[error("message of {len} bytes exceeds {limit} bytes")]
    TooLong {
        /// Encoded length.
        len: usize,
        /// The cap.
        limit: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_across_chunks() {
        let mut f = LineFramer::new(16);
        f.push(b"ab");
        assert_eq!(f.next_line(), Ok(None));
        f.push(b"c\nde\r\nf");
        assert_eq!(f.next_line(), Ok(Some(b"abc".to_vec())));
        assert_eq!(f.next_line(), Ok(Some(b"de".to_vec())));
        assert_eq!(f.next_line(), Ok(None));
        assert_eq!(f.buffered(), 1);
    }

    #[test]
    fn take_buffered_hands_over_what_follows_the_last_line() {
        let mut f = LineFramer::new(16);
        f.push(b"ok\n\x03\x00bin");
        assert_eq!(f.next_line(), Ok(Some(b"ok".to_vec())));
        assert_eq!(f.next_line(), Ok(None));
        assert_eq!(f.take_buffered(), b"\x03\x00bin");
        assert_eq!(f.buffered(), 0);
        f.push(b"x\n");
        assert_eq!(f.next_line(), Ok(Some(b"x".to_vec())));
    }

    #[test]
    fn a_line_at_the_cap_passes_and_one_byte_more_fails() {
        let mut f = LineFramer::new(4);
        f.push(b"abcd\n");
        assert_eq!(f.next_line(), Ok(Some(b"abcd".to_vec())));
        f.push(b"abcde\n");
        assert_eq!(f.next_line(), Err(FrameError::TooLong { limit: 4 }));
    }

    #[test]
    fn an_endless_line_fails_before_a_newline_arrives() {
        let mut f = LineFramer::new(8);
        f.push(&[b'x'; 9]);
        assert_eq!(f.next_line(), Err(FrameError::TooLong { limit: 8 }));
    }

    #[test]
    fn reader_reports_clean_and_truncated_ends() {
        let mut r = LineReader::new(&b"one\ntwo\n"[..]);
        assert_eq!(r.read_line().unwrap(), Some(b"one".to_vec()));
        assert_eq!(r.read_line().unwrap(), Some(b"two".to_vec()));
        assert_eq!(r.read_line().unwrap(), None);

        let mut r = LineReader::new(&b"one\ntw"[..]);
        r.read_line().unwrap();
        let err = r.read_line().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn reader_enforces_the_cap_on_a_stream_without_newlines() {
        let endless = std::io::repeat(b'a');
        let mut r = LineReader::with_limit(endless, 1000);
        let err = r.read_line().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn encode_line_appends_one_newline_and_escapes_inner_ones() {
        let line = encode_line(&serde_json::json!({"text": "a\nb"})).unwrap();
        assert_eq!(line, b"{\"text\":\"a\\nb\"}\n");
        let big = "x".repeat(MAX_MESSAGE_BYTES);
        assert!(matches!(
            encode_line(&big),
            Err(EncodeError::TooLong { .. })
        ));
    }
}
