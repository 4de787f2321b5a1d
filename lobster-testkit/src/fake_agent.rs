//! A scripted agent for testing the host's agent client: it serves
//! loopback connections with the real protocol types and handshake
//! (`hello` with the token). Holds (`hold.acquire`, `hold.renew`,
//! `hold.release`) are granted on any connection and recorded; the first
//! other request is answered as told, then a [`Step`] list of frames sent
//! and expected is played, and what the host sent is recorded. Each wait is bounded ([`STEP_TIMEOUT`]): a script that stalls
//! records a violation instead of hanging the test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lobster_agent_proto::methods::{HelloResult, ALL_METHODS};
/// The protocol types a script is written in.
pub use lobster_agent_proto::stream::Frame;
use lobster_agent_proto::stream::FrameDecoder;
use lobster_agent_proto::{encode_line, Reply, PROTOCOL_VERSION};
pub use lobster_agent_proto::{ErrorCode, RemoteError, ReplyBody, Request};

/// How long one step waits for the host before it records a violation.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a finished script still reads what the host sends.
const LINGER: Duration = Duration::from_millis(300);

/// One step of a script, after the handshake.
#[derive(Debug, Clone)]
pub enum Step {
    /// Answer the request with this body (`ok` or an error).
    Reply(ReplyBody),
    /// Answer the request with this body and these frames in one write,
    /// as an agent whose first output follows its `ok` line at once.
    ReplyWith(ReplyBody, Vec<Frame>),
    /// Send this frame.
    Send(Frame),
    /// Send these raw bytes (a broken frame, a partial one).
    SendRaw(Vec<u8>),
    /// Read host frames until this many stdin bytes arrived in all.
    ReadStdin(usize),
    /// Read host frames until one equal to this arrives.
    Expect(Frame),
    /// The host must send nothing for this long.
    Silence(Duration),
    /// Close the connection.
    Close,
}

/// What the host sent, and what went against the script.
#[derive(Debug, Default, Clone)]
pub struct Transcript {
    /// The request after `hello` (None if none came).
    pub request: Option<Request>,
    /// Every frame the host sent, in order.
    pub frames: Vec<Frame>,
    /// Stdin bytes received when each [`Step::Silence`] ended.
    pub stdin_at_silence: Vec<usize>,
    /// Departures from the script (empty when the host behaved).
    pub violations: Vec<String>,
    /// `hold.*` method names the host called before the scripted request.
    pub holds: Vec<String>,
}

impl Transcript {
    /// Every stdin byte the host sent, concatenated.
    pub fn stdin(&self) -> Vec<u8> {
        self.frames
            .iter()
            .filter_map(|f| match f {
                Frame::Stdin(b) => Some(b.as_slice()),
                _ => None,
            })
            .flatten()
            .copied()
            .collect()
    }
}

/// A fake agent serving one scripted connection.
#[derive(Debug)]
pub struct ScriptedAgent {
    addr: SocketAddr,
    thread: Option<JoinHandle<Transcript>>,
}

impl ScriptedAgent {
    /// Listens on an ephemeral loopback port and plays `steps` on the first
    /// authenticated connection whose request is not a hold.
    pub fn start(token: &str, steps: Vec<Step>) -> ScriptedAgent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        ScriptedAgent::start_on(listener, token, steps)
    }

    /// [`start`](Self::start) on a listener the caller bound (e.g. on a
    /// tenant's guest address).
    pub fn start_on(listener: TcpListener, token: &str, steps: Vec<Step>) -> ScriptedAgent {
        let addr = listener.local_addr().expect("local addr");
        let token = token.to_owned();
        let thread = std::thread::spawn(move || {
            let mut transcript = Transcript::default();
            let deadline = Instant::now() + STEP_TIMEOUT;
            let _ = listener.set_nonblocking(true);
            let (holds_tx, holds_rx) = std::sync::mpsc::channel();
            loop {
                let stream = match listener.accept() {
                    Ok((stream, _)) => stream,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            transcript
                                .violations
                                .push("no scripted request came".into());
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(e) => {
                        transcript.violations.push(format!("accept: {e}"));
                        break;
                    }
                };
                let _ = stream.set_nonblocking(false);
                let mut session = Session {
                    stream,
                    buf: Vec::new(),
                    decoder: FrameDecoder::new(),
                    stdin_seen: 0,
                };
                let request = match session
                    .handshake(&token)
                    .and_then(|()| session.serve_holds(&holds_tx))
                {
                    Ok(Some(request)) => request,
                    Ok(None) => continue,
                    Err(e) => {
                        transcript.violations.push(e);
                        break;
                    }
                };
                if let Err(e) = session.play(request, steps, &mut transcript) {
                    transcript.violations.push(e);
                }
                break;
            }
            transcript.holds = holds_rx.try_iter().collect();
            transcript
        });
        ScriptedAgent {
            addr,
            thread: Some(thread),
        }
    }

    /// The address to connect to (RPC and health alike).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the script to end and returns what the host sent.
    pub fn finish(mut self) -> Transcript {
        self.thread
            .take()
            .expect("finished once")
            .join()
            .expect("scripted agent thread")
    }
}

struct Session {
    stream: TcpStream,
    buf: Vec<u8>,
    decoder: FrameDecoder,
    stdin_seen: usize,
}

