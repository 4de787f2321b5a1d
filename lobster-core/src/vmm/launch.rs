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
pub(crate) async fn clear_stale_socket(vm: &str, socket: &Path) -> Result<()> {
    if !socket.exists() {
        return Ok(());
    }
    match tokio::net::UnixStream::connect(socket).await {
        Ok(_) => Err(VmmError::InvalidState {
            vm: vm.to_string(),
            operation: "launch",
            state: format!("another vmm listens on {}", socket.display()),
        }),
        Err(_) => remove_socket(vm, socket),
    }
}

/// Creates the directory the control socket goes in.
pub(crate) fn create_socket_dir(socket: &Path) -> Result<()> {
    match socket.parent() {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|source| VmmError::Io {
            context: format!("cannot create socket directory {}", dir.display()),
            source,
        }),
        None => Ok(()),
    }
}

/// The VM's console log.
pub(crate) fn console(config: &VmConfig) -> ConsoleLog {
    ConsoleLog::new(
        &config.paths.console_log,
        config.paths.console_log_max_bytes,
    )
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
/// then rename into place (a crash leaves the old file or the new one,
/// never a torn one).
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
    })
}

/// Where a file headed for `target` is written until it is complete.
pub(crate) fn partial_path(target: &Path) -> std::path::PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    target.with_file_name(name)
}
