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
//! Every tick also keeps a wake listener on each suspended tenant's route
//! ([`WakeListeners`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::base::{blocking, unix_ms};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::{RegistrySnapshot, Store, TenantLock, TenantRecord, TenantStatus};
use crate::tenant::plan;

use super::check::{Check, CheckResult};
use super::doctor::{Doctor, HostView, RepairOutcome};
use super::events::{Event, EventRecord, EventSink, Trigger};
use super::idle::{IdleDecision, IdlePolicy, IdleTracker, Sighting};
use super::molt::{failing_summary, should_run};
use super::policy::{Decision, HealthState, Policy, TenantHealth};
use super::repair::{plan as plan_repairs, RepairPlan};
use super::status::{RepairCount, TenantWatch, WatchStatus};
use super::wake::WakeListeners;
use super::HealthError;

/// How long a stopping watchdog lets repairs under way finish (below the
/// systemd unit's `TimeoutStopSec=30`).
pub const STOP_GRACE: Duration = Duration::from_secs(20);

/// Where a detached watchdog (`watch -d`) writes its events and log.
pub fn log_path(config: &Config) -> PathBuf {
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
    idle_policy: IdlePolicy,
    /// Idle bookkeeping by tenant (see [`super::idle`]).
    idle: Mutex<BTreeMap<String, IdleTracker>>,
    options: WatchOptions,
    sink: EventSink,
    /// The wake listeners of suspended tenants (synced every tick).
    wake: WakeListeners,
    tenants: Mutex<BTreeMap<String, TenantWatch>>,
    /// Repairs carried out since the start, by name.
    repairs: Mutex<BTreeMap<String, RepairCount>>,
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
    store: &Store,
    snapshot: Arc<RegistrySnapshot>,
) -> Result<Arc<RegistrySnapshot>, crate::store::StoreError> {
    Ok(if store.changed_since(&snapshot)? {
        Arc::new(store.snapshot()?)
    } else {
        snapshot
    })
}

impl Watchdog {
    /// A watchdog acting through `doctor`, reporting to `sink`.
    pub fn new(doctor: Doctor, options: WatchOptions, sink: EventSink) -> Watchdog {
        let policy = Policy::from_config(&doctor.context().config().watchdog);
        let wake = WakeListeners::new(doctor.context().clone(), sink.clone());
        let idle_policy = IdlePolicy::from_config(doctor.context().config());
        Watchdog {
            doctor,
            policy,
            idle_policy,
            idle: Mutex::new(BTreeMap::new()),
            options,
            sink,
            wake,
            tenants: Mutex::new(BTreeMap::new()),
            repairs: Mutex::new(BTreeMap::new()),
            ticks: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            started_ms: unix_ms(),
        }
    }

