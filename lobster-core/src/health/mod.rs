//! Health: the checks of a tenant, the repairs that fix what failed, the
//! per-tenant state machine and the watchdog that runs them on a schedule.
//!
//! - [`check`]: what is observed ([`Observation`]) becomes one verdict per
//!   [`Check`] (pure);
//! - [`repair`]: failed checks become [`Repair`]s in dependency order (pure);
//! - [`policy`]: the state machine, backoff, give-up and cooldown (pure);
//! - [`idle`]: when to suspend an idle tenant and wake a suspended one (pure);
//! - [`Doctor`]: observes the host (through the system seams and
//!   [`GuestOps`]) and carries out repairs;
//! - `molt` (one pass, [`crate::Host::molt`]) and [`Watchdog`] (a daemon)
//!   drive the doctor; the watchdog reports [`Event`]s (JSON lines) and
//!   writes its [`WatchStatus`] (`watch.json`); [`Overview`] is the
//!   dashboard snapshot;
//! - [`WakeListeners`]: the watchdog's listeners that resume a suspended
//!   tenant when a request arrives for it;
//! - `FakeGuests` (feature `testing`): simulated VMs and agents for tests.

pub mod check;
mod daemon;
mod doctor;
mod error;
mod events;
#[cfg(any(test, feature = "testing"))]
mod fake;
pub mod idle;
mod log_follow;
mod molt;
mod overview;
pub mod policy;
mod probe;
mod ready;
pub mod repair;
mod status;
mod wake;
mod watch;

pub use check::{Check, CheckResult, Observation, Verdict};
pub use daemon::{claim_watchdog, detach, serve_watchdog, Detached, READY_TIMEOUT};
pub use doctor::{Doctor, HostView, RepairOutcome};
pub use error::HealthError;
pub use events::{Event, EventRecord, EventSink, Trigger};
#[cfg(any(test, feature = "testing"))]
pub use fake::{FakeGuest, FakeGuests, FakeVm, Gate};
pub(crate) use log_follow::log_tail;
pub use log_follow::{follow_watch_log, LogFileFollow};
pub(crate) use molt::molt;
pub use molt::{molt_with, MoltReport};
pub(crate) use overview::overview;
pub use overview::{Overview, TenantOverview, WatchdogInfo};
pub use policy::{HealthState, Policy, TenantHealth};
pub use probe::{GuestOps, SystemGuests};
pub use ready::{notify_ready, NOTIFY_SOCKET};
pub use repair::{Repair, RepairPlan};
pub use status::{RepairCount, TenantWatch, WatchStatus, STATUS_SCHEMA};
pub use wake::{WakeListeners, GATEWAY_CONNECT_TIMEOUT, WAKE_TIMEOUT};
pub use watch::{log_path as watch_log_path, WatchOptions, Watchdog};
