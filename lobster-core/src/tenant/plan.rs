//! Pure planning: everything a tenant's lifecycle needs, derived from its
//! registry record and the host configuration. No system effects here.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::agent::provision::GuestNetwork;
use crate::agent::{OpenClawSpec, RestartPolicy, Secret, WorkloadSpec};
use crate::config::{Backend, BackendKind, Config, Ipv4Cidr, TenantLimits};
use crate::network::{MacAddr, NetworkError, TenantNet};
use crate::overlay::Overlay;
use crate::proxy::{ProxyError, TenantRoute, Upstream};
use crate::store::{TenantRecord, TenantStatus};
use crate::vmm::{Drive, Jail, Nic, RateLimiter, TokenBucket, VmConfig, VmPaths};

/// The tenant's disk and network rates, as recorded at spawn (a record
/// from before limits has none).
pub fn limits(record: &TenantRecord) -> TenantLimits {
    record.resources.limits.unwrap_or(TenantLimits::UNLIMITED)
}

/// The tenant's network as the network module wants it, its TAP shaped to
/// the tenant's rate.
pub fn tenant_net(record: &TenantRecord) -> Result<TenantNet, NetworkError> {
    let mut net = tenant_net_unshaped(record)?;
    net.bandwidth_bits_per_s = limits(record).net_bits_per_s();
    Ok(net)
}

fn tenant_net_unshaped(record: &TenantRecord) -> Result<TenantNet, NetworkError> {
    let a = &record.allocation;
    let mac: MacAddr = a.mac.parse().map_err(|reason| NetworkError::Invalid {
        field: "mac",
        reason,
    })?;
    TenantNet::new(
        &record.id,
        Ipv4Cidr {
            addr: a.subnet,
            prefix: 30,
        },
        mac,
        a.host_port,
        a.jail_uid,
    )
}

/// The tenant's overlay disk.
pub fn overlay(config: &Config, record: &TenantRecord) -> Overlay {
    Overlay::new(
        &config.paths.overlays_dir,
        &record.name,
        &record.id,
        record.resources.overlay_size_mib,
    )
}

/// The guest's network settings (kernel command-line keys read by the
/// initramfs and the agent).
pub fn guest_network(config: &Config, record: &TenantRecord) -> GuestNetwork {
    GuestNetwork {
        address: record.allocation.guest_ip,
        prefix: 30,
        gateway: record.allocation.host_ip,
        dns: None,
        agent_port: config.network.agent_port,
        health_port: config.network.health_port,
    }
}

/// The backend a tenant runs on: the one that launched its VM, else its
/// spec's choice, else `default` (the host's).
pub fn backend(record: &TenantRecord, default: BackendKind) -> BackendKind {
    record
        .vm
        .map(|vm| vm.backend)
        .or_else(|| record.resources.backend.and_then(Backend::kind))
        .unwrap_or(default)
}

/// The tenant's backend (see [`backend`]) and its VM: shared base read-only
/// as `vda`, the tenant disk as `vdb`, one NIC on the tenant's TAP; the VMM
/// runs jailed (see [`jail`]).
pub fn vm(config: &Config, record: &TenantRecord, default: BackendKind) -> (BackendKind, VmConfig) {
    let kind = backend(record, default);
    (kind, vm_config(config, record, kind))
}

