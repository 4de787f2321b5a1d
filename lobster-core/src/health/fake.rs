//! An in-memory [`GuestOps`] for tests and benchmarks of the health code:
//! every tenant's VM and agent are data that tests break on purpose
//! ([`FakeGuests::kill_vm`], [`FakeGuests::hang_api`] ...), calls are
//! recorded, and any operation can be told to fail.
//!
//! A simulated VM carries an identity (pid, start time) like a real one;
//! the identities are pure data, chosen far above any real pid so that
//! nothing that looks at `/proc` mistakes them for a live process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::agent::WorkloadState;
use crate::context::Context;
use crate::error::Result;
use crate::network::BoxFuture;
use crate::store::{RunningVm, SuspendInfo, TenantRecord, TenantStatus};
use crate::vmm::{BackendKind, VmIdentity, VmmError};

use super::check::{GuestObservation, VmObservation};
use super::idle::{Activity, IdlePolicy};
use super::probe::GuestOps;

/// The first pid handed out (Linux's `pid_max` is at most 2^22).
const FIRST_PID: i32 = 1 << 23;

/// The state of a simulated VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeVm {
    /// Runs, and its API answers.
    Running,
    /// Runs; the guest is paused.
    Paused,
    /// The process lives but its API never answers.
    Hung,
    /// The process is gone.
    Gone,
}

/// One tenant's simulated guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeGuest {
    /// The VMM.
    pub vm: FakeVm,
    /// The identity of the VMM process (as a registry would record it).
    pub identity: VmIdentity,
    /// Whether the agent answers.
    pub agent_up: bool,
    /// The workload's state as the agent reports it.
    pub workload: WorkloadState,
    /// Whether the guest disk holds a workload spec to run at boot (the
    /// agent persists it and starts it again when the guest boots).
    pub workload_persisted: bool,
    /// How many times a VM was launched for the tenant.
    pub launches: u32,
    /// What the agent reports of the tenant's use (none at boot).
    pub activity: Activity,
    /// How many times the tenant was suspended.
    pub suspends: u32,
}

/// No connection, no hold, no scheduled job.
const QUIET: Activity = Activity {
    workload_connections: 0,
    holds: 0,
    next_job_at_ms: None,
};

#[derive(Debug, Default)]
struct State {
    guests: BTreeMap<String, FakeGuest>,
    calls: Vec<String>,
    fail_once: Vec<&'static str>,
    fail_always: Vec<&'static str>,
    delays: BTreeMap<&'static str, Duration>,
    gates: BTreeMap<&'static str, Arc<tokio::sync::Semaphore>>,
    next_pid: i32,
}

/// A fake of the guest side: simulated VMs, agents and workloads, by tenant name.
#[derive(Debug, Default)]
pub struct FakeGuests {
    state: Mutex<State>,
}

