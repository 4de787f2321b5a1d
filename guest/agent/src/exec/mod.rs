//! `exec.start`: a process in the guest, its stdin, stdout and stderr
//! streamed over the upgraded connection (see `lobster_agent_proto::stream`).
//!
//! The wire, in order:
//!
//! 1. The host sends `exec.start` ([`ExecParams`]). A refusal is an ordinary
//!    error reply and the connection stays in JSON lines: `bad_request`
//!    naming the field, `not_found` ("command not found: X"), `busy` when
//!    [`AgentConfig::max_exec_sessions`](crate::AgentConfig) sessions run
//!    (exec sessions and file copies together).
//! 2. Otherwise the process runs and the agent replies `ok`
//!    ([`ExecStarted`] with its pid); frames follow from the next byte on.
//! 3. Agent to host: `Stdout` and `Stderr` (with a PTY, all output is
//!    `Stdout`) as the process writes, paced by TCP; `Credit(n)` once `n`
//!    stdin bytes went to the process.
//! 4. Host to agent: `Stdin` (never more than `STDIN_WINDOW` bytes without
//!    credit), `StdinClose` (closes the pipe; with a PTY it only ends
//!    input: send `^D` to signal end of file to the terminal), `Resize`
//!    (PTY only, ignored otherwise), `Signal(n)` (1..=64, to the process
//!    group).
//! 5. Last, once the process exited and its output reached end of file (or
//!    [`DRAIN`] after its exit), the agent sends `End` ([`ExecExit`]) and
//!    closes; or `Error` after a protocol violation (an unknown or oversize
//!    frame, stdin beyond the window or after `StdinClose`, a bad signal or
//!    size, an agent-to-host frame), having killed the process group.
//!
//! The host keeps its side of the connection open until the final frame:
//! its end of stream counts as going away (below).
//!
//! The process leads its own session and process group, which does not
//! outlive the session: whatever of it remains at the end is SIGKILLed.
//! `timeout_ms` sends SIGTERM, then SIGKILL after [`KILL_GRACE`]
//! (`timed_out` in `End`). A host that goes away (or stops reading for
//! [`WRITE_TIMEOUT`]) gets its process group SIGHUPed, then SIGKILLed after
//! [`HANGUP_GRACE`]. The group's leader stays unreaped until the session no
//! longer signals the group, so its id cannot name another group.

pub(crate) mod io;
mod plan;
mod sys;

use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lobster_agent_proto::methods::{ExecExit, ExecParams, ExecStarted};
use lobster_agent_proto::stream::Frame;
use lobster_agent_proto::{ErrorCode, RemoteError};

use self::io::{FrameWriter, HostReader, Output, StdinWriter};
use self::plan::{Accounts, Plan};
use crate::workload::Failure;
use crate::Log;

/// How long output may still arrive after the process exited (a background
/// child holding the pipe cannot keep the session open longer).
pub const DRAIN: Duration = Duration::from_secs(2);
/// From SIGTERM at the timeout to SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// From SIGHUP at the host's disconnect to SIGKILL.
pub const HANGUP_GRACE: Duration = Duration::from_secs(1);
/// A frame the host does not take within this long ends the session.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the agent reads (and drops) what the host still sends after
/// the final frame, so closing does not reset the connection under it.
const LINGER: Duration = Duration::from_secs(2);

/// The cap on concurrent sessions of an upgraded connection (exec
/// sessions and file copies share it).
#[derive(Debug)]
pub(crate) struct Slots {
    limit: usize,
    used: Arc<AtomicUsize>,
}

/// One running session's place under the cap, given back on drop.
#[derive(Debug)]
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Slots {
    /// At most `limit` sessions at once.
    pub fn new(limit: usize) -> Slots {
        Slots {
            limit,
            used: Arc::default(),
        }
    }

    /// The refusal when no place is free.
    pub fn busy(&self) -> Failure {
        (
            ErrorCode::Busy,
            format!(
                "{} sessions (exec and file copies) are running already",
                self.limit
            ),
        )
    }

    /// A place under the cap, if one is free.
    pub fn take(&self) -> Option<Slot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(&self.used)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Builds an output frame (`Frame::Stdout` or `Frame::Stderr`).
type MakeFrame = fn(Vec<u8>) -> Frame;

/// How the process ended.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Code(i32),
    Signal(i32),
}

