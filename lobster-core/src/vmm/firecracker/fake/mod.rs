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

mod launcher;
mod state;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub use self::launcher::FakeLauncher;
use self::state::{fault, Answer, ExitHook, State};
pub use self::state::{FAKE_MEMORY_BYTES, MEMORY_MARK};
use super::spec::Spec;

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

/// A running fake server.
#[derive(Debug, Clone)]
pub struct FakeFirecracker {
    socket: PathBuf,
    state: Arc<Mutex<State>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl FakeFirecracker {
    /// Binds `socket` (which must not exist, as for Firecracker) and serves.
    /// Must be called inside a tokio runtime.
    pub fn start(socket: &Path, options: FakeOptions) -> std::io::Result<FakeFirecracker> {
        let listener = std::os::unix::net::UnixListener::bind(socket)?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        let state = Arc::new(Mutex::new(State::new(options)));
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