impl FakeGuests {
    /// No guests yet.
    pub fn new() -> FakeGuests {
        FakeGuests::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Boots a healthy guest for `name` (VM running, agent up, workload
    /// running) and returns what the registry should record.
    pub fn boot(&self, name: &str) -> RunningVm {
        let mut state = self.state();
        let identity = state.fresh_identity();
        let launches = state.guests.get(name).map_or(0, |g| g.launches) + 1;
        state.guests.insert(
            name.to_owned(),
            FakeGuest {
                vm: FakeVm::Running,
                identity,
                agent_up: true,
                workload: WorkloadState::Running,
                workload_persisted: true,
                launches,
                activity: QUIET,
                suspends: 0,
            },
        );
        RunningVm {
            backend: BackendKind::Firecracker,
            identity,
        }
    }

    /// The guest of `name`, if one was ever booted.
    pub fn guest(&self, name: &str) -> Option<FakeGuest> {
        self.state().guests.get(name).cloned()
    }

    /// Every call so far, as `operation tenant`.
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.state().calls.clear();
    }

    /// Makes the next call of `operation` (`observe_vm`, `observe_guest`,
    /// `launch_vm`, `resume_vm`, `wait_agent`, `relaunch_workload`,
    /// `activity`, `suspend_tenant`, `resume_tenant`) fail;
    /// an observation that fails reports the VMM API or the agent as broken.
    pub fn fail_next(&self, operation: &'static str) {
        self.state().fail_once.push(operation);
    }

    /// Makes every call of `operation` fail until [`FakeGuests::heal`].
    pub fn fail_always(&self, operation: &'static str) {
        self.state().fail_always.push(operation);
    }

    /// Makes `operation` take `delay`. `launch_vm` starts the VM first and
    /// then waits (like a VMM whose API comes up slowly), so a caller that
    /// abandons it leaves a VM the registry does not know.
    pub fn set_delay(&self, operation: &'static str, delay: Duration) {
        self.state().delays.insert(operation, delay);
    }

    /// Holds every call of `operation` (after it is recorded in
    /// [`FakeGuests::calls`]) until [`Gate::open`]: a test acts while a
    /// call is in flight, without guessing how long it takes.
    pub fn gate(&self, operation: &'static str) -> Gate {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        self.state().gates.insert(operation, gate.clone());
        Gate(gate)
    }

    async fn delay(&self, operation: &'static str) {
        let (delay, gate) = {
            let state = self.state();
            let gate = state.gates.get(operation).cloned();
            (state.delays.get(operation).copied(), gate)
        };
        if let Some(gate) = gate {
            // Closed means open: every held and later call goes on.
            let _ = gate.acquire().await;
        }
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
    }

    /// Clears every injected failure.
    pub fn heal(&self) {
        let mut state = self.state();
        state.fail_once.clear();
        state.fail_always.clear();
    }

    /// The VMM process of `name` dies (the guest with it).
    pub fn kill_vm(&self, name: &str) {
        self.change(name, |g| {
            g.vm = FakeVm::Gone;
            g.agent_up = false;
        });
    }

    /// The VMM of `name` stops answering its API (the process lives on).
    pub fn hang_api(&self, name: &str) {
        self.change(name, |g| g.vm = FakeVm::Hung);
    }

    /// The guest of `name` is paused.
    pub fn pause_vm(&self, name: &str) {
        self.change(name, |g| g.vm = FakeVm::Paused);
    }

    /// The agent of `name` stops answering (the VM runs on).
    pub fn stop_agent(&self, name: &str) {
        self.change(name, |g| g.agent_up = false);
    }

    /// Sets the workload state the agent of `name` reports (e.g. `Exited`
    /// for a workload that died).
    pub fn set_workload(&self, name: &str, workload: WorkloadState) {
        self.change(name, |g| g.workload = workload);
    }

    /// Sets what the agent of `name` reports of its use (connections,
    /// holds, the next scheduled job).
    pub fn set_activity(&self, name: &str, activity: Activity) {
        self.change(name, |g| g.activity = activity);
    }

    fn change(&self, name: &str, change: impl FnOnce(&mut FakeGuest)) {
        let mut state = self.state();
        let guest = state
            .guests
            .get_mut(name)
            .unwrap_or_else(|| panic!("fake guest {name} was never booted"));
        change(guest);
    }

    /// A new VM for the tenant: a fresh identity, the agent up, the
    /// workload running if the disk holds one.
    fn start_vm(&self, record: &TenantRecord) -> RunningVm {
        let mut state = self.state();
        let identity = state.fresh_identity();
        let old = state.guests.get(&record.name);
        let persisted = old.is_none_or(|g| g.workload_persisted);
        let launches = old.map_or(0, |g| g.launches) + 1;
        let (activity, suspends) = old.map_or((QUIET, 0), |g| (g.activity, g.suspends));
        state.guests.insert(
            record.name.clone(),
            FakeGuest {
                vm: FakeVm::Running,
                identity,
                agent_up: true,
                workload: if persisted {
                    WorkloadState::Running
                } else {
                    WorkloadState::Unconfigured
                },
                workload_persisted: persisted,
                launches,
                activity,
                suspends,
            },
        );
        RunningVm {
            backend: record.vm.map_or(BackendKind::Firecracker, |vm| vm.backend),
            identity,
        }
    }

    /// Records the call; `Err` when a failure was injected for it.
    fn enter(&self, operation: &'static str, name: &str) -> Result<()> {
        let mut state = self.state();
        state.calls.push(format!("{operation} {name}"));
        let once = state.fail_once.iter().position(|op| *op == operation);
        if let Some(i) = once {
            state.fail_once.remove(i);
        }
        if once.is_some() || state.fail_always.contains(&operation) {
            return Err(VmmError::Io {
                context: format!("fake {operation} of {name} failed as asked"),
                source: std::io::Error::other("injected failure"),
            }
            .into());
        }
        Ok(())
    }
}

impl State {
    fn fresh_identity(&mut self) -> VmIdentity {
        self.next_pid += 1;
        VmIdentity {
            pid: FIRST_PID + self.next_pid,
            start_time: u64::MAX - self.next_pid as u64,
            boot_id: crate::vmm::BootId::current().ok(),
        }
    }
}

impl GuestOps for FakeGuests {
    fn observe_vm<'a>(&'a self, record: &'a TenantRecord) -> BoxFuture<'a, VmObservation> {
        Box::pin(async move {
            let Some(running) = record.vm else {
                return VmObservation::NotRecorded;
            };
            let entered = self.enter("observe_vm", &record.name);
            self.delay("observe_vm").await;
            if let Err(e) = entered {
                return VmObservation::Alive {
                    api: Err(e.chain().to_string()),
                };
            }
            let state = self.state();
            match state.guests.get(&record.name) {
                Some(g) if g.identity == running.identity => match g.vm {
                    FakeVm::Gone => VmObservation::Gone,
                    FakeVm::Hung => VmObservation::Alive {
                        api: Err("the VMM API did not answer (fake: hung)".into()),
                    },
                    FakeVm::Paused => VmObservation::Alive { api: Ok(false) },
                    FakeVm::Running => VmObservation::Alive { api: Ok(true) },
                },
                // Not the recorded process (or none at all): like a pid reused.
                _ => VmObservation::Gone,
            }
        })
    }

