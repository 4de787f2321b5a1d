//! Runtime helpers shared by every layer.

use std::path::{Path, PathBuf};

/// Runs blocking work (registry, files, subprocesses) off the async workers;
/// a panic in `work` resumes in the caller.
pub(crate) async fn blocking<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(out) => out,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

/// The environment variable naming where a daemon reports readiness
/// (systemd's `sd_notify`); processes lobster starts never inherit it.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms() -> u64 {
    since_epoch().as_millis() as u64
}

/// Seconds since the Unix epoch (0 before it).
pub(crate) fn unix_secs() -> u64 {
    since_epoch().as_secs()
}

fn since_epoch() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Resolves a program: a path with a `/` is taken as is, a bare name is
/// searched on `PATH`. Only executable files count.
pub fn find_program(program: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.components().count() > 1 {
        return executable(program).then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}
