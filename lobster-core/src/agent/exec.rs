//! Running a command in the guest: `exec.start`, then a session of frames.
//!
//! [`Agent::exec`] opens a connection of its own, sends `exec.start` and
//! waits (within the usual call bound) for the agent's one reply line: an
//! error (`not_found` for an unknown command, `bad_request` naming a field,
//! `busy`) or `ok` with the guest pid. From then on the connection carries
//! frames ([`lobster_agent_proto::stream`]):
//!
//! - [`ExecInput`] sends stdin, its end, terminal resizes and signals. It
//!   never has more than [`STDIN_WINDOW`](lobster_agent_proto::stream::STDIN_WINDOW) bytes of stdin unacknowledged:
//!   [`ExecInput::write_stdin`] waits for the agent's credit, which
//!   [`ExecOutput::next`] takes in, so the output must be read meanwhile.
//! - [`ExecOutput`] yields stdout, stderr and finally the exit. A session
//!   may be silent for as long as its command is, so reading has no idle
//!   bound; an agent that closes without a final frame is an error, never
//!   a hang. Each frame write is bounded by the call timeout.

use std::future::Future;
use std::pin::Pin;

use lobster_agent_proto::methods::{self as m, ExecStarted};
pub use lobster_agent_proto::methods::{ExecExit, ExecParams};
use lobster_agent_proto::stream::Frame;
pub use lobster_agent_proto::stream::WindowSize;
use lobster_agent_proto::Method;

use super::stream::{self, FrameReceiver, FrameSender, Incoming};
use super::{Agent, AgentError, ErrorCode};

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
    sender: FrameSender,
}

/// What a running command sends back, in order, ending with its exit.
#[derive(Debug)]
pub struct ExecOutput {
    receiver: FrameReceiver,
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
        let (sender, receiver) = stream::split(upgraded, METHOD, self.timeouts.call);
        Ok(ExecSession {
            pid,
            tty: params.tty.is_some(),
            input: ExecInput { sender },
            output: ExecOutput {
                receiver,
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
    /// whenever [`STDIN_WINDOW`](lobster_agent_proto::stream::STDIN_WINDOW)
    /// bytes are unacknowledged.
    pub async fn write_stdin(&self, bytes: &[u8]) -> Result<(), AgentError> {
        self.sender.write_stdin(bytes).await
    }

    /// Ends the command's stdin.
    pub async fn close_stdin(&self) -> Result<(), AgentError> {
        self.sender.send(&Frame::StdinClose).await
    }

    /// Tells the command's terminal its new size.
    pub async fn resize(&self, size: WindowSize) -> Result<(), AgentError> {
        self.sender.send(&Frame::Resize(size)).await
    }

    /// Sends signal `number` to the command's process group.
    pub async fn signal(&self, number: i32) -> Result<(), AgentError> {
        self.sender.send(&Frame::Signal(number)).await
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
            if let Some(Guard(guard)) = self.guard.take() {
                guard.release().await;
            }
        }
        result
    }

    async fn read_event(&mut self) -> Result<Option<ExecEvent>, AgentError> {
        match self.receiver.next().await? {
            Incoming::Stdout(bytes) => Ok(Some(ExecEvent::Stdout(bytes))),
            Incoming::Stderr(bytes) => Ok(Some(ExecEvent::Stderr(bytes))),
            Incoming::End(value) => {
                let exit: ExecExit = serde_json::from_value(value)
                    .map_err(|e| self.receiver.protocol(format!("undecodable exit: {e}")))?;
                Ok(Some(ExecEvent::Exit(exit)))
            }
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
