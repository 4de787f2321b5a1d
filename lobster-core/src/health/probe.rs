//! The guest side of health behind one narrow seam, [`GuestOps`]: observe
//! the VMM and the agent, boot a new VM on a tenant's existing disk, start
//! its workload again, read how the tenant is used, suspend and resume it. [`SystemGuests`] is the real one (VMM backends and
//! the agent client); tests use fakes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::agent::{Agent, AgentTimeouts};
use crate::config::{BackendKind, Config};
use crate::context::{Context, Services};
use crate::error::{Error, Result};
use crate::network::BoxFuture;
use crate::store::{RunningVm, TenantRecord};
use crate::tenant::{launch_on_disk, plan, start_workload, wait_agent_ready};
use crate::vmm::{Vm, VmConfig, VmIdentity, VmStatus};

use super::check::{GuestObservation, VmObservation};
use super::idle::Activity;

/// The VM and agent operations health checks and repairs need.
pub trait GuestOps: Send + Sync + std::fmt::Debug {
    /// Observes the tenant's VMM: process, then API.
    fn observe_vm<'a>(&'a self, record: &'a TenantRecord) -> BoxFuture<'a, VmObservation>;
    /// Observes the tenant's agent and workload.
    fn observe_guest<'a>(&'a self, record: &'a TenantRecord) -> BoxFuture<'a, GuestObservation>;
    /// Kills whatever is left of the tenant's VM and boots a new one on its
    /// existing overlay disk; returns once the VMM runs (the guest boots on).
    fn launch_vm<'a>(&'a self, record: &'a TenantRecord) -> BoxFuture<'a, Result<RunningVm>>;
    /// Continues a paused guest.
    fn resume_vm<'a>(&'a self, record: &'a TenantRecord) -> BoxFuture<'a, Result<()>>;
    /// Waits until the agent of a freshly launched VM answers.
    fn wait_agent<'a>(&'a self, record: &'a TenantRecord) -> BoxFuture<'a, Result<()>>;
    /// Starts the workload again (configuring it first if the guest lost it).
    fn relaunch_workload<'a>(&'a self, record: &'a TenantRecord) -> BoxFuture<'a, Result<()>>;
    /// What the agent reports of the tenant's use (connections, holds, next
    /// scheduled job); `Err` (what failed) when it did not answer.
    fn activity<'a>(
        &'a self,
        record: &'a TenantRecord,
    ) -> BoxFuture<'a, std::result::Result<Activity, String>>;
    /// Suspends the tenant (`lobsterd suspend`; takes its operation lock).
    fn suspend_tenant<'a>(
        &'a self,
        context: &'a Context,
        name: &'a str,
    ) -> BoxFuture<'a, Result<()>>;
    /// Resumes the suspended tenant (`lobsterd resume`; takes its lock).
    fn resume_tenant<'a>(
        &'a self,
        context: &'a Context,
        name: &'a str,
    ) -> BoxFuture<'a, Result<()>>;
}

/// Tenant name, agent token and next agent token.
type AgentKey = (String, String, Option<String>);

/// A VM handle and the identity it was attached to.
type AttachedVm = (VmIdentity, Arc<dyn Vm>);

/// The real guest operations: the tenant's VMM backend and agent client.
#[derive(Debug)]
pub struct SystemGuests {
    config: Config,
    services: Arc<Services>,
    probe_timeout: Duration,
    /// One agent client per tenant (keyed by name, token and next token),
    /// so a daemon reuses its authenticated connection from tick to tick.
    agents: Mutex<HashMap<AgentKey, Arc<Agent>>>,
    /// The attached VM of each tenant with the identity it was attached to:
    /// attaching opens a pidfd and asks the API once, so a daemon does it
    /// once per VM, not once per tick.
    vms: Mutex<HashMap<String, AttachedVm>>,
}

impl SystemGuests {
    /// Guest operations for `config`'s tenants through `services`' VMMs.
    pub fn new(config: Config, services: Arc<Services>) -> SystemGuests {
        let probe_timeout = Duration::from_millis(config.watchdog.probe_timeout_ms);
        SystemGuests {
            config,
            services,
            probe_timeout,
            agents: Mutex::new(HashMap::new()),
            vms: Mutex::new(HashMap::new()),
        }
    }

    fn agent(&self, record: &TenantRecord) -> Arc<Agent> {
        let key = (
            record.name.clone(),
            record.agent_token.clone(),
            record.agent_token_next.clone(),
        );
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        agents
            .entry(key)
            .or_insert_with(|| {
                let (rpc, health) = plan::agent_endpoints(&self.config, record);
                Arc::new(
                    Agent::new(rpc, health, record.agent_token.clone())
                        .with_fallback_token(record.agent_token_next.clone())
                        .with_timeouts(AgentTimeouts {
                            connect: self.probe_timeout,
                            call: self.probe_timeout,
                        }),
                )
            })
            .clone()
    }

