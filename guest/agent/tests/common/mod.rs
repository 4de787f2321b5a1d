//! Support shared by the agent's integration tests: a JSON-lines session,
//! an upgraded session's frames as the host sees them (`exec.start`,
//! `files.put`, `files.get`), and polling with a deadline.
//!
//! The guest crates do not use `lobster-testkit`: the kit is built on the
//! host crate (lobster-core) and, with its `fakes` feature, on this very
//! crate, so a dev-dependency would put the host under the guest's tests
//! and make a dependency cycle. What the agent's tests share is this much.
#![allow(dead_code)] // each test binary uses its part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use lobster_agent_proto::methods::ExecExit;
use lobster_agent_proto::stream::{Frame, FrameDecoder, MAX_FRAME_PAYLOAD, STDIN_WINDOW};
use lobster_agent_proto::LineFramer;
use serde_json::{json, Value};

/// Polls `probe` every 20 ms until it returns `Some`, for at most
/// `within`; `None` when time ran out.
pub fn within<T>(within: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Like [`within`], but fails the test naming `what` when time runs out.
pub fn until<T>(what: &str, within: Duration, probe: impl FnMut() -> Option<T>) -> T {
    self::within(within, probe)
        .unwrap_or_else(|| panic!("timed out after {within:?} waiting for {what}"))
}

/// Waits for `child` to exit (at most `within`); its exit status.
pub fn exit_of(child: &mut Child, what: &str, within: Duration) -> ExitStatus {
    until(what, within, || child.try_wait().unwrap())
}

/// One authenticated JSON-lines connection to an agent.
#[derive(Debug)]
pub struct Session {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    next_id: u64,
}

impl Session {
    /// Says `hello` with `token` on `stream` (replies within 10 s).
    pub fn open(stream: TcpStream, token: &str) -> Session {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut session = Session {
            stream,
            reader,
            next_id: 1,
        };
        session.call("hello", json!({"protocol": 1, "token": token}));
        session
    }

    /// Sends one request; returns the reply line as sent.
    pub fn line(&mut self, method: &str, params: Value) -> String {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"id": id, "method": method, "params": params});
        writeln!(self.stream, "{request}").unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let reply: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(reply["id"], id, "{line}");
        line.trim().to_owned()
    }

    /// Calls `method`; returns the `ok` value (panics on an error reply).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let line = self.line(method, params);
        let reply: Value = serde_json::from_str(&line).unwrap();
        reply
            .get("ok")
            .cloned()
            .unwrap_or_else(|| panic!("{method} failed: {line}"))
    }
}

/// The `lobster-agent` binary running as a host process with `token` in
/// `dir/token`, on ephemeral loopback ports.
pub struct HostAgent {
    pub child: Child,
    pub rpc: String,
    pub health: String,
    pub token_file: PathBuf,
}

/// Starts [`HostAgent`]; returns once it has printed its addresses.
pub fn start_agent(dir: &Path, token: &str) -> HostAgent {
    start_agent_with(dir, token, &[])
}

/// [`start_agent`] with more flags.
pub fn start_agent_with(dir: &Path, token: &str, flags: &[&str]) -> HostAgent {
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lobster-agent"))
        .arg("--dir")
        .arg(dir)
        .arg("--token-file")
        .arg(&token_file)
        .args(["--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0"])
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = |key: &str| {
        first
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {first:?}"))
            .to_owned()
    };
    HostAgent {
        rpc: addr("rpc="),
        health: addr("health="),
        child,
        token_file,
    }
}

/// [`HostAgent`] in a directory of its own, killed (by pid) when dropped.
pub struct OwnAgent {
    pub agent: HostAgent,
    pub dir: tempfile::TempDir,
}

impl OwnAgent {
    /// Starts the agent with `token` and more `flags`.
    pub fn start(token: &str, flags: &[&str]) -> OwnAgent {
        let dir = tempfile::tempdir().unwrap();
        let agent = start_agent_with(dir.path(), token, flags);
        OwnAgent { agent, dir }
    }
}

impl Drop for OwnAgent {
    fn drop(&mut self) {
        let _ = self.agent.child.kill();
        let _ = self.agent.child.wait();
    }
}

/// An upgraded session seen from the host: the frames after the `ok`.
#[derive(Debug)]
pub struct Exec {
    stream: TcpStream,
    decoder: FrameDecoder,
    /// The process's pid in the guest (`exec.start`; 0 otherwise).
    pub pid: u32,
}

/// Everything an exec session sent, up to its final frame.
#[derive(Debug, Default)]
pub struct Outcome {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Stdin bytes credited.
    pub credited: u64,
    /// `End` (or `Error`).
    pub last: Option<Frame>,
}

impl Outcome {
    /// The `End` payload (panics on an `Error` frame).
    pub fn exit(&self) -> ExecExit {
        match &self.last {
            Some(Frame::End(v)) => serde_json::from_value(v.clone()).unwrap(),
            other => panic!("no End frame: {other:?} after {self:?}"),
        }
    }

    /// The stdout text.
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Reads one line from `stream` through `framer` (what follows stays in it).
fn read_line(stream: &mut TcpStream, framer: &mut LineFramer) -> Value {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(line) = framer.next_line().unwrap() {
            return serde_json::from_slice(&line).unwrap();
        }
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "the agent closed the connection mid-line");
        framer.push(&chunk[..n]);
    }
}

