//! OpenClaw's own CLI in a tenant's guest: `configure` (its interactive
//! wizard, on a terminal), `config get` / `config set` (then a gateway
//! restart) and `devices list|approve|reject` (pairing).
//!
//! Each operation is one [`ExecRequest`] of `openclaw ...` built here (the
//! gateway port of the host's config and the gateway's compile cache in its
//! environment, so the CLI reaches the gateway the agent started) and run
//! like `exec`: a suspended tenant is resumed and held awake while it runs.
//! What the guest says back is hostile input: output is capped at
//! [`OUTPUT_LIMIT`], JSON is read into typed structs that ignore unknown
//! fields, and every text returned or put into an error is sanitised for a
//! terminal. Keys and device ids are checked on the host before they reach
//! an argv; keys lobster owns ([`LOBSTER_OWNED_KEYS`]) are refused before
//! the guest is touched.

use std::time::{Duration, Instant};

pub use lobster_agent_proto::openclaw::LOBSTER_OWNED_KEYS;
use lobster_agent_proto::openclaw::{check_user_key, UserKeyError};
use serde::{Deserialize, Serialize};

use crate::agent::{exit_status, Agent, ExecEvent, WindowSize, WorkloadState};
use crate::base::{sanitize_for_terminal, Classify, ErrorKind};
use crate::config::Config;
use crate::context::Context;
use crate::error::Result;

use super::awake::awake_for;
use super::ExecRequest;

/// The most output (stdout and stderr together) a non-interactive OpenClaw
/// command may send back; more is an error.
pub const OUTPUT_LIMIT: usize = 1 << 20;

/// How long a non-interactive OpenClaw command may run (its cold start is
/// slow on an emulated guest).
pub const CLI_TIMEOUT: Duration = Duration::from_secs(300);

/// The RPC timeout `devices` commands give the CLI (`--timeout`, ms).
const DEVICES_RPC_TIMEOUT_MS: &str = "60000";

/// How long the gateway gets to stop on a restart before it is killed.
pub const RESTART_GRACE: Duration = Duration::from_secs(5);

/// How long a restarted gateway may take to be reported running again.
pub const RESTART_WAIT: Duration = Duration::from_secs(30);

/// Where the gateway keeps its V8 compile cache (the CLI reuses it).
const NODE_COMPILE_CACHE: &str = "/root/.cache/node-compile-cache";

/// The longest device id accepted.
const MAX_DEVICE_ID: usize = 128;

/// The most message text kept from OpenClaw's output in an error.
const MAX_MESSAGE: usize = 2000;

