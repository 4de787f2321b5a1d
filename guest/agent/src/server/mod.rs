//! The transport: listeners, connections, authentication and log streaming.
//! What each method does is in [`handlers`].
//!
//! A connection must authenticate first (`hello` with the token, or a
//! `token` on the request), within [`budget::HANDSHAKE_DEADLINE`] in all;
//! any failure to do so gets one `unauthorized` reply and the connection is
//! closed. Afterwards requests are served in order. The health port serves
//! `hello` and `health` only. Each port has its own connection budget
//! ([`budget`]). `exec.start`, `files.put` and `files.get` upgrade: after
//! their `ok` line the connection belongs to the session (`crate::exec`,
//! `crate::transfer`) until it closes.

mod budget;
mod handlers;

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lobster_agent_proto::methods::{
    ExecStart, FilesGet, FilesPut, Health, Hello, HelloParams, HelloResult, LogEvent, LogSource,
    LogsParams, ALL_METHODS, MAX_TAIL_LINES,
};
use lobster_agent_proto::{
    encode_line, parse_request, token_matches, ErrorCode, LineReader, Method, Reply, Request,
    PROTOCOL_VERSION,
};
use serde_json::Value;

use self::budget::{Budget, Slot};
use self::handlers::{dispatch, params, Outcome};
use crate::{chain, exec, transfer, Shared};

/// An authenticated connection idle this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// A peer that does not read its replies for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Every method.
    Rpc,
    /// `hello` and `health` only.
    Health,
}

impl Port {
    fn methods(self) -> Vec<String> {
        ALL_METHODS
            .iter()
            .filter(|m| self.serves(m))
            .map(|m| m.to_string())
            .collect()
    }

    fn serves(self, method: &str) -> bool {
        match self {
            Port::Rpc => ALL_METHODS.contains(&method),
            Port::Health => method == Hello::NAME || method == Health::NAME,
        }
    }
}

/// Binds `addr` and serves it from a new thread; returns the bound address.
pub fn listen(shared: Arc<Shared>, addr: SocketAddr, port: Port) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name(format!("accept-{port:?}").to_lowercase())
        .spawn(move || accept_loop(shared, listener, port))?;
    Ok(local)
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener, port: Port) {
    let budget = Budget::new(shared.config.max_connections);
    for conn in listener.incoming() {
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                shared.log.line(&format!("accept on {port:?} port: {e}"));
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let Some(slot) = budget.admit(&stream) else {
            let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
            let _ = send(
                &mut stream,
                &Reply::error(0, ErrorCode::Busy, "too many connections"),
            );
            continue;
        };
        let shared = Arc::clone(&shared);
        // A thread that cannot start drops its slot with the closure.
        let _ = std::thread::Builder::new()
            .name("conn".into())
            .spawn(move || Connection::new(shared, stream, port, slot).serve());
    }
}

fn send(stream: &mut TcpStream, reply: &Reply) -> std::io::Result<()> {
    let line = match encode_line(reply) {
        Ok(line) => line,
        Err(e) => encode_line(&Reply::error(reply.id, ErrorCode::Internal, e.to_string()))
            .map_err(std::io::Error::other)?,
    };
    stream.write_all(&line)
}

struct Connection {
    shared: Arc<Shared>,
    stream: TcpStream,
    port: Port,
    peer: String,
    authenticated: bool,
    slot: Slot,
    /// The handshake deadline, shared with the reader (`None` once
    /// authenticated).
    deadline: Rc<Cell<Option<Instant>>>,
    /// The session the connection turns into after its `ok` line.
    upgrade: Option<Upgrade>,
}

/// A session of an upgraded connection.
enum Upgrade {
    Exec(exec::Session),
    Put(transfer::Put),
    Get(transfer::Get),
}

/// Reads a connection's stream, each read bounded by the time left until
/// the handshake deadline (if any), so trickled bytes cannot extend it.
struct DeadlineReader {
    stream: TcpStream,
    deadline: Rc<Cell<Option<Instant>>>,
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(deadline) = self.deadline.get() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left))?;
        }
        self.stream.read(buf)
    }
}

