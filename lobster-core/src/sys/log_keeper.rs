//! The log keeper: a small process that copies a VMM's output from a pipe
//! into its console log and keeps the file under its cap, so the cap holds
//! while no lobster process runs (VMs outlive the CLI).
//!
//! It is forked, not exec'd: no extra binary to install, and every front
//! end (CLI, Python, C) gets it. The child runs only async-signal-safe
//! system calls on a stack buffer (no allocation, no locks), in its own
//! session (a kill of the VMM's process group leaves it to drain the
//! pipe), holding no descriptor but its pipe and log. It exits when every
//! writer has closed the pipe, i.e. when the VMM and its children are gone.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The process name (`comm`) of a keeper.
pub const COMM: &[u8] = b"lobster-console\0";

/// A started keeper: the pipe's write end (for the VMM's stdout and
/// stderr) and the keeper's pid (our child: the caller reaps it).
#[derive(Debug)]
pub struct Started {
    /// Where the VMM writes (close-on-exec; `Stdio::from` clears that on
    /// the VMM's stdout and stderr).
    pub pipe: OwnedFd,
    /// The keeper.
    pub pid: i32,
}

/// Starts a keeper appending to `append` (the log opened `O_APPEND`) and
/// trimming through `trim` (the same file opened read-write, not appending)
/// so the file stays within `max_bytes`. With `ids` and started by root,
/// the keeper drops to that uid and gid (no groups, `no_new_privs`) once it
/// holds only its descriptors, and exits rather than run on with
/// privileges.
pub fn start(
    append: &File,
    trim: &File,
    max_bytes: u64,
    ids: Option<(u32, u32)>,
) -> io::Result<Started> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded; each fd is ours alone from here.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let (read_fd, append_fd, trim_fd) = (read.as_raw_fd(), append.as_raw_fd(), trim.as_raw_fd());
    // SAFETY: the child runs only `keep`, which makes async-signal-safe
    // system calls and never returns.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => keep(read_fd, append_fd, trim_fd, max_bytes, ids),
        pid => Ok(Started { pipe: write, pid }),
    }
}

/// The keeper's whole life (in the forked child).
fn keep(read: i32, append: i32, trim: i32, max_bytes: u64, ids: Option<(u32, u32)>) -> ! {
    // SAFETY: async-signal-safe system calls on integers, a static string
    // and a stack buffer, all valid for the calls; `_exit` skips atexit
    // handlers.
    unsafe {
        libc::setsid();
        libc::prctl(libc::PR_SET_NAME, COMM.as_ptr());
        let mut empty = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        for sig in [libc::SIGINT, libc::SIGHUP, libc::SIGTERM, libc::SIGPIPE] {
            libc::signal(sig, libc::SIG_DFL);
        }
        // Above any of the three, then onto 0, 1 and 3; close the rest.
        let (r, a, t) = (
            libc::fcntl(read, libc::F_DUPFD, 10),
            libc::fcntl(append, libc::F_DUPFD, 10),
            libc::fcntl(trim, libc::F_DUPFD, 10),
        );
        if r < 0 || a < 0 || t < 0 {
            libc::_exit(2);
        }
        libc::dup2(r, 0);
        libc::dup2(a, 1);
        libc::dup2(t, 3);
        libc::close(2);
        libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
        // Started by root: drop to the tenant. (Started unprivileged, as
        // in rootless tests, there is nothing to drop.)
        if let Some((uid, gid)) = ids.filter(|_| libc::geteuid() == 0) {
            if super::identity::become_for_good(uid, gid).is_err() {
                libc::_exit(3);
            }
        }
        let trim = std::os::fd::BorrowedFd::borrow_raw(3);
        let mut buf = [0u8; 16384];
        loop {
            let n = libc::read(0, buf.as_mut_ptr().cast(), buf.len());
            if n == 0 {
                libc::_exit(0);
            }
            if n < 0 {
                if *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                libc::_exit(1);
            }
            let n = n as usize;
            // A full disk or a failed trim drops output, never the VMM.
            if super::file::drop_head_to_fit(trim, max_bytes, n as u64).is_err() {
                continue;
            }
            let mut done = 0usize;
            while done < n {
                let w = libc::write(1, buf.as_ptr().add(done).cast(), n - done);
                if w < 0 && *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                if w <= 0 {
                    break;
                }
                done += w as usize;
            }
        }
    }
}
