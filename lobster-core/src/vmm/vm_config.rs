//! `VmConfig`: everything a backend needs to start one tenant's VM, as
//! plain data. The tenant layer builds it; backends only plan from it
//! (QEMU argv, Firecracker request sequence) and never invent paths.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Result, VmmError};

/// One VM, fully described.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// Identifier of the VM, unique on the host (`vm-<tenant>`); names the
    /// jailer chroot and appears in process titles and logs.
    pub vm_id: String,
    /// Guest kernel: `vmlinux` (ELF) for Firecracker, `vmlinuz` or `vmlinux` for QEMU.
    pub kernel: PathBuf,
    /// Optional initramfs.
    pub initrd: Option<PathBuf>,
    /// Kernel command line from the tenant layer; backends append their own
    /// arguments (console, panic behaviour, TCG clock hints).
    pub boot_args: String,
    /// Block devices in guest order: `vda`, `vdb`, ...
    pub drives: Vec<Drive>,
    /// The network interface, if any.
    pub nic: Option<Nic>,
    /// Virtual CPUs.
    pub vcpus: u8,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Per-VM files: sockets, console log, snapshots.
    pub paths: VmPaths,
    /// Run the VMM under a jail (Firecracker's jailer), if set.
    pub jail: Option<Jail>,
}

/// A block device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drive {
    /// Drive id (`rootfs`, `overlay`); letters [A-Za-z0-9_-].
    pub id: String,
    /// Backing raw image file.
    pub path: PathBuf,
    /// Attach read-only (the shared base image).
    pub read_only: bool,
    /// Optional I/O limits.
    pub rate_limiter: Option<RateLimiter>,
}

/// The guest's network interface, backed by a host TAP device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    /// Interface id inside the VMM (`eth0`).
    pub id: String,
    /// Host TAP device name.
    pub tap: String,
    /// Guest MAC address, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Limits on guest receive.
    pub rx_rate_limiter: Option<RateLimiter>,
    /// Limits on guest transmit.
    pub tx_rate_limiter: Option<RateLimiter>,
}

/// Firecracker-style rate limiter: a bandwidth and an operations bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimiter {
    /// Bytes per refill period.
    pub bandwidth: Option<TokenBucket>,
    /// Operations (packets, I/O requests) per refill period.
    pub ops: Option<TokenBucket>,
}

/// A token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBucket {
    /// Bucket size in tokens.
    pub size: u64,
    /// Initial burst allowed on top of `size`, consumed once.
    #[serde(default)]
    pub one_time_burst: u64,
    /// Milliseconds to refill the whole bucket.
    pub refill_time_ms: u64,
}

impl TokenBucket {
    /// Sustained rate in tokens per second.
    pub fn per_second(&self) -> u64 {
        self.size.saturating_mul(1000) / self.refill_time_ms.max(1)
    }
}

/// Per-VM host files. All absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmPaths {
    /// The VMM control socket: Firecracker's API socket or QEMU's QMP socket.
    pub api_socket: PathBuf,
    /// Console and VMM output, size-capped.
    pub console_log: PathBuf,
    /// Cap on `console_log` in bytes; older output is dropped beyond it.
    pub console_log_max_bytes: u64,
    /// Where snapshots (suspend) are written.
    pub snapshot_dir: PathBuf,
}

/// Isolation of the VMM process, on both backends: its own uid/gid, a
/// private view of the filesystem holding only its files (a chroot under
/// `chroot_base`), and its own cgroup with `limits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jail {
    /// The jail's identity, unique on the host (the tenant's id): it names
    /// the jail directory and the cgroup, so nothing of another host's or
    /// test's tenant of the same name is ever taken for this one's.
    pub id: String,
    /// Unprivileged uid the VMM runs as.
    pub uid: u32,
    /// Unprivileged gid the VMM runs as.
    pub gid: u32,
    /// Base directory of the chroots (`<base>/<backend>/<id>/root`).
    pub chroot_base: PathBuf,
    /// The VM's cgroup is `<parent>/<id>` under each controller's mount.
    pub cgroup_parent: PathBuf,
    /// Memory, CPU and task limits of that cgroup.
    pub limits: Limits,
    /// Join this network namespace (path under /var/run/netns).
    pub netns: Option<PathBuf>,
}

/// cgroup limits of a jailed VMM.
pub use crate::sys::cgroup::Limits;

/// Tasks a VMM may have beyond one per vCPU: QEMU's I/O worker pool alone
/// grows to 64 threads.
pub const PIDS_BASE: u64 = 128;

impl VmPaths {
    /// The standard per-tenant files: `<sockets_dir>/<name>.sock`,
    /// `<logs_dir>/<name>.console.log`, `<snapshots_dir>/<name>/`.
    pub fn for_tenant(
        paths: &crate::config::PathsConfig,
        vmm: &crate::config::VmmConfig,
        name: &str,
    ) -> VmPaths {
        VmPaths {
            api_socket: paths.sockets_dir.join(format!("{name}.sock")),
            console_log: paths.logs_dir.join(format!("{name}.console.log")),
            console_log_max_bytes: vmm.console_log_max_bytes,
            snapshot_dir: paths.snapshots_dir.join(name),
        }
    }
}