/// What the session's threads tell it.
#[derive(Debug)]
pub(crate) enum Event {
    /// One output stream reached end of file.
    OutputClosed,
    /// The host closed the connection or does not take frames.
    HostGone,
    /// The host broke the protocol.
    Violation(String),
}

/// The process's side of the streams, held by the agent.
enum Streams {
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Pty(Arc<OwnedFd>),
}

/// A started process, to be run over a connection with [`Session::run`].
pub(crate) struct Session {
    pid: i32,
    streams: Streams,
    tty: bool,
    timeout: Option<Duration>,
    exited: Receiver<Ending>,
    /// Dropping it lets the waiter reap the process.
    reap: Sender<()>,
    slot: Slot,
    log: Log,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("pid", &self.pid)
            .field("tty", &self.tty)
            .finish_non_exhaustive()
    }
}

/// Checks `params`, takes a slot and starts the process (`PATH`:
/// `command_path`).
pub(crate) fn start(
    slots: &Slots,
    params: ExecParams,
    command_path: &str,
    log: &Log,
) -> Result<Session, Failure> {
    let me = rustix::process::getuid().as_raw();
    let plan = plan::plan(params, &Accounts::load(), me, command_path)?;
    let slot = slots.take().ok_or_else(|| slots.busy())?;
    let failed = |what: &str, e: std::io::Error| (ErrorCode::Internal, format!("{what}: {e}"));
    let (mut child, streams) = spawn(&plan).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => (
            ErrorCode::NotFound,
            format!("command not found: {}", plan.argv[0]),
        ),
        _ => failed(&format!("starting {}", plan.argv[0]), e),
    })?;
    let pid = i32::try_from(child.id()).expect("pids fit in i32");
    let (exited_tx, exited) = mpsc::channel();
    let (reap, may_reap) = mpsc::channel::<()>();
    let waiter = std::thread::Builder::new()
        .name("exec-wait".into())
        .spawn(move || {
            let ending = wait_exited(pid);
            let _ = exited_tx.send(ending);
            // Reap only once the session no longer signals the group.
            let _ = may_reap.recv();
            let _ = child.wait();
        });
    if let Err(e) = waiter {
        let _ = sys::signal_group(pid, libc::SIGKILL);
        return Err(failed("starting the exec waiter", e));
    }
    log.line(&format!(
        "exec: pid {pid} started ({}{})",
        plan.program.display(),
        if plan.tty.is_some() { ", tty" } else { "" }
    ));
    Ok(Session {
        pid,
        streams,
        tty: plan.tty.is_some(),
        timeout: plan.timeout,
        exited,
        reap,
        slot,
        log: log.clone(),
    })
}

fn spawn(plan: &Plan) -> std::io::Result<(Child, Streams)> {
    let mut cmd = Command::new(&plan.program);
    {
        use std::os::unix::process::CommandExt;
        cmd.arg0(&plan.argv[0]);
    }
    cmd.args(&plan.argv[1..])
        .env_clear()
        .envs(&plan.env)
        .current_dir(&plan.cwd);
    let pty = match plan.tty {
        Some(size) => {
            let (master, slave) = io::open_pty(size)?;
            cmd.stdin(Stdio::from(slave.try_clone()?))
                .stdout(Stdio::from(slave.try_clone()?))
                .stderr(Stdio::from(slave));
            Some(master)
        }
        None => {
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            None
        }
    };
    sys::arrange_child(&mut cmd, plan.identity.clone(), pty.is_some());
    let mut child = cmd.spawn()?;
    drop(cmd); // our copies of the terminal's slave side
    let streams = match pty {
        Some(master) => Streams::Pty(Arc::new(master)),
        None => {
            let taken = (child.stdin.take(), child.stdout.take(), child.stderr.take());
            let (Some(stdin), Some(stdout), Some(stderr)) = taken else {
                unreachable!("all three were piped");
            };
            Streams::Pipes {
                stdin: stdin.into(),
                stdout: stdout.into(),
                stderr: stderr.into(),
            }
        }
    };
    Ok((child, streams))
}