/// Errors of the OpenClaw operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenClawError {
    /// A config key a user may not set or read.
    #[error("invalid config key: {0}")]
    Key(#[source] UserKeyError),
    /// A `KEY=VALUE` setting or a value that cannot be passed on.
    #[error("invalid setting {setting:?}: {reason}")]
    Setting {
        /// The setting as given (or its key).
        setting: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A device (request) id outside the accepted characters.
    #[error("invalid device id {id:?}: expected 1 to {MAX_DEVICE_ID} of A-Z a-z 0-9 - _")]
    DeviceId {
        /// The id as given.
        id: String,
    },
    /// `config get` of a key that has no value.
    #[error("config key {key} is not set in `{name}`: {message}")]
    Unset {
        /// The tenant.
        name: String,
        /// The key.
        key: String,
        /// OpenClaw's message (sanitised).
        message: String,
    },
    /// `devices approve|reject` of a request that is not pending.
    #[error("no pending device request {id} in `{name}`: {message}")]
    NoSuchRequest {
        /// The tenant.
        name: String,
        /// The request id.
        id: String,
        /// OpenClaw's message (sanitised).
        message: String,
    },
    /// OpenClaw refused the input (an unknown key, a value its schema rejects).
    #[error("openclaw {command} in `{name}` refused it (exit status {status}): {message}")]
    Refused {
        /// The tenant.
        name: String,
        /// The OpenClaw command (`config set KEY`).
        command: String,
        /// Its exit status.
        status: i32,
        /// OpenClaw's message (sanitised).
        message: String,
    },
    /// OpenClaw failed for another reason (e.g. the gateway is not reachable).
    #[error("openclaw {command} in `{name}` failed (exit status {status}): {message}")]
    Failed {
        /// The tenant.
        name: String,
        /// The OpenClaw command.
        command: String,
        /// Its exit status (124: killed after [`CLI_TIMEOUT`]).
        status: i32,
        /// OpenClaw's message (sanitised).
        message: String,
    },
    /// The command's output was more than [`OUTPUT_LIMIT`] or not what
    /// OpenClaw prints.
    #[error("openclaw {command} in `{name}` sent unusable output: {reason}")]
    Output {
        /// The tenant.
        name: String,
        /// The OpenClaw command.
        command: String,
        /// What was wrong.
        reason: String,
    },
    /// The gateway was not seen running with a new pid after its restart.
    #[error("the gateway of `{name}` was not running again {waited:?} after its restart (pid before: {pid_before:?}, state now: {state})")]
    RestartNotSeen {
        /// The tenant.
        name: String,
        /// Its pid before the restart.
        pid_before: Option<u32>,
        /// The state last reported.
        state: String,
        /// How long we waited.
        waited: Duration,
    },
}

impl Classify for OpenClawError {
    fn kind(&self) -> ErrorKind {
        match self {
            OpenClawError::Key(_)
            | OpenClawError::Setting { .. }
            | OpenClawError::DeviceId { .. }
            | OpenClawError::Refused { .. } => ErrorKind::InvalidArgument,
            OpenClawError::Unset { .. } | OpenClawError::NoSuchRequest { .. } => {
                ErrorKind::NotFound
            }
            OpenClawError::Failed { status: 124, .. } | OpenClawError::RestartNotSeen { .. } => {
                ErrorKind::Timeout
            }
            OpenClawError::Failed { .. } | OpenClawError::Output { .. } => ErrorKind::GuestFailure,
        }
    }
}

impl From<OpenClawError> for crate::Error {
    fn from(e: OpenClawError) -> crate::Error {
        super::TenantError::from(e).into()
    }
}

/// A device pairing operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicesOp {
    /// Lists pending requests and paired devices.
    List,
    /// Approves the pending request with this id.
    Approve(String),
    /// Rejects the pending request with this id.
    Reject(String),
}

/// A device asking to be paired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingDevice {
    /// The request's id (what `approve` and `reject` take).
    pub request_id: String,
    /// The device's id.
    #[serde(default)]
    pub device_id: String,
    /// The name the device gave.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Its platform (`linux`, `ios`, ...).
    #[serde(default)]
    pub platform: Option<String>,
    /// The role it asks for (`operator`, `node`).
    #[serde(default)]
    pub role: Option<String>,
}

/// A paired device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairedDevice {
    /// The device's id.
    pub device_id: String,
    /// Its name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Its platform.
    #[serde(default)]
    pub platform: Option<String>,
    /// Its role.
    #[serde(default)]
    pub role: Option<String>,
}

/// What a [`DevicesOp`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum DevicesReport {
    /// The pairing entries.
    List {
        /// Requests waiting for approval.
        pending: Vec<PendingDevice>,
        /// Paired devices.
        paired: Vec<PairedDevice>,
    },
    /// A request was approved.
    Approved {
        /// The request.
        request_id: String,
        /// The device now paired.
        device_id: String,
    },
    /// A request was rejected.
    Rejected {
        /// The request.
        request_id: String,
        /// The device refused.
        device_id: String,
    },
}

/// What [`Host::config_set`](crate::Host::config_set) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigSetReport {
    /// The keys written, in order.
    pub keys: Vec<String>,
    /// Whether the gateway was restarted (always, once every key is written).
    pub restarted: bool,
    /// The gateway's pid before the restart.
    pub pid_before: Option<u32>,
    /// The gateway's pid after it.
    pub pid_after: Option<u32>,
}

