//! `files.put` and `files.get`: files and directories copied as tar
//! archives (`lobster_agent_proto::archive`) over an upgraded connection
//! (`lobster_agent_proto::stream`), with the exec session's threads.
//!
//! The wire, in order:
//!
//! 1. The host sends `files.put` ([`FilesPutParams`]) or `files.get`
//!    ([`FilesGetParams`]). A refusal is an ordinary error reply and the
//!    connection stays in JSON lines: `bad_request` for a path that is not
//!    absolute, holds `..`, or lies (or resolves) under `/proc`, `/sys` or
//!    `/dev`, naming the field and path; `not_found` for a missing source
//!    (`get`) or a missing parent of `dest` (`put`); `busy` when
//!    [`AgentConfig::max_exec_sessions`](crate::AgentConfig) sessions
//!    (exec sessions and copies together) run.
//! 2. Otherwise the agent replies `ok` with `{}`; frames follow.
//! 3. `files.put`: the host sends the archive as `Stdin` frames (never more
//!    than `STDIN_WINDOW` bytes without `Credit`), then `StdinClose`. The
//!    agent unpacks into a staging directory as the bytes arrive and places
//!    the result only after `StdinClose`; then `End` ([`FilesPutResult`]).
//! 4. `files.get`: the agent sends the archive as `Stdout` frames, then
//!    `End` ([`FilesGetResult`]). The host sends nothing.
//! 5. Failures end with one `Error` frame: `too_large` once file content
//!    passes the limit (the smaller of `max_bytes` and
//!    [`AgentConfig::max_transfer_bytes`](crate::AgentConfig)),
//!    `bad_request` for a hostile or malformed archive or a broken
//!    protocol (a `Signal` frame, stdin beyond the window, ...),
//!    `invalid_state` when a non-empty directory is in the way, `not_found`,
//!    `internal`. After an `Error` of `files.get` the host discards what
//!    it received.
//!
//! A `files.put` that fails, or whose host goes away before `StdinClose`
//! or sends nothing for [`STALL`], leaves nothing behind: the staging
//! directory is removed. As root (a guest) the archive's owners are kept;
//! otherwise everything belongs to the agent's user. Setuid and setgid
//! bits are dropped.

