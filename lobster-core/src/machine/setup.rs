//! Host-wide setup that `init` performs (and that is safe to repeat): IPv4
//! forwarding, the firewall's base chains and hooks, and a running Caddy
//! with lobster's HTTP server. Tenant routes and rules are never touched.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::error::Result;
use crate::network::firewall::{Firewall, FirewallSettings, Iptables};
use crate::proxy::{prepare, Caddy, CaddyStart, ProxySettings, SpawnOptions};

/// What host setup found and did.
#[derive(Debug, Clone, Serialize)]
pub struct SetupReport {
    /// IPv4 forwarding is on.
    pub ip_forwarding: bool,
    /// Firewall base changes applied (0: already in place).
    pub firewall_changes: usize,
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
    crate::network::enable_ip_forwarding()?;
    let settings = FirewallSettings::from_config(&config.network)?;
    let firewall_changes = crate::base::blocking(move || {
        let firewall = Firewall::new(Iptables::new(Duration::from_secs(30)), settings);
        firewall.ensure_base().map(|report| report.changes)
    })
    .await?;
    let caddy = Caddy::new(ProxySettings::from_config(config));
    let options = SpawnOptions {
        binary: "caddy".into(),
        state_dir: config.paths.state_dir.join("caddy"),
        log_file: config.paths.logs_dir.join("caddy.log"),
        ready_timeout: Duration::from_secs(15),
        use_systemd: true,
    };
    let start = prepare(&caddy, &options).await?;
    let (caddy, caddy_pid) = match start {
        CaddyStart::AlreadyRunning => ("already_running", None),
        CaddyStart::Systemd => ("systemd", None),
        // The child runs in its own process group and outlives us.
        CaddyStart::Spawned(child) => ("spawned", Some(child.id())),
    };
    Ok(SetupReport {
        ip_forwarding: true,
        firewall_changes,
        caddy,
        caddy_pid,
        caddy_log: options.log_file,
    })
}