fn vm_config(config: &Config, record: &TenantRecord, backend: BackendKind) -> VmConfig {
    let r = &record.resources;
    let limits = limits(record);
    let disk = rate_limiter(limits.disk_bytes_per_s(), limits.disk_ops_per_s());
    let net = rate_limiter(limits.net_bits_per_s().map(|bits| bits / 8), None);
    let jail = jail(config, record, backend);
    VmConfig {
        vm_id: record.name.clone(),
        kernel: config.paths.kernel.clone(),
        initrd: Some(config.paths.initrd.clone()),
        boot_args: format!("quiet {}", guest_network(config, record).kernel_args()),
        drives: vec![
            Drive {
                id: "rootfs".into(),
                path: config.paths.rootfs.clone(),
                read_only: true,
                rate_limiter: disk,
            },
            Drive {
                id: "overlay".into(),
                path: overlay(config, record).path().to_path_buf(),
                read_only: false,
                rate_limiter: disk,
            },
        ],
        nic: Some(Nic {
            id: "eth0".into(),
            tap: record.allocation.tap.clone(),
            mac: record.allocation.mac.clone(),
            rx_rate_limiter: net,
            tx_rate_limiter: net,
        }),
        vcpus: r.vcpus,
        memory_mib: r.memory_mib,
        paths: VmPaths::for_tenant(&config.paths, &config.vmm, &record.name),
        jail,
    }
}

/// A limiter refilled every second to `bytes` and `ops` per second (a
/// Firecracker token bucket; QEMU throttles to its per-second rate).
fn rate_limiter(bytes: Option<u64>, ops: Option<u64>) -> Option<RateLimiter> {
    let bucket = |size| TokenBucket {
        size,
        one_time_burst: 0,
        refill_time_ms: 1000,
    };
    (bytes.is_some() || ops.is_some()).then(|| RateLimiter {
        bandwidth: bytes.map(bucket),
        ops: ops.map(bucket),
    })
}

/// The jail of the tenant's VMM: its own uid/gid, chroot and cgroup with
/// limits derived from its size. Every QEMU runs jailed; Firecracker too,
/// through its jailer, unless `vmm.firecracker.use_jailer` is off.
pub fn jail(config: &Config, record: &TenantRecord, backend: BackendKind) -> Option<Jail> {
    let jailed = match backend {
        BackendKind::Qemu => true,
        BackendKind::Firecracker => config.vmm.firecracker.use_jailer,
    };
    let r = &record.resources;
    jailed.then(|| {
        Jail::for_tenant(
            &config.vmm,
            backend,
            &record.id,
            record.allocation.jail_uid,
            r.vcpus,
            r.memory_mib,
            None,
        )
    })
}

/// Where the agent listens: (RPC, health).
pub fn agent_endpoints(config: &Config, record: &TenantRecord) -> (SocketAddr, SocketAddr) {
    let ip = record.allocation.guest_ip.into();
    (
        SocketAddr::new(ip, config.network.agent_port),
        SocketAddr::new(ip, config.network.health_port),
    )
}

/// The guest's gateway, `guest_ip:gateway_port`.
pub fn gateway(config: &Config, record: &TenantRecord) -> SocketAddr {
    SocketAddr::new(
        record.allocation.guest_ip.into(),
        config.network.gateway_port,
    )
}

/// The unix socket the watchdog listens on while the tenant is suspended:
/// `<paths.wake_dir>/<id>.sock`.
pub fn wake_socket(config: &Config, record: &TenantRecord) -> PathBuf {
    config.paths.wake_dir.join(format!("{}.sock", record.id))
}

/// The proxy route `<name>.<domain>` → the guest's gateway port, or, while
/// the tenant is suspended, its wake socket (a request there resumes it).
pub fn route(config: &Config, record: &TenantRecord) -> Result<TenantRoute, ProxyError> {
    let upstream = match record.status {
        TenantStatus::Suspended => Upstream::Unix(wake_socket(config, record)),
        _ => Upstream::Tcp(gateway(config, record)),
    };
    TenantRoute::to(&record.name, upstream)
}

