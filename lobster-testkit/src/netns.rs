//! Network namespaces a test owns.
//!
//! [`Netns`] makes a namespace and deletes it (and every `<name>-*` one made
//! beside it) on drop, pass or fail. [`in_netns`] runs a whole test body in a
//! fresh one: it creates `lobt<pid>x<n>`, re-executes this very test inside
//! it through `ip netns exec`, and deletes it afterwards. So everything the
//! body does (rtnetlink, iptables-restore, Caddy, VMs) stays in the
//! namespace. The same test binary also serves tiny helper modes (TCP
//! server, TCP client) that [`Ctx`] runs inside other namespaces or as
//! another uid.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const NETNS_ENV: &str = "LOBSTER_T1_NETNS";
const SERVE_ENV: &str = "LOBSTER_T1_SERVE";
const CONNECT_ENV: &str = "LOBSTER_T1_CONNECT";
const HOLD_ENV: &str = "LOBSTER_T1_HOLD";

/// The namespace the body runs in, and how to make more.
#[derive(Debug)]
pub struct Ctx {
    /// The test's own namespace ("the host").
    pub ns: String,
    test: String,
    counter: AtomicU32,
}

/// Fails the test with a clear message unless we are root and `tools` exist.
pub fn require(tools: &[&str]) {
    let euid = rustix::process::geteuid();
    assert!(euid.is_root(), "t1: needs root (euid is {})", euid.as_raw());
    for tool in tools {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        assert!(found, "t1: needs `{tool}` on PATH");
    }
}

/// Runs `body` inside a new network namespace (see the module docs).
/// `test` is the test's name as libtest knows it (the function name).
pub fn in_netns(test: &str, body: fn(&Ctx)) {
    if let Ok(spec) = std::env::var(SERVE_ENV) {
        serve(&spec);
    }
    if let Ok(target) = std::env::var(CONNECT_ENV) {
        connect_and_exit(&target);
    }
    if let Ok(spec) = std::env::var(HOLD_ENV) {
        hold_and_exit(&spec);
    }
    if let Ok(ns) = std::env::var(NETNS_ENV) {
        sh(&["ip", "link", "set", "lo", "up"]);
        restore_cgroups();
        let ctx = Ctx {
            ns,
            test: test.to_string(),
            counter: AtomicU32::new(0),
        };
        body(&ctx);
        return;
    }
    require(&["ip", "iptables-save", "iptables-restore"]);
    let netns = Netns::unique("lobt");
    let ns = netns.name();
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(&exe)
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(NETNS_ENV, ns)
        .output()
        .expect("run the test inside its namespace");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "test body failed inside netns {ns}");
    assert!(
        text.contains("1 passed"),
        "the test body did not run inside netns {ns} (wrong test name `{test}`?)"
    );
}

/// `ip netns exec` mounts a fresh sysfs, hiding the cgroup hierarchies
/// every VMM is confined in: they are mounted again here (the same
/// hierarchies, as the test process that ran it sees them), inside this
/// mount namespace only.
fn restore_cgroups() {
    let empty = std::fs::read_dir("/sys/fs/cgroup").is_ok_and(|mut d| d.next().is_none());
    if !empty {
        return;
    }
    let parent = std::os::unix::process::parent_id();
    let mountinfo =
        std::fs::read_to_string(format!("/proc/{parent}/mountinfo")).expect("parent mountinfo");
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let point = left.split(' ').nth(4).unwrap_or("");
        let mut right = right.split(' ');
        let (Some(fstype), Some(source), Some(options)) =
            (right.next(), right.next(), right.next())
        else {
            continue;
        };
        if point.starts_with("/sys/fs/cgroup") {
            std::fs::create_dir_all(point).expect("cgroup mount point");
            sh(&["mount", "-t", fstype, "-o", options, source, point]);
        }
    }
}

