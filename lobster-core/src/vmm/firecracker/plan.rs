//! Planning Firecracker's API request sequences from a [`VmConfig`]
//! (pure; golden-tested). A plan is a list of [`ApiCall`]s that the client
//! sends in order; the first failure stops it.

use std::fmt;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::api;
use crate::vmm::vm_config::join_boot_args;
use crate::vmm::{Result, VmConfig, VmmError};

/// Arguments the Firecracker backend adds to every guest command line.
pub const BOOT_ARGS: [&str; 4] = ["console=ttyS0", "reboot=k", "panic=1", "pci=off"];

/// HTTP methods Firecracker's API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET.
    Get,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
}

impl Method {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One API request.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiCall {
    /// Method.
    pub method: Method,
    /// Path, e.g. `/drives/rootfs`.
    pub path: String,
    /// JSON body.
    pub body: Option<Value>,
}

impl ApiCall {
    fn put(path: impl Into<String>, body: &impl Serialize) -> ApiCall {
        ApiCall {
            method: Method::Put,
            path: path.into(),
            body: Some(serde_json::to_value(body).expect("api bodies serialise")),
        }
    }

    fn patch(path: impl Into<String>, body: &impl Serialize) -> ApiCall {
        ApiCall {
            method: Method::Patch,
            ..ApiCall::put(path, body)
        }
    }

    /// A GET of `path`.
    pub fn get(path: impl Into<String>) -> ApiCall {
        ApiCall {
            method: Method::Get,
            path: path.into(),
            body: None,
        }
    }
}

/// Optional Firecracker features (from the host configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    /// Configure the logger (to Firecracker's stdout, i.e. the console log).
    pub log_level: Option<api::LogLevel>,
    /// Flush metrics to a file next to the console log.
    pub metrics: bool,
    /// Attach a virtio-rng entropy device.
    pub entropy: bool,
    /// Attach a memory balloon.
    pub balloon: Option<api::Balloon>,
}

impl Default for Features {
    fn default() -> Self {
        Features {
            log_level: Some(api::LogLevel::Warning),
            metrics: false,
            entropy: true,
            balloon: None,
        }
    }
}

/// The files of a VM as Firecracker names them: host paths when it runs
/// directly, chroot-relative names under the jailer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileNames {
    /// The kernel.
    pub kernel: String,
    /// The initramfs.
    pub initrd: Option<String>,
    /// One per `config.drives`, same order.
    pub drives: Vec<String>,
    /// The metrics file, when metrics are on.
    pub metrics: Option<String>,
}

impl FileNames {
    /// Host paths, for Firecracker without the jailer.
    pub fn direct(config: &VmConfig, features: &Features) -> Result<FileNames> {
        let text = |field: &str, p: &Path| utf8(config, field, p);
        Ok(FileNames {
            kernel: text("kernel", &config.kernel)?,
            initrd: config
                .initrd
                .as_deref()
                .map(|p| text("initrd", p))
                .transpose()?,
            drives: config
                .drives
                .iter()
                .enumerate()
                .map(|(i, d)| text(&format!("drives[{i}].path"), &d.path))
                .collect::<Result<_>>()?,
            metrics: features
                .metrics
                .then(|| text("paths.console_log", &metrics_file(config)))
                .transpose()?,
        })
    }
}

/// Where metrics go on the host: next to the console log.
pub fn metrics_file(config: &VmConfig) -> std::path::PathBuf {
    config.paths.console_log.with_extension("metrics.json")
}

pub(crate) fn utf8(config: &VmConfig, field: &str, path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| VmmError::InvalidConfig {
            vm: config.vm_id.clone(),
            field: field.to_string(),
            reason: format!("{} is not valid UTF-8", path.display()),
        })
}

/// The guest kernel command line Firecracker is given.
pub fn kernel_cmdline(config: &VmConfig) -> String {
    let extra: Vec<String> = BOOT_ARGS.iter().map(|s| s.to_string()).collect();
    join_boot_args(&config.boot_args, &extra)
}

fn observability(files: &FileNames, features: &Features) -> Vec<ApiCall> {
    let mut calls = Vec::new();
    if let Some(level) = features.log_level {
        calls.push(ApiCall::put(
            "/logger",
            &api::Logger {
                level,
                log_path: None,
                show_level: true,
                show_log_origin: false,
            },
        ));
    }
    if let Some(path) = &files.metrics {
        calls.push(ApiCall::put(
            "/metrics",
            &api::Metrics {
                metrics_path: path.clone(),
            },
        ));
    }
    calls
}

