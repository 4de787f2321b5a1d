//! `GET /v1/tenants/{name}/exec`: a command in a tenant's guest, over a
//! WebSocket (admin scope: a shell in the guest reaches the workload's
//! secrets). The route checks the token, the name and the tenant before it
//! upgrades; then one session of [`Host::exec`](lobster_core::Host::exec):
//!
//! 1. the client sends the start message, a text frame ([`ExecStart`]),
//!    within [`START_TIMEOUT`];
//! 2. the server answers `{"started": {"pid", "tty"}}`, or
//!    `{"error": {"code", "message"}}` and closes (1008);
//! 3. the client sends stdin as binary frames and control as text frames:
//!    `{"close_stdin": true}`, `{"resize": {"rows", "cols"}}`,
//!    `{"signal": N}`; the server sends output as binary frames whose
//!    first byte is the stream (1 stdout, 2 stderr);
//! 4. the server sends `{"exit": {"code", "signal", "timed_out",
//!    "status"}}` (`status` as a shell reports it) and closes (1000).
//!
//! A client that closes, goes away or stops answering pings (every 30 s,
//! 75 s of silence) ends the session: the guest's agent hangs up the
//! command's process group, then kills it. The server's stop ends every
//! session the same way (close 1001); a malformed control message is 1008,
//! an agent failing mid-session `{"error"}` and 1011.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use lobster_core::agent::{exit_status, ExecEvent, ExecInput, ExecOutput, ExecSession, WindowSize};
use lobster_core::store::ApiScope;
use lobster_core::tenant::ExecRequest;
use serde::Deserialize;
use serde_json::json;

use crate::auth::require;
use crate::error::{ApiError, ErrorBody};
use crate::Api;

/// How long the client has to send its start message.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest WebSocket message accepted from a client (stdin comes in pieces).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Output stream tags: the first byte of each binary frame the server sends.
pub const STDOUT: u8 = 1;
/// See [`STDOUT`].
pub const STDERR: u8 = 2;

/// The start message: what `lobsterd exec` takes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecStart {
    /// The command and its arguments (`argv[0]` looked up in the guest's `PATH`).
    pub argv: Vec<String>,
    /// Environment of the command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (absolute; default: the user's home).
    #[serde(default)]
    pub cwd: Option<String>,
    /// User name or numeric uid (default: root).
    #[serde(default)]
    pub user: Option<String>,
    /// A terminal of this size (absent: pipes, stderr apart).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub tty: Option<WindowSize>,
    /// Seconds after which the agent kills the command.
    #[serde(default)]
    pub timeout_s: Option<u32>,
}

/// A control message from the client.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum Control {
    CloseStdin(bool),
    Resize(WindowSize),
    Signal(i32),
}

#[utoipa::path(get, path = "/v1/tenants/{name}/exec", tag = "tenants",
    params(("name" = String, Path, description = "Tenant name (a DNS label)")),
    responses((status = 101, description = "Upgraded to a WebSocket carrying one exec session (see docs/user/api.md: the start message is an `ExecStart`)"),
        (status = 400, description = "Not a WebSocket upgrade, or a malformed name", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token lacks the scope", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 429, description = "Too many open streams", body = ErrorBody)),
    security(("bearer" = ["admin"])))]
pub(crate) async fn exec(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    require(&api, &headers, ApiScope::Admin).await?;
    let name = crate::routes::name(&raw)?.to_owned();
    api.host.get(&name).await?;
    let upgrade = upgrade.map_err(|e| {
        ApiError::bad_request(format!("exec needs a WebSocket upgrade: {}", e.body_text()))
    })?;
    let slot = crate::routes::stream_slot(&api)?;
    Ok(upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            let _held = slot;
            session(api, name, socket).await;
        }))
}

/// Why a session ended; each but a vanished client gets a close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The command ended (its exit was sent): 1000.
    Exited,
    /// The client broke the protocol: 1008.
    Protocol,
    /// The agent failed mid-session (its error was sent): 1011.
    AgentFailed,
    /// The server is stopping: 1001.
    Stopping,
    /// The client closed, went away or stopped answering pings.
    ClientGone,
}

impl End {
    fn close(self) -> Option<CloseFrame> {
        let (code, reason) = match self {
            End::Exited => (1000, "exited"),
            End::Protocol => (1008, "protocol"),
            End::AgentFailed => (1011, "agent failed"),
            End::Stopping => (1001, "server stopping"),
            End::ClientGone => return None,
        };
        Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        })
    }
}

/// How often the server pings a session's client.
pub const PING_EVERY: Duration = Duration::from_secs(30);

/// A client silent this long (no pong, no message) is gone.
pub const CLIENT_SILENCE: Duration = Duration::from_secs(75);

/// Longest one message may take to reach a client.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The sending half, shared by the output pump, the pings and the close.
struct Writer(tokio::sync::Mutex<SplitSink<WebSocket, Message>>);

impl Writer {
    /// Sends `message`; false if the client is gone or too slow.
    async fn send(&self, message: Message) -> bool {
        let mut sink = self.0.lock().await;
        matches!(
            tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await,
            Ok(Ok(()))
        )
    }
}