/// A network namespace this test made; deleted on drop, together with every
/// `<name>-*` namespace made beside it.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Makes namespace `name`; fails the test unless that works (root, iproute2).
    pub fn create(name: &str) -> Netns {
        let ok = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot create network namespace {name} (needs root and iproute2)"
        );
        Netns { name: name.into() }
    }

    /// A namespace named `<prefix><pid>x<n>`, unique among this process's.
    pub fn unique(prefix: &str) -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        Netns::create(&format!("{prefix}{}x{n}", std::process::id()))
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its bind mount (`setns` target, `jail.netns`).
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip -n <name> args...`, panicking with its stderr on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        sh(&all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let list = Command::new("ip").args(["netns", "list"]).output();
        if let Ok(list) = list {
            for line in String::from_utf8_lossy(&list.stdout).lines() {
                let name = line.split_whitespace().next().unwrap_or("");
                if name.starts_with(&format!("{}-", self.name)) {
                    let _ = Command::new("ip").args(["netns", "del", name]).status();
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs a command, panicking with its stderr on failure.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Ctx {
    /// This test binary, run again in namespace `ns` (`None`: this one) as
    /// a helper: the mode is chosen by the environment the caller adds.
    fn helper(&self, ns: Option<&str>) -> Command {
        let exe = std::env::current_exe().expect("test binary path");
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.args(["--exact", &self.test, "--ignored", "--nocapture"])
            .env_remove(NETNS_ENV);
        cmd
    }

    /// A new namespace `<ns>-<suffix><n>` (deleted with the test's own).
    pub fn new_netns(&self, suffix: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{suffix}{n}", self.ns);
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A stand-in guest: namespace `other` gets `eth0` = `guest/prefix` with
    /// a default route via `host`; this namespace gets the peer `host_if`
    /// = `host/prefix`, up.
    pub fn veth_guest(&self, host_if: &str, other: &str, host: &str, guest: &str, prefix: u8) {
        sh(&[
            "ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", other,
        ]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{host}/{prefix}"),
            "dev",
            host_if,
        ]);
        sh(&["ip", "link", "set", host_if, "up"]);
        sh(&[
            "ip",
            "-n",
            other,
            "addr",
            "add",
            &format!("{guest}/{prefix}"),
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", other, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", other, "route", "add", "default", "via", host]);
    }

    /// Starts TCP servers on `ports` inside namespace `ns` (all addresses);
    /// each answers a connection with the peer address and closes. Returns
    /// once they listen; the child is killed when the handle drops.
    pub fn serve_in(&self, ns: &str, ports: &[u16]) -> Server {
        let spec = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut child = self
            .helper(Some(ns))
            .env(SERVE_ENV, spec)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a server");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line == "ready" {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("server in namespace did not get ready within 10 s");
        Server(child)
    }

    /// Opens `n` connections to `target` from namespace `ns` and keeps them
    /// all; returns the per-connection results and whether the first one
    /// still carried data afterwards.
    pub fn hold_from(&self, ns: Option<&str>, target: SocketAddr, n: usize) -> String {
        let out = self
            .helper(ns)
            .env(HOLD_ENV, format!("{target},{n}"))
            .output()
            .expect("run a client");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("hold-result "))
            .unwrap_or_else(|| panic!("client printed no result: {text}"))
            .to_string()
    }

    /// Connects to `target` from namespace `ns` (`None`: this one) as `uid`
    /// (`None`: root), in a separate process. `Ok(reply)` or `Err(error)`.
    pub fn connect_from(
        &self,
        ns: Option<&str>,
        uid: Option<u32>,
        target: SocketAddr,
    ) -> Result<String, String> {
        use std::os::unix::process::CommandExt;
        let mut cmd = self.helper(ns);
        cmd.env(CONNECT_ENV, target.to_string());
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        let out = cmd.output().expect("run a client");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("connect-result "))
            .unwrap_or_else(|| {
                panic!(
                    "client printed no result: {text} {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .to_string();
        match line.strip_prefix("ok ") {
            Some(reply) => Ok(reply.to_string()),
            None => Err(line),
        }
    }
}

/// A helper server process; killed (by its pid) on drop.
#[derive(Debug)]
pub struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(spec: &str) -> ! {
    let mut listeners = Vec::new();
    for port in spec.split(',') {
        let l = TcpListener::bind(("0.0.0.0", port.parse::<u16>().expect("port"))).expect("bind");
        listeners.push(l);
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    let handles: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            std::thread::spawn(move || {
                for mut conn in l.incoming().map_while(Result::ok) {
                    std::thread::spawn(move || {
                        let peer = conn
                            .peer_addr()
                            .map(|a| a.ip().to_string())
                            .unwrap_or_default();
                        let _ = writeln!(conn, "{peer}");
                        // Then echo until the client closes.
                        let mut buf = [0u8; 512];
                        while let Ok(n) = conn.read(&mut buf) {
                            if n == 0 || conn.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    std::process::exit(0)
}

fn connect_and_exit(target: &str) -> ! {
    let addr: SocketAddr = target.parse().expect("target address");
    let result = connect_line(addr).map(|(_, line)| line);
    match result {
        Ok(reply) => println!("connect-result ok {reply}"),
        Err(e) => println!("connect-result err {:?}: {e}", e.kind()),
    }
    std::process::exit(0)
}

fn connect_line(addr: SocketAddr) -> std::io::Result<(BufReader<TcpStream>, String)> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_millis(1500))?;
    s.set_read_timeout(Some(Duration::from_millis(1500)))?;
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if line.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed without a reply",
        ));
    }
    Ok((reader, line.trim().to_string()))
}

/// Opens `n` connections to `target` one after another and keeps them, then
/// checks that the first still carries data. Prints
/// `hold-result <ok|err>,... established=<ok|err>`.
fn hold_and_exit(spec: &str) -> ! {
    let (target, n) = spec.split_once(',').expect("target,n");
    let addr: SocketAddr = target.parse().expect("target address");
    let mut held = Vec::new();
    let mut results = Vec::new();
    for _ in 0..n.parse::<usize>().expect("count") {
        match connect_line(addr) {
            Ok((conn, _)) => {
                held.push(conn);
                results.push("ok".to_string());
            }
            Err(e) => results.push(format!("err:{:?}", e.kind())),
        }
    }
    let established = held.first_mut().map(|r| {
        let ping = r.get_mut().write_all(b"ping\n");
        let mut line = String::new();
        match ping.and_then(|_| r.read_line(&mut line)) {
            Ok(_) if line.trim() == "ping" => "ok".to_string(),
            Ok(_) => format!("err:got {line:?}"),
            Err(e) => format!("err:{:?}", e.kind()),
        }
    });
    println!(
        "hold-result {} established={}",
        results.join(","),
        established.unwrap_or_else(|| "none".into())
    );
    std::process::exit(0)
}
