//! Stopping a VM the registry recorded, from any process: the recorded VMM
//! if it is still the same process, and every process in the VM's cgroup
//! (a spawn killed between launch and recording the identity leaves such a
//! one: whatever runs in a tenant's cgroup is its VMM). Then the cgroup
//! and the jail go ([`remove_jail`]).

use std::path::Path;
use std::time::{Duration, Instant};

use super::{launch, sandbox, Result, VmConfig, VmIdentity, VmProcess, VmmError};

/// How long a killed VMM may take to exit.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Kills the VMM of `config`: the `recorded` process if it still runs, and
/// every process in the VM's cgroup; a VM without a jail (no cgroup) is
/// also searched by the control socket on command lines.
pub async fn stop_recorded(config: &VmConfig, recorded: Option<VmIdentity>) -> Result<()> {
    let console = launch::console(config);
    if let Some(identity) = recorded {
        kill(config, identity, &console).await?;
    }
    let orphans = crate::base::blocking({
        let config = config.clone();
        move || orphans(&config)
    })
    .await?;
    for identity in orphans {
        kill(config, identity, &console).await?;
    }
    crate::base::blocking({
        let config = config.clone();
        move || remove_cgroup(&config)
    })
    .await
}

async fn kill(config: &VmConfig, identity: VmIdentity, console: &super::ConsoleLog) -> Result<()> {
    match VmProcess::attach(&config.vm_id, identity, console.clone()) {
        Ok(process) => process.kill(KILL_WAIT).await.map(drop),
        Err(VmmError::NotRunning { .. } | VmmError::IdentityMismatch { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The processes that are `config`'s VMM whoever started them.
fn orphans(config: &VmConfig) -> Result<Vec<VmIdentity>> {
    let pids = match &config.jail {
        Some(_) => sandbox::members(config),
        None => processes_using(&config.paths.api_socket),
    };
    Ok(pids
        .into_iter()
        .filter_map(|pid| VmIdentity::of(pid).ok())
        .collect())
}

/// Removes `jail_dir` and the cgroup of `config`'s jail, once its VMM is
/// gone. Absent is fine.
pub fn remove_jail(config: &VmConfig, jail_dir: &Path) -> Result<()> {
    let dir = match std::fs::remove_dir_all(jail_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(VmmError::Io {
            context: format!("vm {}: cannot remove {}", config.vm_id, jail_dir.display()),
            source: e,
        }),
        _ => Ok(()),
    };
    dir.and(remove_cgroup(config))
}

/// Removes the cgroup of `config`'s jail (a member still exiting is waited
/// for, briefly). Absent is fine.
fn remove_cgroup(config: &VmConfig) -> Result<()> {
    let Some(cgroup) = sandbox::cgroup(config) else {
        return Ok(());
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match cgroup.remove() {
            Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => {
                return other.map_err(|source| VmmError::Io {
                    context: format!("vm {}: cannot remove its cgroup", config.vm_id),
                    source,
                })
            }
        }
    }
}

/// Processes whose command line names `socket` as an argument: the only
/// trace of an unjailed VMM (started with its socket's path on its command
/// line) that nobody recorded.
fn processes_using(socket: &Path) -> Vec<i32> {
    let needle = socket.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmdline| cmdline.split(|b| *b == 0).any(|arg| contains(arg, needle)))
                .unwrap_or(false)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
