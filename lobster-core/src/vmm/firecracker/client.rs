//! Firecracker's HTTP API over its unix socket (hyper 1 + hyperlocal).
//! Every call is bounded by a timeout; a 4xx/5xx answer becomes
//! [`VmmError::Api`] carrying Firecracker's `fault_message`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyperlocal::{UnixConnector, Uri};
use serde_json::Value;

use super::plan::ApiCall;
use crate::vmm::{Result, VmmError};

/// A client for one Firecracker API socket.
#[derive(Debug, Clone)]
pub struct ApiClient {
    vm: String,
    socket: PathBuf,
    timeout: Duration,
    http: Client<UnixConnector, Full<Bytes>>,
}

/// The time one call took, for benchmarks and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct Timed {
    /// The call.
    pub call: String,
    /// How long it took.
    pub elapsed: Duration,
}

impl ApiClient {
    /// A client for `socket`; each call may take up to `timeout`.
    pub fn new(vm: &str, socket: &Path, timeout: Duration) -> ApiClient {
        ApiClient {
            vm: vm.to_string(),
            socket: socket.to_path_buf(),
            timeout,
            http: Client::builder(TokioExecutor::new()).build(UnixConnector),
        }
    }

    /// The socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one call; returns the JSON answer of a GET (`Null` for 204).
    pub async fn send(&self, call: &ApiCall) -> Result<Value> {
        let uri: hyper::Uri = Uri::new(&self.socket, &call.path).into();
        let body = match &call.body {
            Some(b) => Bytes::from(serde_json::to_vec(b).expect("json serialises")),
            None => Bytes::new(),
        };
        let mut request = hyper::Request::builder()
            .method(call.method.as_str())
            .uri(uri)
            .header("Accept", "application/json");
        if call.body.is_some() {
            request = request.header("Content-Type", "application/json");
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| VmmError::Protocol {
                vm: self.vm.clone(),
                what: format!("{} {}", call.method, call.path),
                detail: e.to_string(),
            })?;
        let exchange = async {
            let response = self.http.request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
        };
        let (status, body) = match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => {
                return Err(VmmError::Timeout {
                    vm: self.vm.clone(),
                    operation: format!("firecracker {} {}", call.method, call.path),
                    after: self.timeout,
                })
            }
            Ok(Err(e)) => {
                return Err(VmmError::Io {
                    context: format!(
                        "vm {}: firecracker {} {} on {}",
                        self.vm,
                        call.method,
                        call.path,
                        self.socket.display()
                    ),
                    source: std::io::Error::other(e),
                })
            }
            Ok(Ok(answer)) => answer,
        };
        if !status.is_success() {
            let fault_message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["fault_message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
            return Err(VmmError::Api {
                vm: self.vm.clone(),
                method: call.method.to_string(),
                path: call.path.clone(),
                status: status.as_u16(),
                fault_message,
            });
        }
        if body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).map_err(|e| VmmError::Protocol {
            vm: self.vm.clone(),
            what: format!("{} {}", call.method, call.path),
            detail: format!("answer is not json: {e}"),
        })
    }

    /// Sends `calls` in order, stopping at the first failure; returns each
    /// call's duration.
    pub async fn send_all(&self, calls: &[ApiCall]) -> Result<Vec<Timed>> {
        let mut times = Vec::with_capacity(calls.len());
        for call in calls {
            let start = Instant::now();
            self.send(call).await?;
            times.push(Timed {
                call: format!("{} {}", call.method, call.path),
                elapsed: start.elapsed(),
            });
            tracing::debug!(vm = %self.vm, method = %call.method, path = %call.path, "firecracker call done");
        }
        Ok(times)
    }

    /// A GET of `path`.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.send(&ApiCall::get(path)).await
    }

    /// Polls until the socket accepts connections, up to `within`; `alive`
    /// is consulted between attempts so a dead VMM ends the wait at once.
    pub async fn wait_for_socket(
        &self,
        within: Duration,
        alive: impl Fn() -> Result<()>,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            alive()?;
            if tokio::net::UnixStream::connect(&self.socket).await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                alive()?;
                return Err(VmmError::Timeout {
                    vm: self.vm.clone(),
                    operation: format!(
                        "waiting for firecracker api socket {}",
                        self.socket.display()
                    ),
                    after: within,
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
