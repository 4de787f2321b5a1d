//! Agent configuration: command-line flags, with defaults taken from the
//! guest kernel command line (`lobster.*` keys) when running in a guest.
//!
//! Kernel keys (all optional): `lobster.ip=<addr>/<prefix>` (the address the
//! agent listens on), `lobster.agent_port=`, `lobster.health_port=`,
//! `lobster.token_file=`, `lobster.max_exec_sessions=`,
//! `lobster.max_transfer_bytes=`. The token itself is never on the command
//! line: the host writes it to the tenant disk before boot (see
//! `docs/agent.md`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub use crate::workload::COMMAND_PATH;
use lobster_agent_proto::methods::Secret;
use lobster_agent_proto::{DEFAULT_HEALTH_PORT, DEFAULT_RPC_PORT};

/// Where the token lives on a guest: the tenant disk's `meta/` directory,
/// outside the overlay's `upper/`, so it is not part of the root filesystem.
pub const GUEST_TOKEN_FILE: &str = "/lobster/disk/meta/agent.token";

/// What `shutdown` does once the workload is stopped and disks are synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownAction {
    /// Exit the agent process (host-process mode, tests).
    Exit,
    /// Ask PID 1 (`lobster-init`) to power off (SIGUSR2) or reboot (SIGINT).
    SignalInit,
}

/// Everything the agent needs to run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// RPC endpoint.
    pub rpc_listen: SocketAddr,
    /// Health endpoint.
    pub health_listen: SocketAddr,
    /// The per-tenant token (empty means every request is refused).
    pub token: Secret,
    /// Where the token is read at start, and where `token.rotate` stores
    /// a new one (`None`: a rotated token lasts until the agent exits).
    pub token_file: Option<PathBuf>,
    /// Persistent state: secrets, workload spec.
    pub state_dir: PathBuf,
    /// Log files (capped and rotated).
    pub log_dir: PathBuf,
    /// Size at which a log file is rotated (one previous file is kept).
    pub log_max_bytes: u64,
    /// `HOME` of the workload; OpenClaw's config goes to `<home>/.openclaw/`.
    pub home: PathBuf,
    /// Command run when the workload spec names none.
    pub default_command: Vec<String>,
    /// `PATH` of the processes the agent starts, the workload and exec
    /// sessions ([`COMMAND_PATH`] in a guest; a test may put a directory
    /// of stand-in programs first).
    pub command_path: String,
    /// What `shutdown` does at the end.
    pub on_shutdown: ShutdownAction,
    /// Whether `time.set` may change the system clock (guests only).
    pub allow_set_time: bool,
    /// Concurrent connections served on each port (each port has its own
    /// budget, so the RPC port cannot starve the health port).
    pub max_connections: usize,
    /// Concurrent upgraded sessions (`exec.start`, `files.put`,
    /// `files.get` together); one more is refused as `busy`.
    pub max_exec_sessions: usize,
    /// The most file content one `files.put` or `files.get` moves (the
    /// request's `max_bytes` can only lower it).
    pub max_transfer_bytes: u64,
}

/// Default of [`AgentConfig::max_exec_sessions`].
pub const DEFAULT_MAX_EXEC_SESSIONS: usize = 16;

/// Default of [`AgentConfig::max_transfer_bytes`] in a guest: 4 GiB.
pub const DEFAULT_MAX_TRANSFER_BYTES: u64 = 4 << 30;

/// Default of [`AgentConfig::max_transfer_bytes`] for a host process
/// (tests): 64 MiB.
pub const HOST_PROCESS_MAX_TRANSFER_BYTES: u64 = 64 << 20;

impl AgentConfig {
    /// Defaults for a host process in `dir` (tests): loopback, ephemeral
    /// ports, state and logs under `dir`, `shutdown` exits.
    pub fn for_host_process(dir: &Path, token: &str) -> AgentConfig {
        AgentConfig {
            rpc_listen: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
            health_listen: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
            token: Secret(token.to_owned()),
            token_file: None,
            state_dir: dir.join("state"),
            log_dir: dir.join("log"),
            log_max_bytes: 1024 * 1024,
            home: dir.join("home"),
            default_command: default_openclaw_command(),
            command_path: COMMAND_PATH.to_owned(),
            on_shutdown: ShutdownAction::Exit,
            allow_set_time: false,
            max_connections: 64,
            max_exec_sessions: DEFAULT_MAX_EXEC_SESSIONS,
            max_transfer_bytes: HOST_PROCESS_MAX_TRANSFER_BYTES,
        }
    }