use std::io::{self, PipeReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use lobster_agent_proto::archive::{self, ArchiveError, OwnerPolicy, Summary, UnpackOptions};
use lobster_agent_proto::methods::{
    FilesGetParams, FilesGetResult, FilesPutParams, FilesPutResult,
};
use lobster_agent_proto::stream::{Frame, MAX_FRAME_PAYLOAD};
use lobster_agent_proto::{ErrorCode, RemoteError};

use crate::exec::io::{end_session, FrameWriter, HostReader, StdinWriter};
use crate::exec::{Event, Slot, Slots, WRITE_TIMEOUT};
use crate::workload::Failure;
use crate::{chain, Log};

/// Where a copy never reaches: kernel interfaces, not the guest's files.
pub const UNREACHABLE: [&str; 3] = ["/proc", "/sys", "/dev"];
/// A `files.put` whose host sends nothing for this long fails.
pub const STALL: Duration = Duration::from_secs(60);
/// Bytes the host may send after the archive's end marker (record padding).
const TRAILER_BYTES: u64 = 1 << 20;

/// A checked `files.put`, to be run over its connection.
#[derive(Debug)]
pub(crate) struct Put {
    dest: PathBuf,
    max_bytes: u64,
    _slot: Slot,
}

/// A checked `files.get`, to be run over its connection.
#[derive(Debug)]
pub(crate) struct Get {
    path: PathBuf,
    max_bytes: u64,
    _slot: Slot,
}

/// Checks a `files.put` and takes a session slot.
pub(crate) fn put(slots: &Slots, params: FilesPutParams, cap: u64) -> Result<Put, Failure> {
    let dest = reachable("dest", &params.dest)?;
    // The directory that will hold the result must exist, and be reachable.
    let holder = match dest.parent() {
        Some(parent) if !dest.is_dir() => parent.to_owned(),
        _ => dest.clone(),
    };
    let resolved = holder
        .canonicalize()
        .map_err(|e| missing("dest", &params.dest, &holder, &e))?;
    refuse_unreachable("dest", &params.dest, &resolved)?;
    let slot = slots.take().ok_or_else(|| slots.busy())?;
    Ok(Put {
        dest,
        max_bytes: params.max_bytes.min(cap),
        _slot: slot,
    })
}

/// Checks a `files.get` and takes a session slot.
pub(crate) fn get(slots: &Slots, params: FilesGetParams, cap: u64) -> Result<Get, Failure> {
    let path = reachable("path", &params.path)?;
    if path.file_name().is_none() {
        let msg = format!("path: `{}` names no file or directory", params.path);
        return Err((ErrorCode::BadRequest, msg));
    }
    let resolved = path
        .canonicalize()
        .map_err(|e| missing("path", &params.path, &path, &e))?;
    refuse_unreachable("path", &params.path, &resolved)?;
    let slot = slots.take().ok_or_else(|| slots.busy())?;
    Ok(Get {
        path,
        max_bytes: params.max_bytes.min(cap),
        _slot: slot,
    })
}

/// `value` as a path, if it is absolute, free of `..` and not under
/// [`UNREACHABLE`].
fn reachable(field: &str, value: &str) -> Result<PathBuf, Failure> {
    let path = Path::new(value);
    if !path.is_absolute() {
        let msg = format!("{field}: `{value}` is not an absolute path");
        return Err((ErrorCode::BadRequest, msg));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        let msg = format!("{field}: `{value}` must not contain `..`");
        return Err((ErrorCode::BadRequest, msg));
    }
    refuse_unreachable(field, value, path)?;
    Ok(path.to_owned())
}

fn refuse_unreachable(field: &str, value: &str, path: &Path) -> Result<(), Failure> {
    match UNREACHABLE.iter().find(|root| path.starts_with(root)) {
        Some(root) => Err((
            ErrorCode::BadRequest,
            format!("{field}: `{value}` is under {root}, outside the guest's files"),
        )),
        None => Ok(()),
    }
}

fn missing(field: &str, value: &str, path: &Path, err: &io::Error) -> Failure {
    let code = match err.kind() {
        io::ErrorKind::NotFound => ErrorCode::NotFound,
        io::ErrorKind::NotADirectory => ErrorCode::BadRequest,
        _ => ErrorCode::Internal,
    };
    (
        code,
        format!("{field}: `{value}`: {}: {err}", path.display()),
    )
}

/// How a copy ended.
enum Ending {
    /// Send `End` with this.
    Done(Summary),
    /// Send `Error`.
    Failed(ErrorCode, String),
    /// Nobody to tell.
    HostGone,
}

impl Ending {
    fn failed(err: &ArchiveError) -> Ending {
        Ending::Failed(err.code(), chain(err))
    }

    /// The final frame (`End` built by `result`), and the log's word for it.
    fn frame<T: serde::Serialize>(&self, result: fn(Summary) -> T) -> (Option<Frame>, String) {
        match self {
            Ending::Done(s) => (
                Some(Frame::End(
                    serde_json::to_value(result(*s)).unwrap_or_default(),
                )),
                format!("{} entries, {} bytes", s.entries, s.bytes),
            ),
            Ending::Failed(code, message) => (
                Some(Frame::Error(RemoteError {
                    code: *code,
                    message: message.clone(),
                })),
                format!("failed ({code}): {message}"),
            ),
            Ending::HostGone => (None, "the host went away".into()),
        }
    }
}

impl Put {
    /// Receives the archive over `stream` (whose first bytes past the `ok`
    /// line are `buffered`), places it, sends the final frame and closes.
    pub fn run(self, stream: TcpStream, buffered: Vec<u8>, log: &Log) {
        let owner = if rustix::process::geteuid().is_root() {
            OwnerPolicy::Archive
        } else {
            OwnerPolicy::Process
        };
        let options = UnpackOptions {
            owner,
            keep_setid: false,
        };
        let (ending, writer) = match self.receive(&stream, buffered, options) {
            Ok(done) => done,
            Err(e) => {
                log.line(&format!("files.put: cannot start its threads: {e}"));
                return;
            }
        };
        let (frame, word) = ending.frame(|s| FilesPutResult {
            entries: s.entries,
            bytes: s.bytes,
        });
        log.line(&format!("files.put {}: {word}", self.dest.display()));
        end_session(&stream, &writer, frame);
    }

    fn receive(
        &self,
        stream: &TcpStream,
        buffered: Vec<u8>,
        options: UnpackOptions,
    ) -> io::Result<(Ending, Arc<FrameWriter>)> {
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let writer = Arc::new(FrameWriter::new(stream)?);
        let stop = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(AtomicBool::new(false));
        let (pipe_out, pipe_in) = io::pipe()?;
        let (events_tx, events) = mpsc::channel();
        let (stdin_tx, stdin_rx) = mpsc::channel();
        let outstanding = Arc::new(AtomicUsize::new(0));
        let stdin = StdinWriter::new(
            OwnedFd::from(pipe_in),
            false,
            Arc::clone(&ended),
            stdin_rx,
            Arc::clone(&outstanding),
            Arc::clone(&writer),
            Arc::clone(&stop),
        )?;
        let reader = HostReader::new(
            stream.try_clone()?,
            buffered,
            stdin_tx,
            outstanding,
            None,
            None,
            Arc::clone(&stop),
        )?;
        let spawn = |name: &str, run: Box<dyn FnOnce() -> Option<Event> + Send>| {
            let tx = events_tx.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    if let Some(event) = run() {
                        let _ = tx.send(event);
                    }
                })
        };
        let mut threads = vec![spawn("put-stdin", Box::new(move || stdin.run()))?];
        match spawn("put-host", Box::new(move || reader.run())) {
            Ok(t) => threads.push(t),
            Err(e) => {
                stop.store(true, Ordering::Release);
                return Err(e);
            }
        }
        let mut input = StallReader(pipe_out);
        let staged = archive::stage(&mut input, &self.dest, self.max_bytes, options);
        let trailer = match &staged {
            Ok(_) => drain(&mut input),
            Err(_) => Ok(()),
        };
        // A stdin writer still writing gets EPIPE, then every thread stops.
        drop(input);
        stop.store(true, Ordering::Release);
        for t in threads {
            let _ = t.join();
        }
        let (mut violation, mut host_gone) = (None, false);
        for event in events.try_iter() {
            match event {
                Event::Violation(msg) => violation = Some(msg),
                Event::HostGone => host_gone = true,
                Event::OutputClosed => {}
            }
        }
        let ending = match (violation, staged, trailer) {
            (Some(msg), _, _) => Ending::Failed(ErrorCode::BadRequest, msg),
            (None, Ok(staged), Ok(())) if ended.load(Ordering::Acquire) => match staged.commit() {
                Ok(summary) => Ending::Done(summary),
                Err(e) => Ending::failed(&e),
            },
            _ if host_gone => Ending::HostGone,
            (None, Err(e), _) => Ending::failed(&e),
            (None, Ok(_), Err(msg)) => Ending::Failed(ErrorCode::BadRequest, msg),
            (None, Ok(_), Ok(())) => Ending::HostGone,
        };
        Ok((ending, writer))
    }
}

