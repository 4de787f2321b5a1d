//! The systemd unit that runs the watchdog (`lobsterd watch`) at boot, so a
//! rebooted host brings its tenants back. `init` installs and enables it
//! where systemd runs (and records it, [`HostChanges`]); `uninit` stops,
//! disables and removes it.
//!
//! `KillMode=process`: stopping or restarting the watchdog signals only the
//! daemon itself, never the VMMs it restarted (they live in its cgroup).

use std::path::Path;
use std::time::Duration;

use super::{HostChanges, MachineError};
use crate::error::Result;

/// The unit's file name.
pub const WATCH_UNIT: &str = "lobsterd-watch.service";

/// Where systemd runs, this directory exists.
const SYSTEMD_RUNTIME: &str = "/run/systemd/system";

/// The unit text for `lobsterd` at `exe` with configuration `config`.
pub fn watch_unit(exe: &Path, config: &Path) -> String {
    format!(
        "[Unit]
Description=lobster watchdog: health checks and repairs of microVM tenants
After=network-online.target caddy.service
Wants=network-online.target

[Service]
Type=notify
ExecStart={exe} --config {config} watch
Restart=on-failure
RestartSec=5
KillMode=process
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
",
        exe = exe.display(),
        config = config.display(),
    )
}

/// What [`install_watch_unit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitAction {
    /// Written (or rewritten) and enabled.
    Installed,
    /// Already in place; enabled.
    Unchanged,
    /// systemd does not run here: start `lobsterd watch -d` instead.
    NoSystemd,
    /// `init` runs in another network namespace than systemd (a test or a
    /// demo): a unit would run the watchdog against the host's network.
    OtherNetns,
}

/// Writes the unit into `unit_dir` (normally `/etc/systemd/system`),
/// records it in `state_dir`'s [`HostChanges`], and enables and starts it,
/// where systemd runs.
pub async fn install_watch_unit(
    exe: &Path,
    config: &Path,
    unit_dir: &Path,
    state_dir: &Path,
) -> Result<UnitAction> {
    if !Path::new(SYSTEMD_RUNTIME).is_dir() {
        return Ok(UnitAction::NoSystemd);
    }
    if !in_init_netns() {
        return Ok(UnitAction::OtherNetns);
    }
    let text = watch_unit(exe, config);
    let path = unit_dir.join(WATCH_UNIT);
    HostChanges::update(state_dir, |c| {
        c.files.insert(path.clone());
    })?;
    let action = if std::fs::read_to_string(&path).is_ok_and(|t| t == text) {
        UnitAction::Unchanged
    } else {
        std::fs::write(&path, text).map_err(|source| MachineError::Io {
            context: "cannot write systemd unit",
            path: path.clone(),
            source,
        })?;
        UnitAction::Installed
    };
    systemctl(&["daemon-reload"]).await?;
    systemctl(&["enable", "--now", WATCH_UNIT]).await?;
    Ok(action)
}

/// Where `init` installs the unit.
pub(super) const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";

/// The unit in `unit_dir` if it runs the watchdog with configuration file
/// `config` (absolute): one installed before installs were recorded.
pub(super) fn unit_for_config(unit_dir: &Path, config: &Path) -> Option<std::path::PathBuf> {
    let path = unit_dir.join(WATCH_UNIT);
    let text = std::fs::read_to_string(&path).ok()?;
    let exec = format!(" --config {} watch", config.display());
    text.lines()
        .any(|l| l.starts_with("ExecStart=") && l.ends_with(&exec))
        .then_some(path)
}

/// Stops, disables and removes the unit file at `path` (systemctl only
/// where systemd runs). Returns false if there was no file.
pub(super) async fn remove_watch_unit(path: &Path) -> Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let systemd = Path::new(SYSTEMD_RUNTIME).is_dir();
    if systemd {
        systemctl(&["disable", "--now", WATCH_UNIT]).await?;
    }
    std::fs::remove_file(path).map_err(|source| MachineError::Io {
        context: "cannot remove systemd unit",
        path: path.to_path_buf(),
        source,
    })?;
    if systemd {
        systemctl(&["daemon-reload"]).await?;
    }
    Ok(true)
}

/// Whether this process shares PID 1's network namespace (where a systemd
/// unit runs). Unknown counts as no: never install a unit by mistake.
pub(super) fn in_init_netns() -> bool {
    match (
        std::fs::read_link("/proc/self/ns/net"),
        std::fs::read_link("/proc/1/ns/net"),
    ) {
        (Ok(own), Ok(init)) => own == init,
        _ => false,
    }
}

async fn systemctl(args: &[&str]) -> Result<()> {
    let what = format!("systemctl {}", args.join(" "));
    let run = tokio::process::Command::new("systemctl")
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let io = |source| MachineError::Io {
        context: "cannot run systemctl for",
        path: WATCH_UNIT.into(),
        source,
    };
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .map_err(|_| {
            io(std::io::Error::other(format!(
                "`{what}` did not finish within 30 s"
            )))
        })?
        .map_err(io)?;
    if !out.status.success() {
        return Err(io(std::io::Error::other(format!(
            "`{what}` exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_watch_with_the_config_and_spares_the_vms() {
        let unit = watch_unit(
            Path::new("/usr/local/bin/lobsterd"),
            Path::new("/etc/lobsterd/config.json"),
        );
        assert!(unit.contains(
            "\nExecStart=/usr/local/bin/lobsterd --config /etc/lobsterd/config.json watch\n"
        ));
        assert!(
            unit.contains("\nKillMode=process\n"),
            "VMMs must survive a watchdog restart"
        );
        assert!(unit.contains("\nRestart=on-failure\n"));
        assert!(unit.contains("\nWantedBy=multi-user.target\n"));
    }

    #[test]
    fn an_unrecorded_unit_is_found_only_when_it_runs_this_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let (ours, other) = (
            Path::new("/etc/lobsterd/config.json"),
            Path::new("/srv/b.json"),
        );
        assert_eq!(unit_for_config(dir.path(), ours), None);
        let unit = watch_unit(Path::new("/usr/local/bin/lobsterd"), ours);
        std::fs::write(dir.path().join(WATCH_UNIT), unit).unwrap();
        assert_eq!(
            unit_for_config(dir.path(), ours),
            Some(dir.path().join(WATCH_UNIT))
        );
        assert_eq!(unit_for_config(dir.path(), other), None);
    }
}
