//! The typed method table: name, parameters and result of every method.
//!
//! Each method is a unit struct implementing [`Method`]; the agent dispatches
//! on [`Method::NAME`] and the host client is generic over `M: Method`.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// One protocol method.
pub trait Method {
    /// Wire name.
    const NAME: &'static str;
    /// Request parameters.
    type Params: Serialize + DeserializeOwned;
    /// Result carried by the `ok` reply (or by each `event` for streams).
    type Output: Serialize + DeserializeOwned;
}

macro_rules! method {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $params:ty => $output:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $ty;
        impl Method for $ty {
            const NAME: &'static str = $name;
            type Params = $params;
            type Output = $output;
        }
    };
}

method!(
    /// Version handshake and authentication of the connection.
    Hello, "hello", HelloParams => HelloResult);
method!(
    /// Liveness; also served on the health port.
    Health, "health", Empty => HealthResult);
method!(
    /// Adds (or replaces) secret environment variables of the workload.
    InjectSecrets, "secrets.inject", InjectSecretsParams => InjectSecretsResult);
method!(
    /// Sets the workload (command, environment, OpenClaw config) and optionally starts it.
    Configure, "workload.configure", ConfigureParams => WorkloadStatus);
method!(
    /// Starts the configured workload (no-op if running).
    Start, "workload.start", Empty => WorkloadStatus);
method!(
    /// Stops the workload: SIGTERM to its process group, SIGKILL after the grace time.
    Stop, "workload.stop", StopParams => WorkloadStatus);
method!(
    /// Stops then starts the workload (picks up new secrets and config).
    Restart, "workload.restart", StopParams => WorkloadStatus);
method!(
    /// The workload's supervision state.
    Status, "workload.status", Empty => WorkloadStatus);
method!(
    /// The last lines of a log.
    LogsTail, "logs.tail", LogsParams => LogLines);
method!(
    /// The last lines of a log as events, then new lines as they are written.
    LogsFollow, "logs.follow", LogsParams => LogEvent);
method!(
    /// Memory, load, connections, uptime.
    Stats, "stats", Empty => StatsResult);
method!(
    /// Takes (or extends) a named hold: while held, the host must not suspend the guest.
    HoldAcquire, "hold.acquire", HoldParams => HoldInfo);
method!(
    /// Extends an existing hold; `not_found` if it expired or never existed.
    HoldRenew, "hold.renew", HoldParams => HoldInfo);
method!(
    /// Releases a hold.
    HoldRelease, "hold.release", HoldId => HoldReleased);
method!(
    /// Lists unexpired holds.
    HoldList, "hold.list", Empty => HoldListResult);
method!(
    /// Sets the guest clock (after a resume from snapshot).
    SetTime, "time.set", SetTimeParams => Empty);
method!(
    /// Stops the workload, syncs and powers the guest off (or reboots it).
    Shutdown, "shutdown", ShutdownParams => Empty);
method!(
    /// Replaces the agent token: stored where the agent reads it at boot,
    /// then in force for every new connection (the old one is refused).
    RotateToken, "token.rotate", RotateTokenParams => Empty);
method!(
    /// Starts a process in the guest; the `ok` reply upgrades the connection
    /// to [`stream`](crate::stream) frames, ended by an [`ExecExit`].
    ExecStart, "exec.start", ExecParams => ExecStarted);
method!(
    /// Receives a tar archive (as stdin frames) and places it at `dest`
    /// atomically; upgrades like `exec.start`, ended by a [`FilesPutResult`].
    FilesPut, "files.put", FilesPutParams => Empty);
method!(
    /// Sends `path` as a tar archive (as stdout frames); upgrades like
    /// `exec.start`, ended by a [`FilesGetResult`].
    FilesGet, "files.get", FilesGetParams => Empty);

