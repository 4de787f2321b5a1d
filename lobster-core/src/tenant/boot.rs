//! Booting a tenant's VM again on its existing disk: what the health
//! repair `restart_vm` does after a crash, and what a resume falls back to
//! when its snapshot cannot be loaded. One path for both.

use crate::agent::{Agent, WorkloadState};
use crate::config::Config;
use crate::context::Services;
use crate::error::Result;
use crate::store::{RunningVm, TenantRecord};
use crate::vmm::Vm;

use super::plan;

/// Kills whatever is left of `record`'s VM (its recorded process and
/// anything in its cgroup) and boots a new one on its overlay; returns once
/// the VMM runs (the guest boots on).
pub async fn launch_on_disk(
    config: &Config,
    services: &Services,
    record: &TenantRecord,
) -> Result<(RunningVm, Box<dyn Vm>)> {
    let (kind, vm_config) = plan::vm(config, record, services.default_backend);
    // The launch removes the socket the stopped VMM left behind.
    crate::vmm::stop_recorded(&vm_config, record.vm.map(|vm| vm.identity)).await?;
    let vm = (services.vmm)(kind).launch(&vm_config).await?;
    let running = RunningVm {
        backend: kind,
        identity: vm.identity(),
    };
    Ok((running, vm))
}

/// Starts `record`'s workload through `agent`: configures it if the guest
/// lost it (a cold boot), else starts it unless it runs.
pub async fn start_workload(config: &Config, record: &TenantRecord, agent: &Agent) -> Result<()> {
    match agent.status().await?.state {
        WorkloadState::Running => Ok(()),
        WorkloadState::Unconfigured => {
            agent
                .configure(plan::workload(config, record), true)
                .await?;
            Ok(())
        }
        _ => {
            agent.start().await?;
            Ok(())
        }
    }
}