/// Blocks until `pid` exited, leaving it unreaped.
fn wait_exited(pid: i32) -> Ending {
    use rustix::process::{waitid, Pid, WaitId, WaitIdOptions};
    let Some(pid) = Pid::from_raw(pid) else {
        return Ending::Code(-1);
    };
    loop {
        match waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {
            Ok(Some(status)) => {
                if let Some(signal) = status.terminating_signal() {
                    return Ending::Signal(signal);
                }
                if let Some(code) = status.exit_status() {
                    return Ending::Code(code);
                }
            }
            Err(rustix::io::Errno::INTR) | Ok(None) => {}
            Err(_) => return Ending::Code(-1),
        }
    }
}

/// How a session ends.
enum Finish {
    /// Send `End`.
    Exit(ExecExit),
    /// Send `Error`.
    Violation(String),
    /// Nobody to tell.
    HostGone,
}

/// The session's threads and their stop flag.
struct Workers {
    writer: Arc<FrameWriter>,
    stop: Arc<AtomicBool>,
    outputs: Vec<JoinHandle<()>>,
    others: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Stops and joins the threads that write frames (each polls `stop`).
    fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for t in self.outputs.drain(..).chain(self.others.drain(..)) {
            let _ = t.join();
        }
    }
}

impl Session {
    /// The `ok` result: the process's pid.
    pub fn started(&self) -> ExecStarted {
        ExecStarted {
            pid: self.pid as u32,
        }
    }

    /// Kills and reaps a process whose `ok` reply could not be sent.
    pub fn abandon(self) {
        let _ = sys::signal_group(self.pid, libc::SIGKILL);
    }

    /// Runs the session over `stream`, whose first bytes past the `ok`
    /// line are `buffered`, until the final frame; then closes.
    pub fn run(self, stream: TcpStream, buffered: Vec<u8>) {
        let Session {
            pid,
            streams,
            tty,
            timeout,
            exited,
            reap,
            slot,
            log,
        } = self;
        let kill = |signo| {
            let _ = sys::signal_group(pid, signo);
        };
        let started = Instant::now();
        let (mut workers, events) = match spawn_workers(&stream, buffered, streams, tty, pid) {
            Ok(w) => w,
            Err(e) => {
                log.line(&format!("exec: pid {pid}: cannot start its threads: {e}"));
                kill(libc::SIGKILL);
                return;
            }
        };
        let outputs = workers.outputs.len();
        let finish = coordinate(&events, &exited, outputs, timeout, started, &kill);
        // The final frame must be the last: first stop every writer.
        kill(libc::SIGKILL);
        workers.stop();
        drop(reap);
        drop(slot);
        let writer = Arc::clone(&workers.writer);
        let frame = match &finish {
            Finish::Exit(exit) => {
                log.line(&format!("exec: pid {pid} ended: {exit:?}"));
                Some(Frame::End(serde_json::to_value(exit).unwrap_or_default()))
            }
            Finish::Violation(msg) => {
                log.line(&format!(
                    "exec: pid {pid} killed: host broke the protocol: {msg}"
                ));
                Some(Frame::Error(RemoteError {
                    code: ErrorCode::BadRequest,
                    message: msg.clone(),
                }))
            }
            Finish::HostGone => {
                log.line(&format!("exec: pid {pid} killed: the host went away"));
                None
            }
        };
        io::end_session(&stream, &writer, frame);
    }
}