impl Session {
    fn handshake(&mut self, token: &str) -> Result<(), String> {
        let hello = self.read_request()?;
        if hello.method != "hello" {
            return Err(format!("first request was {}", hello.method));
        }
        if hello.params["token"] != token {
            self.write_line(&Reply::error(
                hello.id,
                ErrorCode::Unauthorized,
                "bad token",
            ))?;
            return Err("the host sent a wrong token".into());
        }
        let result = HelloResult {
            protocol: PROTOCOL_VERSION,
            agent: "scripted-agent".into(),
            methods: ALL_METHODS.iter().map(|m| m.to_string()).collect(),
        };
        self.write_line(&Reply::ok(hello.id, serde_json::to_value(result).unwrap()))
    }

    /// Grants holds until another request comes (returned); a connection
    /// of holds only goes on in a thread of its own (`None`).
    fn serve_holds(
        &mut self,
        holds: &std::sync::mpsc::Sender<String>,
    ) -> Result<Option<Request>, String> {
        let request = self.read_request()?;
        if !request.method.starts_with("hold.") {
            return Ok(Some(request));
        }
        let mut session = Session {
            stream: self.stream.try_clone().map_err(|e| e.to_string())?,
            buf: std::mem::take(&mut self.buf),
            decoder: FrameDecoder::new(),
            stdin_seen: 0,
        };
        let holds = holds.clone();
        std::thread::spawn(move || {
            let mut next = Some(request);
            while let Some(request) = next.take() {
                let _ = holds.send(request.method.clone());
                let result = if request.method == "hold.release" {
                    serde_json::json!({ "released": true })
                } else {
                    serde_json::json!({
                        "id": request.params["id"],
                        "expires_in_ms": request.params["ttl_ms"],
                    })
                };
                if session.write_line(&Reply::ok(request.id, result)).is_err() {
                    return;
                }
                next = session.read_request().ok();
            }
        });
        Ok(None)
    }

    fn play(
        &mut self,
        request: Request,
        steps: Vec<Step>,
        t: &mut Transcript,
    ) -> Result<(), String> {
        let id = request.id;
        t.request = Some(request);
        // Bytes after the request line belong to the frames.
        let rest = std::mem::take(&mut self.buf);
        self.decoder.push(&rest);
        for step in steps {
            match step {
                Step::Reply(body) => self.write_line(&Reply { id, body })?,
                Step::ReplyWith(body, frames) => {
                    let mut bytes = encode_line(&Reply { id, body }).map_err(|e| e.to_string())?;
                    bytes.extend(frames.iter().flat_map(Frame::encode));
                    self.write(&bytes)?
                }
                Step::Send(frame) => self.write(&frame.encode())?,
                Step::SendRaw(bytes) => self.write(&bytes)?,
                Step::ReadStdin(total) => {
                    let deadline = Instant::now() + STEP_TIMEOUT;
                    while self.stdin_seen < total {
                        let frame = self.next_frame(deadline)?.ok_or(format!(
                            "only {} of {total} stdin bytes came",
                            self.stdin_seen
                        ))?;
                        t.frames.push(frame);
                    }
                }
                Step::Expect(wanted) => {
                    let deadline = Instant::now() + STEP_TIMEOUT;
                    loop {
                        let frame = self
                            .next_frame(deadline)?
                            .ok_or(format!("{wanted:?} never came"))?;
                        t.frames.push(frame.clone());
                        if frame == wanted {
                            break;
                        }
                    }
                }
                Step::Silence(span) => {
                    let deadline = Instant::now() + span;
                    if let Some(frame) = self.next_frame(deadline)? {
                        t.violations
                            .push(format!("the host sent {frame:?} during a silence"));
                        t.frames.push(frame);
                    }
                    t.stdin_at_silence.push(self.stdin_seen);
                }
                Step::Close => {
                    let _ = self.stream.shutdown(std::net::Shutdown::Both);
                    return Ok(());
                }
            }
        }
        // End as an agent does: stop sending, then take in what the host
        // still sends for a moment (unread bytes would reset the connection
        // and drop the last frames on the host's side).
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let deadline = Instant::now() + LINGER;
        while let Ok(Some(frame)) = self.next_frame(deadline) {
            t.frames.push(frame);
        }
        Ok(())
    }

    fn write_line(&mut self, reply: &Reply) -> Result<(), String> {
        let line = encode_line(reply).map_err(|e| e.to_string())?;
        self.write(&line)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .map_err(|e| format!("write: {e}"))
    }

    fn read_request(&mut self) -> Result<Request, String> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(at) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=at).collect();
                return serde_json::from_slice(&line[..at]).map_err(|e| format!("request: {e}"));
            }
            if !self.read_some(deadline)? {
                return Err("no request came".into());
            }
        }
    }

    /// The next host frame, or None if none came by `deadline`.
    fn next_frame(&mut self, deadline: Instant) -> Result<Option<Frame>, String> {
        loop {
            if let Some(frame) = self.decoder.next_frame().map_err(|e| e.to_string())? {
                if let Frame::Stdin(b) = &frame {
                    self.stdin_seen += b.len();
                }
                return Ok(Some(frame));
            }
            if !self.read_some(deadline)? {
                return Ok(None);
            }
            let bytes = std::mem::take(&mut self.buf);
            self.decoder.push(&bytes);
        }
    }

    /// Reads into `buf`; false when the deadline passed first.
    fn read_some(&mut self, deadline: Instant) -> Result<bool, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        self.stream
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err("the host closed the connection".into()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }
}