/// Reads what follows the archive's end marker until `StdinClose`: only
/// padding, and at most [`TRAILER_BYTES`].
fn drain(input: &mut impl Read) -> Result<(), String> {
    let mut rest = Vec::new();
    let read = input
        .take(TRAILER_BYTES + 1)
        .read_to_end(&mut rest)
        .map_err(|e| format!("reading after the archive: {e}"))?;
    if read as u64 > TRAILER_BYTES || rest.iter().any(|&b| b != 0) {
        return Err("data after the end of the archive".into());
    }
    Ok(())
}

/// The pipe from the stdin writer; fails once the host sent nothing for
/// [`STALL`].
struct StallReader(PipeReader);

impl Read for StallReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let timeout = Timespec {
            tv_sec: STALL.as_secs() as _,
            tv_nsec: 0,
        };
        loop {
            match poll(&mut [PollFd::new(&self.0, PollFlags::IN)], Some(&timeout)) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the host sent nothing for {} s", STALL.as_secs()),
                    ))
                }
                Ok(_) => return self.0.read(buf),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Get {
    /// Sends the archive over `stream`, then the final frame, and closes.
    pub fn run(self, stream: TcpStream, log: &Log) {
        let writer = match stream
            .set_write_timeout(Some(WRITE_TIMEOUT))
            .and_then(|()| FrameWriter::new(&stream))
        {
            Ok(w) => w,
            Err(e) => {
                log.line(&format!("files.get: cannot write frames: {e}"));
                return;
            }
        };
        let mut out = io::BufWriter::with_capacity(MAX_FRAME_PAYLOAD, StdoutFrames(&writer));
        let ending = match archive::pack(&self.path, self.max_bytes, &mut out) {
            Ok(summary) => Ending::Done(summary),
            Err(ArchiveError::Write(_)) => Ending::HostGone,
            Err(e) => Ending::failed(&e),
        };
        // What a failed archive left buffered is not sent.
        let _ = out.into_parts();
        let (frame, word) = ending.frame(|s| FilesGetResult {
            entries: s.entries,
            bytes: s.bytes,
        });
        log.line(&format!("files.get {}: {word}", self.path.display()));
        end_session(&stream, &writer, frame);
    }
}

