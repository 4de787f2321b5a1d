//! Support shared by the agent's integration tests: a JSON-lines session
//! and polling with a deadline.
//!
//! The guest crates do not use `lobster-testkit`: the kit is built on the
//! host crate (lobster-core) and, with its `fakes` feature, on this very
//! crate, so a dev-dependency would put the host under the guest's tests
//! and make a dependency cycle. What the agent's tests share is this much.
#![allow(dead_code)] // each test binary uses its part

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lobster-agent"))
        .arg("--dir")
        .arg(dir)
        .arg("--token-file")
        .arg(&token_file)
        .args(["--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0"])
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
