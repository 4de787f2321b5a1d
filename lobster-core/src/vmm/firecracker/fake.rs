//! A fake Firecracker API server for contract tests (feature `testing`).
//!
//! It listens on a unix socket like Firecracker, checks every request's
//! method, path and body against the pinned spec ([`super::spec`]), and
//! answers as Firecracker does: `204` for accepted PUT/PATCH, `200` with
//! JSON for GET, `400` with `{"fault_message": ...}` otherwise. It keeps
//! enough state to refuse what Firecracker refuses out of order:
//! pre-boot-only calls after `InstanceStart`, `InstanceStart` without a
//! boot source, `PATCH /vm` before start, `snapshot/create` unless paused,
//! `snapshot/load` after boot-specific resources were configured (logger and
//! metrics do not count; a failed load ends the process), missing kernel or
//! drive files. Fault messages follow Firecracker's own wording where known. Snapshots are real files holding the fake guest's state
//! (its configuration and a tick counter that advances while it runs), so a
//! restore can be checked to carry state across processes.
//!
//! [`FakeLauncher`] plugs it into the Firecracker backend: for each launch
//! it starts a stand-in process (supervised like a real VMM) and serves the
//! API on the `--api-sock` path from the planned argv; the server stops
//! when the stand-in dies, and `SendCtrlAltDel` makes the stand-in exit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::spec::Spec;
use super::Launcher;
use crate::vmm::{ConsoleLog, Result, VmProcess};

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Parsed body (`Null` when empty).
    pub body: Value,
    /// The status answered.
    pub status: u16,
    /// `fault_message` when rejected.
    pub fault: Option<String>,
}

/// The fake VM's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Configuring.
    NotStarted,
    /// Guest running.
    Running,
    /// vCPUs paused.
    Paused,
    /// The guest rebooted (Ctrl+Alt+Del): Firecracker exits.
    Exited,
}

/// Knobs of the fake.
#[derive(Debug, Clone, Default)]
pub struct FakeOptions {
    /// The instance id (`--id`).
    pub id: String,
    /// Root that file paths in requests are relative to (a jailer chroot);
    /// `None`: host paths.
    pub root: Option<PathBuf>,
    /// Delay the answer to this path by this long (to test timeouts).
    pub delay: Option<(String, Duration)>,
}

#[derive(Debug)]
struct State {
    options: FakeOptions,
    phase: Phase,
    ticks: u64,
    config: BTreeMap<String, Value>,
    drives: Vec<Value>,
    nics: Vec<Value>,
    snapshot_loaded: bool,
    /// Set by any boot-specific resource, as Firecracker's `boot_path`;
    /// a snapshot can no longer be loaded afterwards.
    boot_path: bool,
    log: Vec<Recorded>,
    on_exit: Option<ExitHook>,
}

/// What runs when the fake guest exits.
#[derive(Clone)]
struct ExitHook(Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for ExitHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExitHook")
    }
}

/// A running fake server.
#[derive(Debug, Clone)]
pub struct FakeFirecracker {
    socket: PathBuf,
    state: Arc<Mutex<State>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

type Answer = (StatusCode, Option<Value>);

const NOT_AFTER_START: &str =
    "The requested operation is not supported after starting the microVM.";
const NOT_BEFORE_START: &str =
    "The requested operation is not supported before starting the microVM.";

impl FakeFirecracker {
    /// Binds `socket` (which must not exist, as for Firecracker) and serves.
    /// Must be called inside a tokio runtime.
    pub fn start(socket: &Path, options: FakeOptions) -> std::io::Result<FakeFirecracker> {
        let listener = std::os::unix::net::UnixListener::bind(socket)?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        let state = Arc::new(Mutex::new(State {
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
        }));
        let spec = Arc::new(Spec::pinned());
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                let spec = spec.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handle(spec.clone(), state.clone(), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FakeFirecracker {
            socket: socket.to_path_buf(),
            state,
            task: Arc::new(task),
        })
    }