/// Bytes written become `Stdout` frames.
struct StdoutFrames<'a>(&'a FrameWriter);

impl Write for StdoutFrames<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(MAX_FRAME_PAYLOAD);
        self.0.send(&Frame::Stdout(buf[..n].to_vec()))?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_be_absolute_plain_and_outside_kernel_interfaces() {
        for (value, expect) in [
            ("tmp/x", "is not an absolute path"),
            ("/tmp/../proc/x", "must not contain `..`"),
            ("/proc/1/environ", "is under /proc"),
            ("/sys", "is under /sys"),
            ("/dev/sda", "is under /dev"),
        ] {
            let (code, msg) = reachable("dest", value).unwrap_err();
            assert_eq!(code, ErrorCode::BadRequest);
            assert!(msg.starts_with(&format!("dest: `{value}`")), "{msg}");
            assert!(msg.contains(expect), "{msg}");
        }
        assert!(reachable("dest", "/processes/x").is_ok());
    }

    #[test]
    fn a_link_into_proc_is_refused_once_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("p");
        std::os::unix::fs::symlink("/proc/self", &link).unwrap();
        let slots = Slots::new(1);
        let params = FilesGetParams {
            path: link.join("status").to_string_lossy().into_owned(),
            max_bytes: 1,
        };
        let (code, msg) = get(&slots, params, 1).unwrap_err();
        assert_eq!(code, ErrorCode::BadRequest, "{msg}");
        assert!(msg.contains("is under /proc"), "{msg}");
    }

    #[test]
    fn data_after_the_archive_is_refused_padding_is_not() {
        assert!(drain(&mut &[0u8; 9216][..]).is_ok());
        assert!(drain(&mut &b"\0\0more"[..]).is_err());
        assert!(drain(&mut io::repeat(0).take(TRAILER_BYTES + 1)).is_err());
    }
}