/// Every method name, in table order (the agent's `hello` reply lists these).
pub const ALL_METHODS: [&str; 21] = [
    Hello::NAME,
    Health::NAME,
    InjectSecrets::NAME,
    Configure::NAME,
    Start::NAME,
    Stop::NAME,
    Restart::NAME,
    Status::NAME,
    LogsTail::NAME,
    LogsFollow::NAME,
    Stats::NAME,
    HoldAcquire::NAME,
    HoldRenew::NAME,
    HoldRelease::NAME,
    HoldList::NAME,
    SetTime::NAME,
    Shutdown::NAME,
    RotateToken::NAME,
    ExecStart::NAME,
    FilesPut::NAME,
    FilesGet::NAME,
];

/// The methods after whose `ok` reply the connection carries
/// [`stream`](crate::stream) frames.
pub const UPGRADING_METHODS: [&str; 3] = [ExecStart::NAME, FilesPut::NAME, FilesGet::NAME];

/// No parameters / no result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// A string that must not be printed (token, API key).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

/// `hello` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelloParams {
    /// The client's protocol version.
    pub protocol: u32,
    /// The tenant's agent token.
    pub token: Secret,
    /// Free-form client name, for the agent's log.
    #[serde(default)]
    pub client: String,
}

/// `hello` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelloResult {
    /// The agent's protocol version.
    pub protocol: u32,
    /// Agent name and version, e.g. `lobster-agent 0.1.0`.
    pub agent: String,
    /// Methods served on this port.
    pub methods: Vec<String>,
}

/// `health` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthResult {
    /// Milliseconds since the agent started.
    pub agent_uptime_ms: u64,
    /// Milliseconds since the guest booted.
    pub system_uptime_ms: u64,
    /// The workload's state.
    pub workload: WorkloadState,
}

/// `secrets.inject` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectSecretsParams {
    /// Environment variables for the workload (names `[A-Za-z_][A-Za-z0-9_]*`).
    pub env: BTreeMap<String, Secret>,
    /// Drop previously injected variables not named here.
    #[serde(default)]
    pub replace: bool,
}

/// `secrets.inject` result: names only, never values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InjectSecretsResult {
    /// Names of all stored secrets after the call.
    pub names: Vec<String>,
    /// Whether a running workload must restart to see the change.
    pub restart_needed: bool,
}

/// What the agent runs and supervises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// argv; empty means the OpenClaw gateway (`openclaw gateway`).
    #[serde(default)]
    pub command: Vec<String>,
    /// Extra (non-secret) environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (default `/`).
    #[serde(default)]
    pub cwd: Option<String>,
    /// When set, the agent writes OpenClaw's config before each start.
    #[serde(default)]
    pub openclaw: Option<OpenClawSpec>,
    /// When to restart the workload after it exits.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// TCP port the workload serves on (for connection counts); OpenClaw's
    /// port is used when unset.
    #[serde(default)]
    pub port: Option<u16>,
}

/// The OpenClaw gateway's configuration, written to `~/.openclaw/openclaw.json`
/// as the original does: `gateway.mode = local`, `bind = custom` (all
/// addresses), the port, and token auth. Only the keys of
/// [`crate::openclaw::LOBSTER_OWNED_KEYS`] are imposed at every start; the
/// rest of an existing file (the user's settings) is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenClawSpec {
    /// Gateway port (9000 in lobster).
    #[serde(default = "default_gateway_port")]
    pub port: u16,
    /// The tenant's gateway token (users present it to the gateway).
    pub gateway_token: Secret,
    /// The initial document (operator defaults: providers, agents), used
    /// when the guest has no config yet; the owned keys it holds
    /// (`gateway.controlUi.allowedOrigins`, `gateway.trustedProxies`) are
    /// imposed at every start, and removed when it lacks them.
    #[serde(default)]
    pub extra: serde_json::Value,
}

fn default_gateway_port() -> u16 {
    9000
}

/// Restart policy of the workload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Restart whenever it exits (with backoff).
    #[default]
    Always,
    /// Restart only after a non-zero exit or a signal.
    OnFailure,
    /// Never restart.
    Never,
}

