//! Slots: the lowest free one for a new tenant, and everything a slot
//! stands for (addresses, MAC, TAP, port, uid).

use std::net::Ipv4Addr;

use super::{
    Allocation, NewTenant, Registry, Result, Store, StoreError, TenantRecord, TenantStatus,
};
use crate::config::Config;

impl Store {
    /// Reserves a slot and a name for a new tenant (status `creating`).
    pub fn allocate(&self, config: &Config, new: NewTenant) -> Result<TenantRecord> {
        self.update(|reg| {
            if reg.tenants.contains_key(&new.name) {
                return Err(StoreError::Exists(new.name.clone()));
            }
            let slot = free_slot(reg, config.capacity()).ok_or_else(|| StoreError::Exhausted {
                capacity: config.capacity(),
                pool: config.network.pool.clone(),
            })?;
            let id = loop {
                let id = random_hex(4)?;
                if reg.tenants.values().all(|t| t.id != id) {
                    break id;
                }
            };
            let record = TenantRecord {
                allocation: allocation_for(config, slot, &id),
                name: new.name.clone(),
                id,
                status: TenantStatus::Creating,
                resources: new.resources,
                workload: new.workload,
                owner: new.owner,
                created_at: crate::base::unix_secs(),
                agent_token: random_hex(32)?,
                agent_token_next: None,
                gateway_token: random_hex(32)?,
                vm: None,
                last_error: None,
                suspended: None,
            };
            reg.tenants.insert(new.name, record.clone());
            Ok(record)
        })
    }

    /// Removes a tenant's record, releasing its slot for reuse.
    pub fn release(&self, name: &str) -> Result<TenantRecord> {
        self.update(|reg| {
            reg.tenants
                .remove(name)
                .ok_or_else(|| StoreError::NotFound(name.into()))
        })
    }
}

/// The lowest slot no tenant holds, below `capacity`.
fn free_slot(registry: &Registry, capacity: u32) -> Option<u32> {
    let mut held: Vec<u32> = registry
        .tenants
        .values()
        .map(|t| t.allocation.slot)
        .collect();
    held.sort_unstable();
    let mut candidate = 0u32;
    for slot in held {
        if slot > candidate {
            break;
        }
        candidate = slot + 1;
    }
    (candidate < capacity).then_some(candidate)
}

/// Everything a slot stands for. Pure: the same slot always gives the same values.
pub fn allocation_for(config: &Config, slot: u32, id: &str) -> Allocation {
    let subnet = u32::from(config.pool().addr) + 4 * slot;
    let guest_ip = Ipv4Addr::from(subnet + 2);
    Allocation {
        slot,
        subnet: Ipv4Addr::from(subnet),
        host_ip: Ipv4Addr::from(subnet + 1),
        guest_ip,
        mac: crate::network::MacAddr::from_guest_ip(guest_ip).to_string(),
        tap: format!("lob-{id}"),
        host_port: config.network.host_port_base + slot as u16,
        jail_uid: config.vmm.uid_base + slot,
    }
}

/// A new random token (agent or gateway): 32 bytes, hex-encoded.
pub(crate) fn new_token() -> Result<String> {
    random_hex(32)
}

pub(super) fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
