//! The watchdog: checks every tenant that should run on a schedule, with
//! bounded concurrency, keeps each tenant's [`TenantHealth`], repairs
//! through the [`Doctor`], and reports everything as [`Event`]s.
//!
//! Every tick reads the registry afresh and takes each tenant's operation
//! lock before acting (a tenant being evicted or snapshotted is skipped), so
//! it never acts on a stale copy; it writes only single fields of a record
//! (`vm`, `status`, `last_error`), under the registry lock. At start it
//! reconciles the host with the registry (forwarding, firewall, routes);
//! the first tick then brings back every TAP and VM that should run (after
//! a host reboot: all of them). After each tick the state of every tenant
//! is written to `<state_dir>/watch.json` for `tank` and other readers.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::store::{RegistrySnapshot, TenantLock, TenantRecord, TenantStatus};
use crate::tenant::plan;

use super::check::{Check, CheckResult};
use super::doctor::{Doctor, HostView, RepairOutcome};
use super::molt::{failing_summary, should_run};
use super::policy::{Decision, HealthState, Policy, TenantHealth};
use super::repair::{plan as plan_repairs, Repair, RepairPlan};

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
            | Event::GaveUp { tenant, .. } => Some(tenant),
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
            other => serde_json::to_string(other).unwrap_or_default(),
        }
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

/// What the watchdog knows of one tenant (as written to `watch.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantWatch {
    /// The state machine.
    #[serde(flatten)]
    pub health: TenantHealth,
    /// The last check run's results.
    pub checks: Vec<CheckResult>,
    /// When it was last checked (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_ms: Option<u64>,
    /// The last event about it, summarised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event: Option<String>,
    /// When that event happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_ms: Option<u64>,
}

/// The watchdog's state, as written after every tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchStatus {
    /// The daemon's pid.
    pub pid: u32,
    /// When it started (ms since the Unix epoch).
    pub started_ms: u64,
    /// When this was written.
    pub updated_ms: u64,
    /// Ticks run.
    pub tick: u64,
    /// Time between ticks.
    pub interval_ms: u64,
    /// Per tenant.
    pub tenants: BTreeMap<String, TenantWatch>,
}

impl WatchStatus {
    /// The status file of a state directory.
    pub fn path(state_dir: &std::path::Path) -> PathBuf {
        state_dir.join("watch.json")
    }

    /// Reads the status file; `None` if there is none (no watchdog ran).
    pub fn read(state_dir: &std::path::Path) -> Option<WatchStatus> {
        let text = std::fs::read(WatchStatus::path(state_dir)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    fn write(&self, state_dir: &std::path::Path) -> std::io::Result<()> {
        let path = WatchStatus::path(state_dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self)?)?;
        std::fs::rename(&tmp, &path)
    }
}

/// How long a stopping watchdog lets repairs under way finish (below the
/// systemd unit's `TimeoutStopSec=30`).
pub const STOP_GRACE: Duration = Duration::from_secs(20);

/// Where a detached watchdog (`watch -d`) writes its events and log.
pub fn log_path(config: &crate::config::Config) -> PathBuf {
    config.paths.logs_dir.join("watch.log")
}

/// Options of a watchdog.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Run host setup (forwarding, base chains, a running Caddy) before reconciling.
    pub host_setup: bool,
    /// Write `watch.json` after every tick.
    pub write_status: bool,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            host_setup: true,
            write_status: true,
        }
    }
}

/// The watchdog of one host.
pub struct Watchdog {
    doctor: Doctor,
    policy: Policy,
    options: WatchOptions,
    sink: EventSink,
    tenants: Mutex<BTreeMap<String, TenantWatch>>,
    ticks: AtomicU64,
    /// Set once shutdown is requested: no check or repair starts after it.
    stopping: AtomicBool,
    started_ms: u64,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("policy", &self.policy)
            .field("ticks", &self.ticks)
            .finish()
    }
}