    fn emit(&self, event: Event) {
        let record = EventRecord {
            at_ms: unix_ms(),
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
    /// `STOP_GRACE`: abandoning a VM restart between the launch and the
    /// registry update would leave a VMM the registry does not know (the
    /// launch is bounded by `vmm.ready_timeout_ms`; after the update only
    /// the wait for the guest's agent remains, which may be abandoned).
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let interval = Duration::from_millis(self.doctor.context().config().watchdog.interval_ms);
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
        self.wake.stop();
        self.emit(Event::Stopping {
            reason: "shutdown requested".into(),
        });
        Ok(())
    }

    /// Makes the host match the registry: host setup (if asked), the whole
    /// firewall (missing rules restored, stale tenants' removed) and the
    /// proxy's routes.
    pub async fn reconcile(&self) {
        let context = self.doctor.context();
        let services = self.doctor.services();
        let mut errors = Vec::new();
        if self.options.host_setup {
            if let Err(e) = crate::machine::setup(context.config()).await {
                errors.push(format!("host setup: {}", e.chain()));
            }
        }
        let registry = match context.registry().await {
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
        // another process included); unknown tenants lose theirs. A tenant
        // being evicted keeps them while its recorded VM still runs (it is
        // not confirmed dead: its TAP stays filtered); once it is dead they
        // go, as evict is removing them and restoring them behind its back
        // would leak them once the record is released.
        let nets: Vec<_> = registry
            .tenants
            .values()
            .filter(|r| keeps_firewall(r))
            .filter_map(|r| plan::tenant_net(r).ok())
            .collect();
        let firewall = services.firewall.clone();
        let firewall_changes = match blocking(move || firewall.reconcile(&nets)).await {
            Ok(n) => n,
            Err(e) => {
                errors.push(format!("firewall: {}", Error::from(e).chain()));
                0
            }
        };
        let routes: Vec<_> = registry
            .tenants
            .values()
            .filter(|r| r.status != TenantStatus::Evicting)
            .filter_map(|r| plan::route(context.config(), r).ok())
            .collect();
        let (routes_added, routes_removed) = match services.routes.reconcile(&routes).await {
            Ok(report) => {
                errors.extend(report.foreign.iter().map(|route| {
                    format!("routes: removed a foreign route from lobster's server: {route}")
                }));
                (
                    report.added.into_iter().chain(report.replaced).collect(),
                    report.removed,
                )
            }
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
        let context = self.doctor.context();
        let snapshot = {
            let store = context.store().clone();
            blocking(move || store.snapshot()).await?
        };
        let registry = &snapshot.registry;
        self.wake.sync(registry).await;
        {
            let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
            tenants.retain(|name, _| registry.tenants.contains_key(name));
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|name, _| registry.tenants.contains_key(name));
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
        let concurrency = context.config().watchdog.max_concurrency;
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
            let dir = context.config().paths.state_dir.clone();
            blocking(move || {
                status.write(&dir).map_err(|source| HealthError::Io {
                    context: "cannot write watchdog status",
                    path: WatchStatus::path(&dir),
                    source,
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
        let store = self.doctor.context().store().clone();
        let snapshot = latest.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let fresh = blocking(move || fresh_snapshot(&store, snapshot)).await?;
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
            match blocking(move || firewall.remove_tenant_id(&target)).await {
                Ok(()) => rules_removed.push(id),
                Err(e) => errors.push(format!("rules of {id}: {}", Error::from(e).chain())),
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
            updated_ms: unix_ms(),
            tick: self.ticks.load(Ordering::Relaxed),
            interval_ms: self.doctor.context().config().watchdog.interval_ms,
            tenants: self
                .tenants
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            repairs: self
                .repairs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    fn count_repairs(&self, outcomes: &[RepairOutcome]) {
        let mut counts = self.repairs.lock().unwrap_or_else(|p| p.into_inner());
        for outcome in outcomes {
            let count = counts
                .entry(outcome.repair.as_str().to_owned())
                .or_default();
            if outcome.ok {
                count.ok += 1;
            } else {
                count.failed += 1;
            }
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
        let store = self.doctor.context().store().clone();
        let tenant = name.to_owned();
        let snapshot = latest.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (lock, fresh) = blocking(move || {
            let Some(lock) = store.lock_tenant(&tenant, Duration::ZERO)? else {
                return Ok((None, None));
            };
            Ok::<_, crate::store::StoreError>((Some(lock), Some(fresh_snapshot(&store, snapshot)?)))
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
        let Some((lock, record)) = self.lock_and_read(latest, name).await? else {
            tracing::debug!(tenant = %name, "busy (another operation holds it); skipped this tick");
            self.idle_tracker(name, IdleTracker::start_over);
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
            return self.wake_if_scheduled(lock, &record).await;
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
        let now = unix_ms();
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
                        t.health.repaired(unix_ms());
                        t.health.attempts
                    });
                    self.emit(Event::RepairStart {
                        tenant: name.into(),
                        attempt,
                        repairs: repairs.clone(),
                    });
                    let outcomes = self.doctor.treat(&record, &repairs).await;
                    self.count_repairs(&outcomes);
                    self.emit(Event::RepairComplete {
                        tenant: name.into(),
                        outcomes,
                    });
                }
            },
        }
        if ok && record.status == TenantStatus::Failed {
            self.doctor
                .context()
                .modify(name, |r| {
                    r.status = TenantStatus::Running;
                    r.last_error = None;
                })
                .await?;
        }
        let healthy = record.status == TenantStatus::Running
            && decision == Decision::Wait
            && self.health(name).state == HealthState::Healthy;
        self.suspend_if_idle(lock, &record, healthy).await;
        Ok(())
    }

    async fn give_up(&self, record: &TenantRecord, reason: String) -> Result<()> {
        let why = reason.clone();
        self.doctor
            .context()
            .modify(&record.name, move |r| {
                r.status = TenantStatus::Failed;
                r.last_error = Some(why);
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

/// Idle auto-suspend and scheduled wake (the rules: [`super::idle`]).
impl Watchdog {
    fn idle_tracker<T>(&self, name: &str, change: impl FnOnce(&mut IdleTracker) -> T) -> T {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        change(idle.entry(name.to_owned()).or_default())
    }

    /// Feeds this tick's sighting of the running `record` (`healthy`: every
    /// check passed and nothing is under way) to its idle tracker, and
    /// suspends it once it has been idle for its idle time. The operation
    /// lock is released first: the suspend takes it itself (and checks the
    /// tenant afresh under it). A failed suspend is reported; the tenant
    /// runs on.
    async fn suspend_if_idle(&self, lock: TenantLock, record: &TenantRecord, healthy: bool) {
        let name = &record.name;
        let suspend_after = self
            .idle_policy
            .suspend_after(record.resources.idle_suspend_after_s);
        let sighting = match suspend_after {
            // Off for this tenant: no stats call.
            None => Sighting::Busy,
            Some(_) if !healthy => Sighting::Busy,
            Some(_) => match self.doctor.guests().activity(record).await {
                Ok(activity) => Sighting::Healthy(activity),
                Err(e) => {
                    tracing::debug!(tenant = %name, error = %e, "no stats: not idle");
                    Sighting::Unknown
                }
            },
        };
        let decision = self.idle_tracker(name, |t| {
            t.observe(&self.idle_policy, suspend_after, sighting, unix_ms())
        });
        let IdleDecision::Suspend { idle } = decision else {
            return;
        };
        if self.stopping.load(Ordering::Relaxed) {
            return;
        }
        drop(lock);
        let started = Instant::now();
        let before = self.health(name).state;
        let result = self
            .doctor
            .guests()
            .suspend_tenant(self.doctor.context(), name)
            .await;
        if result.is_ok() {
            self.update(name, |t| t.health.suspend());
            self.idle_tracker(name, IdleTracker::asleep);
        } else {
            self.idle_tracker(name, IdleTracker::start_over);
        }
        self.emit(Event::Suspend {
            tenant: name.clone(),
            trigger: Trigger::Idle,
            ok: result.is_ok(),
            idle_ms: idle.as_millis() as u64,
            error: result.err().map(|e| e.chain().to_string()),
            elapsed_ms: started.elapsed().as_millis() as u64,
        });
        self.state_changed(name, before, "");
    }

    /// Resumes the suspended `record` once its scheduled wake time has come
    /// (lock released first, as for a suspend); it then stays awake for the
    /// grace. A failed wake is reported and retried after a delay.
    async fn wake_if_scheduled(&self, lock: TenantLock, record: &TenantRecord) -> Result<()> {
        let name = &record.name;
        let wake_at = record.suspended.as_ref().and_then(|s| s.wake_at_ms);
        let now = unix_ms();
        let due = self.idle_tracker(name, |t| {
            t.asleep();
            t.wake_due(&self.idle_policy, wake_at, now)
        });
        if !due || self.stopping.load(Ordering::Relaxed) {
            return Ok(());
        }
        drop(lock);
        let started = Instant::now();
        let result = self
            .doctor
            .guests()
            .resume_tenant(self.doctor.context(), name)
            .await;
        self.idle_tracker(name, |t| {
            t.woke(&self.idle_policy, result.is_ok(), unix_ms())
        });
        self.emit(Event::Resume {
            tenant: name.clone(),
            trigger: Trigger::Schedule,
            ok: result.is_ok(),
            error: result.err().map(|e| e.chain().to_string()),
            elapsed_ms: started.elapsed().as_millis() as u64,
        });
        Ok(())
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

/// Whether the watchdog's reconcile keeps (restores) `record`'s firewall
/// rules: every tenant but one being evicted whose recorded VM is
/// confirmed dead (no VM recorded, or its identity no longer runs).
fn keeps_firewall(record: &TenantRecord) -> bool {
    record.status != TenantStatus::Evicting || record.vm.is_some_and(|vm| vm.identity.is_alive())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RunningVm;
    use crate::vmm::{BackendKind, VmIdentity};

    fn record(status: TenantStatus, vm: Option<VmIdentity>) -> TenantRecord {
        TenantRecord {
            status,
            vm: vm.map(|identity| RunningVm {
                backend: BackendKind::Qemu,
                identity,
            }),
            ..crate::store::sample("a")
        }
    }

    #[test]
    fn an_evicting_tenant_keeps_its_rules_until_its_vm_is_confirmed_dead() {
        let alive = VmIdentity::of(std::process::id() as i32).unwrap();
        let dead = VmIdentity {
            start_time: alive.start_time + 1,
            ..alive
        };
        assert!(keeps_firewall(&record(TenantStatus::Evicting, Some(alive))));
        assert!(!keeps_firewall(&record(TenantStatus::Evicting, Some(dead))));
        assert!(!keeps_firewall(&record(TenantStatus::Evicting, None)));
        for status in [TenantStatus::Running, TenantStatus::Creating] {
            assert!(keeps_firewall(&record(status, None)));
            assert!(keeps_firewall(&record(status, Some(dead))));
        }
    }
}