/// Connects to `rpc`, says `hello` with `token` and calls `exec.start`:
/// the session, or the error object of the reply.
pub fn exec_start(rpc: &str, token: &str, params: Value) -> Result<Exec, Value> {
    let exec = upgrade(rpc, token, "exec.start", params)?;
    assert_ne!(exec.pid, 0, "exec.start replied without a pid");
    Ok(exec)
}

/// Connects to `rpc`, says `hello` with `token` and calls the upgrading
/// `method`: the session, or the error object of the reply.
pub fn upgrade(rpc: &str, token: &str, method: &str, params: Value) -> Result<Exec, Value> {
    let mut stream = TcpStream::connect(rpc).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut framer = LineFramer::default();
    writeln!(
        stream,
        "{}",
        json!({"id": 1, "method": "hello", "params": {"protocol": 1, "token": token}})
    )
    .unwrap();
    let hello = read_line(&mut stream, &mut framer);
    assert!(hello.get("ok").is_some(), "{hello}");
    writeln!(
        stream,
        "{}",
        json!({"id": 2, "method": method, "params": params})
    )
    .unwrap();
    let reply = read_line(&mut stream, &mut framer);
    assert_eq!(reply["id"], 2, "{reply}");
    let Some(ok) = reply.get("ok") else {
        return Err(reply["error"].clone());
    };
    let mut decoder = FrameDecoder::new();
    decoder.push(&framer.take_buffered());
    Ok(Exec {
        pid: ok["pid"].as_u64().unwrap_or(0) as u32,
        stream,
        decoder,
    })
}

impl Exec {
    /// Sends one frame.
    pub fn send(&mut self, frame: &Frame) {
        self.stream.write_all(&frame.encode()).unwrap();
    }

    /// The next frame; `None` when the agent closed the connection or
    /// nothing came within the stream's read timeout.
    pub fn next(&mut self) -> Option<Frame> {
        let mut chunk = [0u8; 65536];
        loop {
            if let Some(frame) = self.decoder.next_frame().unwrap() {
                return Some(frame);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.decoder.push(&chunk[..n]),
            }
        }
    }

    fn take(out: &mut Outcome, frame: Frame) -> bool {
        match frame {
            Frame::Stdout(b) => out.stdout.extend(b),
            Frame::Stderr(b) => out.stderr.extend(b),
            Frame::Credit(n) => out.credited += u64::from(n),
            last => {
                assert!(last.is_final(), "unexpected {last:?}");
                out.last = Some(last);
                return true;
            }
        }
        false
    }

    /// Reads frames up to the final one, then checks the agent closed.
    pub fn finish(mut self) -> Outcome {
        let mut out = Outcome::default();
        while let Some(frame) = self.next() {
            if Self::take(&mut out, frame) {
                assert!(self.next().is_none(), "a frame after the final one");
                return out;
            }
        }
        panic!("the session ended without a final frame: {out:?}");
    }

    /// Feeds `input` as stdin, never more than `STDIN_WINDOW` bytes ahead
    /// of the agent's credit, then closes stdin and reads to the end.
    pub fn feed(mut self, input: &[u8]) -> Outcome {
        let mut out = self.send_within_window(input);
        assert!(out.last.is_none(), "ended early: {out:?}");
        self.send(&Frame::StdinClose);
        let rest = self.finish();
        out.stdout.extend(rest.stdout);
        out.stderr.extend(rest.stderr);
        out.credited += rest.credited;
        out.last = rest.last;
        out
    }

    /// Sends `input` as stdin frames, waiting for credit whenever a whole
    /// window is out, without closing stdin or reading to the end.
    pub fn send_within_window(&mut self, input: &[u8]) -> Outcome {
        let mut out = Outcome::default();
        let mut sent = 0usize;
        self.stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while sent < input.len() {
            assert!(Instant::now() < deadline, "stdin not taken within 60 s");
            let window = STDIN_WINDOW as usize - (sent - out.credited as usize);
            let n = window.min(MAX_FRAME_PAYLOAD).min(input.len() - sent);
            if n > 0 {
                self.send(&Frame::Stdin(input[sent..sent + n].to_vec()));
                sent += n;
                continue;
            }
            if let Some(frame) = self.next() {
                if Self::take(&mut out, frame) {
                    break;
                }
            }
        }
        self.stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        out
    }

    /// Sends `input` as stdin (within the window) and `StdinClose`, then
    /// reads to the final frame, which may come before all was sent (a
    /// refused `files.put`).
    pub fn deliver(mut self, input: &[u8]) -> Outcome {
        let mut out = self.send_within_window(input);
        if out.last.is_some() {
            return out;
        }
        // The agent may have refused (and closed) while this was in flight.
        let _ = self.stream.write_all(&Frame::StdinClose.encode());
        let rest = self.finish();
        out.stdout.extend(rest.stdout);
        out.credited += rest.credited;
        out.last = rest.last;
        out
    }

    /// Closes the connection without a word.
    pub fn hang_up(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Whether process `pid` is gone (reaped) on this machine.
pub fn process_gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}