impl Jail {
    /// The jail of a tenant's VMM on `backend`: its own uid/gid, memory of
    /// guest memory plus the backend's configured overhead, one CPU per
    /// vCPU, [`PIDS_BASE`] plus one task per vCPU, and optionally the
    /// tenant's network namespace.
    pub fn for_tenant(
        vmm: &crate::config::VmmConfig,
        backend: crate::config::BackendKind,
        id: &str,
        uid: u32,
        vcpus: u8,
        memory_mib: u32,
        netns: Option<PathBuf>,
    ) -> Jail {
        let overhead = match backend {
            crate::config::BackendKind::Firecracker => vmm.firecracker.memory_overhead_mib,
            crate::config::BackendKind::Qemu => vmm.qemu.memory_overhead_mib,
        };
        let mib = u64::from(memory_mib) + u64::from(overhead);
        Jail {
            id: id.to_owned(),
            uid,
            gid: uid,
            chroot_base: vmm.firecracker.chroot_base.clone(),
            cgroup_parent: vmm.cgroup_parent.clone(),
            limits: Limits {
                memory_bytes: mib << 20,
                cpu_quota_us: u64::from(vcpus) * 100_000,
                cpu_period_us: 100_000,
                pids: PIDS_BASE + u64::from(vcpus),
            },
            netns,
        }
    }

    /// The VM's cgroup, relative to each controller's mount.
    pub fn cgroup(&self) -> PathBuf {
        self.cgroup_parent.join(&self.id)
    }
}

impl VmConfig {
    /// Checks what every backend relies on; errors name the field.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &str, reason: String| {
            Err(VmmError::InvalidConfig {
                vm: self.vm_id.clone(),
                field: field.to_string(),
                reason,
            })
        };
        let id_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !id_ok(&self.vm_id) {
            return invalid("vm_id", "must be 1-64 of [A-Za-z0-9_-]".into());
        }
        if self.vcpus == 0 || self.vcpus > 32 {
            return invalid("vcpus", format!("{} is not in 1..=32", self.vcpus));
        }
        if self.memory_mib < 32 {
            return invalid("memory_mib", format!("{} is below 32", self.memory_mib));
        }
        if let Some(jail) = &self.jail {
            if !id_ok(&jail.id) {
                return invalid("jail.id", "must be 1-64 of [A-Za-z0-9_-]".into());
            }
        }
        for (i, drive) in self.drives.iter().enumerate() {
            if !id_ok(&drive.id) {
                return invalid(
                    &format!("drives[{i}].id"),
                    "must be 1-64 of [A-Za-z0-9_-]".into(),
                );
            }
            if self.drives[..i].iter().any(|d| d.id == drive.id) {
                return invalid(
                    &format!("drives[{i}].id"),
                    format!("`{}` repeats", drive.id),
                );
            }
        }
        if let Some(nic) = &self.nic {
            if !is_mac(&nic.mac) {
                return invalid("nic.mac", format!("`{}` is not aa:bb:cc:dd:ee:ff", nic.mac));
            }
            if nic.tap.is_empty() || nic.tap.len() > 15 {
                return invalid("nic.tap", "must be 1-15 bytes (IFNAMSIZ)".into());
            }
        }
        for (field, bucket) in self.token_buckets() {
            if bucket.refill_time_ms == 0 {
                return invalid(&field, "refill_time_ms must be at least 1".into());
            }
        }
        for (field, path) in [
            ("paths.api_socket", &self.paths.api_socket),
            ("paths.console_log", &self.paths.console_log),
            ("paths.snapshot_dir", &self.paths.snapshot_dir),
        ] {
            if !path.is_absolute() {
                return invalid(field, format!("{} is not absolute", path.display()));
            }
        }
        // sun_path is 108 bytes including the terminating NUL.
        if self.paths.api_socket.as_os_str().len() > 107 {
            return invalid(
                "paths.api_socket",
                "longer than a unix socket path allows".into(),
            );
        }
        Ok(())
    }

    fn token_buckets(&self) -> Vec<(String, TokenBucket)> {
        let mut out = Vec::new();
        let mut add = |name: String, limiter: &Option<RateLimiter>| {
            if let Some(l) = limiter {
                for (kind, bucket) in [("bandwidth", l.bandwidth), ("ops", l.ops)] {
                    if let Some(b) = bucket {
                        out.push((format!("{name}.{kind}"), b));
                    }
                }
            }
        };
        for (i, d) in self.drives.iter().enumerate() {
            add(format!("drives[{i}].rate_limiter"), &d.rate_limiter);
        }
        if let Some(nic) = &self.nic {
            add("nic.rx_rate_limiter".into(), &nic.rx_rate_limiter);
            add("nic.tx_rate_limiter".into(), &nic.tx_rate_limiter);
        }
        out
    }
}

