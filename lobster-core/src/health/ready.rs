//! Readiness as an explicit signal, in systemd's `sd_notify` protocol: the
//! starter binds a datagram socket and names it in `$NOTIFY_SOCKET`; the
//! daemon sends `READY=1` (with `MAINPID=`, its pid) to it once it serves.
//! The same signal tells systemd (the watchdog unit is `Type=notify`) and
//! [`super::detach`] that the watchdog is up. The starter accepts it only
//! from the process it started, as the kernel names the sender
//! (`SCM_CREDENTIALS`), never as the message claims: an abstract socket's
//! name and a daemon's pid are visible to every local user, and a child of
//! the daemon that inherited the variable (Caddy speaks `sd_notify` too) is
//! not the daemon.

use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

pub use crate::base::NOTIFY_SOCKET;

/// The field that means "ready".
const READY: &str = "READY=1";

/// Tells whoever started this process (see [`NOTIFY_SOCKET`]) that it is
/// ready. Without `$NOTIFY_SOCKET` there is no one to tell: `Ok(false)`.
pub fn notify_ready() -> io::Result<bool> {
    let Some(target) = std::env::var_os(NOTIFY_SOCKET) else {
        return Ok(false);
    };
    let target = target.to_string_lossy();
    let addr = match target.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(&*target)?,
    };
    let message = format!("{READY}\nMAINPID={}\n", std::process::id());
    // Never block the caller (an async runtime) on a full listener.
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    socket.send_to_addr(message.as_bytes(), &addr)?;
    Ok(true)
}

/// How a started daemon's wait for readiness ended.
#[derive(Debug)]
pub(crate) enum Startup {
    /// It sent `READY=1`.
    Ready,
    /// It exited first.
    Exited(ExitStatus),
    /// Neither happened in time.
    TimedOut,
}

/// The starter's end: a fresh abstract socket (nothing to clean up; a
/// random name no other process knows).
#[derive(Debug)]
pub(crate) struct ReadyListener {
    socket: UnixDatagram,
    name: String,
}

impl ReadyListener {
    /// Binds a new listener.
    pub(crate) fn bind() -> io::Result<ReadyListener> {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
        let hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("lobster-ready-{}-{hex}", std::process::id());
        let socket = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name)?)?;
        // Have the kernel attach each sender's credentials.
        rustix::net::sockopt::set_socket_passcred(&socket, true)?;
        Ok(ReadyListener { socket, name })
    }

    /// The value of [`NOTIFY_SOCKET`] for the daemon.
    pub(crate) fn address(&self) -> String {
        format!("@{}", self.name)
    }

    /// Waits until `READY=1` sent by process `pid` arrives, `exited` reports
    /// that process gone, or `timeout` passes (whichever comes first).
    pub(crate) fn wait(
        &self,
        pid: u32,
        timeout: Duration,
        mut exited: impl FnMut() -> io::Result<Option<ExitStatus>>,
    ) -> io::Result<Startup> {
        /// How often the daemon's exit is looked at while no message comes.
        const EXIT_CHECK: Duration = Duration::from_millis(50);
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Startup::TimedOut);
            }
            self.socket.set_read_timeout(Some(left.min(EXIT_CHECK)))?;
            match self.recv(&mut buf) {
                Ok((n, sender)) if sender == Some(pid) && is_ready(&buf[..n], pid) => {
                    return Ok(Startup::Ready)
                }
                Ok(_) => {} // another field (STATUS=...) or another process
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
            if let Some(status) = exited()? {
                return Ok(Startup::Exited(status));
            }
        }
    }
}

impl ReadyListener {
    /// One datagram into `buf`, with the sender's pid as the kernel gives it.
    fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, Option<u32>)> {
        use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = rustix::net::recvmsg(
            &self.socket,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        let sender = control.drain().find_map(|message| match message {
            RecvAncillaryMessage::ScmCredentials(cred) => {
                u32::try_from(cred.pid.as_raw_nonzero().get()).ok()
            }
            _ => None,
        });
        Ok((received.bytes.min(buf.len()), sender))
    }
}

/// Whether an `sd_notify` message (newline-separated `KEY=VALUE`) says
/// process `pid` is ready.
fn is_ready(message: &[u8], pid: u32) -> bool {
    let main_pid = format!("MAINPID={pid}");
    let has = |field: &str| {
        message
            .split(|&b| b == b'\n')
            .any(|line| line == field.as_bytes())
    };
    has(READY) && has(&main_pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_is_one_field_among_others_and_names_the_process() {
        assert!(is_ready(b"READY=1\nMAINPID=42", 42));
        assert!(is_ready(b"STATUS=up\nMAINPID=42\nREADY=1\n", 42));
        assert!(!is_ready(b"READY=1", 42), "no pid: maybe a child's");
        assert!(!is_ready(b"READY=1\nMAINPID=43", 42));
        assert!(!is_ready(b"READY=0\nMAINPID=42", 42));
        assert!(!is_ready(b"STATUS=READY=1\nMAINPID=42", 42));
    }

    #[test]
    fn a_message_ends_the_wait_and_silence_times_out() {
        let listener = ReadyListener::bind().unwrap();
        let started = Instant::now();
        let wait = listener
            .wait(7, Duration::from_millis(200), || Ok(None))
            .unwrap();
        assert!(matches!(wait, Startup::TimedOut), "{wait:?}");
        assert!(started.elapsed() >= Duration::from_millis(200));

        let addr = SocketAddr::from_abstract_name(&listener.name).unwrap();
        let sender = UnixDatagram::unbound().unwrap();
        let me = std::process::id();
        sender.send_to_addr(b"STATUS=starting", &addr).unwrap();
        sender
            .send_to_addr(format!("READY=1\nMAINPID={}", me + 1).as_bytes(), &addr)
            .unwrap();
        sender
            .send_to_addr(format!("READY=1\nMAINPID={me}").as_bytes(), &addr)
            .unwrap();
        let wait = listener
            .wait(me, Duration::from_secs(5), || Ok(None))
            .unwrap();
        assert!(matches!(wait, Startup::Ready), "{wait:?}");
    }

    #[test]
    fn a_ready_claimed_for_another_process_is_refused() {
        // Anyone who can read /proc/net/unix and /proc can name the socket
        // and the daemon's pid; the kernel's credentials name the sender.
        let listener = ReadyListener::bind().unwrap();
        let addr = SocketAddr::from_abstract_name(&listener.name).unwrap();
        let daemon = std::process::id() + 1;
        UnixDatagram::unbound()
            .unwrap()
            .send_to_addr(format!("READY=1\nMAINPID={daemon}").as_bytes(), &addr)
            .unwrap();
        let wait = listener
            .wait(daemon, Duration::from_millis(300), || Ok(None))
            .unwrap();
        assert!(matches!(wait, Startup::TimedOut), "{wait:?}");
    }
}