    /// The socket it serves on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().log.clone()
    }

    /// The fake VM's phase.
    pub fn phase(&self) -> Phase {
        self.state.lock().unwrap().phase
    }

    /// The fake guest's progress counter.
    pub fn ticks(&self) -> u64 {
        self.state.lock().unwrap().ticks
    }

    /// Runs `callback` when the guest exits (Ctrl+Alt+Del).
    pub fn on_exit(&self, callback: Arc<dyn Fn() + Send + Sync>) {
        self.state.lock().unwrap().on_exit = Some(ExitHook(callback));
    }

    /// Stops serving (as if the process died); the socket file stays.
    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn handle(
    spec: Arc<Spec>,
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> std::result::Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let delay = {
        let s = state.lock().unwrap();
        s.options
            .delay
            .as_ref()
            .filter(|(p, _)| *p == path)
            .map(|(_, d)| *d)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                let answer = fault(format!(
                    "An error occurred when deserializing the json body of a request: {e}."
                ));
                return Ok(record(&state, &method, &path, Value::Null, answer));
            }
        }
    };
    let answer = answer(&spec, &state, &method, &path, &body);
    Ok(record(&state, &method, &path, body, answer))
}

fn record(
    state: &Mutex<State>,
    method: &str,
    path: &str,
    body: Value,
    (status, payload): Answer,
) -> Response<Full<Bytes>> {
    let fault = payload
        .as_ref()
        .filter(|_| !status.is_success())
        .and_then(|p| p["fault_message"].as_str().map(str::to_string));
    state.lock().unwrap().log.push(Recorded {
        method: method.to_string(),
        path: path.to_string(),
        body,
        status: status.as_u16(),
        fault,
    });
    let bytes = payload
        .map(|p| Bytes::from(serde_json::to_vec(&p).expect("json")))
        .unwrap_or_default();
    let mut response = Response::new(Full::new(bytes));
    *response.status_mut() = status;
    if status != StatusCode::NO_CONTENT {
        response
            .headers_mut()
            .insert("Content-Type", "application/json".parse().expect("header"));
    }
    response
}

fn fault(message: String) -> Answer {
    (
        StatusCode::BAD_REQUEST,
        Some(json!({ "fault_message": message })),
    )
}

fn ok() -> Answer {
    (StatusCode::NO_CONTENT, None)
}

fn answer(spec: &Spec, state: &Mutex<State>, method: &str, path: &str, body: &Value) -> Answer {
    let Some(op) = spec.operation(method, path) else {
        return fault(format!(
            "Invalid request method and/or path: {method} {path}."
        ));
    };
    match (&op.body_schema, body) {
        (Some(_), Value::Null) if op.body_required || method != "GET" => {
            return fault("The body of the request is empty.".into())
        }
        (Some(schema), body) if !body.is_null() => {
            if let Err(e) = spec.validate(schema, body) {
                return fault(format!(
                    "An error occurred when deserializing the json body of a request: {e}."
                ));
            }
        }
        (None, body) if !body.is_null() => {
            return fault(format!("{method} {path} takes no body."));
        }
        _ => {}
    }
    let mut s = state.lock().unwrap();
    if s.phase == Phase::Running {
        s.ticks += 1; // the guest makes progress while it runs
    }
    let id_param = op.params.values().next().cloned();
    s.apply(method, &op.template, id_param, body)
}

impl State {
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

