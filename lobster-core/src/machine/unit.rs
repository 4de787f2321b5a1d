//! The systemd units of lobster's daemons, so a rebooted host brings its
//! tenants and its API back: the watchdog (`lobsterd watch`) and the HTTP
//! API (`lobsterd serve`). `init` installs and enables them where systemd
//! runs (and records them, [`HostChanges`]); `uninit` stops, disables and
//! removes them.
//!
//! `KillMode=process`: stopping or restarting a daemon signals only the
//! daemon itself, never the VMMs it started (a repair or a spawn) that
//! live in its cgroup.

use std::path::Path;
use std::time::Duration;

use super::{HostChanges, MachineError};
use crate::error::Result;

/// A daemon of lobster that systemd runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    /// `lobsterd watch`: health checks, repairs, idle suspends.
    Watch,
    /// `lobsterd serve`: the HTTP API.
    Api,
}

impl Daemon {
    /// Every daemon, in the order `init` installs them.
    pub const ALL: [Daemon; 2] = [Daemon::Watch, Daemon::Api];

    /// The unit's file name.
    pub fn unit_name(self) -> &'static str {
        match self {
            Daemon::Watch => WATCH_UNIT,
            Daemon::Api => API_UNIT,
        }
    }

    /// Its name in reports: `init --json`'s key, `uninit`'s step.
    pub fn report_key(self) -> &'static str {
        match self {
            Daemon::Watch => "watch_unit",
            Daemon::Api => "api_unit",
        }
    }

    /// The `lobsterd` subcommand it runs.
    fn command(self) -> &'static str {
        match self {
            Daemon::Watch => "watch",
            Daemon::Api => "serve",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Daemon::Watch => "lobster watchdog: health checks and repairs of microVM tenants",
            Daemon::Api => "lobster HTTP API: remote control of microVM tenants",
        }
    }

    /// How long systemd waits for it to stop: the API finishes its running
    /// operations first (a spawn on a slow host takes minutes), and one
    /// cut short would leave its tenant for `recover`.
    fn stop_timeout_s(self) -> u32 {
        match self {
            Daemon::Watch => 45,
            Daemon::Api => 900,
        }
    }

    /// `notify`: the watchdog says when it is ready (`sd_notify`).
    fn service_type(self) -> &'static str {
        match self {
            Daemon::Watch => "notify",
            Daemon::Api => "exec",
        }
    }
}

/// The watchdog's unit file name.
pub const WATCH_UNIT: &str = "lobsterd-watch.service";

/// The HTTP API's unit file name.
pub const API_UNIT: &str = "lobsterd-api.service";

/// Where systemd runs, this directory exists.
const SYSTEMD_RUNTIME: &str = "/run/systemd/system";

/// The unit text of `daemon` for `lobsterd` at `exe` with configuration
/// `config`.
pub fn unit_text(daemon: Daemon, exe: &Path, config: &Path) -> String {
    format!(
        "[Unit]
Description={description}
After=network-online.target caddy.service
Wants=network-online.target

[Service]
Type={kind}
ExecStart={exe} --config {config} {command}
Restart=on-failure
RestartSec=5
KillMode=process
TimeoutStopSec={stop}

[Install]
WantedBy=multi-user.target
",
        description = daemon.description(),
        kind = daemon.service_type(),
        exe = exe.display(),
        config = config.display(),
        command = daemon.command(),
        stop = daemon.stop_timeout_s(),
    )
}

/// Whether `path` can stand in a unit file as it is: absolute, and only
/// characters systemd neither splits, expands nor escapes.
fn unit_safe(path: &Path) -> bool {
    path.to_str().is_some_and(|p| {
        p.starts_with('/')
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._+-".contains(&b))
    })
}

/// What [`install_unit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitAction {
    /// Written (or rewritten) and enabled.
    Installed,
    /// Already in place; enabled.
    Unchanged,
    /// systemd does not run here: start the daemon by hand (`lobsterd
    /// watch -d`, `lobsterd serve`).
    NoSystemd,
    /// `init` runs in another network namespace than systemd (a test or a
    /// demo): a unit would run the daemon against the host's network.
    OtherNetns,
}