/// One session on an upgraded socket, to its end.
async fn session(api: Api, name: String, mut socket: WebSocket) {
    let stop = api.shutdown.clone();
    let started = tokio::select! {
        started = start(&api, name, &mut socket) => started,
        () = stop.cancelled() => return,
    };
    let session = match started {
        Ok(session) => session,
        Err(e) => {
            let _ = socket.send(text(json!({ "error": e.body() }))).await;
            let close = CloseFrame {
                code: 1008,
                reason: Utf8Bytes::from_static("refused"),
            };
            let _ = socket.send(Message::Close(Some(close))).await;
            return;
        }
    };
    let hello = json!({ "started": { "pid": session.pid(), "tty": session.tty() } });
    if socket.send(text(hello)).await.is_err() {
        return;
    }
    let (input, output) = session.split();
    let (sink, stream) = socket.split();
    let writer = Writer(tokio::sync::Mutex::new(sink));
    let heard = std::sync::Mutex::new(tokio::time::Instant::now());
    // Output and input run side by side: stdin waits for the agent's
    // credit, which only reading the output brings in.
    let end = tokio::select! {
        end = pump_output(output, &writer) => end,
        end = pump_input(input, stream, &heard) => end,
        end = keep_alive(&writer, &heard) => end,
        () = stop.cancelled() => End::Stopping,
    };
    if let Some(frame) = end.close() {
        writer.send(Message::Close(Some(frame))).await;
    }
}

/// Waits (bounded) for the start message and starts the command. The
/// start runs as a task of its own: a wake of a suspended tenant is never
/// cut off halfway by the server's stop.
async fn start(api: &Api, name: String, socket: &mut WebSocket) -> Result<ExecSession, ApiError> {
    let request = match tokio::time::timeout(START_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(text)))) => start_request(&text)?,
        Ok(Some(Ok(_))) => {
            return Err(ApiError::bad_request(
                "the first message must be the start message, a JSON text frame",
            ))
        }
        Ok(_) => return Err(ApiError::bad_request("the client left before starting")),
        Err(_) => {
            return Err(ApiError::bad_request(format!(
                "no start message within {} s",
                START_TIMEOUT.as_secs()
            )))
        }
    };
    let host = api.host.clone();
    crate::routes::detached(async move { host.exec(&name, &request).await }).await
}

/// The start message as a checked request.
fn start_request(text: &str) -> Result<ExecRequest, ApiError> {
    let start: ExecStart = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("start message: {e}")))?;
    let mut request = ExecRequest::builder(start.argv);
    for (key, value) in start.env {
        request = request.env(key, value);
    }
    if let Some(cwd) = start.cwd {
        request = request.cwd(cwd);
    }
    if let Some(user) = start.user {
        request = request.user(user);
    }
    if let Some(size) = start.tty {
        request = request.tty(size);
    }
    if let Some(seconds) = start.timeout_s {
        request = request.timeout(Duration::from_secs(seconds.into()));
    }
    Ok(request.build()?)
}

fn text(value: serde_json::Value) -> Message {
    Message::Text(Utf8Bytes::from(value.to_string()))
}

/// Output to the client, then the exit (or the agent's error).
async fn pump_output(mut output: ExecOutput, writer: &Writer) -> End {
    loop {
        let message = match output.next().await {
            Ok(Some(ExecEvent::Stdout(bytes))) => tagged(STDOUT, bytes),
            Ok(Some(ExecEvent::Stderr(bytes))) => tagged(STDERR, bytes),
            Ok(Some(ExecEvent::Exit(exit))) => {
                let end = json!({ "exit": {
                    "code": exit.code, "signal": exit.signal,
                    "timed_out": exit.timed_out, "status": exit_status(&exit),
                }});
                writer.send(text(end)).await;
                return End::Exited;
            }
            Ok(None) => return End::Exited,
            Err(e) => {
                let error = ErrorBody::from(&lobster_core::Error::from(e));
                writer.send(text(json!({ "error": error }))).await;
                return End::AgentFailed;
            }
        };
        if !writer.send(message).await {
            return End::ClientGone;
        }
    }
}

fn tagged(tag: u8, bytes: Vec<u8>) -> Message {
    let mut frame = Vec::with_capacity(bytes.len() + 1);
    frame.push(tag);
    frame.extend_from_slice(&bytes);
    Message::Binary(frame.into())
}

/// Client messages to the command until the client closes, goes away or
/// breaks the protocol. Once a write to the command fails (it ended, or
/// closed its stdin) further stdin is dropped, but reading goes on: the
/// exit still reaches the client.
async fn pump_input(
    input: ExecInput,
    mut stream: SplitStream<WebSocket>,
    heard: &std::sync::Mutex<tokio::time::Instant>,
) -> End {
    let mut open = true;
    while let Some(Ok(message)) = stream.next().await {
        *heard.lock().expect("heard lock") = tokio::time::Instant::now();
        let sent = match message {
            Message::Binary(bytes) if open => input.write_stdin(&bytes).await,
            Message::Binary(_) => Ok(()),
            Message::Text(text) => match serde_json::from_str::<Control>(&text) {
                Ok(_) if !open => Ok(()),
                Ok(Control::CloseStdin(true)) => input.close_stdin().await,
                Ok(Control::CloseStdin(false)) => Ok(()),
                Ok(Control::Resize(size)) => input.resize(size).await,
                Ok(Control::Signal(number)) => input.signal(number).await,
                Err(_) => return End::Protocol,
            },
            Message::Close(_) => return End::ClientGone,
            Message::Ping(_) | Message::Pong(_) => Ok(()),
        };
        open &= sent.is_ok();
    }
    End::ClientGone
}

/// Pings the client every [`PING_EVERY`]; ends the session once it has
/// been silent for [`CLIENT_SILENCE`] (a peer that vanished without a
/// close would otherwise hold its slot and its guest for ever).
async fn keep_alive(writer: &Writer, heard: &std::sync::Mutex<tokio::time::Instant>) -> End {
    let mut ticks = tokio::time::interval(PING_EVERY);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let last = *heard.lock().expect("heard lock");
        if last.elapsed() >= CLIENT_SILENCE || !writer.send(Message::Ping(Vec::new().into())).await
        {
            return End::ClientGone;
        }
    }
}
