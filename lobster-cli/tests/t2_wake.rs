//! T2: wake on request, end to end: a real guest (QEMU, the minimal image)
//! behind a real Caddy in a network namespace the test creates, suspended;
//! the watchdog (`lobsterd watch`, started after the suspend as after a
//! host reboot) listens on its wake socket; one HTTP request through Caddy
//! to `<name>.lobster.local` resumes it and gets the workload's 200, and
//! the tenant is `running` afterwards.
//!
//! Needs root, `qemu-system-x86_64`, `caddy`, `ip`, iptables and the images
//! from `guest/images/build.sh minimal` (under `$LOBSTER_IMAGES`), and a
//! working suspend/resume (`Host::suspend`, `Host::resume`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lobster_testkit::cgroup::TestParent;
use lobster_testkit::images;
use lobster_testkit::netns::{in_netns, require, sh, Ctx};
use lobster_testkit::poll;

/// Serves `hello from $TENANT` (a file in the guest's tmpfs) on the gateway port.
const WORKLOAD: &str = r#"mkdir -p /tmp/w
echo "hello from $TENANT" > /tmp/w/index.html
exec busybox httpd -f -p 9000 -h /tmp/w"#;

/// One lobster host inside the test namespace, Caddy on :80.
struct Lobster {
    dir: tempfile::TempDir,
    caddy_pid: Option<u32>,
    _cgroups: TestParent,
}

