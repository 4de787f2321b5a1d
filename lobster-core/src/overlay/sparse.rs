//! Copying a sparse file without filling its holes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use rustix::fs::SeekFrom as RSeek;

/// Copies `from` to a new file `to`, private to its owner (0600), keeping
/// holes: a reflink (`FICLONE`) where the filesystem supports it, else only
/// the data extents are copied.
pub fn copy_sparse(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut src = File::open(from)?;
    let len = src.metadata()?.len();
    let mut dst = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)?;
    let result = (|| {
        if rustix::fs::ioctl_ficlone(&dst, &src).is_ok() {
            return Ok(());
        }
        dst.set_len(len)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut offset = 0u64;
        while offset < len {
            let data = match rustix::fs::seek(&src, RSeek::Data(offset)) {
                Ok(pos) => pos,
                // ENXIO: no data after `offset`, the rest is a hole.
                Err(rustix::io::Errno::NXIO) => break,
                Err(e) => return Err(e.into()),
            };
            let hole = rustix::fs::seek(&src, RSeek::Hole(data))?.min(len);
            src.seek(SeekFrom::Start(data))?;
            dst.seek(SeekFrom::Start(data))?;
            let mut left = hole - data;
            while left > 0 {
                let n = (left as usize).min(buf.len());
                src.read_exact(&mut buf[..n])?;
                dst.write_all(&buf[..n])?;
                left -= n as u64;
            }
            offset = hole;
        }
        dst.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(to);
    }
    result
}