    fn observe_guest<'a>(&'a self, record: &'a TenantRecord) -> BoxFuture<'a, GuestObservation> {
        Box::pin(async move {
            let entered = self.enter("observe_guest", &record.name);
            self.delay("observe_guest").await;
            if let Err(e) = entered {
                return GuestObservation::AgentDown(e.chain().to_string());
            }
            match self.state().guests.get(&record.name) {
                Some(g) if g.agent_up && g.vm == FakeVm::Running => {
                    GuestObservation::Up(Ok(g.workload))
                }
                _ => GuestObservation::AgentDown("connection refused (fake agent down)".into()),
            }
        })
    }

    fn launch_vm<'a>(&'a self, record: &'a TenantRecord) -> BoxFuture<'a, Result<RunningVm>> {
        Box::pin(async move {
            self.enter("launch_vm", &record.name)?;
            let running = self.start_vm(record);
            self.delay("launch_vm").await;
            Ok(running)
        })
    }

    fn resume_vm<'a>(&'a self, record: &'a TenantRecord) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.enter("resume_vm", &record.name)?;
            self.delay("resume_vm").await;
            let mut state = self.state();
            match state.guests.get_mut(&record.name) {
                Some(g) if g.vm == FakeVm::Paused => {
                    g.vm = FakeVm::Running;
                    Ok(())
                }
                Some(g) if g.vm == FakeVm::Running => Ok(()),
                _ => Err(fake_error("resume_vm", &record.name, "no paused VM")),
            }
        })
    }

    fn wait_agent<'a>(&'a self, record: &'a TenantRecord) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.enter("wait_agent", &record.name)?;
            self.delay("wait_agent").await;
            match self.state().guests.get(&record.name) {
                Some(g) if g.agent_up && g.vm == FakeVm::Running => Ok(()),
                _ => Err(fake_error(
                    "wait_agent",
                    &record.name,
                    "the agent never came up",
                )),
            }
        })
    }

    fn relaunch_workload<'a>(&'a self, record: &'a TenantRecord) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.enter("relaunch_workload", &record.name)?;
            self.delay("relaunch_workload").await;
            let mut state = self.state();
            match state.guests.get_mut(&record.name) {
                Some(g) if g.agent_up && g.vm == FakeVm::Running => {
                    g.workload = WorkloadState::Running;
                    g.workload_persisted = true;
                    Ok(())
                }
                _ => Err(fake_error(
                    "relaunch_workload",
                    &record.name,
                    "the agent does not answer",
                )),
            }
        })
    }

    fn activity<'a>(
        &'a self,
        record: &'a TenantRecord,
    ) -> BoxFuture<'a, std::result::Result<Activity, String>> {
        Box::pin(async move {
            let entered = self.enter("activity", &record.name);
            self.delay("activity").await;
            entered.map_err(|e| e.chain().to_string())?;
            match self.state().guests.get(&record.name) {
                Some(g) if g.agent_up && g.vm == FakeVm::Running => Ok(g.activity),
                _ => Err("connection refused (fake agent down)".into()),
            }
        })
    }

    /// Like a real suspend: only a running tenant; its VM goes, the record
    /// says `suspended` with a wake time from the guest's next job.
    fn suspend_tenant<'a>(
        &'a self,
        context: &'a Context,
        name: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.enter("suspend_tenant", name)?;
            self.delay("suspend_tenant").await;
            let record = context.record(name).await?;
            if record.status != TenantStatus::Running {
                return Err(fake_error("suspend_tenant", name, "not running"));
            }
            let (backend, next_job) = {
                let mut state = self.state();
                let guest = state
                    .guests
                    .get_mut(name)
                    .ok_or_else(|| fake_error("suspend_tenant", name, "no guest"))?;
                guest.vm = FakeVm::Gone;
                guest.agent_up = false;
                guest.suspends += 1;
                (
                    record.vm.map_or(BackendKind::Firecracker, |vm| vm.backend),
                    guest.activity.next_job_at_ms,
                )
            };
            let wake_at_ms = IdlePolicy::from_config(context.config()).wake_at(next_job);
            let snapshot = crate::vmm::Snapshot {
                backend,
                state_file: format!("/nonexistent/fake-snapshot/{name}").into(),
                memory_file: None,
            };
            context
                .modify(name, move |r| {
                    r.status = TenantStatus::Suspended;
                    r.vm = None;
                    r.suspended = Some(SuspendInfo {
                        at: crate::base::unix_secs(),
                        snapshot,
                        vmm_version: "fake".into(),
                        wake_at_ms,
                    });
                })
                .await?;
            Ok(())
        })
    }

    /// Like a real resume: only a suspended tenant; a new VM is recorded.
    fn resume_tenant<'a>(
        &'a self,
        context: &'a Context,
        name: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.enter("resume_tenant", name)?;
            self.delay("resume_tenant").await;
            let record = context.record(name).await?;
            if record.status != TenantStatus::Suspended {
                return Err(fake_error("resume_tenant", name, "not suspended"));
            }
            let running = self.start_vm(&record);
            context
                .modify(name, move |r| {
                    r.status = TenantStatus::Running;
                    r.vm = Some(running);
                    r.suspended = None;
                })
                .await?;
            Ok(())
        })
    }
}