/// `snapshot` if nobody wrote the registry since it was read (one `stat`),
/// else a new read. Blocking.
fn fresh_snapshot(
    store: &crate::store::Store,
    snapshot: Arc<RegistrySnapshot>,
) -> Result<Arc<RegistrySnapshot>> {
    Ok(if store.changed_since(&snapshot)? {
        Arc::new(store.snapshot()?)
    } else {
        snapshot
    })
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Watchdog {
    /// A watchdog acting through `doctor`, reporting to `sink`.
    pub fn new(doctor: Doctor, options: WatchOptions, sink: EventSink) -> Watchdog {
        let policy = Policy::from_config(&doctor.host().config().watchdog);
        Watchdog {
            doctor,
            policy,
            options,
            sink,
            tenants: Mutex::new(BTreeMap::new()),
            ticks: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            started_ms: now_ms(),
        }
    }

    fn emit(&self, event: Event) {
        let record = EventRecord {
            at_ms: now_ms(),
            event,
        };
        if let Some(tenant) = record.event.tenant() {
            let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = tenants.get_mut(tenant) {
                t.last_event = Some(record.event.summary());
                t.last_event_ms = Some(record.at_ms);
            }
        }
        (self.sink)(&record);
    }

    /// Runs until `shutdown` completes: reconcile, then a tick every
    /// interval (a tick that overruns delays the next; ticks never overlap).
    ///
    /// A tick in flight when `shutdown` completes starts no further check
    /// or repair but lets the repairs under way finish for up to
    /// [`STOP_GRACE`]: abandoning a VM restart between the launch and the
    /// registry update would leave a VMM the registry does not know (the
    /// launch is bounded by `vmm.ready_timeout_ms`; after the update only
    /// the wait for the guest's agent remains, which may be abandoned).
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let interval = Duration::from_millis(self.doctor.host().config().watchdog.interval_ms);
        self.emit(Event::Started {
            pid: std::process::id(),
            interval_ms: interval.as_millis() as u64,
        });
        tokio::pin!(shutdown);
        // Reconciling applies atomic batches only: it may be abandoned.
        let stop = tokio::select! {
            _ = &mut shutdown => true,
            _ = self.reconcile() => false,
        };
        if !stop {
            loop {
                let started = Instant::now();
                let tick = self.tick();
                tokio::pin!(tick);
                let (result, stop) = tokio::select! {
                    result = &mut tick => (result, false),
                    _ = &mut shutdown => {
                        self.stopping.store(true, Ordering::Relaxed);
                        match tokio::time::timeout(STOP_GRACE, &mut tick).await {
                            Ok(result) => (result, true),
                            // Past the grace only waits for agents remain:
                            // the new VMs are already in the registry.
                            Err(_) => (Ok(()), true),
                        }
                    }
                };
                if let Err(e) = result {
                    self.emit(Event::TickFailed {
                        error: e.chain().to_string(),
                    });
                }
                if stop {
                    break;
                }
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep_until((started + interval).into()) => {}
                }
            }
        }
        self.emit(Event::Stopping {
            reason: "shutdown requested".into(),
        });
        Ok(())
    }

    /// Makes the host match the registry: host setup (if asked), the whole
    /// firewall (missing rules restored, stale tenants' removed) and the
    /// proxy's routes.
    pub async fn reconcile(&self) {
        let host = self.doctor.host();
        let services = self.doctor.services();
        let mut errors = Vec::new();
        if self.options.host_setup {
            if let Err(e) = crate::host::setup(host.config()).await {
                errors.push(format!("host setup: {}", e.chain()));
            }
        }
        let registry = match crate::host::blocking({
            let store = host.store().clone();
            move || Ok(store.read()?)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("registry: {}", e.chain()));
                self.emit(Event::Reconciled {
                    firewall_changes: 0,
                    routes_added: vec![],
                    routes_removed: vec![],
                    errors,
                });
                return;
            }
        };
        // Every tenant in the registry keeps its rules (one being created by
        // another process included); unknown tenants lose theirs, and so do
        // tenants being evicted: evict is removing them, and restoring them
        // behind its back would leak them once their record is released.
        let nets: Vec<_> = registry
            .tenants
            .values()
            .filter(|r| r.status != TenantStatus::Evicting)
            .filter_map(|r| plan::tenant_net(r).ok())
            .collect();
        let firewall = services.firewall.clone();
        let firewall_changes =
            match crate::host::blocking(move || Ok(firewall.reconcile(&nets)?)).await {
                Ok(n) => n,
                Err(e) => {
                    errors.push(format!("firewall: {}", e.chain()));
                    0
                }
            };
        let routes: Vec<_> = registry
            .tenants
            .values()
            .filter(|r| r.status != TenantStatus::Evicting)
            .filter_map(|r| plan::route(host.config(), r).ok())
            .collect();
        let (routes_added, routes_removed) = match services.routes.reconcile(&routes).await {
            Ok(report) => (
                report.added.into_iter().chain(report.replaced).collect(),
                report.removed,
            ),
            Err(e) => {
                errors.push(format!("routes: {}", crate::Error::from(e).chain()));
                (vec![], vec![])
            }
        };
        self.emit(Event::Reconciled {
            firewall_changes,
            routes_added,
            routes_removed,
            errors,
        });
    }

    /// One tick: reads the registry, checks every tenant that should run
    /// (at most `max_concurrency` at once), repairs or gives up as the
    /// state machine decides, then writes the status file.
    pub async fn tick(&self) -> Result<()> {
        let started = Instant::now();
        let host = self.doctor.host();
        let snapshot = crate::host::blocking({
            let store = host.store().clone();
            move || Ok(store.snapshot()?)
        })
        .await?;
        let registry = &snapshot.registry;
        {
            let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
            tenants.retain(|name, _| registry.tenants.contains_key(name));
            for name in registry.tenants.keys() {
                tenants.entry(name.clone()).or_default();
            }
        }
        let mut view = self.doctor.survey().await;
        if view.firewall.is_err() || view.routes.is_err() {
            // The host lost what every tenant needs (the proxy is down, the
            // ruleset unreadable): set the host up again as a whole rather
            // than tenant by tenant, then look again.
            self.reconcile().await;
            view = self.doctor.survey().await;
        }
        let names: Vec<String> = registry
            .tenants
            .values()
            .filter(|r| should_run(r.status) || r.status == TenantStatus::Suspended)
            .map(|r| r.name.clone())
            .collect();
        let checked = names.len();
        let concurrency = host.config().watchdog.max_concurrency;
        let latest = Mutex::new(Arc::new(snapshot));
        self.sweep(&view, &latest).await?;
        futures_util::stream::iter(names)
            .for_each_concurrent(concurrency, |name| {
                let view = &view;
                let latest = &latest;
                async move {
                    if self.stopping.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Err(e) = self.visit(view, latest, &name).await {
                        tracing::warn!(tenant = %name, error = %e.chain(), "health check failed");
                    }
                }
            })
            .await;
        let tick = self.ticks.fetch_add(1, Ordering::Relaxed) + 1;
        let (mut healthy, mut degraded, mut failed) = (0, 0, 0);
        for t in self
            .tenants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            match t.health.state {
                HealthState::Healthy | HealthState::Recovering => healthy += 1,
                HealthState::Degraded => degraded += 1,
                HealthState::Failed => failed += 1,
                HealthState::Unknown | HealthState::Suspended => {}
            }
        }
        if self.options.write_status {
            let status = self.status();
            let dir = host.config().paths.state_dir.clone();
            crate::host::blocking(move || {
                status.write(&dir).map_err(|source| {
                    crate::tenant::TenantError::Io {
                        context: "cannot write watchdog status",
                        path: WatchStatus::path(&dir),
                        source,
                    }
                    .into()
                })
            })
            .await?;
        }
        self.emit(Event::TickComplete {
            tick,
            checked,
            healthy,
            degraded,
            failed,
            elapsed_ms: started.elapsed().as_millis() as u64,
        });
        Ok(())
    }

    /// Removes the rules and routes `view` shows for tenants that are not
    /// in the registry. The registry is looked at after the survey (re-read
    /// only if written since `latest`): a tenant is
    /// in the registry before it gets rules or a route and leaves it only
    /// after its teardown, so what the survey saw of a tenant absent now is
    /// left over.
    async fn sweep(&self, view: &HostView, latest: &Mutex<Arc<RegistrySnapshot>>) -> Result<()> {
        let store = self.doctor.host().store().clone();
        let snapshot = latest.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let fresh = crate::host::blocking(move || fresh_snapshot(&store, snapshot)).await?;
        *latest.lock().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
        let registry = &fresh.registry;
        let ids: std::collections::HashSet<&str> =
            registry.tenants.values().map(|r| r.id.as_str()).collect();
        let stale_rules: Vec<String> = match &view.firewall {
            Ok(index) => index
                .tenant_ids()
                .filter(|id| !ids.contains(id))
                .map(str::to_owned)
                .collect(),
            Err(_) => Vec::new(),
        };
        let stale_routes: Vec<String> = match &view.routes {
            Ok(routes) => routes
                .iter()
                .filter(|r| !registry.tenants.contains_key(&r.name))
                .map(|r| r.name.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        if stale_rules.is_empty() && stale_routes.is_empty() {
            return Ok(());
        }
        let services = self.doctor.services();
        let mut errors = Vec::new();
        let mut rules_removed = Vec::new();
        for id in stale_rules {
            let firewall = services.firewall.clone();
            let target = id.clone();
            match crate::host::blocking(move || Ok(firewall.remove_tenant_id(&target)?)).await {
                Ok(()) => rules_removed.push(id),
                Err(e) => errors.push(format!("rules of {id}: {}", e.chain())),
            }
        }
        let mut routes_removed = Vec::new();
        for name in stale_routes {
            match services.routes.remove_route(&name).await {
                Ok(_) => routes_removed.push(name),
                Err(e) => errors.push(format!(
                    "route of {name}: {}",
                    crate::Error::from(e).chain()
                )),
            }
        }
        self.emit(Event::Swept {
            rules_removed,
            routes_removed,
            errors,
        });
        Ok(())
    }

    /// A snapshot of what the watchdog knows.
    pub fn status(&self) -> WatchStatus {
        WatchStatus {
            pid: std::process::id(),
            started_ms: self.started_ms,
            updated_ms: now_ms(),
            tick: self.ticks.load(Ordering::Relaxed),
            interval_ms: self.doctor.host().config().watchdog.interval_ms,
            tenants: self
                .tenants
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Takes the tenant's operation lock (`None`: another operation holds
    /// it) and reads its record afresh under it: from `latest` (the newest
    /// registry this tick read) when nobody wrote since, else from a new
    /// read that becomes `latest`. So a tick parses the registry once plus
    /// once per write, not once per tenant.
    async fn lock_and_read(
        &self,
        latest: &Mutex<Arc<RegistrySnapshot>>,
        name: &str,
    ) -> Result<Option<(TenantLock, Option<TenantRecord>)>> {
        let store = self.doctor.host().store().clone();
        let tenant = name.to_owned();
        let snapshot = latest.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (lock, fresh) = crate::host::blocking(move || {
            let Some(lock) = store.lock_tenant(&tenant, Duration::ZERO)? else {
                return Ok((None, None));
            };
            Ok((Some(lock), Some(fresh_snapshot(&store, snapshot)?)))
        })
        .await?;
        let (Some(lock), Some(fresh)) = (lock, fresh) else {
            return Ok(None);
        };
        let record = fresh.registry.tenants.get(name).cloned();
        let mut latest = latest.lock().unwrap_or_else(|p| p.into_inner());
        if !Arc::ptr_eq(&latest, &fresh) {
            *latest = fresh;
        }
        Ok(Some((lock, record)))
    }

    /// Checks one tenant and acts on the state machine's decision.
    async fn visit(
        &self,
        view: &HostView,
        latest: &Mutex<Arc<RegistrySnapshot>>,
        name: &str,
    ) -> Result<()> {
        let host = self.doctor.host();
        let store = host.store().clone();
        let Some((lock, record)) = self.lock_and_read(latest, name).await? else {
            tracing::debug!(tenant = %name, "busy (another operation holds it); skipped this tick");
            return Ok(());
        };
        // Fresh under the lock: never act on what the tick read earlier.
        let Some(record) = record else {
            return Ok(());
        };
        let before = self.health(name).state;
        if record.status == TenantStatus::Suspended {
            self.update(name, |t| t.health.suspend());
            self.state_changed(name, before, "");
            return Ok(());
        }
        if !should_run(record.status) {
            return Ok(());
        }
        if record.status == TenantStatus::Failed && before != HealthState::Failed {
            self.update(name, |t| t.health.fail());
        }
        // Given up on, yet `running` in the registry: an operator put it
        // back (e.g. molt). It is in the watchdog's care again, count reset.
        if record.status == TenantStatus::Running && before == HealthState::Failed {
            self.update(name, |t| t.health = TenantHealth::default());
        }
        let (observation, results) = self.doctor.examine(view, &record).await;
        let ok = results.iter().all(CheckResult::passed);
        let failing = failing_summary(&results);
        let now = now_ms();
        let host_only = !ok
            && results
                .iter()
                .all(|r| r.passed() || host_wide(view, r.check));
        let decision = self.update(name, |t| {
            t.checks = results.clone();
            t.checked_ms = Some(now);
            if host_only {
                t.health.host_failure()
            } else {
                t.health.observe(&self.policy, ok, now)
            }
        });
        let mid = self.health(name).state;
        self.state_changed(name, before, &failing);
        match decision {
            Decision::Wait => {}
            Decision::GiveUp => {
                let attempts = self.health(name).attempts;
                self.give_up(
                    &record,
                    format!("still failing after {attempts} repairs: {failing}"),
                )
                .await?;
            }
            Decision::Repair => match plan_repairs(&observation, &results) {
                RepairPlan::Unrepairable(why) => {
                    self.update(name, |t| t.health.fail());
                    self.state_changed(name, mid, &failing);
                    self.give_up(&record, why).await?;
                }
                RepairPlan::Repairs(_) if self.stopping.load(Ordering::Relaxed) => {}
                RepairPlan::Repairs(repairs) => {
                    let attempt = self.update(name, |t| {
                        t.health.repaired(now_ms());
                        t.health.attempts
                    });
                    self.emit(Event::RepairStart {
                        tenant: name.into(),
                        attempt,
                        repairs: repairs.clone(),
                    });
                    let outcomes = self.doctor.treat(&record, &repairs).await;
                    self.emit(Event::RepairComplete {
                        tenant: name.into(),
                        outcomes,
                    });
                }
            },
        }
        if ok && record.status == TenantStatus::Failed {
            let name = name.to_owned();
            crate::host::blocking(move || {
                Ok(store
                    .modify(&name, |r| {
                        r.status = TenantStatus::Running;
                        r.last_error = None;
                    })
                    .map(|_| ())?)
            })
            .await?;
        }
        drop(lock);
        Ok(())
    }

    async fn give_up(&self, record: &TenantRecord, reason: String) -> Result<()> {
        let store = self.doctor.host().store().clone();
        let name = record.name.clone();
        let why = reason.clone();
        crate::host::blocking(move || {
            Ok(store
                .modify(&name, |r| {
                    r.status = TenantStatus::Failed;
                    r.last_error = Some(why);
                })
                .map(|_| ())?)
        })
        .await?;
        self.emit(Event::GaveUp {
            tenant: record.name.clone(),
            reason,
        });
        Ok(())
    }

    fn health(&self, name: &str) -> TenantHealth {
        self.tenants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|t| t.health.clone())
            .unwrap_or_default()
    }

    fn update<T>(&self, name: &str, change: impl FnOnce(&mut TenantWatch) -> T) -> T {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        change(tenants.entry(name.to_owned()).or_default())
    }

    fn state_changed(&self, name: &str, from: HealthState, failing: &str) {
        let to = self.health(name).state;
        if to != from {
            self.emit(Event::StateChange {
                tenant: name.into(),
                from,
                to,
                failing: if to == HealthState::Healthy {
                    String::new()
                } else {
                    failing.to_owned()
                },
            });
        }
    }
}

/// Whether `check` failed because the host-wide read it depends on failed
/// (no tenant repair can fix that).
fn host_wide(view: &HostView, check: Check) -> bool {
    match check {
        Check::Firewall => view.firewall.is_err(),
        Check::Route => view.routes.is_err(),
        _ => false,
    }
}
