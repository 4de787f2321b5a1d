//! Binary frames of an upgraded connection: exec sessions and file transfers.
//!
//! A method that upgrades (`exec.start`, `files.put`, `files.get`) is
//! answered with one ordinary `ok` line; from the byte after its newline on,
//! both sides speak frames instead of JSON lines until the agent sends a
//! final frame ([`Frame::End`] or [`Frame::Error`]) and closes. A frame is a
//! five-byte header, the kind (`u8`) and the payload length (`u32`, big
//! endian), then at most [`MAX_FRAME_PAYLOAD`] payload bytes.
//!
//! Flow control: the host may have at most [`STDIN_WINDOW`] bytes of
//! [`Frame::Stdin`] unacknowledged; the agent returns [`Frame::Credit`] as it
//! hands them on, so control frames (resize, signal) are never stuck behind
//! input the guest process does not read. Output is paced by TCP itself.
//!
//! [`FrameDecoder`] is sans-I/O like [`LineFramer`](crate::LineFramer): it
//! never buffers more than one frame, and refuses an unknown kind or an
//! oversize length from the header alone.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::message::RemoteError;

/// The largest payload of one frame: 64 KiB.
pub const MAX_FRAME_PAYLOAD: usize = 64 * 1024;

/// Stdin bytes the host may send before the agent's first [`Frame::Credit`].
pub const STDIN_WINDOW: u32 = 256 * 1024;

const HEADER_LEN: usize = 5;

/// One frame of an upgraded connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// Host to agent: bytes for the process's stdin (or the archive of `files.put`).
    Stdin(Vec<u8>),
    /// Host to agent: no more stdin; the agent closes the process's stdin.
    StdinClose,
    /// Agent to host: bytes the process wrote to stdout, or to its terminal
    /// (or the archive of `files.get`).
    Stdout(Vec<u8>),
    /// Agent to host: bytes the process wrote to stderr (never with a PTY).
    Stderr(Vec<u8>),
    /// Agent to host: this many more stdin bytes were handed on.
    Credit(u32),
    /// Host to agent: the terminal's new size (PTY sessions only).
    Resize(WindowSize),
    /// Host to agent: deliver this signal number to the process group.
    Signal(i32),
    /// Agent to host, final: the method's result (for `exec.start` an
    /// [`ExecExit`](crate::methods::ExecExit)).
    End(Value),
    /// Agent to host, final: the operation failed.
    Error(RemoteError),
}

/// A terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSize {
    /// Rows (lines).
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

mod kind {
    pub const STDIN: u8 = 1;
    pub const STDIN_CLOSE: u8 = 2;
    pub const STDOUT: u8 = 3;
    pub const STDERR: u8 = 4;
    pub const CREDIT: u8 = 5;
    pub const RESIZE: u8 = 6;
    pub const SIGNAL: u8 = 7;
    pub const END: u8 = 8;
    pub const ERROR: u8 = 9;
}

/// Why bytes could not be read as frames; the connection cannot continue.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamError {
    /// The header names a kind this side does not know.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The header announces more than [`MAX_FRAME_PAYLOAD`] bytes.
    #[error("frame of {0} bytes exceeds {MAX_FRAME_PAYLOAD}")]
    TooLong(u32),
    /// The payload does not fit its kind (wrong length, bad JSON).
    #[error("malformed {kind} frame: {detail}")]
    Malformed {
        /// The frame kind's name.
        kind: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl Frame {
    /// The frame as bytes on the wire. Data frames longer than
    /// [`MAX_FRAME_PAYLOAD`] must be split by the caller (see [`data_frames`]).
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload): (u8, Vec<u8>) = match self {
            Frame::Stdin(b) => (kind::STDIN, b.clone()),
            Frame::StdinClose => (kind::STDIN_CLOSE, Vec::new()),
            Frame::Stdout(b) => (kind::STDOUT, b.clone()),
            Frame::Stderr(b) => (kind::STDERR, b.clone()),
            Frame::Credit(n) => (kind::CREDIT, n.to_be_bytes().to_vec()),
            Frame::Resize(w) => {
                let mut p = w.rows.to_be_bytes().to_vec();
                p.extend_from_slice(&w.cols.to_be_bytes());
                (kind::RESIZE, p)
            }
            Frame::Signal(s) => (kind::SIGNAL, s.to_be_bytes().to_vec()),
            Frame::End(v) => (kind::END, json_payload(v)),
            Frame::Error(e) => (kind::ERROR, json_payload(e)),
        };
        debug_assert!(payload.len() <= MAX_FRAME_PAYLOAD, "caller splits data");
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Whether this frame ends the session.
    pub fn is_final(&self) -> bool {
        matches!(self, Frame::End(_) | Frame::Error(_))
    }

    fn decode(kind: u8, payload: Vec<u8>) -> Result<Frame, StreamError> {
        fn fixed<const N: usize>(name: &'static str, p: &[u8]) -> Result<[u8; N], StreamError> {
            p.try_into().map_err(|_| StreamError::Malformed {
                kind: name,
                detail: format!("{} bytes, expected {N}", p.len()),
            })
        }
        fn json<T: serde::de::DeserializeOwned>(
            name: &'static str,
            p: &[u8],
        ) -> Result<T, StreamError> {
            serde_json::from_slice(p).map_err(|e| StreamError::Malformed {
                kind: name,
                detail: e.to_string(),
            })
        }
        Ok(match kind {
            kind::STDIN => Frame::Stdin(payload),
            kind::STDIN_CLOSE => {
                fixed::<0>("stdin_close", &payload)?;
                Frame::StdinClose
            }
            kind::STDOUT => Frame::Stdout(payload),
            kind::STDERR => Frame::Stderr(payload),
            kind::CREDIT => Frame::Credit(u32::from_be_bytes(fixed("credit", &payload)?)),
            kind::RESIZE => {
                let p: [u8; 4] = fixed("resize", &payload)?;
                Frame::Resize(WindowSize {
                    rows: u16::from_be_bytes([p[0], p[1]]),
                    cols: u16::from_be_bytes([p[2], p[3]]),
                })
            }
            kind::SIGNAL => Frame::Signal(i32::from_be_bytes(fixed("signal", &payload)?)),
            kind::END => Frame::End(json("end", &payload)?),
            kind::ERROR => Frame::Error(json("error", &payload)?),
            other => return Err(StreamError::UnknownKind(other)),
        })
    }
}

