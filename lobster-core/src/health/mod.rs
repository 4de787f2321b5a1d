//! Health: the checks of a tenant, the repairs that fix what failed, the
//! per-tenant state machine and the watchdog that runs them on a schedule.
//!
//! - [`check`]: what is observed ([`Observation`]) becomes one verdict per
//!   [`Check`] (pure);
//! - [`repair`]: failed checks become [`Repair`]s in dependency order (pure);
//! - [`policy`]: the state machine, backoff, give-up and cooldown (pure);
//! - [`Doctor`]: observes the host (through the system seams and
//!   [`GuestOps`]) and carries out repairs;
//! - `molt` (one pass, [`crate::Host::molt`]) and [`Watchdog`] (a daemon)
//!   drive the doctor; [`Overview`] is the dashboard snapshot.

pub mod check;
mod doctor;
mod molt;
mod overview;
pub mod policy;
mod probe;
pub mod repair;
mod watch;

pub use check::{Check, CheckResult, Observation, Verdict};
pub use doctor::{Doctor, HostView, RepairOutcome};
pub(crate) use molt::molt;
pub use molt::MoltReport;
pub(crate) use overview::overview;
pub use overview::{Overview, TenantOverview, WatchdogInfo};
pub use policy::{HealthState, Policy, TenantHealth};
pub use probe::{GuestOps, SystemGuests};
pub use repair::{Repair, RepairPlan};
pub(crate) use watch::log_tail;
pub use watch::{
    log_path as watch_log_path, Event, EventRecord, EventSink, TenantWatch, WatchOptions,
    WatchStatus, Watchdog,
};