impl Lobster {
    fn init() -> Lobster {
        // Caddy's user must get through to its directory and the wake sockets.
        let dir = lobster_testkit::caddy::reachable_tempdir();
        let images = images::images();
        let state = dir.path().join("state");
        let cgroups = TestParent::new("t2wake");
        let config = serde_json::json!({
            "tenant_defaults": { "vcpus": 1, "memory_mib": 256, "overlay_size_mib": 256 },
            "network": { "pool": "10.200.0.0/30" },
            "proxy": {
                "admin_address": dir.path().join("caddy/admin.sock"),
                "listen": [":80"],
                "caddy_dir": dir.path().join("caddy"),
            },
            "paths": {
                "state_dir": state,
                "kernel": images.join("kernel/vmlinux"),
                "initrd": images.join("initramfs.cpio.gz"),
                "rootfs": images.join("rootfs-minimal.ext4"),
                "overlays_dir": state.join("overlays"),
                "sockets_dir": state.join("run"),
                "snapshots_dir": state.join("snapshots"),
                "logs_dir": state.join("logs"),
                "wake_dir": dir.path().join("wake"),
            },
            "vmm": {
                "backend": "qemu",
                "qemu": { "accel": "tcg" },
                "firecracker": { "chroot_base": state.join("jail") },
                "cgroup_parent": cgroups.relative,
            },
            "watchdog": { "interval_ms": 1000 },
        });
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let mut lobster = Lobster {
            dir,
            caddy_pid: None,
            _cgroups: cgroups,
        };
        let out = lobster.run(&["--json", "init"]);
        assert!(out.status.success(), "init failed: {}", output(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        lobster.caddy_pid = report["host_setup"]["caddy_pid"].as_u64().map(|p| p as u32);
        assert!(lobster.caddy_pid.is_some(), "init starts caddy: {report}");
        lobster
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lobsterd"));
        cmd.arg("--config")
            .arg(self.config())
            .args(args)
            .env_remove("LOBSTERD_CONFIG");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn status(&self, name: &str) -> String {
        let out = self.run(&["--json", "list"]);
        assert!(out.status.success(), "{}", output(&out));
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .map(|t| t["status"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    }

    /// The dial addresses of the tenant's route in Caddy.
    fn route_upstreams(&self, name: &str) -> String {
        let socket = self.dir.path().join("caddy/admin.sock");
        let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET /id/lobster-{name} HTTP/1.0\r\nHost: \r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        let route: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        route["handle"][0]["upstreams"].to_string()
    }
}

impl Drop for Lobster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(dir) = std::fs::read_dir(self.dir.path().join("state/logs")) {
                for entry in dir.flatten() {
                    let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                    let tail: Vec<_> = text.lines().rev().take(40).collect();
                    eprintln!("==== {}", entry.path().display());
                    for line in tail.into_iter().rev() {
                        eprintln!("{line}");
                    }
                }
            }
        }
        let _ = self.run(&["evict", "-y", "w"]);
        if let Some(pid) = self.caddy_pid {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

/// `lobsterd watch` with its JSON events collected.
struct Watch {
    child: std::process::Child,
    events: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Watch {
    fn start(lobster: &Lobster) -> Watch {
        let mut child = lobster
            .command(&["watch", "--no-host-setup"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                eprintln!("watch: {line}");
                if let Ok(event) = serde_json::from_str(&line) {
                    sink.lock().unwrap().push(event);
                }
            }
        });
        Watch { child, events }
    }

    fn find(&self, event: &str) -> Option<serde_json::Value> {
        let events = self.events.lock().unwrap();
        events.iter().find(|e| e["event"] == event).cloned()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        sh(&["kill", "-TERM", &self.child.id().to_string()]);
        let child = &mut self.child;
        let exited = poll::within(Duration::from_secs(20), || child.try_wait().unwrap());
        if exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One HTTP/1.1 GET through Caddy, waiting up to `within` for the answer:
/// the status line and the body.
fn get(host: &str, within: Duration) -> (String, String) {
    let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
    s.set_read_timeout(Some(within)).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

#[test]
#[ignore = "t2: needs root, qemu, caddy and images"]
fn a_request_through_caddy_wakes_a_suspended_tenant_and_gets_the_workload_s_reply() {
    let test = "a_request_through_caddy_wakes_a_suspended_tenant_and_gets_the_workload_s_reply";
    in_netns(test, |_ctx: &Ctx| {
        require(&["ip", "iptables-save", "qemu-system-x86_64", "caddy"]);
        for image in ["kernel/vmlinux", "initramfs.cpio.gz", "rootfs-minimal.ext4"] {
            images::require(image, "run guest/images/build.sh minimal");
        }
        let lobster = Lobster::init();
        let out = lobster.run(&[
            "--json",
            "spawn",
            "w",
            "--command",
            WORKLOAD,
            "--env",
            "TENANT=w",
        ]);
        assert!(out.status.success(), "spawn failed: {}", output(&out));
        let host = "w.lobster.local";
        poll::until(
            "the workload to answer through caddy",
            Duration::from_secs(180),
            || {
                let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
                TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
                let (status, body) = get(host, Duration::from_secs(10));
                (status.contains(" 200") && body.contains("hello from w")).then_some(())
            },
        );

        // Suspend through the library (the CLI is a thin front end on it).
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let host_api = lobster_core::Host::open(Some(&lobster.config())).unwrap();
        let suspended = runtime
            .block_on(host_api.suspend("w"))
            .unwrap_or_else(|e| panic!("suspend: {}", e.chain()));
        assert_eq!(suspended.status().to_string(), "suspended");

        // The watchdog starts afterwards (as after a host reboot): its
        // reconcile points the route at the wake socket, its first tick
        // listens there.
        let watch = Watch::start(&lobster);
        let id = suspended.id().to_owned();
        let socket = lobster.dir.path().join(format!("wake/{id}.sock"));
        poll::until("the wake listener", Duration::from_secs(60), || {
            socket.exists().then_some(())
        });
        poll::until(
            "the route to the wake socket",
            Duration::from_secs(30),
            || lobster.route_upstreams("w").contains("unix/").then_some(()),
        );
        assert_eq!(lobster.status("w"), "suspended");

        let started = Instant::now();
        let (status, body) = get(host, Duration::from_secs(300));
        let first_byte = started.elapsed();
        eprintln!("woken request answered in {first_byte:?}");
        assert!(status.contains(" 200"), "status {status:?}, body {body:?}");
        assert_eq!(body.trim(), "hello from w", "the tmpfs file survived");
        assert_eq!(lobster.status("w"), "running");
        poll::until("the woken event", Duration::from_secs(10), || {
            watch.find("woken")
        });
        let woken = watch.find("woken").unwrap();
        assert_eq!(woken["trigger"], "request", "{woken}");
        assert!(watch.find("wake_failed").is_none());
        // Later requests go straight to the guest.
        poll::until(
            "the route back to the guest",
            Duration::from_secs(30),
            || {
                lobster
                    .route_upstreams("w")
                    .contains("10.200.0.2:9000")
                    .then_some(())
            },
        );
        let (status, body) = get(host, Duration::from_secs(30));
        assert!(status.contains(" 200") && body.contains("hello from w"));
        drop(watch);
    });
}
