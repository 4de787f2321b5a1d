//! The watchdog's events: what it saw or did, as JSON lines (the CLI prints
//! one object per line, `{"at_ms": .., "event": "<kind>", ..}`).

use std::sync::Arc;

use serde::Serialize;

use super::doctor::RepairOutcome;
use super::policy::HealthState;
use super::repair::Repair;

/// Something the watchdog saw or did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The daemon started.
    Started {
        /// Its pid.
        pid: u32,
        /// Time between ticks.
        interval_ms: u64,
    },
    /// The host was reconciled with the registry.
    Reconciled {
        /// Firewall changes applied.
        firewall_changes: usize,
        /// Routes put back.
        routes_added: Vec<String>,
        /// Routes of tenants that no longer exist, removed.
        routes_removed: Vec<String>,
        /// What could not be reconciled.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        errors: Vec<String>,
    },
    /// A tenant's health state changed.
    StateChange {
        /// The tenant.
        tenant: String,
        /// The state before.
        from: HealthState,
        /// The state now.
        to: HealthState,
        /// The failed checks, if any.
        #[serde(skip_serializing_if = "String::is_empty")]
        failing: String,
    },
    /// Repairs begin.
    RepairStart {
        /// The tenant.
        tenant: String,
        /// Which attempt (1-based).
        attempt: u32,
        /// The repairs, in order.
        repairs: Vec<Repair>,
    },
    /// Repairs ended.
    RepairComplete {
        /// The tenant.
        tenant: String,
        /// Each repair's outcome.
        outcomes: Vec<RepairOutcome>,
    },
    /// The watchdog stopped repairing a tenant; it is marked failed.
    GaveUp {
        /// The tenant.
        tenant: String,
        /// Why.
        reason: String,
    },
    /// The watchdog suspended a tenant (or tried to: it runs on).
    Suspend {
        /// The tenant.
        tenant: String,
        /// Why.
        trigger: Trigger,
        /// Whether it is suspended now.
        ok: bool,
        /// How long it had been idle.
        idle_ms: u64,
        /// Why it failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// How long the suspend took.
        elapsed_ms: u64,
    },
    /// The watchdog resumed a suspended tenant (or tried to).
    Resume {
        /// The tenant.
        tenant: String,
        /// Why.
        trigger: Trigger,
        /// Whether it runs now.
        ok: bool,
        /// Why it failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// How long the resume took.
        elapsed_ms: u64,
    },
    /// Rules and routes of tenants no longer in the registry were removed
    /// (left by a teardown that raced a reconcile, or made by hand).
    Swept {
        /// Tenant ids whose firewall chains were removed.
        rules_removed: Vec<String>,
        /// Tenant names whose routes were removed.
        routes_removed: Vec<String>,
        /// What could not be removed.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        errors: Vec<String>,
    },
    /// A tick could not run (e.g. the registry is unreadable).
    TickFailed {
        /// The error.
        error: String,
    },
    /// A tick ended.
    TickComplete {
        /// Its number (from 1).
        tick: u64,
        /// Tenants checked.
        checked: usize,
        /// How many are healthy (or recovering), degraded, failed.
        healthy: usize,
        /// Degraded tenants.
        degraded: usize,
        /// Failed tenants.
        failed: usize,
        /// Wall time of the tick.
        elapsed_ms: u64,
    },
    /// A suspended tenant is being woken.
    WakeStart {
        /// The tenant.
        tenant: String,
        /// What woke it.
        trigger: Trigger,
    },
    /// A suspended tenant was woken: it runs again.
    Woken {
        /// The tenant.
        tenant: String,
        /// What woke it.
        trigger: Trigger,
        /// From the trigger to running.
        elapsed_ms: u64,
        /// Requests that waited for it (then answered by the workload).
        waiting: usize,
    },
    /// Waking a suspended tenant failed (or timed out); requests that
    /// waited were closed.
    WakeFailed {
        /// The tenant.
        tenant: String,
        /// What tried to wake it.
        trigger: Trigger,
        /// From the trigger to the failure.
        elapsed_ms: u64,
        /// Why.
        error: String,
    },
    /// The daemon is stopping.
    Stopping {
        /// Why.
        reason: String,
    },
}

impl Event {
    /// The tenant the event is about, if any.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Event::StateChange { tenant, .. }
            | Event::RepairStart { tenant, .. }
            | Event::RepairComplete { tenant, .. }
            | Event::GaveUp { tenant, .. }
            | Event::WakeStart { tenant, .. }
            | Event::Woken { tenant, .. }
            | Event::WakeFailed { tenant, .. }
            | Event::Suspend { tenant, .. }
            | Event::Resume { tenant, .. } => Some(tenant),
            _ => None,
        }
    }

    /// A one-line human summary (for `tank`'s last-event column).
    pub fn summary(&self) -> String {
        match self {
            Event::StateChange { from, to, .. } => format!("{from} -> {to}"),
            Event::RepairStart {
                attempt, repairs, ..
            } => format!(
                "repair #{attempt}: {}",
                repairs
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Event::RepairComplete { outcomes, .. } => {
                let ok = outcomes.iter().all(|o| o.ok);
                format!("repair {}", if ok { "done" } else { "failed" })
            }
            Event::GaveUp { reason, .. } => format!("gave up: {reason}"),
            Event::WakeStart { trigger, .. } => format!("waking ({trigger})"),
            Event::Woken {
                trigger,
                elapsed_ms,
                ..
            } => format!("woken ({trigger}) in {elapsed_ms} ms"),
            Event::WakeFailed { trigger, error, .. } => format!("wake ({trigger}) failed: {error}"),
            Event::Suspend { trigger, ok, .. } => {
                format!(
                    "suspend ({trigger}) {}",
                    if *ok { "done" } else { "failed" }
                )
            }
            Event::Resume { trigger, ok, .. } => {
                format!("resume ({trigger}) {}", if *ok { "done" } else { "failed" })
            }
            other => serde_json::to_string(other).unwrap_or_default(),
        }
    }
}

/// What made the watchdog suspend, resume or wake a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A request to its route (through its wake listener).
    Request,
    /// It was idle for its idle time.
    Idle,
    /// Its next scheduled job is near.
    Schedule,
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Trigger::Request => "request",
            Trigger::Idle => "idle",
            Trigger::Schedule => "schedule",
        })
    }
}

/// An event with its time.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// Where events go (the CLI prints them as JSON lines).
pub type EventSink = Arc<dyn Fn(&EventRecord) + Send + Sync>;