fn json_payload<T: Serialize>(value: &T) -> Vec<u8> {
    let bytes = serde_json::to_vec(value).expect("JSON values and errors serialize");
    if bytes.len() <= MAX_FRAME_PAYLOAD {
        bytes
    } else {
        // Only a pathological message gets here; keep the frame valid.
        serde_json::to_vec(&serde_json::json!({"truncated": true})).expect("serializes")
    }
}

/// `bytes` as frames of at most [`MAX_FRAME_PAYLOAD`] each, built by `make`
/// (`Frame::Stdin`, `Frame::Stdout`, `Frame::Stderr`).
pub fn data_frames(bytes: &[u8], make: fn(Vec<u8>) -> Frame) -> impl Iterator<Item = Frame> + '_ {
    bytes
        .chunks(MAX_FRAME_PAYLOAD)
        .map(move |c| make(c.to_vec()))
}

/// Splits a byte stream into frames, holding at most one frame's bytes.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder with nothing buffered.
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Appends received bytes. Call [`next_frame`](Self::next_frame) until it
    /// returns `Ok(None)` before pushing again, so the buffer stays bounded.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed, or an
    /// error as soon as the header is bad.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, StreamError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let kind = self.buf[0];
        if !(kind::STDIN..=kind::ERROR).contains(&kind) {
            return Err(StreamError::UnknownKind(kind));
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        if len as usize > MAX_FRAME_PAYLOAD {
            return Err(StreamError::TooLong(len));
        }
        let end = HEADER_LEN + len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let payload = self.buf[HEADER_LEN..end].to_vec();
        self.buf.drain(..end);
        Frame::decode(kind, payload).map(Some)
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use proptest::prelude::*;

    fn every_kind() -> Vec<Frame> {
        vec![
            Frame::Stdin(b"in".to_vec()),
            Frame::StdinClose,
            Frame::Stdout(vec![0; MAX_FRAME_PAYLOAD]),
            Frame::Stderr(Vec::new()),
            Frame::Credit(65536),
            Frame::Resize(WindowSize {
                rows: 40,
                cols: 120,
            }),
            Frame::Signal(-2),
            Frame::End(serde_json::json!({"code": 0})),
            Frame::Error(RemoteError {
                code: ErrorCode::NotFound,
                message: "no such file".into(),
            }),
        ]
    }

    #[test]
    fn every_kind_round_trips_through_a_byte_at_a_time() {
        let frames = every_kind();
        let wire: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut d = FrameDecoder::new();
        let mut out = Vec::new();
        for b in wire {
            d.push(&[b]);
            while let Some(f) = d.next_frame().unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, frames);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn an_oversize_or_unknown_header_is_refused_before_its_payload() {
        let mut d = FrameDecoder::new();
        d.push(&[kind::STDOUT, 0, 1, 0, 1]);
        assert_eq!(d.next_frame(), Err(StreamError::TooLong(65537)));
        let mut d = FrameDecoder::new();
        d.push(&[0, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(StreamError::UnknownKind(0)));
    }

    #[test]
    fn fixed_size_frames_of_the_wrong_length_are_malformed() {
        let mut d = FrameDecoder::new();
        d.push(&[kind::SIGNAL, 0, 0, 0, 2, 0, 9]);
        assert!(matches!(
            d.next_frame(),
            Err(StreamError::Malformed { kind: "signal", .. })
        ));
    }

    #[test]
    fn data_frames_split_at_the_cap() {
        let bytes = vec![7u8; MAX_FRAME_PAYLOAD * 2 + 1];
        let sizes: Vec<usize> = data_frames(&bytes, Frame::Stdin)
            .map(|f| match f {
                Frame::Stdin(b) => b.len(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(sizes, [MAX_FRAME_PAYLOAD, MAX_FRAME_PAYLOAD, 1]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
            let mut d = FrameDecoder::new();
            for c in chunks {
                d.push(&c);
                loop {
                    match d.next_frame() {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => return Ok(()),
                    }
                }
                prop_assert!(d.buffered() <= HEADER_LEN + MAX_FRAME_PAYLOAD + 300);
            }
        }
    }
}
