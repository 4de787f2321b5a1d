//! File operations std does not offer.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

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

/// Makes room for `incoming` more bytes in a log capped at `max_bytes`:
/// when the file would grow past the cap, drops its oldest part, keeping
/// about half the cap. Returns how many bytes were dropped.
///
/// `file` must not be `O_APPEND` (the fallback writes at offsets); writers
/// that append through other descriptors keep appending at the new end.
/// The head is cut with `FALLOC_FL_COLLAPSE_RANGE` where the filesystem
/// supports it (ext4, xfs), else the kept tail is copied to the front and
/// the file truncated. Calls only async-signal-safe functions and never
/// allocates, so a forked child may run it (see [`super::log_keeper`]).
pub fn drop_head_to_fit(file: BorrowedFd<'_>, max_bytes: u64, incoming: u64) -> io::Result<u64> {
    let fd = file.as_raw_fd();
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat fills the struct it is given; it is read only on success.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat returned 0.
    let len = u64::try_from(unsafe { stat.assume_init() }.st_size).unwrap_or(0);
    if len.saturating_add(incoming) <= max_bytes {
        return Ok(0);
    }
    let keep = (max_bytes / 2).min(len);
    let block = 4096;
    let collapse = (len - keep) / block * block;
    if collapse > 0 && collapse < len {
        let off = libc::off_t::try_from(collapse).unwrap_or(0);
        // SAFETY: integers and a borrowed fd only.
        if unsafe { libc::fallocate(fd, libc::FALLOC_FL_COLLAPSE_RANGE, 0, off) } == 0 {
            return Ok(collapse);
        }
    }
    // Copy [len - keep, len) to the front in chunks; the source always lies
    // ahead of the destination, so no chunk overwrites what is still to read.
    let mut buf = [0u8; 8192];
    let mut done = 0u64;
    while done < keep {
        let want = (keep - done).min(buf.len() as u64) as usize;
        let from = libc::off_t::try_from(len - keep + done).unwrap_or(0);
        // SAFETY: reads at most `want` (<= buf.len()) bytes into buf.
        let got = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), want, from) };
        if got < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if got == 0 {
            break;
        }
        let got = got as usize;
        let to = libc::off_t::try_from(done).unwrap_or(0);
        let mut written = 0usize;
        while written < got {
            // SAFETY: writes the `got - written` initialised bytes after `written`.
            let n = unsafe {
                libc::pwrite(
                    fd,
                    buf.as_ptr().add(written).cast(),
                    got - written,
                    to + written as libc::off_t,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            written += n as usize;
        }
        done += got as u64;
    }
    // SAFETY: integers and a borrowed fd only.
    if unsafe { libc::ftruncate(fd, libc::off_t::try_from(done).unwrap_or(0)) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(len - done)
}