/// Configure and boot: logger, metrics, machine, boot source, drives, NIC,
/// entropy, balloon, then `InstanceStart`.
pub fn launch(config: &VmConfig, files: &FileNames, features: &Features) -> Result<Vec<ApiCall>> {
    config.validate()?;
    let mut calls = observability(files, features);
    calls.push(ApiCall::put(
        "/machine-config",
        &api::MachineConfig {
            vcpu_count: config.vcpus,
            mem_size_mib: config.memory_mib,
            smt: false,
            track_dirty_pages: false,
        },
    ));
    calls.push(ApiCall::put(
        "/boot-source",
        &api::BootSource {
            kernel_image_path: files.kernel.clone(),
            initrd_path: files.initrd.clone(),
            boot_args: kernel_cmdline(config),
        },
    ));
    for (drive, path) in config.drives.iter().zip(&files.drives) {
        calls.push(ApiCall::put(
            format!("/drives/{}", drive.id),
            &api::Drive {
                drive_id: drive.id.clone(),
                path_on_host: path.clone(),
                is_root_device: false,
                is_read_only: drive.read_only,
                rate_limiter: drive.rate_limiter.map(Into::into),
            },
        ));
    }
    if let Some(nic) = &config.nic {
        calls.push(ApiCall::put(
            format!("/network-interfaces/{}", nic.id),
            &api::NetworkInterface {
                iface_id: nic.id.clone(),
                host_dev_name: nic.tap.clone(),
                guest_mac: nic.mac.clone(),
                rx_rate_limiter: nic.rx_rate_limiter.map(Into::into),
                tx_rate_limiter: nic.tx_rate_limiter.map(Into::into),
            },
        ));
    }
    if features.entropy {
        calls.push(ApiCall::put(
            "/entropy",
            &api::Entropy { rate_limiter: None },
        ));
    }
    if let Some(balloon) = &features.balloon {
        calls.push(ApiCall::put("/balloon", balloon));
    }
    calls.push(action(api::ActionType::InstanceStart));
    Ok(calls)
}

/// Load a snapshot into a fresh Firecracker: logger, metrics, `snapshot/load`.
pub fn restore(
    config: &VmConfig,
    files: &FileNames,
    features: &Features,
    snapshot_path: &str,
    memory_path: &str,
    resume: bool,
) -> Vec<ApiCall> {
    let mut calls = observability(files, features);
    calls.push(ApiCall::put(
        "/snapshot/load",
        &api::SnapshotLoad {
            snapshot_path: snapshot_path.to_string(),
            mem_backend: api::MemoryBackend {
                backend_type: "File".into(),
                backend_path: memory_path.to_string(),
            },
            resume_vm: resume,
            network_overrides: config
                .nic
                .iter()
                .map(|nic| api::NetworkOverride {
                    iface_id: nic.id.clone(),
                    host_dev_name: nic.tap.clone(),
                })
                .collect(),
        },
    ));
    calls
}

/// Write a full snapshot of the paused VM.
pub fn snapshot(snapshot_path: &str, memory_path: &str) -> ApiCall {
    ApiCall::put(
        "/snapshot/create",
        &api::SnapshotCreate {
            snapshot_path: snapshot_path.to_string(),
            mem_file_path: memory_path.to_string(),
            snapshot_type: "Full".into(),
        },
    )
}

/// Pause or resume.
pub fn set_state(state: api::VmState) -> ApiCall {
    ApiCall::patch("/vm", &api::VmStateChange { state })
}