/// Splits `KEY=VALUE` at the first `=` and checks both
/// ([`check_setting`]).
///
/// # Errors
/// `InvalidArgument` naming the setting: no `=`, or what
/// [`check_setting`] refuses.
pub fn parse_setting(setting: &str) -> Result<(String, String)> {
    let Some((key, value)) = setting.split_once('=') else {
        return Err(OpenClawError::Setting {
            setting: setting.to_owned(),
            reason: "expected KEY=VALUE",
        }
        .into());
    };
    check_setting(key, value)?;
    Ok((key.to_owned(), value.to_owned()))
}

/// Checks that a user may set `key` to `value`: `key` is a plain dot path
/// lobster does not own ([`LOBSTER_OWNED_KEYS`]), `value` one line without
/// control characters other than tab.
///
/// # Errors
/// `InvalidArgument` naming the key and why.
pub fn check_setting(key: &str, value: &str) -> Result<()> {
    check_user_key(key).map_err(OpenClawError::Key)?;
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(OpenClawError::Setting {
            setting: key.to_owned(),
            reason: "the value must be one line without control characters",
        }
        .into());
    }
    Ok(())
}

/// Checks a device or request id before it reaches an argv.
///
/// # Errors
/// `InvalidArgument` naming the id.
pub fn check_device_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_DEVICE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(OpenClawError::DeviceId { id: id.to_owned() }.into())
    }
}

/// The interactive `openclaw configure` on a terminal of `window` cells
/// (`exec -it`; no timeout: a person answers it).
///
/// # Errors
/// `InvalidArgument` for a zero-sized window.
pub fn configure_request(config: &Config, window: WindowSize) -> Result<ExecRequest> {
    cli(config, ["configure"]).tty(window).build()
}

/// `openclaw config get KEY`.
///
/// # Errors
/// `InvalidArgument` for a malformed key.
pub fn config_get_request(config: &Config, key: &str) -> Result<ExecRequest> {
    if let Err(e @ UserKeyError::Malformed(_)) = check_user_key(key) {
        return Err(OpenClawError::Key(e).into());
    }
    cli(config, ["config", "get", key])
        .timeout(CLI_TIMEOUT)
        .build()
}

/// `openclaw config set KEY VALUE`.
///
/// # Errors
/// `InvalidArgument` for what [`check_setting`] refuses.
pub fn config_set_request(config: &Config, key: &str, value: &str) -> Result<ExecRequest> {
    check_setting(key, value)?;
    cli(config, ["config", "set", key, value])
        .timeout(CLI_TIMEOUT)
        .build()
}

/// `openclaw devices list|approve ID|reject ID --json --timeout 60000`.
///
/// # Errors
/// `InvalidArgument` for a malformed id.
pub fn devices_request(config: &Config, op: &DevicesOp) -> Result<ExecRequest> {
    let mut argv = vec!["devices"];
    match op {
        DevicesOp::List => argv.push("list"),
        DevicesOp::Approve(id) | DevicesOp::Reject(id) => {
            check_device_id(id)?;
            argv.push(if matches!(op, DevicesOp::Approve(_)) {
                "approve"
            } else {
                "reject"
            });
            argv.push(id);
        }
    }
    argv.extend(["--json", "--timeout", DEVICES_RPC_TIMEOUT_MS]);
    cli(config, argv).timeout(CLI_TIMEOUT).build()
}

/// `openclaw ARGS...` with the environment the gateway's CLI needs: the
/// gateway's port (the agent starts it with `OPENCLAW_GATEWAY_PORT`, which
/// wins over the config file) and its compile cache.
fn cli<'a>(config: &Config, args: impl IntoIterator<Item = &'a str>) -> super::ExecRequestBuilder {
    let argv = std::iter::once("openclaw").chain(args);
    ExecRequest::builder(argv)
        .env(
            "OPENCLAW_GATEWAY_PORT",
            config.network.gateway_port.to_string(),
        )
        .env("NODE_COMPILE_CACHE", NODE_COMPILE_CACHE)
}

