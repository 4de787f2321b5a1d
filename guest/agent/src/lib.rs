//! lobster-agent: the in-guest agent of lobster.
//!
//! It serves the host over TCP (JSON lines, see `lobster-agent-proto`) on an
//! RPC port and a health port, supervises the workload (the OpenClaw gateway
//! by default), keeps injected secrets, capped logs and holds, and powers the
//! guest off on request. It runs as a guest service under `lobster-init` or as
//! a plain host process (tests), where [`AgentConfig::for_host_process`] puts
//! everything under one directory and `shutdown` just exits.
//!
//! Threads: one accept loop per port, one thread per connection (bounded by
//! [`AgentConfig::max_connections`] on each port), one supervisor thread,
//! one output pump per workload run, and per `exec.start` session (at most
//! [`AgentConfig::max_exec_sessions`], file copies included) a waiter, one
//! pump per output stream, a stdin writer and a reader of the host's
//! frames; a `files.put` has the stdin writer (into a pipe it unpacks from)
//! and the reader, a `files.get` only its connection's thread.

pub mod config;
mod cron;
mod exec;
mod files;
mod holds;
mod logs;
mod openclaw;
mod secrets;
mod server;
mod stats;
mod transfer;
mod workload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use config::{AgentConfig, ShutdownAction};
use lobster_agent_proto::methods::{Secret, ShutdownParams, MAX_TOKEN_LEN};
use lobster_agent_proto::ErrorCode;

use crate::holds::Holds;
use crate::logs::LogSink;
use crate::secrets::Secrets;
use crate::workload::{Context, Supervisor};

/// The agent's own log: each line goes to stderr (the guest console) and to
/// the capped `agent.log`. Never pass secret values to it.
#[derive(Debug, Clone)]
pub struct Log {
    sink: Arc<LogSink>,
    started: Instant,
}

impl Log {
    /// Logs one line.
    pub fn line(&self, msg: &str) {
        eprintln!("lobster-agent: {msg}");
        self.sink.append(&format!(
            "[{:>9.3}] {msg}",
            self.started.elapsed().as_secs_f64()
        ));
    }
}

/// State shared by the listeners, connections and the supervisor.
#[derive(Debug)]
struct Shared {
    config: AgentConfig,
    started: Instant,
    proc_dir: PathBuf,
    log: Log,
    agent_log: Arc<LogSink>,
    workload_log: Arc<LogSink>,
    supervisor: Arc<Supervisor>,
    secrets: Arc<Mutex<Secrets>>,
    holds: Mutex<Holds>,
    /// The cap on concurrent `exec.start` sessions.
    exec_slots: exec::Slots,
    /// `PATH` of exec sessions ([`AgentConfig::command_path`]).
    command_path: String,
    /// The token in force (starts as `config.token`; `token.rotate` replaces it).
    token: Mutex<Secret>,
    shutdown: Mutex<Option<ShutdownParams>>,
    shutdown_requested: Condvar,
}

impl Shared {
    /// The token a connection must present now.
    fn token(&self) -> Secret {
        self.token.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the token: stored first (so a reboot keeps it), then in
    /// force for every new connection. A token that cannot be stored is
    /// not taken, so the agent and its disk never disagree.
    fn rotate_token(&self, token: Secret) -> Result<(), workload::Failure> {
        let text = token.expose();
        if text.is_empty()
            || text.len() > MAX_TOKEN_LEN
            || !text.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err((
                ErrorCode::BadRequest,
                format!("a token is 1 to {MAX_TOKEN_LEN} printable ascii characters"),
            ));
        }
        if let Some(file) = &self.config.token_file {
            files::write_private(file, text.as_bytes()).map_err(|e| {
                (
                    ErrorCode::Internal,
                    format!("cannot store the token in {}: {e}", file.display()),
                )
            })?;
        }
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = token;
        self.log.line("agent token rotated");
        Ok(())
    }

    /// Records a `shutdown` request and wakes [`Agent::wait_for_shutdown`].
    fn request_shutdown(&self, params: ShutdownParams) {
        self.log.line("shutdown requested");
        *self.shutdown.lock().unwrap_or_else(|p| p.into_inner()) = Some(params);
        self.shutdown_requested.notify_all();
    }
}

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    shared: Arc<Shared>,
    rpc_addr: SocketAddr,
    health_addr: SocketAddr,
}

impl Agent {
    /// Opens logs and state, binds both ports and starts serving.
    pub fn start(config: AgentConfig) -> std::io::Result<Agent> {
        std::fs::create_dir_all(&config.state_dir)?;
        let agent_log = Arc::new(LogSink::open(
            &config.log_dir,
            "agent",
            config.log_max_bytes,
        )?);
        let workload_log = Arc::new(LogSink::open(
            &config.log_dir,
            "workload",
            config.log_max_bytes,
        )?);
        let started = Instant::now();
        let log = Log {
            sink: Arc::clone(&agent_log),
            started,
        };
        let secrets = Arc::new(Mutex::new(Secrets::load(
            config.state_dir.join("secrets.json"),
        )));
        if config.token.expose().is_empty() {
            log.line("no agent token configured: every request will be refused");
        }
        let supervisor = Supervisor::start(Context {
            home: config.home.clone(),
            default_command: config.default_command.clone(),
            command_path: config.command_path.clone(),
            state_dir: config.state_dir.clone(),
            output: Arc::clone(&workload_log),
            log: log.clone(),
            secrets: Arc::clone(&secrets),
        });
        let shared = Arc::new(Shared {
            started,
            proc_dir: PathBuf::from("/proc"),
            log,
            agent_log,
            workload_log,
            supervisor,
            secrets,
            holds: Mutex::new(Holds::default()),
            exec_slots: exec::Slots::new(config.max_exec_sessions),
            command_path: config.command_path.clone(),
            token: Mutex::new(config.token.clone()),
            shutdown: Mutex::new(None),
            shutdown_requested: Condvar::new(),
            config,
        });
        let rpc_addr = server::listen(
            Arc::clone(&shared),
            shared.config.rpc_listen,
            server::Port::Rpc,
        )?;
        let health_addr = server::listen(
            Arc::clone(&shared),
            shared.config.health_listen,
            server::Port::Health,
        )?;
        shared.log.line(&format!(
            "serving rpc on {rpc_addr}, health on {health_addr}"
        ));
        Ok(Agent {
            shared,
            rpc_addr,
            health_addr,
        })
    }

    /// Where the RPC port listens.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.rpc_addr
    }

    /// Where the health port listens.
    pub fn health_addr(&self) -> SocketAddr {
        self.health_addr
    }

    /// Blocks until a client calls `shutdown`.
    pub fn wait_for_shutdown(&self) -> ShutdownParams {
        let mut req = self
            .shared
            .shutdown
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(params) = *req {
                return params;
            }
            req = self
                .shared
                .shutdown_requested
                .wait(req)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Stops the workload and flushes logs and file systems (the part of a
    /// shutdown that does not depend on how the agent runs).
    pub fn quiesce(&self) {
        let log = &self.shared.log;
        log.line("shutdown: stopping the workload");
        if let Err((_, msg)) = self.shared.supervisor.stop(Duration::from_secs(5)) {
            log.line(&format!("shutdown: {msg}"));
        }
        log.line("shutdown: syncing");
        self.shared.workload_log.sync();
        self.shared.agent_log.sync();
        nix::unistd::sync();
    }
}

/// `err` and its causes, each once: `a: b: c`.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
