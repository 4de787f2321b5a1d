//! The T2 host rig: one lobster host (config, state, Caddy) inside the
//! test's network namespace, driven through `lobsterd` as a process; and
//! plain HTTP helpers. Shared by the T2 binaries of the CLI.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use lobster_testkit::cgroup::{MemoryGroup, TestParent};
use lobster_testkit::images;
use lobster_testkit::netns::{require, sh};
use lobster_testkit::poll;

/// The workload of every test tenant: serves `hello from $TENANT` on the
/// gateway port and, once a second, tries a TCP connect to each address in
/// `$PROBES` (`name=ip:port ...`) from inside the guest, writing `probe.txt`
/// (`name=reached` or `name=blocked (<errno text>)`). It also serves
/// `secret.txt`, the `API_KEY` secret it got (or `none`). perl-base is in
/// every Debian minbase; busybox's static wget crashes, so it is not used.
pub const WORKLOAD: &str = r#"mkdir -p /tmp/w
echo "hello from $TENANT" > /tmp/w/index.html
echo "secret=${API_KEY:-none}" > /tmp/w/secret.txt
(n=0; while true; do
  n=$((n+1))
  { echo "round=$n"; for p in $PROBES; do
      printf '%s=' "${p%%=*}"
      perl -MIO::Socket::INET -e '
        my $s = IO::Socket::INET->new(PeerAddr => $ARGV[0], Timeout => 2);
        print $s ? "reached\n" : "blocked ($!)\n"' "${p#*=}"
    done; } > /tmp/w/probe.new
  mv /tmp/w/probe.new /tmp/w/probe.txt
  sleep 1
done) &
exec busybox httpd -f -p 9000 -h /tmp/w"#;

/// Fails with a clear message unless everything a T2 lifecycle test needs exists.
pub fn require_t2() {
    require(&[
        "ip",
        "iptables-save",
        "iptables-restore",
        "qemu-system-x86_64",
        "caddy",
    ]);
    for image in ["kernel/vmlinux", "initramfs.cpio.gz", "rootfs-minimal.ext4"] {
        images::require(image, "run guest/images/build.sh minimal");
    }
}

/// One lobster host inside the test namespace: config, state, CLI runner.
pub struct Lobster {
    pub dir: tempfile::TempDir,
    pub caddy_pid: Option<u32>,
    /// The parent of the tenants' cgroups, removed last.
    pub cgroups: TestParent,
}

impl Lobster {
    /// Writes a config (pool with `slots` tenants, QEMU/TCG, the minimal
    /// image) and runs `lobsterd init` (with host setup unless `no_setup`).
    pub fn init(slots: u32, no_setup: bool) -> Lobster {
        // Caddy's own directory is in it: its user must get through.
        let dir = lobster_testkit::caddy::reachable_tempdir();
        let prefix = 32 - (slots * 4).trailing_zeros();
        let images = images::images();
        let state = dir.path().join("state");
        let cgroups = TestParent::new("t2cli");
        let config = serde_json::json!({
            "tenant_defaults": { "vcpus": 1, "memory_mib": 256, "overlay_size_mib": 256 },
            "network": { "pool": format!("10.200.0.0/{prefix}") },
            // Plain HTTP on :80 (HTTPS is T1 t1_caddy's); Caddy's own
            // directory and admin socket in this test's directory.
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
                // Caddy's user reaches the wake sockets of suspended tenants.
                "wake_dir": dir.path().join("wake"),
            },
            // Jails and cgroups of this test alone.
            "vmm": {
                "backend": "qemu",
                "qemu": { "accel": "tcg" },
                "firecracker": { "chroot_base": state.join("jail") },
                "cgroup_parent": cgroups.relative,
            },
            // Fast ticks so the watchdog test repairs within seconds.
            "watchdog": {
                "interval_ms": 1000,
                "probe_timeout_ms": 3000,
                "backoff_base_ms": 1000,
                "backoff_max_ms": 4000,
                "cooldown_ms": 3000,
            },
        });
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let mut lobster = Lobster {
            dir,
            caddy_pid: None,
            cgroups,
        };
        let mut args = vec!["--json", "init"];
        if no_setup {
            args.push("--no-host-setup");
        }
        let out = lobster.run(&args);
        assert!(out.status.success(), "init failed: {}", text(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        lobster.caddy_pid = report["host_setup"]["caddy_pid"].as_u64().map(|p| p as u32);
        if !no_setup {
            assert!(
                lobster.caddy_pid.is_some(),
                "init should have started caddy: {report}"
            );
        }
        lobster
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    /// Caddy's admin socket.
    pub fn admin(&self) -> PathBuf {
        self.dir.path().join("caddy/admin.sock")
    }

    /// Changes the config file (read by every later command).
    pub fn edit_config(&self, change: impl FnOnce(&mut serde_json::Value)) {
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.config()).unwrap()).unwrap();
        change(&mut config);
        std::fs::write(self.config(), config.to_string()).unwrap();
    }

