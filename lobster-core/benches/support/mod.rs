//! Fixtures shared by the bench binaries.

use lobster_core::config::Config;
use lobster_core::store::{allocation_for, Resources, TenantRecord, TenantStatus};

/// A `running` tenant record named `name` in `slot`, as a spawn would leave it
/// (without a VM); tokens are fixed so records are cheap to make.
pub fn running_record(config: &Config, name: &str, slot: u32) -> TenantRecord {
    let id = format!("{slot:08x}");
    TenantRecord {
        allocation: allocation_for(config, slot, &id),
        name: name.into(),
        id,
        status: TenantStatus::Running,
        resources: Resources {
            vcpus: 2,
            memory_mib: 1024,
            overlay_size_mib: 4096,
            backend: None,
        },
        created_at: 0,
        agent_token: "0".repeat(64),
        gateway_token: "0".repeat(64),
        workload: Default::default(),
        vm: None,
        owner: None,
        last_error: None,
    }
}