/// What a non-interactive command printed and how it ended.
struct Output {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Output {
    /// OpenClaw's message: the `error.message` of its JSON error on stdout
    /// (`--json`), else stderr, else stdout.
    fn message(&self) -> String {
        #[derive(Deserialize)]
        struct JsonError {
            error: JsonErrorBody,
        }
        #[derive(Deserialize)]
        struct JsonErrorBody {
            message: String,
        }
        let text = match serde_json::from_str::<JsonError>(&self.stdout) {
            Ok(e) => e.error.message,
            Err(_) if self.stderr.trim().is_empty() => self.stdout.clone(),
            Err(_) => self.stderr.clone(),
        };
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let mut message = sanitize_for_terminal(&lines.join("; "));
        if message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str(" [...]");
        }
        if message.is_empty() {
            "no message".into()
        } else {
            message
        }
    }
}

/// Runs `request` through `agent` (stdin closed at once) and collects its
/// output, at most [`OUTPUT_LIMIT`] bytes.
async fn run(agent: &Agent, name: &str, command: &str, request: &ExecRequest) -> Result<Output> {
    let (input, mut output) = agent.exec(request.params()).await?.split();
    input.close_stdin().await?;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut total = 0usize;
    loop {
        let event = output.next().await?;
        let bytes = match event {
            Some(ExecEvent::Stdout(b)) => (&mut stdout, b),
            Some(ExecEvent::Stderr(b)) => (&mut stderr, b),
            Some(ExecEvent::Exit(exit)) => {
                let text = |b: &[u8]| sanitize_lines(&String::from_utf8_lossy(b));
                return Ok(Output {
                    status: exit_status(&exit),
                    stdout: text(&stdout),
                    stderr: text(&stderr),
                });
            }
            None => {
                return Err(OpenClawError::Output {
                    name: name.to_owned(),
                    command: command.to_owned(),
                    reason: "the session ended without an exit".into(),
                }
                .into())
            }
        };
        let (buffer, chunk) = bytes;
        total += chunk.len();
        if total > OUTPUT_LIMIT {
            return Err(OpenClawError::Output {
                name: name.to_owned(),
                command: command.to_owned(),
                reason: format!("more than {OUTPUT_LIMIT} bytes"),
            }
            .into());
        }
        buffer.extend_from_slice(&chunk);
    }
}

