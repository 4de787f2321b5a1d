//! Starting a child inside a network namespace.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the command's child join the network namespace `netns` (an open
/// `/var/run/netns/<name>` or `/proc/<pid>/ns/net`) before it executes.
/// The fd is moved into the hook and closed by exec (it is close-on-exec).
pub fn join_netns_on_exec(command: &mut Command, netns: OwnedFd) {
    // SAFETY: the closure runs between fork and exec and only calls setns,
    // which is async-signal-safe; it allocates nothing. The fd it uses is
    // owned by the closure and stays open until exec.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