impl Connection {
    fn new(shared: Arc<Shared>, stream: TcpStream, port: Port, slot: Slot) -> Connection {
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        Connection {
            shared,
            stream,
            port,
            peer,
            authenticated: false,
            deadline: Rc::new(Cell::new(slot.deadline())),
            slot,
            upgrade: None,
        }
    }

    /// The peer proved the token: the handshake deadline no longer applies.
    fn authenticate(&mut self) {
        if !self.authenticated {
            self.authenticated = true;
            self.slot.authenticated();
            self.deadline.set(None);
            let _ = self.stream.set_read_timeout(Some(IDLE_TIMEOUT));
        }
    }

    fn serve(mut self) {
        let _ = self.stream.set_nodelay(true);
        let _ = self.stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let Ok(read_half) = self.stream.try_clone() else {
            return;
        };
        let mut reader = LineReader::new(DeadlineReader {
            stream: read_half,
            deadline: Rc::clone(&self.deadline),
        });
        loop {
            let line = match reader.read_line() {
                Ok(Some(line)) => line,
                Ok(None) => return,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    let _ = self.reply(Reply::error(0, ErrorCode::TooLarge, e.to_string()));
                    return;
                }
                Err(_) => return, // timeout or reset
            };
            let request = match parse_request(&line) {
                Ok(r) => r,
                Err(e) => {
                    let id = salvage_id(&line);
                    let _ = self.reply(Reply::error(id, ErrorCode::BadRequest, chain(&e)));
                    if !self.authenticated {
                        return;
                    }
                    continue;
                }
            };
            if !self.handle(request) {
                let buffered = reader.take_buffered();
                match self.upgrade.take() {
                    Some(Upgrade::Exec(session)) => session.run(self.stream, buffered),
                    Some(Upgrade::Put(put)) => put.run(self.stream, buffered, &self.shared.log),
                    Some(Upgrade::Get(get)) => get.run(self.stream, &self.shared.log),
                    None => {}
                }
                return;
            }
        }
    }

    /// Serves one request; false closes the connection.
    fn handle(&mut self, req: Request) -> bool {
        let expected = self.shared.token();
        if let Some(token) = &req.token {
            if !token_matches(expected.expose().as_bytes(), token.as_bytes()) {
                return self.refuse(req.id);
            }
            self.authenticate();
        }
        if req.method == Hello::NAME {
            return self.hello(&req);
        }
        if !self.authenticated {
            return self.refuse(req.id);
        }
        if !self.port.serves(&req.method) {
            let msg = format!("no method `{}` on the {:?} port", req.method, self.port);
            return self
                .reply(Reply::error(req.id, ErrorCode::UnknownMethod, msg))
                .is_ok();
        }
        if req.method == ExecStart::NAME {
            return self.exec(&req);
        }
        if req.method == FilesPut::NAME || req.method == FilesGet::NAME {
            return self.transfer(&req);
        }
        match dispatch(&self.shared, &req) {
            Outcome::Reply(result) => {
                let reply = match result {
                    Ok(v) => Reply::ok(req.id, v),
                    Err((code, msg)) => Reply::error(req.id, code, msg),
                };
                self.reply(reply).is_ok()
            }
            Outcome::Follow(params) => {
                self.follow(req.id, params);
                false
            }
            Outcome::Shutdown(params) => {
                // Acknowledge first: the agent may be gone a moment later.
                let _ = self.reply(Reply::ok(req.id, serde_json::json!({})));
                self.shared.request_shutdown(params);
                false
            }
        }
    }

    /// Starts an exec session: a refusal is an error reply (and the
    /// connection goes on); a started process is replied `ok` and the
    /// connection is handed to it (false).
    fn exec(&mut self, req: &Request) -> bool {
        let started = params::<ExecStart>(req).and_then(|p| {
            exec::start(
                &self.shared.exec_slots,
                p,
                &self.shared.command_path,
                &self.shared.log,
            )
        });
        let session = match started {
            Ok(session) => session,
            Err((code, msg)) => return self.reply(Reply::error(req.id, code, msg)).is_ok(),
        };
        let ok = Reply::ok(
            req.id,
            serde_json::to_value(session.started()).unwrap_or_default(),
        );
        if self.reply(ok).is_ok() {
            self.upgrade = Some(Upgrade::Exec(session));
        } else {
            session.abandon();
        }
        false
    }

    /// Starts a file copy: a refusal is an error reply (and the connection
    /// goes on); otherwise `ok` and the connection is handed to it (false).
    fn transfer(&mut self, req: &Request) -> bool {
        let slots = &self.shared.exec_slots;
        let cap = self.shared.config.max_transfer_bytes;
        let checked = if req.method == FilesPut::NAME {
            params::<FilesPut>(req)
                .and_then(|p| transfer::put(slots, p, cap))
                .map(Upgrade::Put)
        } else {
            params::<FilesGet>(req)
                .and_then(|p| transfer::get(slots, p, cap))
                .map(Upgrade::Get)
        };
        match checked {
            Ok(upgrade) => {
                if self.reply(Reply::ok(req.id, serde_json::json!({}))).is_ok() {
                    self.upgrade = Some(upgrade);
                }
                false
            }
            Err((code, msg)) => self.reply(Reply::error(req.id, code, msg)).is_ok(),
        }
    }

    fn hello(&mut self, req: &Request) -> bool {
        let params: HelloParams = match serde_json::from_value(req.params.clone()) {
            Ok(p) => p,
            Err(e) => {
                let _ = self.reply(Reply::error(
                    req.id,
                    ErrorCode::BadRequest,
                    format!("hello: {e}"),
                ));
                return false;
            }
        };
        let expected = self.shared.token();
        if !token_matches(
            expected.expose().as_bytes(),
            params.token.expose().as_bytes(),
        ) {
            return self.refuse(req.id);
        }
        if params.protocol != PROTOCOL_VERSION {
            let msg = format!(
                "protocol {} is not supported; this agent speaks {PROTOCOL_VERSION}",
                params.protocol
            );
            let _ = self.reply(Reply::error(req.id, ErrorCode::UnsupportedVersion, msg));
            return false;
        }
        self.authenticate();
        let result = HelloResult {
            protocol: PROTOCOL_VERSION,
            agent: format!("lobster-agent {}", env!("CARGO_PKG_VERSION")),
            methods: self.port.methods(),
        };
        self.reply(Reply::ok(
            req.id,
            serde_json::to_value(result).unwrap_or_default(),
        ))
        .is_ok()
    }

    fn refuse(&mut self, id: u64) -> bool {
        self.shared.log.line(&format!(
            "refused {} on the {:?} port: bad or missing token",
            self.peer, self.port
        ));
        let _ = self.reply(Reply::error(
            id,
            ErrorCode::Unauthorized,
            "bad or missing token",
        ));
        false
    }

    fn reply(&mut self, reply: Reply) -> std::io::Result<()> {
        send(&mut self.stream, &reply)
    }

    /// Streams the tail, then new lines, until the peer goes away or falls
    /// behind.
    fn follow(&mut self, id: u64, params: LogsParams) {
        let sink = match params.source {
            LogSource::Workload => &self.shared.workload_log,
            LogSource::Agent => &self.shared.agent_log,
        };
        let (tail, rx) = sink.follow(params.lines.min(MAX_TAIL_LINES) as usize);
        for line in tail.lines {
            if self.event(id, line).is_err() {
                return;
            }
        }
        loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(line) => {
                    if self.event(id, line).is_err() {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.peer_closed() {
                        return;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.reply(Reply::error(
                        id,
                        ErrorCode::Busy,
                        "follower fell behind; reconnect",
                    ));
                    return;
                }
            }
        }
    }

    fn event(&mut self, id: u64, line: String) -> std::io::Result<()> {
        let item = serde_json::to_value(LogEvent { line }).unwrap_or_default();
        self.reply(Reply::event(id, item))
    }

    fn peer_closed(&self) -> bool {
        let mut byte = [0u8; 1];
        if self.stream.set_nonblocking(true).is_err() {
            return true;
        }
        let closed = match self.stream.peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        };
        let _ = self.stream.set_nonblocking(false);
        closed
    }
}

/// The id of a request line that failed validation, if one can be read.
fn salvage_id(line: &[u8]) -> u64 {
    serde_json::from_slice::<Value>(line)
        .ok()
        .and_then(|v| v.get("id")?.as_u64())
        .unwrap_or(0)
}