fn is_mac(text: &str) -> bool {
    let parts: Vec<&str> = text.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Joins a base command line and backend additions with single spaces.
pub(crate) fn join_boot_args(base: &str, extra: &[String]) -> String {
    base.split_whitespace()
        .map(str::to_string)
        .chain(extra.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The configuration the golden tests of both backends plan from.
    pub(crate) fn sample() -> VmConfig {
        let limit = RateLimiter {
            bandwidth: Some(TokenBucket {
                size: 1_250_000,
                one_time_burst: 0,
                refill_time_ms: 1000,
            }),
            ops: Some(TokenBucket {
                size: 1000,
                one_time_burst: 0,
                refill_time_ms: 1000,
            }),
        };
        VmConfig {
            vm_id: "vm-alice".into(),
            kernel: "/img/vmlinux".into(),
            initrd: Some("/img/initramfs.cpio.gz".into()),
            boot_args: "quiet lobster.ip=10.200.0.2/30".into(),
            drives: vec![
                Drive {
                    id: "rootfs".into(),
                    path: "/img/rootfs.ext4".into(),
                    read_only: true,
                    rate_limiter: None,
                },
                Drive {
                    id: "overlay".into(),
                    path: "/var/lib/lobsterd/overlays/alice.ext4".into(),
                    read_only: false,
                    rate_limiter: Some(RateLimiter {
                        bandwidth: Some(TokenBucket {
                            size: 52_428_800,
                            one_time_burst: 0,
                            refill_time_ms: 1000,
                        }),
                        ops: Some(TokenBucket {
                            size: 5000,
                            one_time_burst: 0,
                            refill_time_ms: 1000,
                        }),
                    }),
                },
            ],
            nic: Some(Nic {
                id: "eth0".into(),
                tap: "lob-alice".into(),
                mac: "06:00:0a:c8:00:02".into(),
                rx_rate_limiter: Some(limit),
                tx_rate_limiter: Some(limit),
            }),
            vcpus: 2,
            memory_mib: 1024,
            paths: VmPaths {
                api_socket: "/run/lobsterd/alice.sock".into(),
                console_log: "/var/log/lobsterd/alice.console.log".into(),
                console_log_max_bytes: 1 << 20,
                snapshot_dir: "/var/lib/lobsterd/snapshots/alice".into(),
            },
            jail: None,
        }
    }

    #[test]
    fn sample_is_valid_and_round_trips_through_json() {
        let config = sample();
        config.validate().unwrap();
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<VmConfig>(&json).unwrap(), config);
    }

    #[test]
    fn validation_names_the_field() {
        let mut config = sample();
        config.nic.as_mut().unwrap().mac = "zz".into();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("nic.mac"), "{err}");

        let mut config = sample();
        config.drives[1].id = "rootfs".into();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("drives[1].id"), "{err}");

        let mut config = sample();
        config.drives[1]
            .rate_limiter
            .as_mut()
            .unwrap()
            .ops
            .as_mut()
            .unwrap()
            .refill_time_ms = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("drives[1].rate_limiter.ops"), "{err}");
    }

    #[test]
    fn tenant_helpers_follow_the_host_configuration() {
        let config = crate::config::Config::default();
        let paths = VmPaths::for_tenant(&config.paths, &config.vmm, "alice");
        assert_eq!(paths.api_socket, PathBuf::from("/run/lobsterd/alice.sock"));
        assert_eq!(
            paths.console_log,
            PathBuf::from("/var/log/lobsterd/alice.console.log")
        );
        assert_eq!(
            paths.snapshot_dir,
            PathBuf::from("/var/lib/lobsterd/snapshots/alice")
        );
        let fc = crate::config::BackendKind::Firecracker;
        let jail = Jail::for_tenant(&config.vmm, fc, "0a1b2c3d", 10003, 2, 1024, None);
        assert_eq!(jail.limits.memory_bytes, (1024 + 128) << 20);
        assert_eq!(
            (jail.limits.cpu_quota_us, jail.limits.cpu_period_us),
            (200_000, 100_000)
        );
        assert_eq!(jail.limits.pids, PIDS_BASE + 2);
        assert_eq!(jail.cgroup(), PathBuf::from("lobster/0a1b2c3d"));
        let qemu = crate::config::BackendKind::Qemu;
        let jail = Jail::for_tenant(&config.vmm, qemu, "0a1b2c3d", 10003, 2, 1024, None);
        assert_eq!(jail.limits.memory_bytes, (1024 + 256) << 20);
        assert_eq!((jail.uid, jail.gid), (10003, 10003));
    }

    #[test]
    fn boot_args_are_joined_with_single_spaces() {
        assert_eq!(
            join_boot_args("  a  b ", &["c".into(), "d=1".into()]),
            "a b c d=1"
        );
    }
}
