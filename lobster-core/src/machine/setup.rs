//! Host-wide setup that `init` performs (and that is safe to repeat): IPv4
//! forwarding, the firewall's base chains and hooks, Caddy's system user,
//! and a running Caddy with lobster's HTTP server. Tenant routes and rules
//! are never touched. What it changes on the host is recorded
//! ([`HostChanges`]) for `uninit`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::error::Result;
use crate::network::firewall::{Firewall, FirewallSettings, Iptables};
use crate::proxy::{prepare, Caddy, CaddyStart, ProxySettings, SpawnOptions};
use crate::sys::identity::lookup_user;

use super::{HostChanges, MachineError};
use crate::vmm::VmIdentity;

/// What host setup found and did.
#[derive(Debug, Clone, Serialize)]
pub struct SetupReport {
    /// IPv4 forwarding is on.
    pub ip_forwarding: bool,
    /// Firewall base changes applied (0: already in place).
    pub firewall_changes: usize,
    /// Caddy's system user (`proxy.user`) was created now.
    pub caddy_user_created: bool,
    /// How Caddy came to answer: `already_running`, `systemd`, or `spawned`.
    pub caddy: &'static str,
    /// The pid of a Caddy lobster started itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caddy_pid: Option<u32>,
    /// Caddy's output, when lobster started it.
    pub caddy_log: PathBuf,
}

/// Runs host setup for `config` in the caller's network namespace.
pub async fn setup(config: &Config) -> Result<SetupReport> {
    let state_dir = &config.paths.state_dir;
    if crate::network::enable_ip_forwarding()? {
        HostChanges::update(state_dir, |c| c.ip_forwarding = true)?;
    }
    let settings = FirewallSettings::from_config(&config.network)?;
    let firewall_changes = crate::base::blocking(move || {
        let firewall = Firewall::new(Iptables::new(Duration::from_secs(30)), settings);
        firewall.ensure_base().map(|report| report.changes)
    })
    .await?;
    let caddy_user_created =
        ensure_system_user(&config.proxy.user, &config.proxy.caddy_dir).await?;
    if caddy_user_created {
        HostChanges::update(state_dir, |c| {
            c.caddy_user = Some(config.proxy.user.clone())
        })?;
    }
    let caddy = Caddy::new(ProxySettings::from_config(config));
    let options = SpawnOptions::from_config(config);
    let start = prepare(&caddy, &options).await?;
    let (caddy, caddy_pid) = match start {
        CaddyStart::AlreadyRunning => ("already_running", None),
        CaddyStart::Systemd => ("systemd", None),
        // The child runs in its own process group and outlives us.
        CaddyStart::Spawned(child) => ("spawned", Some(child.id())),
    };
    if let Some(pid) = caddy_pid {
        let identity = VmIdentity::of(pid as i32).map_err(|source| MachineError::Io {
            context: "cannot read the identity of the caddy started, pid",
            path: pid.to_string().into(),
            source,
        })?;
        HostChanges::update(state_dir, |c| c.caddy = Some(identity))?;
    }
    Ok(SetupReport {
        ip_forwarding: true,
        firewall_changes,
        caddy_user_created,
        caddy,
        caddy_pid,
        caddy_log: options.log_file,
    })
}

/// Creates `user` as a system user (its own group, no login shell, home
/// `home` not created) unless it exists. Returns true if it created it.
pub async fn ensure_system_user(user: &str, home: &std::path::Path) -> Result<bool, MachineError> {
    let io = |source| MachineError::Io {
        context: "cannot create system user",
        path: PathBuf::from(user),
        source,
    };
    if lookup_user(user).map_err(io)?.is_some() {
        return Ok(false);
    }
    let mut useradd = tokio::process::Command::new("useradd");
    useradd
        .args(["--system", "--user-group", "--no-create-home"])
        .args(["--shell", "/usr/sbin/nologin", "--home-dir"])
        .arg(home)
        .arg(user)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), useradd.output())
        .await
        .map_err(|_| io(std::io::ErrorKind::TimedOut.into()))?
        .map_err(io)?;
    if !out.status.success() {
        return Err(io(std::io::Error::other(format!(
            "useradd exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))));
    }
    Ok(true)
}
