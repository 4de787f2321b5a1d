//! Copying a sparse file without filling its holes.

use std::fs::File;
use std::io;
use std::path::Path;

/// Copies `from` to a new file `to`, private to its owner (0600), keeping
/// holes: a reflink (`FICLONE`) where the filesystem supports it, else only
/// the data is copied (see [`crate::sys::file::copy_sparse_fd`]).
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
