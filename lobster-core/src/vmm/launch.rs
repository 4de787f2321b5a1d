//! The skeleton both backends share around their own process start and
//! protocol: the control socket (a live one refused, a stale one removed,
//! its directory made), the console log with its start note, the rollback of
//! a start that failed after the process began, and `kill`/`shutdown` around
//! each backend's power-off request.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use super::{
    remove_socket, ConsoleLog, ExitStatus, Result, ShutdownOutcome, Vm, VmConfig, VmIdentity,
    VmProcess, VmmError,
};

/// Refuses a control socket another VMM answers on; removes a stale one.
/// Only a socket file (never a link or anything else) that refuses
/// connections is stale: a busy VMM (backlog full) or one we may not reach
/// is not, and deleting its socket would let a second VMM start on the
/// same disk.
pub(crate) async fn clear_stale_socket(vm: &str, socket: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let refuse = |state: String| VmmError::InvalidState {
        vm: vm.to_string(),
        operation: "launch",
        state,
    };
    let kind = match std::fs::symlink_metadata(socket) {
        Ok(meta) => meta.file_type(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(VmmError::Io {
                context: format!("cannot inspect {}", socket.display()),
                source,
            })
        }
    };
    if !kind.is_socket() {
        return Err(refuse(format!(
            "{} is in the way and is not a socket",
            socket.display()
        )));
    }
    match tokio::net::UnixStream::connect(socket).await {
        Ok(_) => Err(refuse(format!(
            "another vmm listens on {}",
            socket.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => remove_socket(vm, socket),
        Err(e) => Err(refuse(format!(
            "{} may still belong to a vmm ({e})",
            socket.display()
        ))),
    }
}

/// Creates the directory the control socket goes in (root-only when new).
pub(crate) fn create_socket_dir(socket: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true).mode(0o700);
    match socket.parent() {
        Some(dir) => builder.create(dir).map_err(|source| VmmError::Io {
            context: format!("cannot create socket directory {}", dir.display()),
            source,
        }),
        None => Ok(()),
    }
}

/// The VM's console log.
pub(crate) fn console(config: &VmConfig) -> ConsoleLog {
    let log = ConsoleLog::new(
        &config.paths.console_log,
        config.paths.console_log_max_bytes,
    );
    match &config.jail {
        Some(jail) => log.kept_as(jail.uid, jail.gid),
        None => log,
    }
}

/// The VM's console log, noting the command about to start.
pub(crate) fn console_for_start(config: &VmConfig, program: &Path, args: &[String]) -> ConsoleLog {
    let console = console(config);
    let _ = console.note(&format!(
        "starting {} {}",
        program.display(),
        args.join(" ")
    ));
    console
}

/// The VMM process of a VM launched earlier, by its recorded identity.
pub(crate) fn attach_process(config: &VmConfig, identity: VmIdentity) -> Result<VmProcess> {
    VmProcess::attach(&config.vm_id, identity, console(config))
}

/// Rolls back a start that failed after the process began: kills the VMM
/// (no half-started one stays behind) and hands back `err`.
pub(crate) async fn abandon(vm: &dyn Vm, err: VmmError) -> VmmError {
    let _ = vm.kill().await;
    err
}

/// Kills the VMM's process group within `within`, then removes its files.
pub(crate) async fn kill(
    process: &VmProcess,
    within: Duration,
    cleanup: impl FnOnce() -> Result<()>,
) -> Result<ExitStatus> {
    let status = process.kill(within).await?;
    cleanup()?;
    Ok(status)
}

/// A graceful shutdown: `power_off` asks the guest, which gets `grace` to
/// exit; else `force` stops the VMM. `cleanup` removes its files either way.
pub(crate) async fn shutdown(
    process: &VmProcess,
    grace: Duration,
    power_off: impl Future<Output = Result<()>>,
    force: impl Future<Output = Result<ExitStatus>>,
    cleanup: impl Fn() -> Result<()>,
) -> Result<ShutdownOutcome> {
    if let Some(status) = process.exit_status() {
        cleanup()?;
        return Ok(ShutdownOutcome::Graceful(status));
    }
    if power_off.await.is_ok() {
        if let Some(status) = process.wait_exit(grace).await {
            cleanup()?;
            return Ok(ShutdownOutcome::Graceful(status));
        }
    }
    let status = force.await?;
    cleanup()?;
    Ok(ShutdownOutcome::Forced(status))
}

/// Makes a file a VMM wrote at `partial` durable under `target`: fsync,
/// rename into place, fsync the directory (a crash leaves the old file or
/// the new one, never a torn one).
pub(crate) fn commit_file(partial: &Path, target: &Path) -> Result<()> {
    let synced = std::fs::File::open(partial)
        .and_then(|file| file.sync_all())
        .map_err(|source| VmmError::Io {
            context: format!("cannot sync {}", partial.display()),
            source,
        });
    synced.and_then(|()| {
        std::fs::rename(partial, target).map_err(|source| VmmError::Io {
            context: format!("cannot rename {} into place", partial.display()),
            source,
        })
    })?;
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| VmmError::Io {
            context: format!("cannot sync directory {}", dir.display()),
            source,
        })
}

/// Where a file headed for `target` is written until it is complete.
pub(crate) fn partial_path(target: &Path) -> std::path::PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    target.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_a_refusing_socket_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("api.sock");
        assert!(clear_stale_socket("vm", &socket).await.is_ok(), "absent");

        // A live VMM's socket is refused and kept.
        let live = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let err = clear_stale_socket("vm", &socket).await.unwrap_err();
        assert!(err.to_string().contains("another vmm listens"), "{err}");
        assert!(socket.exists());

        // Once nobody listens, it is stale and goes.
        drop(live);
        clear_stale_socket("vm", &socket).await.unwrap();
        assert!(!socket.exists());

        // A link (to a socket or anything else) or a plain file is never
        // removed or followed.
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, &socket).unwrap();
        let err = clear_stale_socket("vm", &socket).await.unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert!(socket.symlink_metadata().is_ok() && target.exists());
        std::fs::remove_file(&socket).unwrap();
        std::fs::write(&socket, "a file").unwrap();
        assert!(clear_stale_socket("vm", &socket).await.is_err());
        assert!(socket.exists());
    }
}
