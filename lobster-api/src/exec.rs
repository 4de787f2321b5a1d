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
//! A client that closes or goes away ends the session: the guest's agent
//! hangs up the command's process group, then kills it. The server's stop
//! ends every session the same way.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use lobster_core::agent::{exit_status, ExecEvent, ExecInput, ExecOutput, WindowSize};
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
        .on_upgrade(move |socket| async move {
            let _held = slot;
            let stop = api.shutdown.clone();
            tokio::select! {
                () = session(api, name, socket) => {}
                () = stop.cancelled() => {}
            }
        }))
}

/// One session on an upgraded socket, to its end.
async fn session(api: Api, name: String, mut socket: WebSocket) {
    let request = match tokio::time::timeout(START_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(text)))) => start_request(&text),
        Ok(Some(Ok(_))) => Err(ApiError::bad_request(
            "the first message must be the start message, a JSON text frame",
        )),
        Ok(_) => return,
        Err(_) => Err(ApiError::bad_request(format!(
            "no start message within {} s",
            START_TIMEOUT.as_secs()
        ))),
    };
    let started = match request {
        Ok(request) => api.host.exec(&name, &request).await.map_err(ApiError::from),
        Err(e) => Err(e),
    };
    let session = match started {
        Ok(session) => session,
        Err(e) => return refuse(socket, e.body()).await,
    };
    let hello = json!({ "started": { "pid": session.pid(), "tty": session.tty() } });
    if socket.send(text(hello)).await.is_err() {
        return;
    }
    let (input, output) = session.split();
    let (sink, stream) = socket.split();
    // Output and input run side by side: stdin waits for the agent's
    // credit, which only reading the output brings in.
    tokio::select! {
        () = pump_output(output, sink) => {}
        () = pump_input(input, stream) => {}
    }
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

/// Sends `{"error": …}` and closes with 1008.
async fn refuse(mut socket: WebSocket, error: &ErrorBody) {
    let _ = socket.send(text(json!({ "error": error }))).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 1008,
            reason: Utf8Bytes::from_static("refused"),
        })))
        .await;
}

/// Output to the client, then the exit and a normal close.
async fn pump_output(
    mut output: ExecOutput,
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
) {
    loop {
        let message = match output.next().await {
            Ok(Some(ExecEvent::Stdout(bytes))) => tagged(STDOUT, bytes),
            Ok(Some(ExecEvent::Stderr(bytes))) => tagged(STDERR, bytes),
            Ok(Some(ExecEvent::Exit(exit))) => {
                let end = json!({ "exit": {
                    "code": exit.code, "signal": exit.signal,
                    "timed_out": exit.timed_out, "status": exit_status(&exit),
                }});
                let _ = sink.send(text(end)).await;
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code: 1000,
                        reason: Utf8Bytes::from_static("exited"),
                    })))
                    .await;
                return;
            }
            Ok(None) => return,
            Err(e) => {
                let error = ErrorBody::from(&lobster_core::Error::from(e));
                let _ = sink.send(text(json!({ "error": error }))).await;
                return;
            }
        };
        if sink.send(message).await.is_err() {
            return;
        }
    }
}

fn tagged(tag: u8, bytes: Vec<u8>) -> Message {
    let mut frame = Vec::with_capacity(bytes.len() + 1);
    frame.push(tag);
    frame.extend_from_slice(&bytes);
    Message::Binary(frame.into())
}

/// Client messages to the command until the client closes or breaks the
/// protocol (which ends the session).
async fn pump_input(input: ExecInput, mut stream: futures_util::stream::SplitStream<WebSocket>) {
    while let Some(Ok(message)) = stream.next().await {
        let sent = match message {
            Message::Binary(bytes) => input.write_stdin(&bytes).await,
            Message::Text(text) => match serde_json::from_str::<Control>(&text) {
                Ok(Control::CloseStdin(true)) => input.close_stdin().await,
                Ok(Control::CloseStdin(false)) => Ok(()),
                Ok(Control::Resize(size)) => input.resize(size).await,
                Ok(Control::Signal(number)) => input.signal(number).await,
                Err(_) => return,
            },
            Message::Close(_) => return,
            Message::Ping(_) | Message::Pong(_) => Ok(()),
        };
        if sent.is_err() {
            return;
        }
    }
}
