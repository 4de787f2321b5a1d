//! The two halves of an upgraded connection speaking
//! [`stream`](lobster_agent_proto::stream) frames, shared by exec sessions
//! and file copies.
//!
//! [`FrameSender`] sends stdin (never more than [`STDIN_WINDOW`] bytes
//! unacknowledged) and control frames, each write bounded in time.
//! [`FrameReceiver`] yields data frames and the final `End`, takes in the
//! agent's credit, and turns an `Error` frame, a broken frame, unearned
//! credit or a close before `End` into an error. Once it has yielded
//! anything but data it closes the credit, waking a sender that waits for
//! credit that will never come.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lobster_agent_proto::stream::{Frame, FrameDecoder, MAX_FRAME_PAYLOAD, STDIN_WINDOW};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Mutex, Semaphore};

use super::conn::{read_some, Upgraded};
use super::{sanitize_for_terminal, AgentError};

/// Sends frames on an upgraded connection (cheap to clone).
#[derive(Debug, Clone)]
pub(crate) struct FrameSender {
    writer: Arc<Mutex<OwnedWriteHalf>>,
    credit: Arc<Semaphore>,
    addr: SocketAddr,
    method: &'static str,
    write_timeout: Duration,
}

/// Receives frames from an upgraded connection.
#[derive(Debug)]
pub(crate) struct FrameReceiver {
    reader: OwnedReadHalf,
    decoder: FrameDecoder,
    credit: Arc<Semaphore>,
    addr: SocketAddr,
    method: &'static str,
}

/// One item a [`FrameReceiver`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A `Stdout` frame's bytes.
    Stdout(Vec<u8>),
    /// A `Stderr` frame's bytes.
    Stderr(Vec<u8>),
    /// The final `End` frame's value.
    End(Value),
}

/// Splits `upgraded` (the connection of `method`) into its two halves;
/// each frame write is bounded by `write_timeout`.
pub(crate) fn split(
    upgraded: Upgraded,
    method: &'static str,
    write_timeout: Duration,
) -> (FrameSender, FrameReceiver) {
    let (reader, writer) = upgraded.stream.into_split();
    let credit = Arc::new(Semaphore::new(STDIN_WINDOW as usize));
    let mut decoder = FrameDecoder::new();
    decoder.push(&upgraded.rest);
    (
        FrameSender {
            writer: Arc::new(Mutex::new(writer)),
            credit: credit.clone(),
            addr: upgraded.addr,
            method,
            write_timeout,
        },
        FrameReceiver {
            reader,
            decoder,
            credit,
            addr: upgraded.addr,
            method,
        },
    )
}

impl FrameSender {
    /// Sends `bytes` as `Stdin` frames, waiting for the agent's credit
    /// whenever [`STDIN_WINDOW`] bytes are unacknowledged.
    pub(crate) async fn write_stdin(&self, bytes: &[u8]) -> Result<(), AgentError> {
        for chunk in bytes.chunks(MAX_FRAME_PAYLOAD) {
            let permits = self
                .credit
                .acquire_many(chunk.len() as u32)
                .await
                .map_err(|_| self.ended())?;
            permits.forget();
            self.send(&Frame::Stdin(chunk.to_vec())).await?;
        }
        Ok(())
    }

    /// Sends one frame (control frames never wait for credit).
    pub(crate) async fn send(&self, frame: &Frame) -> Result<(), AgentError> {
        if self.credit.is_closed() {
            return Err(self.ended());
        }
        let bytes = frame.encode();
        let write = async {
            let mut writer = self.writer.lock().await;
            writer.write_all(&bytes).await
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(AgentError::Io {
                context: format!(
                    "sending to the {} session of agent {}",
                    self.method, self.addr
                ),
                source,
            }),
            Err(_) => Err(AgentError::Timeout {
                addr: self.addr,
                method: self.method,
                after: self.write_timeout,
            }),
        }
    }

    fn ended(&self) -> AgentError {
        AgentError::Closed {
            addr: self.addr,
            method: self.method,
        }
    }
}

impl FrameReceiver {
    /// The next data frame or the final `End`; waits as long as the agent
    /// is silent. After anything but data, the credit is closed.
    pub(crate) async fn next(&mut self) -> Result<Incoming, AgentError> {
        let result = self.read().await;
        if !matches!(result, Ok(Incoming::Stdout(_) | Incoming::Stderr(_))) {
            self.credit.close();
        }
        result
    }

    /// [`next`](Self::next), failing with a timeout when the agent stays
    /// silent for `idle`.
    pub(crate) async fn next_within(&mut self, idle: Duration) -> Result<Incoming, AgentError> {
        match tokio::time::timeout(idle, self.next()).await {
            Ok(result) => result,
            Err(_) => {
                self.credit.close();
                Err(AgentError::Timeout {
                    addr: self.addr,
                    method: self.method,
                    after: idle,
                })
            }
        }
    }

    async fn read(&mut self) -> Result<Incoming, AgentError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let frame = self
                .decoder
                .next_frame()
                .map_err(|e| self.protocol(e.to_string()))?;
            match frame {
                Some(Frame::Stdout(bytes)) => return Ok(Incoming::Stdout(bytes)),
                Some(Frame::Stderr(bytes)) => return Ok(Incoming::Stderr(bytes)),
                Some(Frame::Credit(n)) => self.take_credit(n)?,
                Some(Frame::End(value)) => return Ok(Incoming::End(value)),
                Some(Frame::Error(e)) => {
                    return Err(AgentError::Remote {
                        method: self.method,
                        code: e.code,
                        message: sanitize_for_terminal(&e.message),
                    })
                }
                Some(other) => {
                    return Err(self.protocol(format!("agent sent a host frame: {other:?}")))
                }
                None => {
                    let n = read_some(&mut self.reader, &mut chunk, self.addr, self.method).await?;
                    self.decoder.push(&chunk[..n]);
                }
            }
        }
    }

    /// Returns `n` bytes of stdin credit; more than is outstanding breaks
    /// the protocol (the window would grow past [`STDIN_WINDOW`]).
    fn take_credit(&self, n: u32) -> Result<(), AgentError> {
        let outstanding = (STDIN_WINDOW as usize).saturating_sub(self.credit.available_permits());
        if n as usize > outstanding {
            return Err(self.protocol(format!(
                "credit of {n} bytes exceeds the {outstanding} unacknowledged"
            )));
        }
        self.credit.add_permits(n as usize);
        Ok(())
    }

    /// A protocol error of this session naming `detail` (sanitised).
    pub(crate) fn protocol(&self, detail: String) -> AgentError {
        AgentError::Protocol {
            addr: self.addr,
            detail: sanitize_for_terminal(&format!("{}: {detail}", self.method)),
        }
    }
}