/// `workload.configure` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigureParams {
    /// The workload.
    pub workload: WorkloadSpec,
    /// Start (or restart, if running) right away.
    #[serde(default)]
    pub start: bool,
}

/// `workload.stop` / `workload.restart` parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopParams {
    /// Grace time between SIGTERM and SIGKILL (default 5000 ms).
    #[serde(default)]
    pub grace_ms: Option<u64>,
}

/// Supervision state of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadState {
    /// No workload configured yet.
    Unconfigured,
    /// Configured, not running, not to be restarted.
    Stopped,
    /// Running.
    Running,
    /// Exited; waiting out the restart backoff.
    Backoff,
    /// Exited and the policy says not to restart.
    Exited,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// Signal number, if it was killed.
    pub signal: Option<i32>,
}

/// Result of the workload methods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadStatus {
    /// Current state.
    pub state: WorkloadState,
    /// Process id while running.
    pub pid: Option<u32>,
    /// The command line (argv).
    pub command: Vec<String>,
    /// Restarts since the last configure/start.
    pub restarts: u32,
    /// How the last run ended.
    pub last_exit: Option<ExitInfo>,
    /// Milliseconds the current run has been up.
    pub uptime_ms: Option<u64>,
    /// Milliseconds until the next restart attempt (in `backoff`).
    pub restart_in_ms: Option<u64>,
}

/// Which log to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogSource {
    /// The workload's stdout and stderr.
    #[default]
    Workload,
    /// The agent's own log.
    Agent,
}

/// `logs.tail` / `logs.follow` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsParams {
    /// Which log.
    #[serde(default)]
    pub source: LogSource,
    /// How many of the last lines (capped by the agent at [`MAX_TAIL_LINES`]).
    #[serde(default = "default_tail_lines")]
    pub lines: u32,
}

fn default_tail_lines() -> u32 {
    100
}

/// The most lines one `logs.tail` returns.
pub const MAX_TAIL_LINES: u32 = 10_000;

/// `logs.tail` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLines {
    /// Lines, oldest first (raw guest text: sanitise before display).
    pub lines: Vec<String>,
    /// Whether older lines were left out to respect the reply cap.
    pub truncated: bool,
}

/// One `logs.follow` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEvent {
    /// One log line (raw guest text).
    pub line: String,
}

/// `stats` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsResult {
    /// Milliseconds since the guest booted.
    pub uptime_ms: u64,
    /// 1, 5 and 15 minute load averages.
    pub load: [f64; 3],
    /// Guest memory.
    pub memory: MemoryStats,
    /// TCP connections (IPv4 and IPv6).
    pub connections: ConnectionStats,
    /// Resident memory of the workload process, in KiB.
    pub workload_rss_kib: Option<u64>,
    /// Unexpired holds.
    pub holds: u32,
    /// When the workload's next scheduled job is due (OpenClaw cron; the
    /// agent's time of the call while a job runs), in milliseconds since
    /// the Unix epoch; the host wakes a suspended guest ahead of it.
    /// Absent: nothing scheduled (or an older agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_job_at_ms: Option<u64>,
}

/// Memory figures from `/proc/meminfo`, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// MemTotal.
    pub total_kib: u64,
    /// MemAvailable.
    pub available_kib: u64,
    /// MemFree.
    pub free_kib: u64,
}

/// Counts of TCP sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionStats {
    /// All established connections.
    pub established: u32,
    /// Established connections whose local port is the workload port (if known).
    pub workload: u32,
    /// Listening sockets.
    pub listening: u32,
}

/// Longest accepted hold id.
pub const MAX_HOLD_ID_LEN: usize = 128;
/// Longest accepted hold TTL: one day.
pub const MAX_HOLD_TTL_MS: u64 = 24 * 3600 * 1000;
/// Most holds held at once.
pub const MAX_HOLDS: usize = 256;

