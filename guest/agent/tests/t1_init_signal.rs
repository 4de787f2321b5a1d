//! T1: the `lobster-agent` binary in guest mode hands `shutdown` to PID 1
//! as a guest's init expects it: SIGINT to reboot, SIGUSR2 to power off.
//!
//! The "guest" is a PID and mount namespace (`unshare`) whose PID 1 is a
//! shell standing in for `lobster-init`: it writes which signal it got and
//! exits. The namespace sees a made-up `/proc/cmdline` (the `lobster.*`
//! keys, a token file in the test's directory) and private `/var/lib` and
//! `/var/log`, so the agent's guest paths never touch the host. The agent
//! listens on loopback in the host's network namespace.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The stand-in init: private mounts, the made-up command line, then the
/// agent in guest mode; records the first shutdown signal and exits.
const INIT: &str = r#"set -e
mount -t tmpfs lobster-t1 /var/lib
mount -t tmpfs lobster-t1 /var/log
mount --bind "$DIR/cmdline" /proc/cmdline
trap 'echo reboot > "$DIR/init.signal"; exit 0' INT
trap 'echo poweroff > "$DIR/init.signal"; exit 0' USR2
"$AGENT" --guest &
wait $! || true
echo "the agent exited on its own" > "$DIR/init.signal""#;

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(euid, "0", "t1: needs root (PID and mount namespaces)");
}

/// A port free on loopback now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a guest-mode agent under a stand-in init, asks it to shut down
/// with `reboot`, and returns what init recorded.
fn init_signal_after_shutdown(reboot: bool) -> String {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t1-token\n").unwrap();
    let (rpc, health) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("cmdline"),
        format!(
            "console=ttyS0 lobster.ip=127.0.0.1/8 lobster.agent_port={rpc} \
             lobster.health_port={health} lobster.token_file={}\n",
            token.display()
        ),
    )
    .unwrap();
    let mut init = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            "--propagation",
            "private",
        ])
        .args(["sh", "-c", INIT])
        .env("DIR", dir.path())
        .env("AGENT", env!("CARGO_BIN_EXE_lobster-agent"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        match TcpStream::connect(("127.0.0.1", rpc)) {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "the agent never listened: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    let mut line = String::new();
    writeln!(
        stream,
        r#"{{"id":1,"method":"hello","params":{{"protocol":1,"token":"t1-token"}}}}"#
    )
    .unwrap();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains(r#""ok""#), "hello: {line}");
    line.clear();
    writeln!(
        stream,
        r#"{{"id":2,"method":"shutdown","params":{{"reboot":{reboot}}}}}"#
    )
    .unwrap();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), r#"{"id":2,"ok":{}}"#);

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = init.try_wait().unwrap() {
            assert!(status.success(), "init: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "init got no signal");
        std::thread::sleep(Duration::from_millis(20));
    }
    let signal = dir.path().join("init.signal");
    assert!(Path::new(&signal).exists(), "init exited without a signal");
    std::fs::read_to_string(signal).unwrap().trim().to_owned()
}

#[test]
#[ignore = "t1: needs root"]
fn shutdown_with_reboot_sends_init_sigint() {
    assert_eq!(init_signal_after_shutdown(true), "reboot");
}

#[test]
#[ignore = "t1: needs root"]
fn shutdown_without_reboot_sends_init_sigusr2() {
    assert_eq!(init_signal_after_shutdown(false), "poweroff");
}