/// `text` sanitised for a terminal line by line (newlines kept).
fn sanitize_lines(text: &str) -> String {
    text.split('\n')
        .map(sanitize_for_terminal)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of config key `key` in tenant `name`'s OpenClaw, as
/// `openclaw config get` prints it (scalars bare, objects as JSON); secrets
/// come back redacted by OpenClaw.
pub(crate) async fn config_get(context: &Context, name: &str, key: &str) -> Result<String> {
    let request = config_get_request(context.config(), key)?;
    let hold = awake_for(context, name, "configure").await?;
    let command = format!("config get {key}");
    let result = run(hold.agent(), name, &command, &request).await;
    hold.release().await;
    let out = result?;
    if out.status == 0 {
        return Ok(out
            .stdout
            .strip_suffix('\n')
            .unwrap_or(&out.stdout)
            .to_owned());
    }
    let message = out.message();
    Err(if message.contains("valid but unset") {
        OpenClawError::Unset {
            name: name.to_owned(),
            key: key.to_owned(),
            message,
        }
    } else {
        let refused = message.contains("Unknown config path");
        refused_or_failed(refused, name, command, out.status, message)
    }
    .into())
}

/// OpenClaw's refusal of what was asked (`refused`), or another failure.
fn refused_or_failed(
    refused: bool,
    name: &str,
    command: String,
    status: i32,
    message: String,
) -> OpenClawError {
    let name = name.to_owned();
    if refused {
        OpenClawError::Refused {
            name,
            command,
            status,
            message,
        }
    } else {
        OpenClawError::Failed {
            name,
            command,
            status,
            message,
        }
    }
}

/// Writes each `(key, value)` with `openclaw config set`, in order, then
/// restarts the gateway once and waits until it runs with a new pid. Every
/// setting is checked before the guest is touched; the first one OpenClaw
/// refuses stops the run without a restart (those before it are written).
pub(crate) async fn config_set(
    context: &Context,
    name: &str,
    settings: &[(String, String)],
) -> Result<ConfigSetReport> {
    let requests = settings
        .iter()
        .map(|(key, value)| config_set_request(context.config(), key, value))
        .collect::<Result<Vec<_>>>()?;
    if requests.is_empty() {
        return Err(OpenClawError::Setting {
            setting: String::new(),
            reason: "no setting given",
        }
        .into());
    }
    let hold = awake_for(context, name, "configure").await?;
    let result = set_and_restart(hold.agent(), name, settings, &requests).await;
    hold.release().await;
    result
}

async fn set_and_restart(
    agent: &Agent,
    name: &str,
    settings: &[(String, String)],
    requests: &[ExecRequest],
) -> Result<ConfigSetReport> {
    for ((key, _), request) in settings.iter().zip(requests) {
        let command = format!("config set {key}");
        let out = run(agent, name, &command, request).await?;
        if out.status != 0 {
            let message = out.message();
            let refused =
                message.contains("validation failed") || message.contains("Unknown config path");
            return Err(refused_or_failed(refused, name, command, out.status, message).into());
        }
    }
    let pid_before = agent.status().await?.pid;
    agent.restart(RESTART_GRACE).await?;
    let started = Instant::now();
    let status = loop {
        let status = agent.status().await?;
        if status.state == WorkloadState::Running
            && status.pid.is_some()
            && status.pid != pid_before
        {
            break status;
        }
        if started.elapsed() > RESTART_WAIT {
            return Err(OpenClawError::RestartNotSeen {
                name: name.to_owned(),
                pid_before,
                state: format!("{:?}", status.state).to_lowercase(),
                waited: RESTART_WAIT,
            }
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    Ok(ConfigSetReport {
        keys: settings.iter().map(|(k, _)| k.clone()).collect(),
        restarted: true,
        pid_before,
        pid_after: status.pid,
    })
}

/// Runs a device pairing operation with OpenClaw's CLI (`--json`) and
/// reads its answer.
pub(crate) async fn devices(
    context: &Context,
    name: &str,
    op: &DevicesOp,
) -> Result<DevicesReport> {
    let request = devices_request(context.config(), op)?;
    let command = match op {
        DevicesOp::List => "devices list".to_owned(),
        DevicesOp::Approve(id) => format!("devices approve {id}"),
        DevicesOp::Reject(id) => format!("devices reject {id}"),
    };
    let hold = awake_for(context, name, "devices").await?;
    let result = run(hold.agent(), name, &command, &request).await;
    hold.release().await;
    let out = result?;
    if out.status != 0 {
        let message = out.message();
        let unknown = message.contains("No pending device request matches")
            || message.contains("unknown requestId");
        return Err(match op {
            DevicesOp::Approve(id) | DevicesOp::Reject(id) if unknown => {
                OpenClawError::NoSuchRequest {
                    name: name.to_owned(),
                    id: id.clone(),
                    message,
                }
            }
            _ => OpenClawError::Failed {
                name: name.to_owned(),
                command,
                status: out.status,
                message,
            },
        }
        .into());
    }
    parse_devices(op, &out.stdout).map_err(|reason| {
        OpenClawError::Output {
            name: name.to_owned(),
            command,
            reason,
        }
        .into()
    })
}

/// Reads the `--json` answer of `op`.
fn parse_devices(op: &DevicesOp, stdout: &str) -> Result<DevicesReport, String> {
    #[derive(Deserialize)]
    struct List {
        pending: Vec<PendingDevice>,
        paired: Vec<PairedDevice>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Approved {
        request_id: String,
        device: PairedDevice,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Rejected {
        request_id: String,
        device_id: String,
    }
    let bad = |e: serde_json::Error| format!("not OpenClaw's JSON: {e}");
    // JSON escapes may decode to terminal controls: clean every string.
    let clean = |s: String| sanitize_for_terminal(&s);
    let clean_opt = |s: Option<String>| s.map(clean);
    let report = match op {
        DevicesOp::List => {
            let list: List = serde_json::from_str(stdout).map_err(bad)?;
            DevicesReport::List {
                pending: list.pending,
                paired: list.paired,
            }
        }
        DevicesOp::Approve(_) => {
            let a: Approved = serde_json::from_str(stdout).map_err(bad)?;
            DevicesReport::Approved {
                request_id: a.request_id,
                device_id: a.device.device_id,
            }
        }
        DevicesOp::Reject(_) => {
            let r: Rejected = serde_json::from_str(stdout).map_err(bad)?;
            DevicesReport::Rejected {
                request_id: r.request_id,
                device_id: r.device_id,
            }
        }
    };
    Ok(match report {
        DevicesReport::List { pending, paired } => DevicesReport::List {
            pending: pending
                .into_iter()
                .map(|d| PendingDevice {
                    request_id: clean(d.request_id),
                    device_id: clean(d.device_id),
                    display_name: clean_opt(d.display_name),
                    platform: clean_opt(d.platform),
                    role: clean_opt(d.role),
                })
                .collect(),
            paired: paired
                .into_iter()
                .map(|d| PairedDevice {
                    device_id: clean(d.device_id),
                    display_name: clean_opt(d.display_name),
                    platform: clean_opt(d.platform),
                    role: clean_opt(d.role),
                })
                .collect(),
        },
        DevicesReport::Approved {
            request_id,
            device_id,
        } => DevicesReport::Approved {
            request_id: clean(request_id),
            device_id: clean(device_id),
        },
        DevicesReport::Rejected {
            request_id,
            device_id,
        } => DevicesReport::Rejected {
            request_id: clean(request_id),
            device_id: clean(device_id),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(result: Result<impl std::fmt::Debug>) -> (ErrorKind, String) {
        let err = result.unwrap_err();
        (err.kind(), err.to_string())
    }

    #[test]
    fn settings_split_at_the_first_equals_sign_and_refuse_owned_keys() {
        assert_eq!(
            parse_setting("agents.defaults.heartbeat.every=2h").unwrap(),
            ("agents.defaults.heartbeat.every".into(), "2h".into())
        );
        assert_eq!(parse_setting("a.b=x=y").unwrap().1, "x=y");
        let (k, msg) = kind(parse_setting("logging.level"));
        assert_eq!(k, ErrorKind::InvalidArgument);
        assert!(msg.contains("KEY=VALUE"), "{msg}");
        let (k, msg) = kind(parse_setting("gateway.port=9001"));
        assert_eq!(k, ErrorKind::InvalidArgument);
        assert!(
            msg.contains("gateway.port") && msg.contains("lobster manages"),
            "{msg}"
        );
        let (_, msg) = kind(parse_setting("gateway.auth.token=x"));
        assert!(msg.contains("gateway.auth"), "{msg}");
        let (_, msg) = kind(parse_setting("a.b=two\nlines"));
        assert!(msg.contains("one line"), "{msg}");
        let (_, msg) = kind(parse_setting("a[0]=x"));
        assert!(msg.contains("dot path"), "{msg}");
    }

    #[test]
    fn device_ids_are_checked_before_they_reach_an_argv() {
        check_device_id("8f4b7f04-ec24-4d37-a238-86c7350f536d").unwrap();
        for bad in ["", "--url=ws://x", "a b", "a/b", "é", &"a".repeat(129)] {
            let (k, msg) = kind(check_device_id(bad));
            assert_eq!(k, ErrorKind::InvalidArgument, "{bad:?}");
            assert!(msg.contains("invalid device id"), "{msg}");
        }
    }

    #[test]
    fn requests_carry_the_gateway_port_and_the_exact_argv() {
        let mut config = Config::default();
        config.network.gateway_port = 9123;
        let r = devices_request(&config, &DevicesOp::Approve("ab-1".into())).unwrap();
        let p = r.params();
        assert_eq!(
            p.argv,
            [
                "openclaw",
                "devices",
                "approve",
                "ab-1",
                "--json",
                "--timeout",
                "60000"
            ]
        );
        assert_eq!(p.env["OPENCLAW_GATEWAY_PORT"], "9123");
        assert_eq!(p.env["NODE_COMPILE_CACHE"], NODE_COMPILE_CACHE);
        assert!(p.tty.is_none() && p.timeout_ms.is_some());
        let r = config_set_request(&config, "logging.level", "debug").unwrap();
        assert_eq!(
            r.params().argv,
            ["openclaw", "config", "set", "logging.level", "debug"]
        );
        let r = config_get_request(&config, "gateway.port").unwrap();
        assert_eq!(
            r.params().argv,
            ["openclaw", "config", "get", "gateway.port"]
        );
        let window = WindowSize { rows: 24, cols: 80 };
        let r = configure_request(&config, window).unwrap();
        assert_eq!(r.params().argv, ["openclaw", "configure"]);
        assert_eq!(r.params().tty, Some(window));
        assert_eq!(r.params().timeout_ms, None);
        assert!(devices_request(&config, &DevicesOp::Reject("-x y".into())).is_err());
    }

    #[test]
    fn device_json_is_read_ignoring_unknown_fields() {
        let list = r#"{"pending": [{"requestId": "r1", "deviceId": "d1", "displayName": "phone",
            "platform": "linux", "publicKey": "k", "scopes": ["a"], "ts": 1}],
            "paired": [{"deviceId": "d2", "tokens": [{"role": "operator"}]}]}"#;
        let DevicesReport::List { pending, paired } =
            parse_devices(&DevicesOp::List, list).unwrap()
        else {
            panic!("not a list")
        };
        assert_eq!(pending[0].request_id, "r1");
        assert_eq!(pending[0].display_name.as_deref(), Some("phone"));
        assert_eq!(paired[0].device_id, "d2");
        assert!(parse_devices(&DevicesOp::List, r#"{"pending": []}"#).is_err());
        let escaped = r#"{"pending": [{"requestId": "r", "displayName": "\u001b]52;c;x\u0007"}], "paired": []}"#;
        let DevicesReport::List { pending, .. } = parse_devices(&DevicesOp::List, escaped).unwrap()
        else {
            panic!("not a list")
        };
        assert_eq!(pending[0].display_name.as_deref(), Some("^[]52;c;x^G"));
        assert!(parse_devices(&DevicesOp::List, "No device pairing entries.").is_err());
        let approved = r#"{"requestId": "r1", "device": {"deviceId": "d1", "role": "operator"}}"#;
        assert_eq!(
            parse_devices(&DevicesOp::Approve("r1".into()), approved).unwrap(),
            DevicesReport::Approved {
                request_id: "r1".into(),
                device_id: "d1".into()
            }
        );
    }

    #[test]
    fn messages_prefer_the_json_error_then_stderr_and_are_bounded() {
        let out = |stdout: &str, stderr: &str| Output {
            status: 1,
            stdout: stdout.into(),
            stderr: stderr.into(),
        };
        assert_eq!(
            out("x", "line one\n\nline two\n").message(),
            "line one; line two"
        );
        let json =
            r#"{"ok": false, "error": {"type": "cli_error", "message": "unknown requestId"}}"#;
        assert_eq!(
            out(json, "[openclaw] failed\n").message(),
            "unknown requestId"
        );
        assert_eq!(out("", "bell\u{7}").message(), "bell^G");
        let long = out("", &"é".repeat(MAX_MESSAGE));
        assert!(long.message().len() <= MAX_MESSAGE + 6);
    }
}