    fn vm_config(&self, record: &TenantRecord) -> (BackendKind, VmConfig) {
        plan::vm(&self.config, record, self.services.default_backend)
    }

    /// The tenant's recorded VM, attached (or reused from an earlier
    /// attach to the same identity); `None` when no VM is recorded.
    async fn attach(&self, record: &TenantRecord) -> Option<Result<Arc<dyn Vm>>> {
        let running = record.vm?;
        let cached = self
            .vms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&record.name)
            .filter(|(identity, _)| *identity == running.identity)
            .map(|(_, vm)| vm.clone());
        if let Some(vm) = cached {
            return Some(Ok(vm));
        }
        let (kind, vm_config) = self.vm_config(record);
        let vmm = (self.services.vmm)(kind);
        let attached = vmm.attach(&vm_config, running.identity).await;
        Some(attached.map_err(Error::from).map(|vm| {
            let vm: Arc<dyn Vm> = Arc::from(vm);
            self.vms
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(record.name.clone(), (running.identity, vm.clone()));
            vm
        }))
    }
}

impl GuestOps for SystemGuests {
    fn observe_vm<'a>(&'a self, record: &'a TenantRecord) -> BoxFuture<'a, VmObservation> {
        Box::pin(async move {
            let Some(running) = record.vm else {
                return VmObservation::NotRecorded;
            };
            if !running.identity.is_alive() {
                return VmObservation::Gone;
            }
            let probe = async {
                let vm = self.attach(record).await.expect("a VM is recorded")?;
                Ok::<_, Error>(vm.status().await?)
            };
            let api = match tokio::time::timeout(self.probe_timeout, probe).await {
                Ok(Ok(VmStatus::Running)) => Ok(true),
                Ok(Ok(VmStatus::Paused)) => Ok(false),
                Ok(Ok(VmStatus::Exited(_))) => return VmObservation::Gone,
                Ok(Ok(other)) => Err(format!("the VMM reports {other:?}")),
                Ok(Err(e)) => {
                    if !running.identity.is_alive() {
                        return VmObservation::Gone;
                    }
                    Err(e.chain().to_string())
                }
                Err(_) => Err(format!(
                    "the VMM API did not answer within {:?}",
                    self.probe_timeout
                )),
            };
            VmObservation::Alive { api }
        })
    }

    fn observe_guest<'a>(&'a self, record: &'a TenantRecord) -> BoxFuture<'a, GuestObservation> {
        Box::pin(async move {
            let agent = self.agent(record);
            match agent.health().await {
                Ok(health) => GuestObservation::Up(Ok(health.workload)),
                Err(e) => GuestObservation::AgentDown(crate::Error::from(e).chain().to_string()),
            }
        })
    }

    fn launch_vm<'a>(&'a self, record: &'a TenantRecord) -> BoxFuture<'a, Result<RunningVm>> {
        Box::pin(async move {
            let (running, _vm) = launch_on_disk(&self.config, &self.services, record).await?;
            Ok(running)
        })
    }

    fn resume_vm<'a>(&'a self, record: &'a TenantRecord) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match self.attach(record).await {
                Some(vm) => Ok(vm?.resume().await?),
                None => Ok(()),
            }
        })
    }

    fn wait_agent<'a>(&'a self, record: &'a TenantRecord) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let vm = match self.attach(record).await {
                Some(vm) => vm?,
                None => return Ok(()),
            };
            let (rpc, health) = plan::agent_endpoints(&self.config, record);
            let agent = Agent::new(rpc, health, record.agent_token.clone())
                .with_fallback_token(record.agent_token_next.clone());
            wait_agent_ready(&agent, vm.as_ref()).await
        })
    }

    fn relaunch_workload<'a>(&'a self, record: &'a TenantRecord) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { start_workload(&self.config, record, &self.agent(record)).await })
    }

    fn activity<'a>(
        &'a self,
        record: &'a TenantRecord,
    ) -> BoxFuture<'a, std::result::Result<Activity, String>> {
        Box::pin(async move {
            let stats = self
                .agent(record)
                .stats()
                .await
                .map_err(|e| Error::from(e).chain().to_string())?;
            Ok(Activity {
                workload_connections: stats.connections.workload,
                holds: stats.holds,
                next_job_at_ms: stats.next_job_at_ms,
            })
        })
    }

    fn suspend_tenant<'a>(
        &'a self,
        context: &'a Context,
        name: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { crate::tenant::suspend_idle(context, name).await.map(drop) })
    }

    fn resume_tenant<'a>(
        &'a self,
        context: &'a Context,
        name: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        // A wake accepts a resume someone else did meanwhile.
        Box::pin(async move { crate::tenant::wake(context, name).await.map(drop) })
    }
}