/// What the agent runs: the recorded command, or the OpenClaw gateway with
/// the tenant's token, port and allowed origin.
pub fn workload(config: &Config, record: &TenantRecord) -> WorkloadSpec {
    let w = &record.workload;
    let openclaw = w.command.is_empty().then(|| OpenClawSpec {
        port: config.network.gateway_port,
        gateway_token: Secret(record.gateway_token.clone()),
        // `extra` is the whole openclaw.json the agent completes: the allowed
        // origin under gateway.controlUi (as in the original), and the one
        // proxy hop OpenClaw must trust for client addresses: Caddy reaches
        // the guest from the host side of the tenant's /30.
        extra: serde_json::json!({
            "gateway": {
                "controlUi": {
                    "allowedOrigins": [format!("https://{}.{}", record.name, config.domain)]
                },
                "trustedProxies": [record.allocation.host_ip.to_string()]
            }
        }),
    });
    WorkloadSpec {
        command: w.command.clone(),
        env: w.env.clone(),
        cwd: None,
        openclaw,
        restart: RestartPolicy::Always,
        port: Some(config.network.gateway_port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{allocation_for, Resources, Workload};

    fn record() -> TenantRecord {
        let config = Config::default();
        TenantRecord {
            name: "alice".into(),
            id: "0a1b2c3d".into(),
            status: TenantStatus::Creating,
            resources: Resources {
                vcpus: 1,
                memory_mib: 512,
                overlay_size_mib: 1024,
                backend: None,
                limits: None,
                idle_suspend_after_s: None,
            },
            allocation: allocation_for(&config, 1, "0a1b2c3d"),
            created_at: 0,
            agent_token: "a".repeat(64),
            agent_token_next: None,
            gateway_token: "g".repeat(64),
            workload: Workload::default(),
            vm: None,
            owner: None,
            last_error: None,
            suspended: None,
        }
    }

    #[test]
    fn network_and_vm_are_derived_from_the_allocation() {
        let config = Config::default();
        let rec = record();
        let net = tenant_net(&rec).unwrap();
        assert_eq!(net.tap, "lob-0a1b2c3d");
        assert_eq!(net.guest_ip.to_string(), "10.200.0.6");
        assert_eq!(net.host_ip.to_string(), "10.200.0.5");
        assert_eq!(net.owner_uid, 10001);
        let (kind, vm) = super::vm(&config, &rec, BackendKind::Qemu);
        assert_eq!(kind, BackendKind::Qemu);
        vm.validate().unwrap();
        assert_eq!(vm.boot_args, "quiet lobster.ip=10.200.0.6/30 lobster.gw=10.200.0.5 lobster.agent_port=52 lobster.health_port=53");
        assert!(
            !vm.boot_args.contains(&rec.agent_token),
            "token must not be on the cmdline"
        );
        assert_eq!(vm.drives[0].path, config.paths.rootfs);
        assert!(vm.drives[0].read_only && !vm.drives[1].read_only);
        assert_eq!(vm.nic.as_ref().unwrap().tap, "lob-0a1b2c3d");
        let jail = vm.jail.expect("qemu is jailed");
        assert_eq!((jail.uid, jail.gid), (10001, 10001));
        assert_eq!(jail.limits.memory_bytes, (512 + 256) << 20);
        assert_eq!(jail.limits.cpu_quota_us, 100_000);
        assert_eq!(jail.cgroup(), std::path::Path::new("lobster/0a1b2c3d"));
        let (_, fc) = super::vm(&config, &rec, BackendKind::Firecracker);
        assert_eq!(fc.jail.unwrap().uid, 10001);
        let mut unjailed = config.clone();
        unjailed.vmm.firecracker.use_jailer = false;
        let (_, fc) = super::vm(&unjailed, &rec, BackendKind::Firecracker);
        assert!(fc.jail.is_none());
        let (rpc, health) = agent_endpoints(&config, &rec);
        assert_eq!(
            (rpc.to_string(), health.to_string()),
            ("10.200.0.6:52".into(), "10.200.0.6:53".into())
        );
        assert_eq!(
            route(&config, &rec).unwrap().upstream.to_string(),
            "10.200.0.6:9000"
        );
    }

    #[test]
    fn a_suspended_tenant_s_route_goes_to_its_wake_socket() {
        let config = Config::default();
        let mut rec = record();
        for status in [
            TenantStatus::Creating,
            TenantStatus::Running,
            TenantStatus::Failed,
        ] {
            rec.status = status;
            assert_eq!(
                route(&config, &rec).unwrap().upstream.to_string(),
                "10.200.0.6:9000",
                "{status}"
            );
        }
        rec.status = TenantStatus::Suspended;
        assert_eq!(
            route(&config, &rec).unwrap().upstream.to_string(),
            "unix//run/lobsterd-wake/0a1b2c3d.sock"
        );
        assert_eq!(gateway(&config, &rec).to_string(), "10.200.0.6:9000");
    }

    #[test]
    fn the_tenant_s_rates_limit_its_disks_nic_and_tap() {
        let config = Config::default();
        let mut rec = record();
        let (_, vm) = super::vm(&config, &rec, BackendKind::Qemu);
        assert!(
            vm.drives.iter().all(|d| d.rate_limiter.is_none()),
            "a record from before limits"
        );
        assert_eq!(tenant_net(&rec).unwrap().bandwidth_bits_per_s, None);
        rec.resources.limits = Some(TenantLimits {
            disk_mib_per_s: 4,
            disk_iops: 300,
            net_mbit_per_s: 16,
        });
        let (_, vm) = super::vm(&config, &rec, BackendKind::Firecracker);
        for drive in &vm.drives {
            let limiter = drive.rate_limiter.unwrap();
            assert_eq!(
                limiter.bandwidth.unwrap().per_second(),
                4 << 20,
                "{}",
                drive.id
            );
            assert_eq!(limiter.ops.unwrap().per_second(), 300, "{}", drive.id);
        }
        let nic = vm.nic.unwrap();
        for limiter in [nic.rx_rate_limiter.unwrap(), nic.tx_rate_limiter.unwrap()] {
            assert_eq!(limiter.bandwidth.unwrap().per_second(), 2_000_000);
            assert!(limiter.ops.is_none());
        }
        assert_eq!(
            tenant_net(&rec).unwrap().bandwidth_bits_per_s,
            Some(16_000_000)
        );
        rec.resources.limits = Some(TenantLimits {
            disk_iops: 0,
            ..rec.resources.limits.unwrap()
        });
        let (_, vm) = super::vm(&config, &rec, BackendKind::Qemu);
        assert!(
            vm.drives[1].rate_limiter.unwrap().ops.is_none(),
            "0 is no limit"
        );
    }

    #[test]
    fn the_backend_is_the_running_vm_s_then_the_spec_s_then_the_host_s() {
        let mut rec = record();
        assert_eq!(backend(&rec, BackendKind::Qemu), BackendKind::Qemu);
        rec.resources.backend = Some(Backend::Auto);
        assert_eq!(
            backend(&rec, BackendKind::Firecracker),
            BackendKind::Firecracker
        );
        rec.resources.backend = Some(Backend::Firecracker);
        assert_eq!(backend(&rec, BackendKind::Qemu), BackendKind::Firecracker);
        rec.vm = Some(crate::store::RunningVm {
            backend: BackendKind::Qemu,
            identity: crate::vmm::VmIdentity {
                pid: 1,
                start_time: 1,
                boot_id: None,
            },
        });
        assert_eq!(backend(&rec, BackendKind::Firecracker), BackendKind::Qemu);
    }

    #[test]
    fn default_workload_is_openclaw_with_the_tenant_token() {
        let config = Config::default();
        let mut rec = record();
        let w = workload(&config, &rec);
        assert!(w.command.is_empty());
        let oc = w.openclaw.unwrap();
        assert_eq!(oc.port, 9000);
        assert_eq!(oc.gateway_token.0, rec.gateway_token);
        assert_eq!(
            oc.extra["gateway"]["controlUi"]["allowedOrigins"][0],
            "https://alice.lobster.local"
        );
        assert_eq!(
            oc.extra.as_object().unwrap().len(),
            1,
            "only gateway keys: {}",
            oc.extra
        );
        rec.workload.command = vec!["busybox".into(), "httpd".into()];
        let w = workload(&config, &rec);
        assert!(w.openclaw.is_none());
        assert_eq!(w.port, Some(9000));
    }
}
