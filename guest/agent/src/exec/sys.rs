//! The agent's only `unsafe` code: what an exec'd child does between `fork`
//! and `exec`, and signals to a process group by number.
//!
//! Between `fork` and `exec` a child of a threaded program may only make
//! async-signal-safe calls, so [`arrange_child`] registers a closure that
//! makes raw system calls and allocates nothing (the groups are collected
//! before the fork).
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::process::{Gid, Uid};

/// The user an exec'd child becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Real and effective user id.
    pub uid: Uid,
    /// Real and effective group id.
    pub gid: Gid,
    /// Supplementary groups.
    pub groups: Vec<Gid>,
}

/// Makes `cmd`'s child the leader of a new session (and so of its own
/// process group), with its terminal (stdin) as controlling terminal when
/// `controlling_tty`, every inherited descriptor above stderr closed at
/// `exec`, and `identity` taken last (groups, gid, then uid).
pub(crate) fn arrange_child(cmd: &mut Command, identity: Option<Identity>, controlling_tty: bool) {
    let child_setup = move || -> std::io::Result<()> {
        rustix::process::setsid()?;
        if controlling_tty {
            rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())?;
        }
        // SAFETY: close_range takes three integers and touches no memory;
        // with CLOSE_RANGE_CLOEXEC it only marks descriptors close-on-exec,
        // so std's own exec-error pipe keeps working until exec. A kernel
        // without it (ENOSYS) leaves only descriptors the agent opened
        // close-on-exec already (std and rustix always do).
        let _ = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        if let Some(id) = &identity {
            // One thread after fork: the per-thread calls set the process's ids.
            rustix::thread::set_thread_groups(&id.groups)?;
            rustix::thread::set_thread_gid(id.gid)?;
            rustix::thread::set_thread_uid(id.uid)?;
        }
        Ok(())
    };
    // SAFETY: `child_setup` runs in the forked child before exec and makes
    // only async-signal-safe system calls (setsid, ioctl, close_range,
    // setgroups, setgid, setuid); it allocates nothing and takes no lock:
    // `identity` was built before the fork and is only read.
    unsafe {
        cmd.pre_exec(child_setup);
    }
}

/// Sends signal `signo` (1..=64, realtime signals included) to every
/// process of group `pgid`. The caller keeps the group's leader unreaped,
/// so `pgid` cannot name another group.
pub(crate) fn signal_group(pgid: i32, signo: i32) -> std::io::Result<()> {
    if pgid <= 1 || !(1..=64).contains(&signo) {
        return Err(std::io::ErrorKind::InvalidInput.into());
    }
    // SAFETY: kill takes two integers and touches no memory; the negative
    // pid addresses exactly the group `pgid` (checked above not to be 0,
    // 1 or -1, which would address the caller's group or every process).
    match unsafe { libc::kill(-pgid, signo) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}
