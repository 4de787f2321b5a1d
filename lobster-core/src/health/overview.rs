//! One snapshot of every tenant for dashboards (`tank`): the registry, what
//! the watchdog last wrote (`watch.json`) and the VMM processes as `/proc`
//! shows them. Reads only; cheap enough to refresh every second.

use std::net::Ipv4Addr;

use serde::Serialize;

use crate::context::Context;
use crate::error::Result;
use crate::store::TenantStatus;

use super::check::CheckResult;
use super::policy::HealthState;
use super::status::WatchStatus;

/// The watchdog as seen from outside.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WatchdogInfo {
    /// Its pid.
    pub pid: u32,
    /// Whether that process still runs.
    pub alive: bool,
    /// Ticks it has run.
    pub tick: u64,
    /// When it last wrote its status (ms since the Unix epoch).
    pub updated_ms: u64,
    /// Repairs it carried out since it started, by repair name.
    pub repairs: std::collections::BTreeMap<String, super::RepairCount>,
}

/// One dashboard row.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantOverview {
    /// The tenant.
    pub name: String,
    /// Registry status.
    pub status: TenantStatus,
    /// The watchdog's state (`None`: no watchdog has checked it).
    pub state: Option<HealthState>,
    /// `ok`, the failing checks, or `-` when unchecked.
    pub health: String,
    /// The guest address.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Ipv4))]
    pub ip: Ipv4Addr,
    /// The VMM pid, while it runs.
    pub pid: Option<i32>,
    /// Virtual CPUs.
    pub vcpus: u8,
    /// Configured guest memory.
    pub memory_mib: u32,
    /// Resident memory of the VMM process.
    pub memory_used_mib: Option<u64>,
    /// Seconds since the VMM started.
    pub uptime_s: Option<u64>,
    /// The watchdog's last event about it.
    pub last_event: Option<String>,
    /// When that happened (ms since the Unix epoch).
    pub last_event_ms: Option<u64>,
}

/// Every tenant, sorted by name, with the watchdog's view.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Overview {
    /// When this was taken (ms since the Unix epoch).
    pub taken_ms: u64,
    /// The watchdog, if one has written its status.
    pub watchdog: Option<WatchdogInfo>,
    /// The tenants.
    pub tenants: Vec<TenantOverview>,
}

/// Takes a snapshot; blocking (files and `/proc`).
pub(crate) fn overview(context: &Context) -> Result<Overview> {
    let registry = context.store().read()?;
    let watch = WatchStatus::read(&context.config().paths.state_dir);
    let watchdog = watch.as_ref().map(|w| WatchdogInfo {
        pid: w.pid,
        alive: std::path::Path::new(&format!("/proc/{}", w.pid)).exists(),
        tick: w.tick,
        updated_ms: w.updated_ms,
        repairs: w.repairs.clone(),
    });
    let uptime = system_uptime_s();
    let ticks = clock_ticks();
    let tenants = registry
        .tenants
        .into_values()
        .map(|r| {
            let seen = watch.as_ref().and_then(|w| w.tenants.get(&r.name));
            let vm = r.vm.filter(|vm| vm.identity.is_alive());
            let pid = vm.map(|vm| vm.identity.pid);
            TenantOverview {
                state: seen.map(|s| s.health.state),
                health: seen.map_or_else(|| "-".to_owned(), |s| health_text(&s.checks)),
                ip: r.allocation.guest_ip,
                vcpus: r.resources.vcpus,
                memory_mib: r.resources.memory_mib,
                memory_used_mib: pid.and_then(rss_mib),
                uptime_s: vm.and_then(|vm| {
                    let started = vm.identity.start_time / ticks.max(1);
                    uptime.map(|up| up.saturating_sub(started))
                }),
                pid,
                last_event: seen.and_then(|s| s.last_event.clone()),
                last_event_ms: seen.and_then(|s| s.last_event_ms),
                status: r.status,
                name: r.name,
            }
        })
        .collect();
    Ok(Overview {
        taken_ms: crate::base::unix_ms(),
        watchdog,
        tenants,
    })
}

fn health_text(checks: &[CheckResult]) -> String {
    if checks.is_empty() {
        return "-".into();
    }
    let failing: Vec<&str> = checks
        .iter()
        .filter(|c| !c.passed())
        .map(|c| c.check.as_str())
        .collect();
    if failing.is_empty() {
        "ok".into()
    } else {
        failing.join(",")
    }
}

fn rss_mib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}

fn system_uptime_s() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(secs as u64)
}

fn clock_ticks() -> u64 {
    rustix::param::clock_ticks_per_second()
}
