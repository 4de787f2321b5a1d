//! Client of the in-guest `lobster-agent` (JSON lines over TCP on the tenant's /30).
//!
//! [`Agent`] is a cheap handle for one tenant's agent: it keeps one
//! authenticated connection to the RPC port and reuses it across calls
//! (reconnecting after a failure), opens a fresh one to the health port for
//! [`Agent::health`], and a dedicated one per [`LogFollow`] stream and per
//! [`ExecSession`] (`exec.start` upgrades its connection to binary frames). Every
//! call is bounded by a timeout; every read by the protocol's size cap; log
//! text and remote messages are sanitised before they are returned.
//!
//! The wire protocol is defined once, in `lobster-agent-proto`, and shared
//! with the agent. [`provision`] puts the agent's token where the guest
//! finds it (the tenant disk, not the kernel command line).

mod conn;
mod exec;
mod files;
pub mod provision;
mod stream;
mod upgrade;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

pub use crate::base::sanitize_for_terminal;
use lobster_agent_proto::methods::{self as m, Empty};
pub use lobster_agent_proto::methods::{
    ConnectionStats, ExitInfo, HealthResult, HelloResult, HoldInfo, LogLines, LogSource,
    MemoryStats, OpenClawSpec, RestartPolicy, Secret, StatsResult, WorkloadSpec, WorkloadState,
    WorkloadStatus,
};
pub use lobster_agent_proto::ErrorCode;
use lobster_agent_proto::{Method, ReplyBody};
use tokio::sync::Mutex;

use crate::base::{Classify, ErrorKind};
use conn::Conn;
pub use exec::{
    exit_status, ExecEvent, ExecExit, ExecInput, ExecOutput, ExecParams, ExecSession, SessionGuard,
    WindowSize, COMMAND_NOT_FOUND_STATUS,
};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// An I/O error on an open connection.
    #[error("{context}")]
    Io {
        /// What was being done, naming the agent address.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The agent's port did not accept a connection.
    #[error("connecting to agent {addr}")]
    Connect {
        /// The address tried.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The call did not complete in time.
    #[error("agent {addr} did not answer {method} within {after:?}")]
    Timeout {
        /// The agent.
        addr: SocketAddr,
        /// The method called.
        method: &'static str,
        /// The bound that expired.
        after: Duration,
    },
    /// The agent broke the protocol (oversized, undecodable or misnumbered reply).
    #[error("agent {addr} broke the protocol: {detail}")]
    Protocol {
        /// The agent.
        addr: SocketAddr,
        /// What was wrong (sanitised guest text).
        detail: String,
    },
    /// The agent closed the connection before answering.
    #[error("agent {addr} closed the connection during {method}")]
    Closed {
        /// The agent.
        addr: SocketAddr,
        /// The method in flight.
        method: &'static str,
    },
    /// The agent answered with an error.
    #[error("agent refused {method}: {code}: {message}")]
    Remote {
        /// The method called.
        method: &'static str,
        /// The protocol error code.
        code: ErrorCode,
        /// The agent's message (sanitised).
        message: String,
    },
    /// A file copy passed its size limit (on either end); nothing was placed.
    #[error("{method}: {detail}; nothing was placed")]
    TooLarge {
        /// `files.put` or `files.get`.
        method: &'static str,
        /// The limit passed (the archive's or the agent's message, sanitised).
        detail: String,
    },
    /// Packing or unpacking a file copy on the host failed; nothing was
    /// placed.
    #[error("{context}")]
    Archive {
        /// The method and what was being done, naming the host path.
        context: String,
        /// The cause.
        #[source]
        source: lobster_agent_proto::archive::ArchiveError,
    },
    /// Writing the token to a tenant disk failed.
    #[error("provisioning the agent token on {path}: {detail}")]
    Provision {
        /// The tenant disk image.
        path: std::path::PathBuf,
        /// What failed.
        detail: String,
    },
}

impl Classify for AgentError {
    fn kind(&self) -> ErrorKind {
        match self {
            AgentError::Io { source, .. } if source.kind() == std::io::ErrorKind::TimedOut => {
                ErrorKind::Timeout
            }
            AgentError::Io { .. } | AgentError::Connect { .. } => ErrorKind::GuestFailure,
            AgentError::Timeout { .. } => ErrorKind::Timeout,
            AgentError::Protocol { .. } | AgentError::Closed { .. } => ErrorKind::GuestFailure,
            AgentError::Remote { code, .. } => match code {
                ErrorCode::BadRequest | ErrorCode::TooLarge => ErrorKind::InvalidArgument,
                ErrorCode::Unauthorized => ErrorKind::PermissionDenied,
                ErrorCode::UnsupportedVersion | ErrorCode::UnknownMethod => ErrorKind::Unsupported,
                ErrorCode::NotFound => ErrorKind::NotFound,
                ErrorCode::InvalidState => ErrorKind::InvalidState,
                ErrorCode::Busy => ErrorKind::Exhausted,
                _ => ErrorKind::GuestFailure,
            },
            AgentError::TooLarge { .. } => ErrorKind::InvalidArgument,
            AgentError::Archive { source, .. } => match source.code() {
                ErrorCode::BadRequest => ErrorKind::InvalidArgument,
                ErrorCode::NotFound => ErrorKind::NotFound,
                ErrorCode::InvalidState => ErrorKind::InvalidState,
                _ => ErrorKind::HostFailure,
            },
            AgentError::Provision { .. } => ErrorKind::HostFailure,
        }
    }
}

/// Time bounds of agent calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentTimeouts {
    /// Connecting plus the `hello` handshake.
    pub connect: Duration,
    /// One request and its reply (workload stop and restart add their grace time).
    pub call: Duration,
}

