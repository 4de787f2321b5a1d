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

/// The block size zero detection works in (the guest page size).
pub const ZERO_BLOCK: usize = 4096;

/// Calls `each(offset, bytes)` for the file's data in chunks of at most
/// 1 MiB, skipping its holes (`SEEK_DATA`/`SEEK_HOLE`). Offsets are
/// multiples of [`ZERO_BLOCK`] wherever the filesystem's extents are.
fn for_each_data_chunk(
    file: &std::fs::File,
    mut each: impl FnMut(u64, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    use rustix::fs::SeekFrom;
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    while offset < len {
        let data = match rustix::fs::seek(file, SeekFrom::Data(offset)) {
            Ok(pos) => pos,
            // ENXIO: no data after `offset`, the rest is a hole.
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let hole = rustix::fs::seek(file, SeekFrom::Hole(data))?.min(len);
        let mut at = data;
        while at < hole {
            let n = usize::try_from(hole - at)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            file.read_exact_at(&mut buf[..n], at)?;
            each(at, &buf[..n])?;
            at += n as u64;
        }
        offset = hole;
    }
    Ok(())
}

/// Runs of all-zero [`ZERO_BLOCK`]s in `bytes` (at `offset`), as
/// `(start, length)`; a short tail block counts too.
fn zero_runs(offset: u64, bytes: &[u8]) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    const ZEROS: [u8; ZERO_BLOCK] = [0; ZERO_BLOCK];
    for (i, block) in bytes.chunks(ZERO_BLOCK).enumerate() {
        if block == &ZEROS[..block.len()] {
            let start = offset + (i * ZERO_BLOCK) as u64;
            match runs.last_mut() {
                Some((s, l)) if *s + *l == start => *l += block.len() as u64,
                _ => runs.push((start, block.len() as u64)),
            }
        }
    }
    runs
}

/// Copies `src` into the empty file `dst`, leaving out `src`'s holes and
/// its all-zero blocks: `dst` ends as long as `src` and as sparse as its
/// content allows (a guest memory file is mostly zero pages).
pub fn copy_sparse_fd(src: &std::fs::File, dst: &std::fs::File) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    dst.set_len(src.metadata()?.len())?;
    for_each_data_chunk(src, |offset, bytes| {
        let mut at = 0usize;
        for (start, len) in zero_runs(offset, bytes) {
            let start = usize::try_from(start - offset).expect("within the chunk");
            dst.write_all_at(&bytes[at..start], offset + at as u64)?;
            at = start + usize::try_from(len).expect("within the chunk");
        }
        dst.write_all_at(&bytes[at..], offset + at as u64)
    })
}

/// Frees the disk blocks of `file`'s all-zero [`ZERO_BLOCK`]s
/// (`FALLOC_FL_PUNCH_HOLE`; the content and length stay). Returns the
/// bytes punched.
pub fn punch_zero_blocks(file: &std::fs::File) -> io::Result<u64> {
    use rustix::fs::FallocateFlags;
    let mut punched = 0;
    for_each_data_chunk(file, |offset, bytes| {
        for (start, len) in zero_runs(offset, bytes) {
            rustix::fs::fallocate(
                file,
                FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                start,
                len,
            )?;
            punched += len;
        }
        Ok(())
    })?;
    Ok(punched)
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

#[cfg(test)]
mod sparse_tests {
    use std::os::unix::fs::{FileExt, MetadataExt};

    use super::*;

    /// 4 MiB: a hole, a zero-filled MiB, data, and a short odd tail.
    fn memory_like(dir: &std::path::Path) -> std::fs::File {
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join("mem"))
            .unwrap();
        file.set_len(4 << 20).unwrap();
        file.write_all_at(&vec![0u8; 1 << 20], 1 << 20).unwrap();
        file.write_all_at(b"page", (2 << 20) + 10).unwrap();
        file.write_all_at(&[7u8; 100], (3 << 20) + 5000).unwrap();
        file.sync_all().unwrap();
        file
    }

    fn content(file: &std::fs::File) -> Vec<u8> {
        let mut all = vec![0u8; usize::try_from(file.metadata().unwrap().len()).unwrap()];
        file.read_exact_at(&mut all, 0).unwrap();
        all
    }

    #[test]
    fn a_sparse_copy_has_the_content_and_leaves_zero_blocks_out() {
        let dir = tempfile::tempdir().unwrap();
        let src = memory_like(dir.path());
        let dst = std::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("copy"))
            .unwrap();
        copy_sparse_fd(&src, &dst).unwrap();
        assert_eq!(content(&dst), content(&src));
        let allocated = dst.metadata().unwrap().blocks() * 512;
        assert!(
            allocated <= 4 * ZERO_BLOCK as u64,
            "{allocated} bytes allocated"
        );
    }

    #[test]
    fn punching_zero_blocks_keeps_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let file = memory_like(dir.path());
        let before = content(&file);
        let punched = punch_zero_blocks(&file).unwrap();
        assert!(punched >= (1 << 20), "{punched}");
        assert_eq!(content(&file), before);
        let allocated = file.metadata().unwrap().blocks() * 512;
        assert!(
            allocated <= 4 * ZERO_BLOCK as u64,
            "{allocated} bytes allocated"
        );
    }
}