/// `hold.acquire` / `hold.renew` parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldParams {
    /// Caller-chosen id.
    pub id: String,
    /// Time to live from now.
    pub ttl_ms: u64,
}

/// `hold.release` parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldId {
    /// The hold to release.
    pub id: String,
}

/// One hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldInfo {
    /// Its id.
    pub id: String,
    /// Milliseconds until it expires.
    pub expires_in_ms: u64,
}

/// `hold.release` result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldReleased {
    /// Whether the hold existed (and had not expired).
    pub released: bool,
}

/// `hold.list` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldListResult {
    /// Unexpired holds.
    pub holds: Vec<HoldInfo>,
}

/// `time.set` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetTimeParams {
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

/// The longest agent token `token.rotate` accepts.
pub const MAX_TOKEN_LEN: usize = 256;

/// `token.rotate` parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateTokenParams {
    /// The new token: 1 to [`MAX_TOKEN_LEN`] printable ASCII characters.
    pub token: Secret,
}

/// `shutdown` parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownParams {
    /// Reboot instead of powering off.
    #[serde(default)]
    pub reboot: bool,
}

/// `exec.start` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecParams {
    /// Program and arguments; `argv[0]` is looked up in `PATH`.
    pub argv: Vec<String>,
    /// Environment added to the agent's base environment for commands.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (default: the user's home).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// User name or numeric uid to run as (default: root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Run on a PTY of this size (stdout and stderr then share the terminal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<crate::stream::WindowSize>,
    /// Kill the process group after this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `exec.start` result: the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecStarted {
    /// Its pid in the guest.
    pub pid: u32,
}

/// How an exec'd process ended (the payload of the final `End` frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecExit {
    /// Exit code, if it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// Signal number, if a signal ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// The agent killed it because `timeout_ms` passed.
    #[serde(default)]
    pub timed_out: bool,
}

/// `files.put` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesPutParams {
    /// Absolute guest path the archive's single top-level entry becomes.
    pub dest: String,
    /// Refuse (and leave nothing) once the unpacked archive exceeds this.
    pub max_bytes: u64,
}

/// `files.put` result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesPutResult {
    /// Regular files, directories and links placed.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// `files.get` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesGetParams {
    /// Absolute guest path of a file or directory.
    pub path: String,
    /// Stop with an error once the archive would exceed this.
    pub max_bytes: u64,
}

/// `files.get` result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesGetResult {
    /// Entries sent.
    pub entries: u64,
    /// Bytes of file content sent.
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_are_unique_and_valid() {
        let names: Vec<&str> = ALL_METHODS.to_vec();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        for n in names {
            let line = format!(r#"{{"id":1,"method":"{n}"}}"#);
            crate::parse_request(line.as_bytes()).unwrap();
        }
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let p = InjectSecretsParams {
            env: [("API_KEY".to_string(), Secret::from("sk-live"))].into(),
            replace: false,
        };
        assert!(!format!("{p:?}").contains("sk-live"));
        assert_eq!(
            serde_json::to_string(&p.env).unwrap(),
            r#"{"API_KEY":"sk-live"}"#
        );
    }

    #[test]
    fn workload_spec_defaults_to_openclaw_with_restart_always() {
        let spec: WorkloadSpec = serde_json::from_str("{}").unwrap();
        assert!(spec.command.is_empty());
        assert_eq!(spec.restart, RestartPolicy::Always);
        let oc: OpenClawSpec = serde_json::from_str(r#"{"gateway_token":"t"}"#).unwrap();
        assert_eq!(oc.port, 9000);
    }

    #[test]
    fn logs_params_default_to_workload_and_100_lines() {
        let p: LogsParams = serde_json::from_str("{}").unwrap();
        assert_eq!(
            p,
            LogsParams {
                source: LogSource::Workload,
                lines: 100
            }
        );
    }
}
