//! Stopping a VM the registry recorded, from any process: the recorded VMM
//! if it is still the same process, and any VMM still serving the VM's
//! control socket (a spawn killed between launch and recording the identity
//! leaves such a one).

use std::path::Path;
use std::time::Duration;

use super::{launch, Result, VmConfig, VmIdentity, VmProcess, VmmError};

/// How long a killed VMM may take to exit.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Kills the VMM of `config`: the `recorded` process if it still runs, and
/// every process whose command line names the control socket.
pub async fn stop_recorded(config: &VmConfig, recorded: Option<VmIdentity>) -> Result<()> {
    let console = launch::console(config);
    if let Some(identity) = recorded {
        match VmProcess::attach(&config.vm_id, identity, console.clone()) {
            Ok(process) => {
                process.kill(KILL_WAIT).await?;
            }
            Err(VmmError::NotRunning { .. } | VmmError::IdentityMismatch { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let socket = config.paths.api_socket.clone();
    let orphans =
        crate::base::blocking(move || Ok::<_, VmmError>(processes_using(&socket))).await?;
    for identity in orphans {
        if let Ok(process) = VmProcess::attach(&config.vm_id, identity, console.clone()) {
            process.kill(KILL_WAIT).await?;
        }
    }
    Ok(())
}

/// Processes whose command line names `socket` as an argument (VMMs are
/// started with their control socket's path on the command line).
fn processes_using(socket: &Path) -> Vec<VmIdentity> {
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
        .filter_map(|pid| VmIdentity::of(pid).ok())
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