/// Writes `daemon`'s unit into `unit_dir` (normally `/etc/systemd/system`),
/// records it in `state_dir`'s [`HostChanges`], and enables and starts it,
/// where systemd runs.
pub async fn install_unit(
    daemon: Daemon,
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
    for (field, path) in [("lobsterd executable", exe), ("config path", config)] {
        if !unit_safe(path) {
            return Err(MachineError::UnitPath {
                field,
                path: path.to_path_buf(),
            }
            .into());
        }
    }
    let text = unit_text(daemon, exe, config);
    let path = unit_dir.join(daemon.unit_name());
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
    systemctl(&["enable", "--now", daemon.unit_name()]).await?;
    Ok(action)
}

/// Where `init` installs the unit.
pub(super) const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";

/// `daemon`'s unit in `unit_dir` if it runs with configuration file
/// `config` (absolute): one installed before installs were recorded.
pub(super) fn unit_for_config(
    daemon: Daemon,
    unit_dir: &Path,
    config: &Path,
) -> Option<std::path::PathBuf> {
    let path = unit_dir.join(daemon.unit_name());
    let text = std::fs::read_to_string(&path).ok()?;
    let exec = format!(" --config {} {}", config.display(), daemon.command());
    text.lines()
        .any(|l| l.starts_with("ExecStart=") && l.ends_with(&exec))
        .then_some(path)
}

/// Stops, disables and removes the unit file at `path` (systemctl only
/// where systemd runs). Returns false if there was no file.
pub(super) async fn remove_unit(path: &Path) -> Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let systemd = Path::new(SYSTEMD_RUNTIME).is_dir();
    if systemd {
        systemctl(&["disable", "--now", &name]).await?;
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
        path: what.clone().into(),
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
    fn each_unit_runs_its_command_with_the_config_and_spares_the_vms() {
        for (daemon, command, kind) in [
            (Daemon::Watch, "watch", "notify"),
            (Daemon::Api, "serve", "exec"),
        ] {
            let unit = unit_text(
                daemon,
                Path::new("/usr/local/bin/lobsterd"),
                Path::new("/etc/lobsterd/config.json"),
            );
            assert!(unit.contains(&format!(
                "\nExecStart=/usr/local/bin/lobsterd --config /etc/lobsterd/config.json {command}\n"
            )));
            assert!(unit.contains(&format!("\nType={kind}\n")), "{unit}");
            assert!(
                unit.contains("\nKillMode=process\n"),
                "VMMs must survive a daemon restart"
            );
            assert!(unit.contains("\nRestart=on-failure\n"));
            let stop = if daemon == Daemon::Api { 900 } else { 45 };
            assert!(
                unit.contains(&format!("\nTimeoutStopSec={stop}\n")),
                "{unit}"
            );
            assert!(unit.contains("\nWantedBy=multi-user.target\n"));
        }
    }

    #[test]
    fn only_plain_absolute_paths_go_into_a_unit() {
        for good in [
            "/usr/local/bin/lobsterd",
            "/etc/lobsterd/config.json",
            "/srv/a_b-c+1",
        ] {
            assert!(unit_safe(Path::new(good)), "{good}");
        }
        for bad in [
            "relative/config.json",
            "/etc/my config.json",
            "/etc/a\nExecStartPre=/bin/sh",
            "/x/%h",
            "/x/$HOME",
        ] {
            assert!(!unit_safe(Path::new(bad)), "{bad:?}");
        }
    }

    #[test]
    fn an_unrecorded_unit_is_found_only_when_it_runs_this_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let (ours, other) = (
            Path::new("/etc/lobsterd/config.json"),
            Path::new("/srv/b.json"),
        );
        for daemon in Daemon::ALL {
            assert_eq!(unit_for_config(daemon, dir.path(), ours), None);
            let unit = unit_text(daemon, Path::new("/usr/local/bin/lobsterd"), ours);
            std::fs::write(dir.path().join(daemon.unit_name()), unit).unwrap();
            assert_eq!(
                unit_for_config(daemon, dir.path(), ours),
                Some(dir.path().join(daemon.unit_name()))
            );
            assert_eq!(unit_for_config(daemon, dir.path(), other), None);
        }
        // The watchdog's unit is never taken for the API's.
        std::fs::remove_file(dir.path().join(API_UNIT)).unwrap();
        assert_eq!(unit_for_config(Daemon::Api, dir.path(), ours), None);
    }
}
