//! File operations std does not offer.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Removes the first `len` bytes of `file` in place (`len` a multiple of the
/// filesystem block size); later bytes move to the front. Appending writers
/// keep appending at the new end. Fails with `EOPNOTSUPP` on tmpfs and
/// other filesystems without `FALLOC_FL_COLLAPSE_RANGE`.
pub fn collapse_head(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::other("length out of range"))?;
    // SAFETY: fallocate takes the borrowed fd and integers; no memory is passed.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_COLLAPSE_RANGE, 0, len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
