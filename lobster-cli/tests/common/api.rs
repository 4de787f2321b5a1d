//! Requests to `lobsterd serve` over its unix socket, as a client with no
//! HTTP library would make them (HTTP/1.0: the answer ends with the
//! connection, never chunked).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes one request with a bearer `token` and a JSON `body`.
fn send(socket: &Path, method: &str, path: &str, token: &str, body: &str) -> UnixStream {
    let mut stream = UnixStream::connect(socket).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: lobster\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    stream
}

/// One request; the status and the body.
pub fn request(socket: &Path, method: &str, path: &str, token: &str, body: &str) -> (u16, Vec<u8>) {
    let mut stream = send(socket, method, path, token, body);
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer[split + 4..].to_vec())
}

/// One request whose answer is JSON; the status and the JSON.
pub fn json_request(
    socket: &Path,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let (status, bytes) = request(socket, method, path, token, body);
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, json)
}

/// Reads an event stream at `path` until it holds `until` (at most
/// `within`); what it read.
pub fn stream_until(
    socket: &Path,
    path: &str,
    token: &str,
    until: &str,
    within: Duration,
) -> String {
    let mut stream = send(socket, "GET", path, token, "");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let deadline = Instant::now() + within;
    let mut text = String::new();
    let mut chunk = [0u8; 16 * 1024];
    while !text.contains(until) {
        assert!(
            Instant::now() < deadline,
            "{path}: no `{until}` within {within:?}:\n{text}"
        );
        match stream.read(&mut chunk) {
            Ok(0) => panic!("{path} ended without `{until}`:\n{text}"),
            Ok(n) => text.push_str(&String::from_utf8_lossy(&chunk[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{path}: {e}"),
        }
    }
    text
}

/// A running `lobsterd serve`, killed if a test ends without
/// [`Served::stop`] (a failed assertion never leaves a server behind,
/// holding the test's output pipe open).
pub struct Served {
    pub child: std::process::Child,
    pub socket: std::path::PathBuf,
}

impl Served {
    /// Starts `command` (a `lobsterd … serve --socket <socket>`) and waits
    /// for its socket.
    pub fn start(mut command: std::process::Command, socket: &Path) -> Served {
        let child = command.stdout(std::process::Stdio::null()).spawn().unwrap();
        let served = Served {
            child,
            socket: socket.to_owned(),
        };
        lobster_testkit::poll::until("the API socket", Duration::from_secs(20), || {
            UnixStream::connect(socket).ok().map(|_| ())
        });
        served
    }

    /// SIGTERM; the exit status, bounded.
    pub fn stop(mut self) -> std::process::ExitStatus {
        super::sigterm(self.child.id());
        let child = &mut self.child;
        lobster_testkit::poll::until("serve to obey SIGTERM", Duration::from_secs(40), || {
            child.try_wait().unwrap()
        })
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
