//! The fake's state machine: what Firecracker accepts in which phase, and
//! what it answers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use serde_json::{json, Value};

use super::{FakeOptions, Phase, Recorded};

#[derive(Debug)]
pub(super) struct State {
    pub(super) options: FakeOptions,
    pub(super) phase: Phase,
    pub(super) ticks: u64,
    pub(super) config: BTreeMap<String, Value>,
    pub(super) drives: Vec<Value>,
    pub(super) nics: Vec<Value>,
    pub(super) snapshot_loaded: bool,
    /// Set by any boot-specific resource, as Firecracker's `boot_path`;
    /// a snapshot can no longer be loaded afterwards.
    pub(super) boot_path: bool,
    pub(super) log: Vec<Recorded>,
    pub(super) on_exit: Option<ExitHook>,
}

/// What runs when the fake guest exits.
#[derive(Clone)]
pub(super) struct ExitHook(pub(super) Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for ExitHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExitHook")
    }
}

pub(super) type Answer = (StatusCode, Option<Value>);

/// The fake guest's memory: this mark, then zero pages.
pub const MEMORY_MARK: &[u8] = b"fake guest memory";
/// Size of the fake guest's memory file (2 MiB).
pub const FAKE_MEMORY_BYTES: usize = 2 << 20;

/// How Firecracker (1.14.4, checked by hand) prefixes a failed load.
const LOAD_FAILED: &str = "Load snapshot error: Failed to restore from snapshot";

const NOT_AFTER_START: &str =
    "The requested operation is not supported after starting the microVM.";
const NOT_BEFORE_START: &str =
    "The requested operation is not supported before starting the microVM.";

pub(super) fn fault(message: String) -> Answer {
    (
        StatusCode::BAD_REQUEST,
        Some(json!({ "fault_message": message })),
    )
}

pub(super) fn ok() -> Answer {
    (StatusCode::NO_CONTENT, None)
}

impl State {
    pub(super) fn new(options: FakeOptions) -> State {
        State {
            options,
            phase: Phase::NotStarted,
            ticks: 0,
            config: BTreeMap::new(),
            drives: Vec::new(),
            nics: Vec::new(),
            snapshot_loaded: false,
            boot_path: false,
            log: Vec::new(),
            on_exit: None,
        }
    }

    fn preboot(&self) -> Result<(), Answer> {
        if self.phase != Phase::NotStarted || self.snapshot_loaded {
            return Err(fault(NOT_AFTER_START.into()));
        }
        Ok(())
    }

    fn host_path(&self, path: &str) -> PathBuf {
        match &self.options.root {
            Some(root) => root.join(path.trim_start_matches('/')),
            None => PathBuf::from(path),
        }
    }

    fn file_must_exist(&self, path: &str, what: &str) -> Result<(), Answer> {
        if self.host_path(path).is_file() {
            Ok(())
        } else {
            Err(fault(format!(
                "{what}: No such file or directory (os error 2): {path}"
            )))
        }
    }