    /// Defaults for a guest, from the kernel command line text.
    pub fn for_guest(cmdline: &str) -> Result<AgentConfig, ConfigError> {
        let keys = KernelKeys::parse(cmdline);
        let ip: IpAddr = match keys.get("lobster.ip") {
            Some(v) => {
                let addr = v.split('/').next().unwrap_or(v);
                addr.parse()
                    .map_err(|_| ConfigError::new("lobster.ip", v))?
            }
            None => Ipv4Addr::UNSPECIFIED.into(),
        };
        let port = |key: &str, default: u16| -> Result<u16, ConfigError> {
            keys.get(key)
                .map(|v| v.parse().map_err(|_| ConfigError::new(key, v)))
                .unwrap_or(Ok(default))
        };
        let token_file = keys.get("lobster.token_file").unwrap_or(GUEST_TOKEN_FILE);
        let max_exec_sessions = match keys.get("lobster.max_exec_sessions") {
            Some(v) => v
                .parse()
                .map_err(|_| ConfigError::new("lobster.max_exec_sessions", v))?,
            None => DEFAULT_MAX_EXEC_SESSIONS,
        };
        let max_transfer_bytes = match keys.get("lobster.max_transfer_bytes") {
            Some(v) => v
                .parse()
                .map_err(|_| ConfigError::new("lobster.max_transfer_bytes", v))?,
            None => DEFAULT_MAX_TRANSFER_BYTES,
        };
        Ok(AgentConfig {
            rpc_listen: SocketAddr::new(ip, port("lobster.agent_port", DEFAULT_RPC_PORT)?),
            health_listen: SocketAddr::new(ip, port("lobster.health_port", DEFAULT_HEALTH_PORT)?),
            token: read_token(Path::new(token_file)),
            token_file: Some(PathBuf::from(token_file)),
            state_dir: PathBuf::from("/var/lib/lobster-agent"),
            log_dir: PathBuf::from("/var/log/lobster"),
            log_max_bytes: 4 * 1024 * 1024,
            home: PathBuf::from("/root"),
            default_command: default_openclaw_command(),
            command_path: COMMAND_PATH.to_owned(),
            on_shutdown: ShutdownAction::SignalInit,
            allow_set_time: true,
            max_connections: 64,
            max_exec_sessions,
            max_transfer_bytes,
        })
    }
}

/// `openclaw gateway` through the wrapper the full image installs.
pub fn default_openclaw_command() -> Vec<String> {
    vec!["/usr/local/bin/openclaw".into(), "gateway".into()]
}

/// Reads a token file; a missing or unreadable file yields an empty token,
/// which refuses every request (fail closed) while the agent stays up for
/// the console log to explain.
pub fn read_token(path: &Path) -> Secret {
    match std::fs::read_to_string(path) {
        Ok(text) => Secret(text.trim().to_owned()),
        Err(err) => {
            eprintln!(
                "lobster-agent: no token ({}: {err}); refusing all requests",
                path.display()
            );
            Secret::default()
        }
    }
}

/// `key=value` words of a kernel command line.
#[derive(Debug, Default)]
pub struct KernelKeys(Vec<(String, String)>);

impl KernelKeys {
    /// Splits on whitespace; words without `=` are ignored.
    pub fn parse(cmdline: &str) -> KernelKeys {
        KernelKeys(
            cmdline
                .split_whitespace()
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A malformed configuration value.
#[derive(Debug)]
pub struct ConfigError {
    key: String,
    value: String,
}

impl ConfigError {
    fn new(key: &str, value: &str) -> ConfigError {
        ConfigError {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: invalid value `{}`", self.key, self.value)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_config_comes_from_lobster_keys() {
        let c = AgentConfig::for_guest(
            "console=ttyS0 lobster.ip=10.0.0.6/30 lobster.gw=10.0.0.5 lobster.agent_port=5200 lobster.token_file=/nonexistent",
        )
        .unwrap();
        assert_eq!(c.rpc_listen, "10.0.0.6:5200".parse().unwrap());
        assert_eq!(c.health_listen, "10.0.0.6:53".parse().unwrap());
        assert_eq!(c.token.expose(), "", "missing token file fails closed");
        assert_eq!(c.on_shutdown, ShutdownAction::SignalInit);
        assert_eq!(c.max_exec_sessions, DEFAULT_MAX_EXEC_SESSIONS);
    }

    #[test]
    fn the_exec_session_cap_comes_from_its_key() {
        let c = AgentConfig::for_guest("lobster.max_exec_sessions=3").unwrap();
        assert_eq!(c.max_exec_sessions, 3);
        let err = AgentConfig::for_guest("lobster.max_exec_sessions=-1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "lobster.max_exec_sessions: invalid value `-1`"
        );
    }

    #[test]
    fn the_transfer_cap_comes_from_its_key() {
        let c = AgentConfig::for_guest("").unwrap();
        assert_eq!(c.max_transfer_bytes, DEFAULT_MAX_TRANSFER_BYTES);
        let c = AgentConfig::for_guest("lobster.max_transfer_bytes=1048576").unwrap();
        assert_eq!(c.max_transfer_bytes, 1 << 20);
        let err = AgentConfig::for_guest("lobster.max_transfer_bytes=1G").unwrap_err();
        assert_eq!(
            err.to_string(),
            "lobster.max_transfer_bytes: invalid value `1G`"
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = AgentConfig::for_guest("lobster.ip=banana").unwrap_err();
        assert_eq!(err.to_string(), "lobster.ip: invalid value `banana`");
        assert!(AgentConfig::for_guest("lobster.health_port=99999").is_err());
    }

    #[test]
    fn token_file_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, "abc\n").unwrap();
        assert_eq!(read_token(&path).expose(), "abc");
    }
}
