//! Copying a sparse file without filling its holes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Copies `from` to a new file `to`, private to its owner (0600), keeping
/// holes: a reflink (`FICLONE`) where the filesystem supports it, else only
/// the data is copied (see `copy_sparse_fd` in lobster's `sys::file`).
pub fn copy_sparse(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let src = File::open(from)?;
    let dst = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)?;
    let result = (|| {
        if rustix::fs::ioctl_ficlone(&dst, &src).is_ok() {
            return Ok(());
        }
        crate::sys::file::copy_sparse_fd(&src, &dst)?;
        dst.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(to);
    }
    result
}

/// Writes exactly `len` bytes from `from` into a new file `to` (0600),
/// leaving a hole wherever a 4 KiB block is all zeros. Fails, removing
/// `to`, if `from` ends before `len` bytes or holds more: hostile input
/// cannot make it write past `len`.
pub fn write_sparse(mut from: impl Read, to: &Path, len: u64) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut dst = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)?;
    let result = (|| {
        // Read a MiB at a time; within it, each 4 KiB block of zeros is
        // skipped (a hole), each other one written.
        let mut buf = vec![0u8; 1 << 20];
        let mut written = 0u64;
        while written < len {
            let want = (len - written).min(buf.len() as u64) as usize;
            let n = read_full(&mut from, &mut buf[..want])?;
            if n < want {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the image ends after {} of {len} bytes", written + n as u64),
                ));
            }
            for block in buf[..n].chunks(ZEROS.len()) {
                if block == &ZEROS[..block.len()] {
                    dst.seek(SeekFrom::Current(block.len() as i64))?;
                } else {
                    dst.write_all(block)?;
                }
            }
            written += n as u64;
        }
        if read_full(&mut from, &mut buf[..1])? != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the image is longer than {len} bytes"),
            ));
        }
        dst.set_len(len)?;
        dst.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(to);
    }
    result
}

/// A block of zeros to compare with (a `memcmp`, fast in any build).
static ZEROS: [u8; 4096] = [0; 4096];

/// Reads until `buf` is full or `from` ends; returns how much it read.
fn read_full(from: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match from.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_sparse_keeps_zero_blocks_as_holes_and_bounds_the_input() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let len = 8u64 << 20;
        let mut image = vec![0u8; len as usize];
        image[5000..5010].copy_from_slice(b"0123456789");
        let to = dir.path().join("disk");
        write_sparse(&image[..], &to, len).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), image);
        let meta = std::fs::metadata(&to).unwrap();
        assert!(meta.blocks() * 512 <= 64 << 10, "not sparse");
        assert_eq!(meta.mode() & 0o777, 0o600, "a tenant disk is private");

        for (input, what) in [
            (&image[..len as usize - 1], "short"),
            (&[&image[..], b"x"].concat()[..], "long"),
        ] {
            let to = dir.path().join(what);
            assert!(write_sparse(input, &to, len).is_err(), "{what}");
            assert!(!to.exists(), "{what}: the partial file is removed");
        }
    }
}