    fn instance_state(&self) -> &'static str {
        match self.phase {
            Phase::NotStarted => "Not started",
            Phase::Running | Phase::Exited => "Running",
            Phase::Paused => "Paused",
        }
    }

    fn full_config(&self) -> Value {
        let mut full = json!({
            "machine-config": self.machine_config(),
            "drives": self.drives,
            "network-interfaces": self.nics,
        });
        for (key, value) in &self.config {
            if key != "machine-config" {
                full[key] = value.clone();
            }
        }
        full
    }

    fn machine_config(&self) -> Value {
        self.config.get("machine-config").cloned().unwrap_or_else(|| {
            json!({"vcpu_count": 1, "mem_size_mib": 128, "smt": false, "track_dirty_pages": false})
        })
    }

    fn upsert(list: &mut Vec<Value>, key: &str, body: &Value) {
        match list.iter_mut().find(|v| v[key] == body[key]) {
            Some(existing) => *existing = body.clone(),
            None => list.push(body.clone()),
        }
    }

    pub(super) fn apply(
        &mut self,
        method: &str,
        template: &str,
        id: Option<String>,
        body: &Value,
    ) -> Answer {
        match self.apply_inner(method, template, id, body) {
            Ok(answer) | Err(answer) => answer,
        }
    }

    fn apply_inner(
        &mut self,
        method: &str,
        template: &str,
        id: Option<String>,
        body: &Value,
    ) -> Result<Answer, Answer> {
        match (method, template) {
            ("GET", "/") => Ok((
                StatusCode::OK,
                Some(json!({
                    "app_name": "Firecracker",
                    "id": self.options.id,
                    "state": self.instance_state(),
                    "vmm_version": "1.16.1",
                })),
            )),
            ("GET", "/version") => Ok((
                StatusCode::OK,
                Some(json!({"firecracker_version": "1.16.1"})),
            )),
            ("GET", "/machine-config") => Ok((StatusCode::OK, Some(self.machine_config()))),
            ("GET", "/vm/config") => Ok((StatusCode::OK, Some(self.full_config()))),
            ("PUT", "/logger") => {
                self.preboot()?;
                if let Some(path) = body["log_path"].as_str() {
                    self.file_must_exist(path, "Failed to open the log file")?;
                }
                self.config.insert("logger".into(), body.clone());
                Ok(ok())
            }
            ("PUT", "/metrics") => {
                self.preboot()?;
                if self.config.contains_key("metrics") {
                    return Err(fault("Reinitialization of metrics not allowed.".into()));
                }
                let path = body["metrics_path"].as_str().unwrap_or_default();
                self.file_must_exist(path, "Failed to open the metrics file")?;
                self.config.insert("metrics".into(), body.clone());
                Ok(ok())
            }
            ("PUT", "/machine-config") | ("PATCH", "/machine-config") => {
                self.preboot()?;
                let mut machine = if method == "PATCH" {
                    self.machine_config()
                } else {
                    json!({"smt": false, "track_dirty_pages": false})
                };
                for (k, v) in body.as_object().into_iter().flatten() {
                    machine[k] = v.clone();
                }
                if machine.get("vcpu_count").is_none() || machine.get("mem_size_mib").is_none() {
                    let base = self.machine_config();
                    for key in ["vcpu_count", "mem_size_mib"] {
                        if machine.get(key).is_none() {
                            machine[key] = base[key].clone();
                        }
                    }
                }
                self.config.insert("machine-config".into(), machine);
                self.boot_path = true;
                Ok(ok())
            }
            ("PUT", "/boot-source") => {
                self.preboot()?;
                let kernel = body["kernel_image_path"].as_str().unwrap_or_default();
                self.file_must_exist(kernel, "The kernel file cannot be opened")?;
                if let Some(initrd) = body["initrd_path"].as_str() {
                    self.file_must_exist(initrd, "The initrd file cannot be opened")?;
                }
                self.config.insert("boot-source".into(), body.clone());
                self.boot_path = true;
                Ok(ok())
            }
            ("PUT", "/drives/{drive_id}") => {
                self.preboot()?;
                if id.as_deref() != body["drive_id"].as_str() {
                    return Err(fault(
                        "The id from the path does not match the id from the body!".into(),
                    ));
                }
                let path = body["path_on_host"].as_str().ok_or_else(|| {
                    fault("Unable to create the block device: path_on_host is required for virtio-block.".into())
                })?;
                self.file_must_exist(path, "Unable to create the block device: BackingFile")?;
                if body["is_root_device"] == true
                    && self
                        .drives
                        .iter()
                        .any(|d| d["is_root_device"] == true && d["drive_id"] != body["drive_id"])
                {
                    return Err(fault("A root block device already exists!".into()));
                }
                Self::upsert(&mut self.drives, "drive_id", body);
                self.boot_path = true;
                Ok(ok())
            }
            ("PUT", "/network-interfaces/{iface_id}") => {
                self.preboot()?;
                if id.as_deref() != body["iface_id"].as_str() {
                    return Err(fault(
                        "The id from the path does not match the id from the body!".into(),
                    ));
                }
                if let Some(mac) = body["guest_mac"].as_str() {
                    let parts: Vec<&str> = mac.split(':').collect();
                    if parts.len() != 6
                        || !parts
                            .iter()
                            .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok())
                    {
                        return Err(fault(format!(
                            "An error occurred when deserializing the json body of a request: invalid MAC address: {mac}."
                        )));
                    }
                }
                if self.nics.iter().any(|n| {
                    n["host_dev_name"] == body["host_dev_name"] && n["iface_id"] != body["iface_id"]
                }) {
                    return Err(fault("The host device name is already in use.".into()));
                }
                Self::upsert(&mut self.nics, "iface_id", body);
                self.boot_path = true;
                Ok(ok())
            }
            ("PUT", "/entropy") | ("PUT", "/balloon") => {
                self.preboot()?;
                self.config
                    .insert(template.trim_start_matches('/').into(), body.clone());
                self.boot_path = true;
                Ok(ok())
            }
            ("PUT", "/actions") => match body["action_type"].as_str() {
                Some("InstanceStart") => {
                    self.preboot()?;
                    if !self.config.contains_key("boot-source") {
                        return Err(fault(
                            "Cannot start microvm without kernel configuration.".into(),
                        ));
                    }
                    self.phase = Phase::Running;
                    Ok(ok())
                }
                Some("SendCtrlAltDel") => {
                    if self.phase == Phase::NotStarted {
                        return Err(fault(NOT_BEFORE_START.into()));
                    }
                    // Firecracker exits shortly after the guest reboots.
                    self.exit_soon();
                    Ok(ok())
                }
                Some("FlushMetrics") => {
                    if self.phase == Phase::NotStarted && !self.snapshot_loaded {
                        return Err(fault(NOT_BEFORE_START.into()));
                    }
                    // Firecracker answers 204 even without a metrics file.
                    Ok(ok())
                }
                _ => Err(fault("unreachable: the spec validated the action".into())),
            },
            ("PATCH", "/vm") => {
                if self.phase == Phase::NotStarted && !self.snapshot_loaded {
                    return Err(fault(NOT_BEFORE_START.into()));
                }
                self.phase = match body["state"].as_str() {
                    Some("Paused") => Phase::Paused,
                    _ => Phase::Running,
                };
                Ok(ok())
            }
            ("PUT", "/snapshot/create") => {
                if self.phase == Phase::NotStarted && !self.snapshot_loaded {
                    return Err(fault(NOT_BEFORE_START.into()));
                }
                if self.phase != Phase::Paused {
                    return Err(fault(
                        "Create snapshot error: Cannot create a snapshot while the microVM is not paused.".into(),
                    ));
                }
                let state_path = self.host_path(body["snapshot_path"].as_str().unwrap_or_default());
                let mem_path = self.host_path(body["mem_file_path"].as_str().unwrap_or_default());
                let snapshot = json!({"fake_firecracker_snapshot": 1, "ticks": self.ticks, "config": self.full_config()});
                // Firecracker writes every page of guest memory, zero or not.
                let mut memory = vec![0u8; FAKE_MEMORY_BYTES];
                memory[..MEMORY_MARK.len()].copy_from_slice(MEMORY_MARK);
                let written = std::fs::write(&state_path, snapshot.to_string())
                    .and_then(|()| std::fs::write(&mem_path, &memory));
                match written {
                    Ok(()) => Ok(ok()),
                    Err(e) => Err(fault(format!(
                        "Create snapshot error: Cannot write snapshot files: {e}"
                    ))),
                }
            }
            ("PUT", "/snapshot/load") => {
                if self.phase != Phase::NotStarted || self.snapshot_loaded {
                    return Err(fault(NOT_AFTER_START.into()));
                }
                if self.boot_path {
                    return Err(fault(
                        "Load snapshot error: Loading a microVM snapshot not allowed after configuring boot-specific resources.".into(),
                    ));
                }
                let memory = match (body.get("mem_file_path"), body.get("mem_backend")) {
                    (Some(p), None) => p.as_str().unwrap_or_default().to_string(),
                    (None, Some(b)) => b["backend_path"].as_str().unwrap_or_default().to_string(),
                    _ => return Err(fault(
                        "An error occurred when deserializing the json body of a request: too many fields: either `mem_backend` or `mem_file_path` exclusively is required."
                            .into(),
                    )),
                };
                // From here on a failure is fatal: Firecracker tears down.
                let loaded = self.load_snapshot(body, &memory);
                if loaded.is_err() {
                    self.exit_soon();
                }
                loaded
            }
            _ => Err(fault(format!(
                "lobster's fake firecracker does not model {method} {template}"
            ))),
        }
    }

    /// Ends the fake VMM shortly (the guest rebooted, or a fatal error).
    fn exit_soon(&mut self) {
        self.phase = Phase::Exited;
        if let Some(callback) = self.on_exit.clone() {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                (callback.0)();
            });
        }
    }

    /// Loads a snapshot from `memory` and the body's state file; fault
    /// messages are Firecracker 1.14.4's own.
    fn load_snapshot(&mut self, body: &Value, memory: &str) -> Result<Answer, Answer> {
        let state_path = body["snapshot_path"].as_str().unwrap_or_default();
        let text = std::fs::read(self.host_path(state_path)).map_err(|e| {
            fault(format!(
                "{LOAD_FAILED}: Failed to get snapshot state from file: Failed to open snapshot file: {e}"
            ))
        })?;
        let snapshot: Value = serde_json::from_slice(&text).map_err(|_| {
            fault(format!(
                "{LOAD_FAILED}: Failed to get snapshot state from file: Failed to load snapshot state from file: An error occured during bincode decoding: LimitExceeded"
            ))
        })?;
        let config = &snapshot["config"];
        let mut nics: Vec<Value> = config["network-interfaces"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for o in body["network_overrides"].as_array().into_iter().flatten() {
            let nic = nics
                .iter_mut()
                .find(|n| n["iface_id"] == o["iface_id"])
                .ok_or_else(|| {
                    fault(format!(
                        "{LOAD_FAILED}: Failed to get snapshot state from file: Unknown Network Device."
                    ))
                })?;
            nic["host_dev_name"] = o["host_dev_name"].clone();
        }
        let loaded = std::fs::read(self.host_path(memory)).map_err(|e| {
            fault(format!(
                "{LOAD_FAILED}: Failed to load guest memory: Error creating guest memory from file: Failed to load guest memory: {e}"
            ))
        })?;
        if loaded.len() != FAKE_MEMORY_BYTES || !loaded.starts_with(MEMORY_MARK) {
            return Err(fault(format!(
                "{LOAD_FAILED}: Failed to load guest memory: Error creating guest memory from file: Failed to restore guest memory: Total sum of memory regions exceeds largest possible file offset"
            )));
        }
        self.ticks = snapshot["ticks"].as_u64().unwrap_or(0);
        self.drives = config["drives"].as_array().cloned().unwrap_or_default();
        self.nics = nics;
        for key in ["machine-config", "boot-source", "entropy", "balloon"] {
            if !config[key].is_null() {
                self.config.insert(key.into(), config[key].clone());
            }
        }
        self.snapshot_loaded = true;
        self.phase = if body["resume_vm"] == true {
            Phase::Running
        } else {
            Phase::Paused
        };
        Ok(ok())
    }
}