/// An action (`InstanceStart`, `SendCtrlAltDel`, `FlushMetrics`).
pub fn action(action_type: api::ActionType) -> ApiCall {
    ApiCall::put("/actions", &api::InstanceAction { action_type })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::vmm::vm_config::tests::sample;

    fn summary(calls: &[ApiCall]) -> Vec<(String, String, Value)> {
        calls
            .iter()
            .map(|c| {
                (
                    c.method.to_string(),
                    c.path.clone(),
                    c.body.clone().unwrap_or(Value::Null),
                )
            })
            .collect()
    }

    #[test]
    fn launch_plan_matches_golden_sequence() {
        let config = sample();
        let features = Features {
            metrics: true,
            ..Features::default()
        };
        let files = FileNames::direct(&config, &features).unwrap();
        let calls = launch(&config, &files, &features).unwrap();
        let limit = json!({
            "bandwidth": {"size": 1_250_000, "one_time_burst": 0, "refill_time": 1000},
            "ops": {"size": 1000, "one_time_burst": 0, "refill_time": 1000},
        });
        let golden = vec![
            (
                "PUT",
                "/logger",
                json!({"level": "Warning", "show_level": true, "show_log_origin": false}),
            ),
            (
                "PUT",
                "/metrics",
                json!({"metrics_path": "/var/log/lobsterd/alice.console.metrics.json"}),
            ),
            (
                "PUT",
                "/machine-config",
                json!({"vcpu_count": 2, "mem_size_mib": 1024, "smt": false, "track_dirty_pages": false}),
            ),
            (
                "PUT",
                "/boot-source",
                json!({
                    "kernel_image_path": "/img/vmlinux",
                    "initrd_path": "/img/initramfs.cpio.gz",
                    "boot_args": "quiet lobster.ip=10.200.0.2/30 console=ttyS0 reboot=k panic=1 pci=off",
                }),
            ),
            (
                "PUT",
                "/drives/rootfs",
                json!({
                    "drive_id": "rootfs", "path_on_host": "/img/rootfs.ext4",
                    "is_root_device": false, "is_read_only": true,
                }),
            ),
            (
                "PUT",
                "/drives/overlay",
                json!({
                    "drive_id": "overlay", "path_on_host": "/var/lib/lobsterd/overlays/alice.ext4",
                    "is_root_device": false, "is_read_only": false,
                    "rate_limiter": {
                        "bandwidth": {"size": 52_428_800, "one_time_burst": 0, "refill_time": 1000},
                        "ops": {"size": 5000, "one_time_burst": 0, "refill_time": 1000},
                    },
                }),
            ),
            (
                "PUT",
                "/network-interfaces/eth0",
                json!({
                    "iface_id": "eth0", "host_dev_name": "lob-alice", "guest_mac": "06:00:0a:c8:00:02",
                    "rx_rate_limiter": limit, "tx_rate_limiter": limit,
                }),
            ),
            ("PUT", "/entropy", json!({})),
            ("PUT", "/actions", json!({"action_type": "InstanceStart"})),
        ];
        let golden: Vec<(String, String, Value)> = golden
            .into_iter()
            .map(|(m, p, b)| (m.to_string(), p.to_string(), b))
            .collect();
        assert_eq!(summary(&calls), golden);
    }

    #[test]
    fn restore_plan_loads_the_snapshot_with_the_current_tap() {
        let config = sample();
        let features = Features {
            log_level: None,
            ..Features::default()
        };
        let files = FileNames::direct(&config, &features).unwrap();
        let calls = restore(&config, &files, &features, "/s/state", "/s/mem", true);
        assert_eq!(
            summary(&calls),
            vec![(
                "PUT".to_string(),
                "/snapshot/load".to_string(),
                json!({
                    "snapshot_path": "/s/state",
                    "mem_backend": {"backend_type": "File", "backend_path": "/s/mem"},
                    "resume_vm": true,
                    "network_overrides": [{"iface_id": "eth0", "host_dev_name": "lob-alice"}],
                })
            )]
        );
    }

    #[test]
    fn lifecycle_calls() {
        assert_eq!(
            summary(&[
                set_state(api::VmState::Paused),
                snapshot("/s/state", "/s/mem"),
                set_state(api::VmState::Resumed),
                action(api::ActionType::SendCtrlAltDel),
            ]),
            vec![
                ("PATCH".into(), "/vm".into(), json!({"state": "Paused"})),
                (
                    "PUT".into(),
                    "/snapshot/create".into(),
                    json!({"snapshot_path": "/s/state", "mem_file_path": "/s/mem", "snapshot_type": "Full"})
                ),
                ("PATCH".into(), "/vm".into(), json!({"state": "Resumed"})),
                (
                    "PUT".into(),
                    "/actions".into(),
                    json!({"action_type": "SendCtrlAltDel"})
                ),
            ]
        );
    }
}
