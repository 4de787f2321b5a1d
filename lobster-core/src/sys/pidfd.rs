//! Process handles that cannot be fooled by PID reuse: `pidfd_open`,
//! `pidfd_send_signal`, `waitid(P_PIDFD)`, plus the `setsid` pre-exec hook
//! that puts a VMM in its own session and process group.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// How a reaped child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaped {
    /// It called `exit` with this code.
    Exited(i32),
    /// A signal ended it.
    Signaled(i32),
}

/// Opens a pidfd for `pid` (close-on-exec).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1;
    // no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: the kernel just returned this fd to us and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends `signal` to the process behind `pidfd` (never to a reused PID).
pub fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: the fd is valid for the borrow; info is NULL (kernel fills it
    // in as for kill(2)); flags 0.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reaps the child behind `pidfd` if it has exited (`WNOHANG`).
///
/// `Ok(None)`: still running. `ECHILD`: not our child (or already reaped).
pub fn pidfd_try_reap(pidfd: &OwnedFd) -> io::Result<Option<Reaped>> {
    // SAFETY: siginfo_t is plain data; all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    const P_PIDFD: libc::idtype_t = 3;
    // SAFETY: `info` is a valid, writable siginfo_t for the call; the fd is
    // borrowed for the duration.
    let rc = unsafe {
        libc::waitid(
            P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after a successful waitid, si_pid/si_status are initialised
    // (si_pid is 0 when nothing was reaped under WNOHANG).
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(if info.si_code == libc::CLD_EXITED {
        Reaped::Exited(status)
    } else {
        Reaped::Signaled(status)
    }))
}

/// Registers a pidfd with tokio; it turns readable when the process exits.
/// Must be called inside a tokio runtime.
pub fn async_pidfd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd takes ownership of the OwnedFd, so the fd stays
    // open and refers to the same pidfd for the AsyncFd's whole lifetime.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

/// Sends `signal` to every process in process group `pgid`.
pub fn kill_process_group(pgid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: killpg takes two integers; no memory is involved.
    let rc = unsafe { libc::killpg(pgid, signal) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the command's child start a new session (and process group), so
/// terminal signals aimed at the orchestrator never reach the VM, and the
/// VM's whole group can be signalled at once.
pub fn new_session_on_exec(command: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls setsid,
    // which is async-signal-safe; it allocates nothing.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidfd_reaps_exit_code_of_own_child() {
        let child = Command::new("sh").args(["-c", "exit 7"]).spawn().unwrap();
        let fd = pidfd_open(child.id() as i32).unwrap();
        drop(child); // reaped through the pidfd below
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(r) = pidfd_try_reap(&fd).unwrap() {
                assert_eq!(r, Reaped::Exited(7));
                break;
            }
            assert!(std::time::Instant::now() < deadline, "child never exited");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn signal_through_pidfd_is_reported_as_signaled() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        new_session_on_exec(&mut cmd);
        let child = cmd.spawn().unwrap();
        let fd = pidfd_open(child.id() as i32).unwrap();
        drop(child); // reaped through the pidfd below
        pidfd_send_signal(&fd, libc::SIGKILL).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(r) = pidfd_try_reap(&fd).unwrap() {
                assert_eq!(r, Reaped::Signaled(libc::SIGKILL));
                break;
            }
            assert!(std::time::Instant::now() < deadline, "child never died");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
