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

/// Bytes an unprivileged writer may still allocate on the filesystem
/// holding `path` (`statvfs`: `f_bavail * f_frsize`).
pub fn available_bytes(path: &std::path::Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a valid NUL-terminated path and a pointer to a statvfs the
    // call fills; it is read only when the call succeeds.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let stat = unsafe { stat.assume_init() };
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}
