//! Wire types of the lobster host <-> guest agent protocol.
//!
//! The protocol is JSON lines over one TCP connection:
//!
//! 1. The host connects to the agent (RPC port, or the health port, which
//!    serves only `hello` and `health`).
//! 2. The host sends `hello` with its protocol version and the per-tenant
//!    token; the agent answers with its version and method list, or with an
//!    `unauthorized` / `unsupported_version` error and closes. A request may
//!    instead carry the token itself (one-shot callers).
//! 3. Each request is one line `{"id":N,"method":"...","params":{...}}`; the
//!    agent answers with one line `{"id":N,"ok":...}` or
//!    `{"id":N,"error":{"code":"...","message":"..."}}`. Streaming methods
//!    (`logs.follow`) send any number of `{"id":N,"event":...}` lines instead.
//! 4. No line may exceed [`MAX_MESSAGE_BYTES`]; both sides read through
//!    [`LineFramer`], which refuses longer lines before buffering them.
//!
//! 5. An upgrading method (`exec.start`, `files.put`, `files.get`) switches
//!    the connection to the binary frames of [`stream`] after its `ok` reply.
//!
//! The typed method table lives in [`methods`]; both the agent and the host
//! client use it, so a method's name, parameters and result cannot drift.

pub mod archive;
pub mod auth;
pub mod frame;
pub mod message;
pub mod methods;
pub mod openclaw;
pub mod stream;

pub use auth::token_matches;
pub use frame::{encode_line, FrameError, LineFramer, LineReader, MAX_MESSAGE_BYTES};
pub use message::{parse_request, ErrorCode, RemoteError, Reply, ReplyBody, Request, RequestError};
pub use methods::Method;

/// The protocol version this crate speaks. Bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;

/// Default TCP port of the agent's RPC endpoint (as the original).
pub const DEFAULT_RPC_PORT: u16 = 52;

/// Default TCP port of the agent's health endpoint (as the original).
pub const DEFAULT_HEALTH_PORT: u16 = 53;