fn fake_error(operation: &str, name: &str, why: &str) -> crate::Error {
    VmmError::Io {
        context: format!("fake {operation} of {name}"),
        source: std::io::Error::other(why.to_owned()),
    }
    .into()
}

/// A held operation of [`FakeGuests`]; see [`FakeGuests::gate`].
#[derive(Debug)]
pub struct Gate(Arc<tokio::sync::Semaphore>);

impl Gate {
    /// Lets every held call, and every later one, go on.
    pub fn open(&self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, vm: Option<RunningVm>) -> TenantRecord {
        TenantRecord {
            vm,
            ..crate::store::sample(name)
        }
    }

    #[tokio::test]
    async fn guests_break_and_come_back_as_told() {
        let fake = FakeGuests::new();
        let first = fake.boot("a");
        let mut r = record("a", Some(first));
        assert_eq!(
            fake.observe_vm(&r).await,
            VmObservation::Alive { api: Ok(true) }
        );
        assert_eq!(
            fake.observe_guest(&r).await,
            GuestObservation::Up(Ok(WorkloadState::Running))
        );
        assert!(
            !first.identity.is_alive(),
            "fake identities are never live processes"
        );

        fake.hang_api("a");
        assert!(matches!(
            fake.observe_vm(&r).await,
            VmObservation::Alive { api: Err(_) }
        ));
        fake.kill_vm("a");
        assert_eq!(fake.observe_vm(&r).await, VmObservation::Gone);

        let second = fake.launch_vm(&r).await.unwrap();
        assert_ne!(second.identity, first.identity);
        assert_eq!(
            fake.observe_vm(&r).await,
            VmObservation::Gone,
            "the registry still names the old process"
        );
        r.vm = Some(second);
        assert_eq!(
            fake.observe_vm(&r).await,
            VmObservation::Alive { api: Ok(true) }
        );
        fake.wait_agent(&r).await.unwrap();
        assert_eq!(fake.guest("a").unwrap().launches, 2);

        fake.set_workload("a", WorkloadState::Exited);
        fake.relaunch_workload(&r).await.unwrap();
        assert_eq!(fake.guest("a").unwrap().workload, WorkloadState::Running);

        fake.pause_vm("a");
        assert_eq!(
            fake.observe_vm(&r).await,
            VmObservation::Alive { api: Ok(false) }
        );
        fake.resume_vm(&r).await.unwrap();
        assert_eq!(fake.guest("a").unwrap().vm, FakeVm::Running);

        assert_eq!(
            fake.observe_vm(&record("a", None)).await,
            VmObservation::NotRecorded
        );
    }

    #[tokio::test]
    async fn failures_are_injected_once_or_until_healed() {
        let fake = FakeGuests::new();
        let r = record("a", Some(fake.boot("a")));
        fake.fail_next("launch_vm");
        let err = fake.launch_vm(&r).await.unwrap_err();
        assert!(err.chain().to_string().contains("failed as asked"), "{err}");
        fake.launch_vm(&r).await.unwrap();
        fake.fail_always("relaunch_workload");
        assert!(fake.relaunch_workload(&r).await.is_err());
        assert!(fake.relaunch_workload(&r).await.is_err());
        fake.heal();
        fake.relaunch_workload(&r).await.unwrap();
        assert_eq!(
            fake.calls(),
            [
                "launch_vm a",
                "launch_vm a",
                "relaunch_workload a",
                "relaunch_workload a",
                "relaunch_workload a",
            ]
        );
    }
}