    fn apply(&mut self, method: &str, template: &str, id: Option<String>, body: &Value) -> Answer {
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
                let written = std::fs::write(&state_path, snapshot.to_string())
                    .and_then(|()| std::fs::write(&mem_path, b"fake guest memory"));
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
                // From here on a failure is fatal: Firecracker tears down.
                let loaded = self.load_snapshot(body);
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

    fn load_snapshot(&mut self, body: &Value) -> Result<Answer, Answer> {
        let memory = match (body.get("mem_file_path"), body.get("mem_backend")) {
            (Some(p), None) => p.as_str().unwrap_or_default().to_string(),
            (None, Some(b)) => b["backend_path"].as_str().unwrap_or_default().to_string(),
            _ => return Err(fault(
                "Load snapshot error: exactly one of mem_file_path and mem_backend must be given."
                    .into(),
            )),
        };
        self.file_must_exist(&memory, "Load snapshot error: Cannot open the memory file")?;
        let state_path = body["snapshot_path"].as_str().unwrap_or_default();
        self.file_must_exist(
            state_path,
            "Load snapshot error: Cannot open the snapshot file",
        )?;
        let text = std::fs::read_to_string(self.host_path(state_path)).unwrap_or_default();
        let snapshot: Value = serde_json::from_str(&text).map_err(|_| {
            fault("Load snapshot error: Cannot deserialize the microVM state.".into())
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
                        "Load snapshot error: unknown network interface {}.",
                        o["iface_id"]
                    ))
                })?;
            nic["host_dev_name"] = o["host_dev_name"].clone();
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

/// A [`Launcher`] that runs every VM against a [`FakeFirecracker`]: a
/// stand-in process is spawned and supervised as the VMM, and the fake
/// serves the `--api-sock` from the planned argv until it dies.
#[derive(Debug, Clone, Default)]
pub struct FakeLauncher {
    fakes: Arc<Mutex<Vec<FakeFirecracker>>>,
    options: FakeOptions,
    /// Arguments of every launch (program first).
    launches: Arc<Mutex<Vec<Vec<String>>>>,
}

impl FakeLauncher {
    /// A launcher whose fakes use `options` (the id is taken from the argv).
    pub fn new(options: FakeOptions) -> FakeLauncher {
        FakeLauncher {
            options,
            ..FakeLauncher::default()
        }
    }

    /// The fakes started so far, in launch order.
    pub fn fakes(&self) -> Vec<FakeFirecracker> {
        self.fakes.lock().unwrap().clone()
    }

    /// The argv of every launch so far (program first).
    pub fn launches(&self) -> Vec<Vec<String>> {
        self.launches.lock().unwrap().clone()
    }
}

impl Launcher for FakeLauncher {
    fn launch(
        &self,
        vm_id: &str,
        program: &Path,
        args: &[String],
        console: ConsoleLog,
    ) -> Result<VmProcess> {
        let mut argv = vec![program.display().to_string()];
        argv.extend(args.iter().cloned());
        self.launches.lock().unwrap().push(argv);
        let flag = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let socket = PathBuf::from(flag("--api-sock").unwrap_or_default());
        let mut options = self.options.clone();
        options.id = flag("--id").unwrap_or_else(|| vm_id.to_string());
        match FakeFirecracker::start(&socket, options) {
            Ok(fake) => {
                // Exits 0 on SIGTERM, as Firecracker does after the guest reboots.
                let mut stand_in = Command::new("sh");
                stand_in.args([
                    "-c",
                    "trap 'kill $! 2>/dev/null; exit 0' TERM; sleep 3600 & wait",
                ]);
                let process = VmProcess::spawn(vm_id, stand_in, console)?;
                let on_exit = process.clone();
                fake.on_exit(Arc::new(move || {
                    let _ = on_exit.signal(libc::SIGTERM);
                }));
                let watcher = process.clone();
                let served = fake.clone();
                tokio::spawn(async move {
                    watcher.wait_exit(Duration::from_secs(24 * 3600)).await;
                    served.stop();
                });
                self.fakes.lock().unwrap().push(fake);
                Ok(process)
            }
            Err(e) => {
                // What Firecracker itself does when its socket path is taken.
                let mut failing = Command::new("sh");
                failing.args([
                    "-c",
                    &format!(
                        "echo 'Error: Failed to open the API socket at {}: {e}' >&2; exit 1",
                        socket.display()
                    ),
                ]);
                VmProcess::spawn(vm_id, failing, console)
            }
        }
    }
}