    /// The record of `name` as `registry.json` holds it (no command).
    pub fn record(&self, name: &str) -> serde_json::Value {
        let registry: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.state().join("registry.json")).unwrap())
                .unwrap();
        registry["tenants"][name].clone()
    }

    /// Points `paths.initrd` at `initrd`; returns the previous one.
    pub fn set_initrd(&self, initrd: &Path) -> PathBuf {
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.config()).unwrap()).unwrap();
        let previous = PathBuf::from(config["paths"]["initrd"].as_str().unwrap());
        config["paths"]["initrd"] = initrd.to_str().unwrap().into();
        std::fs::write(self.config(), config.to_string()).unwrap();
        previous
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lobsterd"));
        cmd.arg("--config")
            .arg(self.config())
            .args(args)
            .env_remove("LOBSTERD_CONFIG");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// `lobsterd spawn` of the test workload; returns the CLI's output.
    pub fn spawn(&self, name: &str, probes: &str) -> Output {
        self.spawn_with(name, probes, &[])
    }

    /// [`Lobster::spawn`] with more spawn options.
    pub fn spawn_with(&self, name: &str, probes: &str, options: &[&str]) -> Output {
        let probes = format!("PROBES={probes}");
        let mut options = options.to_vec();
        options.extend_from_slice(&["--env", &probes]);
        self.spawn_running(name, WORKLOAD, &options)
    }

    /// `lobsterd spawn` of `workload` (with `$TENANT` set to `name`) and
    /// more spawn options; returns the CLI's output.
    pub fn spawn_running(&self, name: &str, workload: &str, options: &[&str]) -> Output {
        let started = Instant::now();
        let tenant = format!("TENANT={name}");
        let mut args = vec![
            "--json",
            "spawn",
            name,
            "--command",
            workload,
            "--env",
            &tenant,
        ];
        args.extend_from_slice(options);
        let out = self.run(&args);
        eprintln!(
            "spawn {name}: exit {:?} after {:?}\n{}",
            out.status.code(),
            started.elapsed(),
            output(&out)
        );
        out
    }

    pub fn tenant(&self, name: &str) -> serde_json::Value {
        let out = self.run(&["--json", "list"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }

    /// The id the registry gives `name` (read from the file: no command).
    pub fn id(&self, name: &str) -> String {
        let registry: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.state().join("registry.json")).unwrap())
                .unwrap();
        registry["tenants"][name]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} is not in the registry: {registry}"))
            .to_owned()
    }

    /// The VMM processes of the tenant with id `id`: whatever runs in its
    /// cgroup.
    pub fn vmms(&self, id: &str) -> Vec<i32> {
        MemoryGroup::at(&self.cgroups.relative.join(id))
            .expect("a memory hierarchy")
            .members()
            .into_iter()
            .filter(|pid| alive(*pid))
            .collect()
    }

    /// Asserts that nothing of tenant `name` (with id `id`) remains.
    pub fn assert_gone(&self, name: &str, id: &str) {
        let links = sh(&["ip", "-o", "link", "show"]);
        assert!(
            !links.contains(&format!("lob-{id}")),
            "tap lob-{id} left:\n{links}"
        );
        let rules = sh(&["iptables-save"]);
        assert!(
            !rules.contains(&format!("LOB-{id}")),
            "rules of {id} left:\n{rules}"
        );
        let socket = self.state().join(format!("run/{name}.sock"));
        assert!(self.vmms(id).is_empty(), "a VMM of {name} still runs");
        assert!(!socket.exists(), "socket {} left", socket.display());
        // A jailed VMM is known by its cgroup, and its jail goes with it.
        let jail = self.state().join(format!("jail/qemu/{id}"));
        assert!(!jail.exists(), "jail {} left", jail.display());
        let group = MemoryGroup::at(&self.cgroups.relative.join(id)).expect("a memory hierarchy");
        assert!(!group.dir.exists(), "cgroup {} left", group.dir.display());
        let overlays: Vec<_> = std::fs::read_dir(self.state().join("overlays"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            overlays.iter().all(|f| !f.starts_with(&format!("{name}-"))),
            "overlay of {name} left: {overlays:?}"
        );
        assert!(
            !self
                .state()
                .join(format!("logs/{name}.console.log"))
                .exists(),
            "console log of {name} left"
        );
        assert_eq!(
            self.tenant(name),
            serde_json::Value::Null,
            "{name} still in the registry"
        );
        if self
            .caddy_pid
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
        {
            let routes = admin_request(
                &self.admin(),
                "GET",
                "/config/apps/http/servers/lobster/routes",
            )
            .unwrap_or_else(|e| panic!("cannot read caddy's routes: {e}"));
            assert!(
                !routes.contains(&format!("{name}.lobster.local")),
                "route of {name} left: {routes}"
            );
        }
    }

    /// On a failing test, prints every console log (the guests' side).
    pub fn dump_logs(&self) {
        let Ok(dir) = std::fs::read_dir(self.state().join("logs")) else {
            return;
        };
        for entry in dir.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<_> = text.lines().rev().take(60).collect();
            eprintln!("==== {} (last 60 lines)", entry.path().display());
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for Lobster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        // Tear down whatever a failed test left (evict is idempotent), then
        // stop the Caddy that init started for this test.
        if let Ok(out) = self.command(&["--json", "list"]).output() {
            let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            for t in list.as_array().into_iter().flatten() {
                if let Some(name) = t["name"].as_str() {
                    let _ = self.run(&["evict", "-y", name]);
                }
            }
        }
        if let Some(pid) = self.caddy_pid {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

/// Starts `command` and reads its progress (stderr) until it reports
/// starting `phase` (`[phase] ...`) or ends; returns the child, still
/// running, and the lines seen (for a kill at that phase).
pub fn start_until_phase(mut command: Command, phase: &str) -> (std::process::Child, Vec<String>) {
    use std::io::BufRead;
    let mut child = command
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let marker = format!("[{phase}] ...");
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains(&marker) {
            break;
        }
    }
    (child, seen)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Everything a command printed (with `--json`, errors go to stdout).
pub fn output(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// A plain HTTP/1.1 GET; the body, or why there is none.
pub fn http(addr: &str, host: &str, path: &str) -> Result<String, String> {
    let addr: SocketAddr = addr.parse().map_err(|e| format!("{e}"))?;
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let (head, body) = out.split_once("\r\n\r\n").ok_or("no http response")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or_default().to_owned());
    }
    Ok(body.to_owned())
}

/// One request to Caddy's admin socket (HTTP/1.0: no chunked answer; an
/// empty Host, the only one Caddy accepts there); the body of a 200.
pub fn admin_request(socket: &Path, method: &str, path: &str) -> Result<String, String> {
    let mut s = std::os::unix::net::UnixStream::connect(socket).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(s, "{method} {path} HTTP/1.0\r\nHost: \r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let (head, body) = out.split_once("\r\n\r\n").ok_or("no http response")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or_default().to_owned());
    }
    Ok(body.to_owned())
}

/// Polls `GET path` with `Host: <name>.lobster.local` through Caddy until the
/// body contains `want`.
pub fn wait_for_page(name: &str, path: &str, want: &str, within: Duration) -> String {
    let host = format!("{name}.lobster.local");
    let mut last = Err(String::new());
    poll::within(within, || {
        last = http("127.0.0.1:80", &host, path);
        last.as_ref()
            .ok()
            .filter(|body| body.contains(want))
            .cloned()
    })
    .unwrap_or_else(|| {
        panic!("{host}{path} did not serve {want:?} within {within:?}: last {last:?}")
    })
}

/// A running `lobsterd watch` whose JSON-line events are collected.
pub struct Watch {
    child: std::process::Child,
    events: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    seen: usize,
}

impl Watch {
    pub fn start(lobster: &Lobster) -> Watch {
        let mut child = lobster
            .command(&["watch", "--no-host-setup"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let sink = events.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in stdout.lines().map_while(Result::ok) {
                match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(event) => {
                        eprintln!("watch: {line}");
                        sink.lock().unwrap().push(event);
                    }
                    Err(_) => eprintln!("watch (not json): {line}"),
                }
            }
        });
        Watch {
            child,
            events,
            seen: 0,
        }
    }

    /// The first event after the last one returned that matches `want`.
    pub fn wait(
        &mut self,
        what: &str,
        within: Duration,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let (events, seen, child) = (&self.events, self.seen, &mut self.child);
        let found = poll::within(within, || {
            if let Some(i) = events.lock().unwrap()[seen..].iter().position(&want) {
                return Some(seen + i);
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "the watchdog exited while waiting for {what}"
            );
            None
        });
        let Some(i) = found else {
            panic!(
                "no {what} within {within:?}; events: {:#?}",
                self.events.lock().unwrap()
            )
        };
        self.seen = i + 1;
        self.events.lock().unwrap()[i].clone()
    }

    /// Like [`Watch::wait`], but the first matching event of the whole run
    /// (for events whose order among themselves is not known).
    pub fn first(
        &mut self,
        what: &str,
        within: Duration,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let seen = std::mem::take(&mut self.seen);
        let event = self.wait(what, within, want);
        self.seen = self.seen.max(seen);
        event
    }

    /// Whether any event so far matches `want`.
    pub fn any(&self, want: impl Fn(&serde_json::Value) -> bool) -> bool {
        self.events.lock().unwrap().iter().any(want)
    }

    /// Waits for the repair of `tenant` that runs `repairs` (in order) and
    /// checks that it succeeded; then for the tenant to be healthy again.
    pub fn repaired(&mut self, tenant: &str, repairs: &[&str]) -> serde_json::Value {
        let start = self.wait(
            &format!("repair_start of {tenant}"),
            Duration::from_secs(60),
            |e| e["event"] == "repair_start" && e["tenant"] == tenant,
        );
        let planned: Vec<&str> = start["repairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert_eq!(planned, repairs, "planned repairs: {start}");
        let done = self.wait(
            &format!("repair_complete of {tenant}"),
            Duration::from_secs(240),
            |e| e["event"] == "repair_complete" && e["tenant"] == tenant,
        );
        let outcomes = done["outcomes"].as_array().unwrap();
        assert!(
            outcomes.iter().all(|o| o["ok"] == true) && outcomes.len() == repairs.len(),
            "repair failed: {done}"
        );
        self.wait(
            &format!("{tenant} healthy again"),
            Duration::from_secs(60),
            |e| e["event"] == "state_change" && e["tenant"] == tenant && e["to"] == "healthy",
        );
        done
    }

    /// SIGTERM, then a bounded wait for a clean exit and its last event.
    pub fn stop(mut self) {
        sh(&["kill", "-TERM", &self.child.id().to_string()]);
        let status = poll::until("watch to obey SIGTERM", Duration::from_secs(20), || {
            self.child.try_wait().unwrap()
        });
        assert!(status.success(), "watch exited with {status}");
        // The reader thread may still be draining the pipe.
        let events = &self.events;
        poll::until("the stopping event", Duration::from_secs(5), || {
            let events = events.lock().unwrap();
            events
                .iter()
                .any(|e| e["event"] == "stopping")
                .then_some(())
        });
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether process `pid` lives (a zombie waiting for its reaper does not:
/// it runs nothing and holds no memory).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.starts_with(" Z"))
    })
}
