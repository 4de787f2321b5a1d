//! Tenants for tests: through the real allocator, or as records a spawn
//! leaves behind; tenant networks as the allocator derives them; specs and
//! process identities the lifecycle tests share.

use std::net::Ipv4Addr;

use lobster_core::config::{Config, Ipv4Cidr};
use lobster_core::network::{MacAddr, TenantNet};
use lobster_core::store::{
    allocation_for, NewTenant, Resources, Store, StoreError, TenantRecord, TenantStatus,
};
use lobster_core::vmm::VmIdentity;
use lobster_core::TenantSpec;

/// A small tenant to allocate: 1 vCPU, 256 MiB, a 512 MiB overlay.
pub fn new_tenant(name: &str) -> NewTenant {
    NewTenant {
        name: name.into(),
        resources: Resources {
            vcpus: 1,
            memory_mib: 256,
            overlay_size_mib: 512,
            backend: None,
            limits: None,
            idle_suspend_after_s: None,
        },
        workload: Default::default(),
        owner: None,
    }
}

/// Allocates one tenant per name (in order, so the first gets the lowest
/// free slot) through the real allocator, as spawn's first step does with
/// the config's tenant defaults, then sets each to `status` (spawn's last
/// step; no VM). Returns the records as the registry now holds them.
pub fn seed(
    config: &Config,
    names: &[&str],
    status: TenantStatus,
) -> Result<Vec<TenantRecord>, lobster_core::Error> {
    let store = Store::new(&config.paths.state_dir);
    let mut records = Vec::new();
    for name in names {
        let spec = TenantSpec::builder(*name).build()?;
        store.allocate(config, spec.to_new_tenant(config, None))?;
        records.push(store.modify(name, |r| r.status = status)?);
    }
    Ok(records)
}

/// A `running` tenant record named `name` in `slot`, as a spawn would leave
/// it (without a VM); tokens are fixed so records are cheap to make in bulk.
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
            limits: None,
            idle_suspend_after_s: None,
        },
        created_at: 0,
        agent_token: "0".repeat(64),
        agent_token_next: None,
        gateway_token: "0".repeat(64),
        workload: Default::default(),
        vm: None,
        owner: None,
        last_error: None,
        suspended: None,
    }
}

/// Writes `records` into the registry under `store` in one update.
pub fn insert(store: &Store, records: &[TenantRecord]) {
    store
        .update(|reg| {
            for r in records {
                reg.tenants.insert(r.name.clone(), r.clone());
            }
            Ok::<_, StoreError>(())
        })
        .expect("write the registry");
}

/// Tenant `id`'s network in slot `n` of `10.200.0.0/16`: its /30, the MAC
/// derived from the guest address, host port `20000 + n`, uid `10000 + n`.
pub fn tenant_net(id: &str, n: u32) -> TenantNet {
    let subnet = Ipv4Cidr {
        addr: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + 4 * n),
        prefix: 30,
    };
    let mac = MacAddr::from_guest_ip(Ipv4Addr::from(u32::from(subnet.addr) + 2));
    let port = u16::try_from(20000 + n).expect("slot within the port range");
    TenantNet::new(id, subnet, mac, port, 10000 + n).expect("valid tenant")
}

/// A spec for `name` whose workload sleeps for an hour (a tenant that
/// stays up without serving anything).
pub fn sleeping_spec(name: &str) -> TenantSpec {
    TenantSpec::builder(name)
        .command(vec![
            "/bin/sh".into(),
            "-c".into(),
            "exec sleep 3600".into(),
        ])
        .build()
        .expect("a valid spec")
}

/// The identity, in this boot, of a process that has ended (spawned and
/// reaped): what a SIGKILLed spawner or VMM leaves in a record.
pub fn ended_process() -> VmIdentity {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let pid = child.id() as i32;
    child.wait().expect("reap true");
    VmIdentity {
        pid,
        start_time: 1,
        ..VmIdentity::of(std::process::id() as i32).expect("this process's identity")
    }
}
