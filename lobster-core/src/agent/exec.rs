//! Running a command in the guest: `exec.start`, then a session of frames.
//!
//! [`Agent::exec`] opens a connection of its own, sends `exec.start` and
//! waits (within the usual call bound) for the agent's one reply line: an
//! error (`not_found` for an unknown command, `bad_request` naming a field,
//! `busy`) or `ok` with the guest pid. From then on the connection carries
//! frames ([`lobster_agent_proto::stream`]):
//!
//! - [`ExecInput`] sends stdin, its end, terminal resizes and signals. It
//!   never has more than [`STDIN_WINDOW`] bytes of stdin unacknowledged:
//!   [`ExecInput::write_stdin`] waits for the agent's credit, which
//!   [`ExecOutput::next`] takes in, so the output must be read meanwhile.
//! - [`ExecOutput`] yields stdout, stderr and finally the exit. A session
//!   may be silent for as long as its command is, so reading has no idle
//!   bound; an agent that closes without a final frame is an error, never
//!   a hang. Each frame write is bounded by the call timeout.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use lobster_agent_proto::methods::{self as m, ExecStarted};
pub use lobster_agent_proto::methods::{ExecExit, ExecParams};
pub use lobster_agent_proto::stream::WindowSize;
use lobster_agent_proto::stream::{Frame, FrameDecoder, MAX_FRAME_PAYLOAD, STDIN_WINDOW};
use lobster_agent_proto::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Mutex, Semaphore};

use super::{sanitize_for_terminal, Agent, AgentError, ErrorCode};

const METHOD: &str = m::ExecStart::NAME;

/// A running command in the guest: its pid, whether it has a terminal,
/// and the two halves of its connection.
#[derive(Debug)]
pub struct ExecSession {
    pid: u32,
    tty: bool,
    input: ExecInput,
    output: ExecOutput,
}

/// Sends to a running command (cheap to clone: stdin pumping and control
/// frames may run in different tasks; control frames never wait for credit).
#[derive(Debug, Clone)]
pub struct ExecInput {
    writer: Arc<Mutex<OwnedWriteHalf>>,
    credit: Arc<Semaphore>,
    addr: SocketAddr,
    write_timeout: Duration,
}

/// What a running command sends back, in order, ending with its exit.
#[derive(Debug)]
pub struct ExecOutput {
    reader: OwnedReadHalf,
    decoder: FrameDecoder,
    credit: Arc<Semaphore>,
    addr: SocketAddr,
    done: bool,
    guard: Option<Guard>,
}

/// Something a session keeps (a hold on the guest) and releases as soon
/// as the command has ended; dropped unreleased if the session is dropped
/// before that.
pub trait SessionGuard: Send + Sync + 'static {
    /// Releases it (bounded by the implementation).
    fn release(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

struct Guard(Box<dyn SessionGuard>);

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Guard(..)")
    }
}

/// One item of an [`ExecOutput`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    /// Bytes the command wrote to stdout (or to its terminal).
    Stdout(Vec<u8>),
    /// Bytes the command wrote to stderr (never with a terminal).
    Stderr(Vec<u8>),
    /// How the command ended; the last event.
    Exit(ExecExit),
}