fn spawn_workers(
    stream: &TcpStream,
    buffered: Vec<u8>,
    streams: Streams,
    tty: bool,
    pid: i32,
) -> std::io::Result<(Workers, Receiver<Event>)> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let writer = Arc::new(FrameWriter::new(stream)?);
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let (stdin_fd, outputs, resize_fd): (_, Vec<(OwnedFd, MakeFrame)>, _) = match streams {
        Streams::Pipes {
            stdin,
            stdout,
            stderr,
        } => (
            stdin,
            vec![(stdout, Frame::Stdout), (stderr, Frame::Stderr)],
            None,
        ),
        Streams::Pty(master) => {
            let input = master.try_clone()?;
            let output = master.try_clone()?;
            (input, vec![(output, Frame::Stdout)], Some(master))
        }
    };
    let mut workers = Workers {
        writer: Arc::clone(&writer),
        stop: Arc::clone(&stop),
        outputs: Vec::new(),
        others: Vec::new(),
    };
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new().name(name.into()).spawn(f)
    };
    for (fd, make) in outputs {
        let output = Output::new(fd, make, Arc::clone(&writer), Arc::clone(&stop))?;
        let tx = tx.clone();
        workers.outputs.push(spawn(
            "exec-output",
            Box::new(move || {
                let _ = tx.send(output.pump());
            }),
        )?);
    }
    let (stdin_tx, stdin_rx) = mpsc::channel();
    let outstanding = Arc::new(AtomicUsize::new(0));
    let stdin = StdinWriter::new(
        stdin_fd,
        tty,
        Arc::default(),
        stdin_rx,
        Arc::clone(&outstanding),
        Arc::clone(&writer),
        Arc::clone(&stop),
    )?;
    let stdin_events = tx.clone();
    workers.others.push(spawn(
        "exec-stdin",
        Box::new(move || {
            if let Some(event) = stdin.run() {
                let _ = stdin_events.send(event);
            }
        }),
    )?);
    let reader = HostReader::new(
        stream.try_clone()?,
        buffered,
        stdin_tx,
        outstanding,
        resize_fd,
        Some(pid),
        Arc::clone(&stop),
    )?;
    workers.others.push(spawn(
        "exec-host",
        Box::new(move || {
            if let Some(event) = reader.run() {
                let _ = tx.send(event);
            }
        }),
    )?);
    Ok((workers, rx))
}

/// Waits for the process, its output, the timeout and the host; how the
/// session ends.
fn coordinate(
    events: &Receiver<Event>,
    exited: &Receiver<Ending>,
    mut outputs: usize,
    timeout: Option<Duration>,
    started: Instant,
    kill: &dyn Fn(i32),
) -> Finish {
    let tick = Duration::from_millis(50);
    let mut deadline = timeout.and_then(|t| started.checked_add(t));
    let mut timed_out = false;
    let mut kill_at: Option<Instant> = None;
    let mut ending: Option<(Ending, Instant)> = None;
    let mut hung_up = false;
    loop {
        if ending.is_none() {
            if let Ok(e) = exited.try_recv() {
                ending = Some((e, Instant::now()));
            }
        }
        let now = Instant::now();
        if let Some((e, at)) = ending {
            if hung_up {
                return Finish::HostGone;
            }
            if outputs == 0 || now >= at + DRAIN {
                let (code, signal) = match e {
                    Ending::Code(c) => (Some(c), None),
                    Ending::Signal(s) => (None, Some(s)),
                };
                return Finish::Exit(ExecExit {
                    code,
                    signal,
                    timed_out,
                });
            }
        }
        if deadline.is_some_and(|d| now >= d) {
            deadline = None;
            timed_out = true;
            kill(libc::SIGTERM);
            kill_at = Some(now + KILL_GRACE);
        }
        if kill_at.is_some_and(|k| now >= k) {
            kill_at = None;
            kill(libc::SIGKILL);
            if hung_up {
                return Finish::HostGone;
            }
        }
        match events.recv_timeout(tick) {
            Ok(Event::OutputClosed) => outputs = outputs.saturating_sub(1),
            Ok(Event::HostGone) if !hung_up => {
                hung_up = true;
                deadline = None;
                kill(libc::SIGHUP);
                kill_at = Some(Instant::now() + HANGUP_GRACE);
            }
            Ok(Event::HostGone) => {}
            Ok(Event::Violation(msg)) => return Finish::Violation(msg),
            Err(RecvTimeoutError::Timeout) => {}
            // Every thread ended (they said why already): wait for the exit.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(tick),
        }
    }
}