impl Default for AgentTimeouts {
    fn default() -> Self {
        AgentTimeouts {
            connect: Duration::from_secs(3),
            call: Duration::from_secs(10),
        }
    }
}

/// Handle to one tenant's agent.
#[derive(Debug)]
pub struct Agent {
    rpc: SocketAddr,
    health: SocketAddr,
    token: Secret,
    /// Tried when the agent refuses `token` (see [`Agent::with_fallback_token`]).
    fallback: Option<Secret>,
    timeouts: AgentTimeouts,
    conn: Mutex<Option<Conn>>,
}

/// Methods that may be sent twice without harm (retried once after a stale connection).
fn idempotent(method: &str) -> bool {
    matches!(
        method,
        "health"
            | "workload.status"
            | "logs.tail"
            | "stats"
            | "hold.list"
            | "hold.acquire"
            | "hold.renew"
    )
}

impl Agent {
    /// A handle for the agent at `rpc` (RPC port) and `health` (health port).
    pub fn new(rpc: SocketAddr, health: SocketAddr, token: impl Into<String>) -> Agent {
        Agent {
            rpc,
            health,
            token: Secret(token.into()),
            fallback: None,
            timeouts: AgentTimeouts::default(),
            conn: Mutex::new(None),
        }
    }

    /// Also authenticates with `token` when the agent refuses the main one:
    /// a token rotation cut short may have left the guest on the token the
    /// registry records as next.
    pub fn with_fallback_token(mut self, token: Option<String>) -> Agent {
        self.fallback = token.map(Secret);
        self
    }

    /// Opens an authenticated connection to `addr`, with the fallback token
    /// when the main one is refused.
    async fn open(&self, addr: SocketAddr) -> Result<(Conn, HelloResult), AgentError> {
        match (Conn::open(addr, &self.token).await, &self.fallback) {
            (
                Err(AgentError::Remote {
                    code: ErrorCode::Unauthorized,
                    ..
                }),
                Some(fallback),
            ) => Conn::open(addr, fallback).await,
            (result, _) => result,
        }
    }

    /// Replaces the default time bounds.
    pub fn with_timeouts(mut self, timeouts: AgentTimeouts) -> Agent {
        self.timeouts = timeouts;
        self
    }