/// The exit status a local process should report for `exit`, as a shell
/// does: the code if it exited, 128 + N if signal N ended it, 124 if the
/// agent killed it for its timeout (as `timeout(1)`), 1 if the agent said
/// neither.
pub fn exit_status(exit: &ExecExit) -> i32 {
    if exit.timed_out {
        return 124;
    }
    match (exit.code, exit.signal) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

/// The status of a command that was not found (as `sh`'s).
pub const COMMAND_NOT_FOUND_STATUS: i32 = 127;

impl AgentError {
    /// [`COMMAND_NOT_FOUND_STATUS`] when the agent refused an exec because
    /// its command does not exist.
    pub(crate) fn exec_status(&self) -> Option<i32> {
        match self {
            AgentError::Remote {
                method: METHOD,
                code: ErrorCode::NotFound,
                ..
            } => Some(COMMAND_NOT_FOUND_STATUS),
            _ => None,
        }
    }
}

impl Agent {
    /// Starts `params.argv` in the guest and returns its session. The
    /// reply is bounded by the connect and call timeouts; the session is not.
    ///
    /// # Errors
    /// [`AgentError::Remote`] when the agent refuses (an unknown command is
    /// `not_found`, a bad field `bad_request`, too many sessions `busy`).
    pub async fn exec(&self, params: &ExecParams) -> Result<ExecSession, AgentError> {
        let (started, upgraded) = self.upgrade::<m::ExecStart>(params).await?;
        let ExecStarted { pid } = started;
        let (reader, writer) = upgraded.stream.into_split();
        let credit = Arc::new(Semaphore::new(STDIN_WINDOW as usize));
        let mut decoder = FrameDecoder::new();
        decoder.push(&upgraded.rest);
        Ok(ExecSession {
            pid,
            tty: params.tty.is_some(),
            input: ExecInput {
                writer: Arc::new(Mutex::new(writer)),
                credit: credit.clone(),
                addr: upgraded.addr,
                write_timeout: self.timeouts.call,
            },
            output: ExecOutput {
                reader,
                decoder,
                credit,
                addr: upgraded.addr,
                done: false,
                guard: None,
            },
        })
    }
}

impl ExecSession {
    /// The command's pid in the guest.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the command runs on a terminal (stdout and stderr are one).
    pub fn tty(&self) -> bool {
        self.tty
    }

    /// Keeps `guard` (e.g. a hold on the guest) until the command ends,
    /// then releases it.
    pub fn guarded_by(mut self, guard: impl SessionGuard) -> ExecSession {
        self.output.guard = Some(Guard(Box::new(guard)));
        self
    }

    /// The sending and the receiving half, to drive concurrently.
    pub fn split(self) -> (ExecInput, ExecOutput) {
        (self.input, self.output)
    }
}

impl ExecInput {
    /// Sends `bytes` to the command's stdin, waiting for the agent's credit
    /// whenever [`STDIN_WINDOW`] bytes are unacknowledged.
    pub async fn write_stdin(&self, bytes: &[u8]) -> Result<(), AgentError> {
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

    /// Ends the command's stdin.
    pub async fn close_stdin(&self) -> Result<(), AgentError> {
        self.send(&Frame::StdinClose).await
    }

    /// Tells the command's terminal its new size.
    pub async fn resize(&self, size: WindowSize) -> Result<(), AgentError> {
        self.send(&Frame::Resize(size)).await
    }

    /// Sends signal `number` to the command's process group.
    pub async fn signal(&self, number: i32) -> Result<(), AgentError> {
        self.send(&Frame::Signal(number)).await
    }

    async fn send(&self, frame: &Frame) -> Result<(), AgentError> {
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
                context: format!("sending to the exec session of agent {}", self.addr),
                source,
            }),
            Err(_) => Err(AgentError::Timeout {
                addr: self.addr,
                method: METHOD,
                after: self.write_timeout,
            }),
        }
    }

    fn ended(&self) -> AgentError {
        AgentError::Closed {
            addr: self.addr,
            method: METHOD,
        }
    }
}

impl ExecOutput {
    /// The next event; `Ok(None)` after the exit. Waits as long as the
    /// command is silent. An error frame from the agent, a broken frame or
    /// a connection closed before the exit is an error.
    pub async fn next(&mut self) -> Result<Option<ExecEvent>, AgentError> {
        if self.done {
            return Ok(None);
        }
        let result = self.read_event().await;
        if !matches!(
            result,
            Ok(Some(ExecEvent::Stdout(_) | ExecEvent::Stderr(_)))
        ) {
            self.done = true;
            // Wakes a writer waiting for credit that will never come.
            self.credit.close();
            if let Some(Guard(guard)) = self.guard.take() {
                guard.release().await;
            }
        }
        result
    }

    async fn read_event(&mut self) -> Result<Option<ExecEvent>, AgentError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let frame = self
                .decoder
                .next_frame()
                .map_err(|e| self.protocol(e.to_string()))?;
            match frame {
                Some(Frame::Stdout(bytes)) => return Ok(Some(ExecEvent::Stdout(bytes))),
                Some(Frame::Stderr(bytes)) => return Ok(Some(ExecEvent::Stderr(bytes))),
                Some(Frame::Credit(n)) => self.take_credit(n)?,
                Some(Frame::End(value)) => {
                    let exit: ExecExit = serde_json::from_value(value)
                        .map_err(|e| self.protocol(format!("undecodable exit: {e}")))?;
                    return Ok(Some(ExecEvent::Exit(exit)));
                }
                Some(Frame::Error(e)) => {
                    return Err(AgentError::Remote {
                        method: METHOD,
                        code: e.code,
                        message: sanitize_for_terminal(&e.message),
                    })
                }
                Some(other) => {
                    return Err(self.protocol(format!("agent sent a host frame: {other:?}")))
                }
                None => {
                    let n =
                        self.reader
                            .read(&mut chunk)
                            .await
                            .map_err(|source| AgentError::Io {
                                context: format!("reading the exec session of agent {}", self.addr),
                                source,
                            })?;
                    if n == 0 {
                        return Err(AgentError::Closed {
                            addr: self.addr,
                            method: METHOD,
                        });
                    }
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

    fn protocol(&self, detail: String) -> AgentError {
        AgentError::Protocol {
            addr: self.addr,
            detail: sanitize_for_terminal(&format!("{METHOD}: {detail}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_follows_the_shell() {
        let exit = |code, signal, timed_out| ExecExit {
            code,
            signal,
            timed_out,
        };
        assert_eq!(exit_status(&exit(Some(0), None, false)), 0);
        assert_eq!(exit_status(&exit(Some(3), None, false)), 3);
        assert_eq!(exit_status(&exit(None, Some(9), false)), 137);
        assert_eq!(exit_status(&exit(None, Some(9), true)), 124);
        assert_eq!(exit_status(&exit(None, None, false)), 1);
    }
}
