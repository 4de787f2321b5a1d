//! Which version a VMM binary is: asked once per binary file (again after
//! the file changes, as an upgrade does), with a bound on the wait.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Result, VmmError};

/// What identifies one build of a binary on disk.
type Stamp = (PathBuf, u64, u64, i64, i64, u64);

/// The remembered answer of `<binary> --version`.
#[derive(Debug, Clone, Default)]
pub(crate) struct VersionCache {
    cached: Arc<Mutex<Option<(Stamp, String)>>>,
}

impl VersionCache {
    /// The first line `binary --version` prints (resolved on `PATH` when a
    /// bare name), e.g. `Firecracker v1.14.4`; from the cache while the
    /// file is the same. `backend` names the VMM in errors.
    pub(crate) async fn get(
        &self,
        backend: &str,
        binary: &Path,
        timeout: Duration,
    ) -> Result<String> {
        use std::os::unix::fs::MetadataExt;
        let not_found = |source| VmmError::Spawn {
            vm: backend.to_string(),
            binary: binary.to_path_buf(),
            source,
        };
        let path = crate::base::find_program(binary)
            .ok_or_else(|| not_found(std::io::ErrorKind::NotFound.into()))?;
        let meta = std::fs::metadata(&path).map_err(not_found)?;
        let stamp = (
            path.clone(),
            meta.dev(),
            meta.ino(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.size(),
        );
        if let Some((known, version)) = &*self.cached.lock().expect("version cache") {
            if *known == stamp {
                return Ok(version.clone());
            }
        }
        let version = ask(backend, &path, timeout).await?;
        *self.cached.lock().expect("version cache") = Some((stamp, version.clone()));
        Ok(version)
    }
}

/// Runs `binary --version` (killed after `timeout`) and takes the first
/// non-empty line of its output.
async fn ask(backend: &str, binary: &Path, timeout: Duration) -> Result<String> {
    let run = tokio::process::Command::new(binary)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| VmmError::Timeout {
            vm: backend.to_string(),
            operation: format!("{} --version", binary.display()),
            after: timeout,
        })?
        .map_err(|source| VmmError::Spawn {
            vm: backend.to_string(),
            binary: binary.to_path_buf(),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    match text.lines().map(str::trim).find(|l| !l.is_empty()) {
        Some(line) if output.status.success() => Ok(line.to_string()),
        _ => Err(VmmError::Protocol {
            vm: backend.to_string(),
            what: format!("{} --version", binary.display()),
            detail: format!(
                "{}: no version printed: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_version_is_asked_once_per_binary_file() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("vmm");
        let calls = dir.path().join("calls");
        let script = |version: &str| {
            format!(
                "#!/bin/sh\necho x >> {}\necho\necho '{version}'\necho 'more' \n",
                calls.display()
            )
        };
        write_executable(&binary, &script("Fake VMM v1.0.0"));
        let cache = VersionCache::default();
        let bound = Duration::from_secs(30);
        for _ in 0..3 {
            assert_eq!(
                cache.get("fake", &binary, bound).await.unwrap(),
                "Fake VMM v1.0.0"
            );
        }
        assert_eq!(std::fs::read_to_string(&calls).unwrap().lines().count(), 1);
        // An upgrade replaces the file: asked again.
        let upgraded = dir.path().join("vmm.new");
        write_executable(&upgraded, &script("Fake VMM v1.1.0"));
        std::fs::rename(&upgraded, &binary).unwrap();
        assert_eq!(
            cache.get("fake", &binary, bound).await.unwrap(),
            "Fake VMM v1.1.0"
        );
    }

    #[tokio::test]
    async fn a_binary_that_hangs_or_fails_is_an_error_not_a_version() {
        let dir = tempfile::tempdir().unwrap();
        let hangs = dir.path().join("hangs");
        write_executable(&hangs, "#!/bin/sh\nexec sleep 30\n");
        let err = VersionCache::default()
            .get("fake", &hangs, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, VmmError::Timeout { .. }), "{err}");
        let fails = dir.path().join("fails");
        write_executable(&fails, "#!/bin/sh\necho 'v9'; echo boom >&2; exit 3\n");
        let err = VersionCache::default()
            .get("fake", &fails, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
        let missing = VersionCache::default()
            .get("fake", &dir.path().join("absent"), Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(matches!(missing, VmmError::Spawn { .. }), "{missing}");
    }

    fn write_executable(path: &Path, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}