    /// The RPC address.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.rpc
    }

    /// Calls any protocol method on the RPC connection (the typed helpers
    /// below cover every method; this is for callers generic over [`Method`]).
    pub async fn call<M: Method>(&self, params: &M::Params) -> Result<M::Output, AgentError> {
        self.call_within::<M>(params, Duration::ZERO).await
    }

    /// [`call`](Self::call) allowing `extra` time on top of the call timeout.
    async fn call_within<M: Method>(
        &self,
        params: &M::Params,
        extra: Duration,
    ) -> Result<M::Output, AgentError> {
        let bound = self.timeouts.connect + self.timeouts.call + extra;
        let attempt = async {
            let mut slot = self.conn.lock().await;
            let reused = slot.is_some();
            if slot.is_none() {
                *slot = Some(self.open(self.rpc).await?.0);
            }
            let conn = slot.as_mut().expect("connection was just opened");
            match conn.call::<M>(params).await {
                Ok(out) => Ok(out),
                Err(e @ AgentError::Remote { .. }) => Err(e),
                Err(e) => {
                    *slot = None;
                    if !(reused
                        && idempotent(M::NAME)
                        && matches!(e, AgentError::Closed { .. } | AgentError::Io { .. }))
                    {
                        return Err(e);
                    }
                    let mut fresh = self.open(self.rpc).await?.0;
                    let out = fresh.call::<M>(params).await?;
                    *slot = Some(fresh);
                    Ok(out)
                }
            }
        };
        match tokio::time::timeout(bound, attempt).await {
            Ok(result) => result,
            Err(_) => {
                // The connection may hold a half-read reply: never reuse it.
                if let Ok(mut slot) = self.conn.try_lock() {
                    *slot = None;
                }
                Err(AgentError::Timeout {
                    addr: self.rpc,
                    method: M::NAME,
                    after: bound,
                })
            }
        }
    }

    /// Connects (if needed) and returns the agent's `hello` answer.
    pub async fn hello(&self) -> Result<HelloResult, AgentError> {
        let bound = self.timeouts.connect;
        match tokio::time::timeout(bound, self.open(self.rpc)).await {
            Ok(result) => {
                let (conn, hello) = result?;
                *self.conn.lock().await = Some(conn);
                Ok(hello)
            }
            Err(_) => Err(AgentError::Timeout {
                addr: self.rpc,
                method: m::Hello::NAME,
                after: bound,
            }),
        }
    }

    /// Liveness over the separate health port (a fresh connection each time).
    pub async fn health(&self) -> Result<HealthResult, AgentError> {
        let bound = self.timeouts.connect + self.timeouts.call;
        let attempt = async {
            let (mut conn, _) = self.open(self.health).await?;
            conn.call::<m::Health>(&Empty {}).await
        };
        tokio::time::timeout(bound, attempt)
            .await
            .unwrap_or(Err(AgentError::Timeout {
                addr: self.health,
                method: m::Health::NAME,
                after: bound,
            }))
    }

    /// Polls [`health`](Self::health) until the agent answers or `within`
    /// has passed (then returns the last error).
    pub async fn wait_ready(&self, within: Duration) -> Result<HealthResult, AgentError> {
        let deadline = Instant::now() + within;
        loop {
            let err = match self.health().await {
                Ok(h) => return Ok(h),
                Err(e @ AgentError::Remote { .. }) => return Err(e),
                Err(e) => e,
            };
            if Instant::now() + Duration::from_millis(200) >= deadline {
                return Err(err);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Adds (or with `replace`, replaces) secret environment variables of the workload.
    pub async fn inject_secrets(
        &self,
        env: BTreeMap<String, String>,
        replace: bool,
    ) -> Result<m::InjectSecretsResult, AgentError> {
        let env = env.into_iter().map(|(k, v)| (k, Secret(v))).collect();
        self.call_within::<m::InjectSecrets>(
            &m::InjectSecretsParams { env, replace },
            Duration::ZERO,
        )
        .await
    }

    /// Sets the workload; with `start`, (re)starts it.
    pub async fn configure(
        &self,
        workload: WorkloadSpec,
        start: bool,
    ) -> Result<WorkloadStatus, AgentError> {
        let grace = if start { STOP_GRACE } else { Duration::ZERO };
        self.call_within::<m::Configure>(&m::ConfigureParams { workload, start }, grace)
            .await
    }

    /// Hands the guest a new agent token: the agent stores it where it
    /// reads it at boot, then refuses the old one on new connections.
    pub async fn rotate_token(&self, token: &str) -> Result<(), AgentError> {
        let params = m::RotateTokenParams {
            token: Secret(token.to_owned()),
        };
        self.call_within::<m::RotateToken>(&params, Duration::ZERO)
            .await
            .map(|_| ())
    }

    /// Starts the configured workload.
    pub async fn start(&self) -> Result<WorkloadStatus, AgentError> {
        self.call_within::<m::Start>(&Empty {}, Duration::ZERO)
            .await
    }

    /// Stops the workload (SIGTERM, then SIGKILL after `grace`).
    pub async fn stop(&self, grace: Duration) -> Result<WorkloadStatus, AgentError> {
        let params = m::StopParams {
            grace_ms: Some(grace.as_millis() as u64),
        };
        self.call_within::<m::Stop>(&params, grace).await
    }

    /// Stops and starts the workload.
    pub async fn restart(&self, grace: Duration) -> Result<WorkloadStatus, AgentError> {
        let params = m::StopParams {
            grace_ms: Some(grace.as_millis() as u64),
        };
        self.call_within::<m::Restart>(&params, grace).await
    }

    /// The workload's supervision state.
    pub async fn status(&self) -> Result<WorkloadStatus, AgentError> {
        self.call_within::<m::Status>(&Empty {}, Duration::ZERO)
            .await
    }

    /// The last `lines` lines of a log, sanitised for a terminal.
    pub async fn logs(&self, source: LogSource, lines: u32) -> Result<LogLines, AgentError> {
        let mut out = self
            .call_within::<m::LogsTail>(&m::LogsParams { source, lines }, Duration::ZERO)
            .await?;
        for line in &mut out.lines {
            *line = sanitize_for_terminal(line);
        }
        Ok(out)
    }

    /// Opens a stream of the last `lines` lines followed by new ones.
    pub async fn follow_logs(
        &self,
        source: LogSource,
        lines: u32,
    ) -> Result<LogFollow, AgentError> {
        let bound = self.timeouts.connect + self.timeouts.call;
        let attempt = async {
            let (mut conn, _) = self.open(self.rpc).await?;
            let id = conn
                .send::<m::LogsFollow>(&m::LogsParams { source, lines })
                .await?;
            Ok(LogFollow {
                conn,
                id,
                keep: None,
            })
        };
        tokio::time::timeout(bound, attempt)
            .await
            .unwrap_or(Err(AgentError::Timeout {
                addr: self.rpc,
                method: m::LogsFollow::NAME,
                after: bound,
            }))
    }

    /// Memory, load, connections, uptime.
    pub async fn stats(&self) -> Result<StatsResult, AgentError> {
        self.call_within::<m::Stats>(&Empty {}, Duration::ZERO)
            .await
    }

    /// Takes or extends a hold for `ttl`.
    pub async fn hold_acquire(&self, id: &str, ttl: Duration) -> Result<HoldInfo, AgentError> {
        let params = m::HoldParams {
            id: id.to_owned(),
            ttl_ms: ttl.as_millis() as u64,
        };
        self.call_within::<m::HoldAcquire>(&params, Duration::ZERO)
            .await
    }

    /// Extends an unexpired hold (`NotFound` if it expired).
    pub async fn hold_renew(&self, id: &str, ttl: Duration) -> Result<HoldInfo, AgentError> {
        let params = m::HoldParams {
            id: id.to_owned(),
            ttl_ms: ttl.as_millis() as u64,
        };
        self.call_within::<m::HoldRenew>(&params, Duration::ZERO)
            .await
    }

    /// Releases a hold; whether it was held.
    pub async fn hold_release(&self, id: &str) -> Result<bool, AgentError> {
        let params = m::HoldId { id: id.to_owned() };
        Ok(self
            .call_within::<m::HoldRelease>(&params, Duration::ZERO)
            .await?
            .released)
    }

    /// Unexpired holds.
    pub async fn holds(&self) -> Result<Vec<HoldInfo>, AgentError> {
        Ok(self
            .call_within::<m::HoldList>(&Empty {}, Duration::ZERO)
            .await?
            .holds)
    }

    /// Sets the guest clock (after resuming a snapshot).
    pub async fn set_time(&self, now: SystemTime) -> Result<(), AgentError> {
        let unix_ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        self.call_within::<m::SetTime>(&m::SetTimeParams { unix_ms }, Duration::ZERO)
            .await?;
        Ok(())
    }

    /// Asks the guest to stop its workload, sync, unmount and power off (or reboot).
    pub async fn shutdown(&self, reboot: bool) -> Result<(), AgentError> {
        self.call_within::<m::Shutdown>(&m::ShutdownParams { reboot }, Duration::ZERO)
            .await?;
        *self.conn.lock().await = None;
        Ok(())
    }
}

/// Grace time the agent gives a workload between SIGTERM and SIGKILL by default.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A `logs.follow` stream on its own connection.
#[derive(Debug)]
pub struct LogFollow {
    conn: Conn,
    id: u64,
    keep: Option<Keep>,
}

/// Something kept alive as long as a [`LogFollow`] (e.g. a hold on the guest).
struct Keep(#[allow(dead_code)] Box<dyn std::any::Any + Send + Sync>);

impl std::fmt::Debug for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keep(..)")
    }
}

impl LogFollow {
    /// Keeps `value` alive (e.g. a hold on the guest) for as long as the
    /// stream lives.
    pub fn keeping(mut self, value: impl std::any::Any + Send + Sync) -> LogFollow {
        self.keep = Some(Keep(Box::new(value)));
        self
    }

    /// The next line (sanitised), waiting at most `within`; `Ok(None)` if
    /// none arrived in time. The stream stays usable after a `None`.
    pub async fn next_line(&mut self, within: Duration) -> Result<Option<String>, AgentError> {
        let read = self.conn.read_reply(self.id, m::LogsFollow::NAME);
        match tokio::time::timeout(within, read).await {
            Err(_) => Ok(None),
            Ok(Err(e)) => Err(e),
            Ok(Ok(ReplyBody::Event(v))) => {
                let event: m::LogEvent = self.conn.decode(m::LogsFollow::NAME, v)?;
                Ok(Some(sanitize_for_terminal(&event.line)))
            }
            Ok(Ok(ReplyBody::Ok(_))) => Err(AgentError::Closed {
                addr: self.conn.addr(),
                method: m::LogsFollow::NAME,
            }),
            Ok(Ok(ReplyBody::Error(e))) => Err(AgentError::Remote {
                method: m::LogsFollow::NAME,
                code: e.code,
                message: sanitize_for_terminal(&e.message),
            }),
        }
    }
}
