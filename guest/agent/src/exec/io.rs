//! The threads of an upgraded connection: one pump per output stream, the
//! stdin writer (which returns credit), the reader of the host's frames,
//! and the frame writer they share. Each polls the session's stop flag at
//! least every [`POLL`], so the session can end them at any time. Exec
//! sessions use them all; `files.put` (`crate::transfer`) uses the reader,
//! the stdin writer (into a pipe) and the frame writer.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lobster_agent_proto::stream::{
    Frame, FrameDecoder, WindowSize, MAX_FRAME_PAYLOAD, STDIN_WINDOW,
};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use super::{sys, Event};

/// The longest a session thread blocks before looking at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// Writes whole frames to the host, one at a time; after one failed write
/// every later one fails at once.
#[derive(Debug)]
pub(crate) struct FrameWriter {
    stream: Mutex<TcpStream>,
    broken: AtomicBool,
}

impl FrameWriter {
    /// A writer on a clone of `stream` (whose write timeout bounds each frame).
    pub fn new(stream: &TcpStream) -> std::io::Result<FrameWriter> {
        Ok(FrameWriter {
            stream: Mutex::new(stream.try_clone()?),
            broken: AtomicBool::new(false),
        })
    }

    /// Sends `frame` whole.
    pub fn send(&self, frame: &Frame) -> std::io::Result<()> {
        if self.broken.load(Ordering::Acquire) {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        let mut stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        let result = stream.write_all(&frame.encode());
        if result.is_err() {
            self.broken.store(true, Ordering::Release);
        }
        result
    }
}

/// Waits until `fd` is ready for `flags` or [`POLL`] passed.
fn wait_ready(fd: &OwnedFd, flags: PollFlags) {
    let timeout = Timespec {
        tv_sec: 0,
        tv_nsec: POLL.as_nanos() as _,
    };
    let _ = rustix::event::poll(&mut [PollFd::new(fd, flags)], Some(&timeout));
}

/// One output stream (stdout, stderr or the terminal) sent as frames.
pub(super) struct Output {
    fd: OwnedFd,
    make: fn(Vec<u8>) -> Frame,
    writer: Arc<FrameWriter>,
    stop: Arc<AtomicBool>,
}

impl Output {
    /// Pumps `fd` as frames built by `make`.
    pub fn new(
        fd: OwnedFd,
        make: fn(Vec<u8>) -> Frame,
        writer: Arc<FrameWriter>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Output> {
        rustix::io::ioctl_fionbio(&fd, true)?;
        Ok(Output {
            fd,
            make,
            writer,
            stop,
        })
    }

    /// Sends what the process writes until end of file (or the stop flag):
    /// `OutputClosed`, or `HostGone` when a frame could not be sent.
    pub fn pump(self) -> Event {
        let mut buf = vec![0u8; MAX_FRAME_PAYLOAD];
        while !self.stop.load(Ordering::Acquire) {
            wait_ready(&self.fd, PollFlags::IN);
            match rustix::io::read(&self.fd, &mut buf[..]) {
                Ok(0) => break,
                Ok(n) => {
                    if self.writer.send(&(self.make)(buf[..n].to_vec())).is_err() {
                        return Event::HostGone;
                    }
                }
                Err(Errno::AGAIN | Errno::INTR) => {}
                // EIO: a terminal whose every slave side is closed.
                Err(_) => break,
            }
        }
        Event::OutputClosed
    }
}

/// What the host reader hands the stdin writer.
#[derive(Debug)]
pub(crate) enum StdinMsg {
    Data(Vec<u8>),
    Close,
}

/// Writes stdin frames to the process and returns credit for them.
pub(crate) struct StdinWriter {
    fd: Option<OwnedFd>,
    tty: bool,
    /// Set once `StdinClose` closed `fd` (before it is closed).
    ended: Arc<AtomicBool>,
    rx: Receiver<StdinMsg>,
    outstanding: Arc<AtomicUsize>,
    writer: Arc<FrameWriter>,
    stop: Arc<AtomicBool>,
}

impl StdinWriter {
    /// Writes to `fd` (the pipe, or the terminal when `tty`) what `rx`
    /// brings; `outstanding` counts bytes received and not yet credited;
    /// `ended` is set when the host's `StdinClose` closes `fd`.
    pub fn new(
        fd: OwnedFd,
        tty: bool,
        ended: Arc<AtomicBool>,
        rx: Receiver<StdinMsg>,
        outstanding: Arc<AtomicUsize>,
        writer: Arc<FrameWriter>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<StdinWriter> {
        rustix::io::ioctl_fionbio(&fd, true)?;
        Ok(StdinWriter {
            fd: Some(fd),
            tty,
            ended,
            rx,
            outstanding,
            writer,
            stop,
        })
    }

    /// Runs until the stop flag or the reader's end; `HostGone` when a
    /// credit could not be sent.
    pub fn run(mut self) -> Option<Event> {
        while !self.stop.load(Ordering::Acquire) {
            match self.rx.recv_timeout(POLL) {
                Ok(StdinMsg::Data(bytes)) => {
                    self.write_all(&bytes);
                    // Counted down before the host hears of it, so the
                    // agent's count never exceeds the host's.
                    self.outstanding.fetch_sub(bytes.len(), Ordering::AcqRel);
                    let credit = Frame::Credit(bytes.len() as u32);
                    if self.writer.send(&credit).is_err() {
                        return Some(Event::HostGone);
                    }
                }
                // A terminal stays open: end of file there is `^D`.
                Ok(StdinMsg::Close) if !self.tty => {
                    // Before the reader of the pipe sees its end of file.
                    self.ended.store(true, Ordering::Release);
                    self.fd = None;
                }
                Ok(StdinMsg::Close) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
        None
    }

    /// Writes `bytes` to the process; a process that closed its stdin
    /// loses them (and everything after), as with a pipe to it.
    fn write_all(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.stop.load(Ordering::Acquire) {
            let Some(fd) = &self.fd else { return };
            wait_ready(fd, PollFlags::OUT);
            match rustix::io::write(fd, bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(Errno::AGAIN | Errno::INTR) => {}
                Err(_) => self.fd = None,
            }
        }
    }
}

/// Reads and checks the host's frames.
pub(crate) struct HostReader {
    stream: TcpStream,
    decoder: FrameDecoder,
    stdin: Sender<StdinMsg>,
    stdin_closed: bool,
    outstanding: Arc<AtomicUsize>,
    terminal: Option<Arc<OwnedFd>>,
    pgid: Option<i32>,
    stop: Arc<AtomicBool>,
}

impl HostReader {
    /// Reads `stream`, whose first bytes are `buffered`; stdin goes to
    /// `stdin`, resizes to `terminal`, signals to group `pgid` (without
    /// one, as in a file copy, a signal frame breaks the protocol).
    pub fn new(
        stream: TcpStream,
        buffered: Vec<u8>,
        stdin: Sender<StdinMsg>,
        outstanding: Arc<AtomicUsize>,
        terminal: Option<Arc<OwnedFd>>,
        pgid: Option<i32>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<HostReader> {
        stream.set_read_timeout(Some(POLL))?;
        let mut decoder = FrameDecoder::new();
        decoder.push(&buffered);
        Ok(HostReader {
            stream,
            decoder,
            stdin,
            stdin_closed: false,
            outstanding,
            terminal,
            pgid,
            stop,
        })
    }

    /// Runs until the stop flag (`None`), the host's end of stream
    /// (`HostGone`) or a protocol violation.
    pub fn run(mut self) -> Option<Event> {
        let mut chunk = vec![0u8; MAX_FRAME_PAYLOAD];
        loop {
            loop {
                match self.decoder.next_frame() {
                    Ok(Some(frame)) => {
                        if let Err(msg) = self.handle(frame) {
                            return Some(Event::Violation(msg));
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Some(Event::Violation(e.to_string())),
                }
            }
            if self.stop.load(Ordering::Acquire) {
                return None;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Some(Event::HostGone),
                Ok(n) => self.decoder.push(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return Some(Event::HostGone),
            }
        }
    }

    fn handle(&mut self, frame: Frame) -> Result<(), String> {
        match frame {
            Frame::Stdin(bytes) => {
                if self.stdin_closed {
                    return Err("stdin after stdin_close".into());
                }
                let before = self.outstanding.fetch_add(bytes.len(), Ordering::AcqRel);
                if before + bytes.len() > STDIN_WINDOW as usize {
                    return Err(format!("stdin beyond the window of {STDIN_WINDOW} bytes"));
                }
                if !bytes.is_empty() {
                    let _ = self.stdin.send(StdinMsg::Data(bytes));
                }
            }
            Frame::StdinClose => {
                self.stdin_closed = true;
                let _ = self.stdin.send(StdinMsg::Close);
            }
            Frame::Resize(size) => {
                if size.rows == 0 || size.cols == 0 {
                    return Err("resize: rows and cols must be positive".into());
                }
                if let Some(terminal) = &self.terminal {
                    let _ = rustix::termios::tcsetwinsize(&**terminal, winsize(size));
                }
            }
            Frame::Signal(signo) => {
                if !(1..=64).contains(&signo) {
                    return Err(format!("signal: {signo} is not a signal number (1..=64)"));
                }
                let Some(pgid) = self.pgid else {
                    return Err("signal: a file copy has no process to signal".into());
                };
                let _ = sys::signal_group(pgid, signo);
            }
            other => {
                let kind = match other {
                    Frame::Stdout(_) => "stdout",
                    Frame::Stderr(_) => "stderr",
                    Frame::Credit(_) => "credit",
                    Frame::End(_) => "end",
                    _ => "error",
                };
                return Err(format!("a {kind} frame goes from the agent to the host"));
            }
        }
        Ok(())
    }
}

fn winsize(size: WindowSize) -> rustix::termios::Winsize {
    rustix::termios::Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// A new terminal of `size`: its master side (for the agent) and its
/// slave side (for the process).
pub(super) fn open_pty(size: WindowSize) -> std::io::Result<(OwnedFd, OwnedFd)> {
    use rustix::fs::{Mode, OFlags};
    use rustix::pty::OpenptFlags;
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::termios::tcsetwinsize(&slave, winsize(size))?;
    Ok((master, slave))
}

/// Ends a session: sends its final `frame` (none when the host is gone),
/// lingers if it went out, and closes the connection.
pub(crate) fn end_session(stream: &TcpStream, writer: &FrameWriter, frame: Option<Frame>) {
    if let Some(frame) = frame {
        if writer.send(&frame).is_ok() {
            linger(stream, super::LINGER);
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// After the final frame: ends our side, then reads and drops what the host
/// still sends until it closes (at most `within`), so that closing does not
/// reset the connection before the host read the final frame.
fn linger(stream: &TcpStream, within: Duration) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 8192];
    let _ = stream.set_read_timeout(Some(POLL));
    while Instant::now() < deadline {
        match (&*stream).read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}
