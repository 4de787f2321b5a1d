//! The `flock`s of a state directory: the registry's own lock, each
//! tenant's operation lock and the single-watchdog lock.
//!
//! Lock files are never unlinked. An `flock` belongs to the open file, not
//! the name: unlinking a held lock file lets the next process create a new
//! file under the same name and lock that while the old holder still acts,
//! so two processes would both "hold" the lock. A tenant lock file is
//! empty, so keeping one per name ever used costs an inode each.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Result, Store, StoreError};

impl Store {
    /// Takes tenant `name`'s operation lock (held by spawn from allocation
    /// to `running` or rollback, and by evict, recover, snap, molt, token
    /// rotation and the watchdog's repairs, so two of them never act on one
    /// tenant at once), waiting at most `wait`. `None` when another
    /// process still holds it.
    pub fn lock_tenant(&self, name: &str, wait: Duration) -> Result<Option<TenantLock>> {
        let path = self.state_dir().join("locks").join(format!("{name}.lock"));
        Ok(try_lock_file(&path, wait)?.map(|file| TenantLock { _file: file }))
    }

    /// Takes the single-watchdog lock of this state directory without
    /// waiting; `None` when another watchdog holds it.
    pub fn lock_watchdog(&self) -> Result<Option<WatchdogLock>> {
        let path = self.state_dir().join("watch.lock");
        Ok(try_lock_file(&path, Duration::ZERO)?.map(|file| WatchdogLock { _file: file }))
    }

    /// Takes the registry's own lock (shared for reads, exclusive for changes).
    pub(super) fn lock_registry(&self, exclusive: bool) -> Result<File> {
        lock_file(&self.lock, exclusive, self.lock_timeout)
    }
}

/// An exclusive hold on one tenant's operations; released on drop, or by
/// the kernel when the holder dies.
#[derive(Debug)]
pub struct TenantLock {
    _file: File,
}

/// The watchdog role of one state directory: at most one process holds it.
/// Released on drop, or by the kernel when the holder dies.
#[derive(Debug)]
pub struct WatchdogLock {
    _file: File,
}

/// An exclusive [`lock_file`] that gives `None` instead of a timeout.
fn try_lock_file(path: &Path, wait: Duration) -> Result<Option<File>> {
    match lock_file(path, true, wait) {
        Ok(file) => Ok(Some(file)),
        Err(StoreError::LockTimeout { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens (creating) `path` and its directory and takes an `flock` on it,
/// polling with backoff for at most `timeout`.
pub(super) fn lock_file(path: &Path, exclusive: bool, timeout: Duration) -> Result<File> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::Io {
            context: "cannot create state directory",
            path: dir.to_path_buf(),
            source,
        })?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|source| StoreError::Io {
            context: "cannot open lock file",
            path: path.to_path_buf(),
            source,
        })?;
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        let attempt = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match attempt {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StoreError::Io {
                    context: "cannot lock",
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        if start.elapsed() >= timeout {
            return Err(StoreError::LockTimeout {
                path: path.to_path_buf(),
                waited: start.elapsed(),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
