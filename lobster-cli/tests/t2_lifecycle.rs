//! T2: the tenant lifecycle end to end, through `lobsterd` as a process,
//! with real guests (QEMU, the minimal image), real TAPs, iptables and
//! Caddy, all inside a network namespace each test creates.
//!
//! Needs root, `qemu-system-x86_64`, `caddy`, `ip`, iptables and the images
//! from `guest/images/build.sh minimal` (under `$LOBSTER_IMAGES`, default
//! `<repo>/.artifacts/images`).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::t2::*;
use lobster_testkit::netns::{in_netns, sh, Ctx};
use lobster_testkit::poll;

const TCP_CONNECT_ENV: &str = "LOBSTER_T2_TCP_CONNECT";

/// A minimal guest in `dir`: a busybox initramfs whose init prints an OSC 52
/// clipboard write (ESC ] 52 ; c ; ... BEL) between two markers on the
/// console, then powers off.
fn osc52_initrd(dir: &Path) -> PathBuf {
    let root = dir.join("osc52-guest");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::fs::write(
        root.join("init"),
        "#!/bin/busybox sh\n\
         /bin/busybox mkdir -p /dev\n\
         /bin/busybox mount -t devtmpfs dev /dev\n\
         exec >/dev/console 2>&1\n\
         /bin/busybox printf 'osc52-before \\033]52;c;bG9ic3Rlcg==\\007 osc52-after\\n'\n\
         /bin/busybox poweroff -f\n",
    )
    .unwrap();
    sh(&["chmod", "0755", root.join("init").to_str().unwrap()]);
    let initrd = dir.join("osc52.cpio.gz");
    sh(&[
        "sh",
        "-c",
        &format!(
            "cd {} && find . | cpio -o -H newc --quiet | gzip -1 > {}",
            root.display(),
            initrd.display()
        ),
    ]);
    initrd
}

/// `out` shows the OSC 52 guest's console text, with no ESC or BEL byte.
fn assert_guest_text_sanitised(what: &str, out: &Output) {
    let all = [&out.stdout[..], &out.stderr[..]].concat();
    assert!(
        text(&all).contains("osc52-before"),
        "{what} does not show the console tail: {}",
        output(out)
    );
    assert!(
        !all.contains(&0x1b) && !all.contains(&0x07),
        "{what} passes the guest's control bytes: {:?}",
        text(&all)
    );
}

/// A proxy admin API that accepts connections and never answers, so a
/// spawn's route step hangs until the test kills it. Stopping it closes
/// every connection: the admin address is then refused (a proxy that is
/// down), which the next command's teardown accepts.
struct SilentAdmin {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentAdmin {
    fn start(socket: &Path) -> SilentAdmin {
        use std::sync::atomic::Ordering;
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(socket);
        let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        SilentAdmin {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// Connects to `target` as `uid` in a child process of this binary.
fn tcp_connect_as(test: &str, uid: u32, target: SocketAddr) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--ignored", "--nocapture"])
        .env(TCP_CONNECT_ENV, target.to_string())
        .uid(uid)
        .gid(uid)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("tcp-connect "))
        .unwrap_or("no result");
    if line == "ok" {
        Ok(())
    } else {
        Err(line.to_owned())
    }
}

/// The child side of [`tcp_connect_as`].
fn tcp_connect_mode() {
    if let Ok(target) = std::env::var(TCP_CONNECT_ENV) {
        let addr: SocketAddr = target.parse().unwrap();
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(_) => println!("tcp-connect ok"),
            Err(e) => println!("tcp-connect err {:?}", e.kind()),
        }
        std::process::exit(0);
    }
}

#[test]
#[ignore = "t2: needs root, qemu, caddy and images"]
fn two_tenants_route_isolate_and_evict() {
    tcp_connect_mode();
    in_netns("two_tenants_route_isolate_and_evict", |_ctx: &Ctx| {
        require_t2();
        let lobster = Lobster::init(2, false);
        // Slot 0: 10.200.0.0/30 (host .1, guest .2); slot 1: 10.200.0.4/30 (host .5, guest .6).
        let probes_a = "self=10.200.0.2:9000 bgw=10.200.0.6:9000 bagent=10.200.0.6:52 \
                        bhealth=10.200.0.6:53 ownhost=10.200.0.1:80 bhost=10.200.0.5:80";
        let out = lobster.spawn("a", probes_a);
        assert!(out.status.success(), "spawn a failed");
        let a: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(a["status"], "running");
        assert_eq!(a["allocation"]["guest_ip"], "10.200.0.2");
        // b with every sizing option and a secret from a file.
        let secrets = lobster.dir.path().join("b-secrets.env");
        std::fs::write(&secrets, "# for b\nAPI_KEY=sk-b-4242\n").unwrap();
        let out = lobster.spawn_with(
            "b",
            "agw=10.200.0.2:9000",
            &[
                "--memory-mib",
                "320",
                "--overlay-size-mib",
                "300",
                "--backend",
                "qemu",
                "--secrets-file",
                secrets.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "spawn b failed");
        assert!(
            !output(&out).contains("sk-b-4242"),
            "the secret was printed"
        );
        let b: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(b["resources"]["memory_mib"], 320, "{b}");
        assert_eq!(b["resources"]["overlay_size_mib"], 300, "{b}");
        assert_eq!(b["resources"]["backend"], "qemu", "{b}");
        let qemu = lobster.vmms(b["id"].as_str().unwrap());
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", qemu[0])).unwrap();
        let argv: Vec<&[u8]> = cmdline.split(|c| *c == 0).collect();
        assert!(
            argv.windows(2).any(|w| w == [&b"-m"[..], &b"320M"[..]]),
            "b's VM does not get 320 MiB: {}",
            String::from_utf8_lossy(&cmdline)
        );
        let disk = lobster
            .state()
            .join(format!("overlays/b-{}.ext4", b["id"].as_str().unwrap()));
        assert_eq!(std::fs::metadata(&disk).unwrap().len(), 300 << 20);

        // Each route reaches its own tenant's workload through Caddy.
        wait_for_page("a", "/", "hello from a", Duration::from_secs(60));
        wait_for_page("b", "/", "hello from b", Duration::from_secs(60));
        wait_for_page(
            "b",
            "/secret.txt",
            "secret=sk-b-4242",
            Duration::from_secs(10),
        );
        wait_for_page("a", "/secret.txt", "secret=none", Duration::from_secs(10));

        // From inside guest a: b's gateway, agent and health ports, and the
        // host (its own side and b's) are all unreachable. Wait for a round
        // that started after b answered.
        let first = wait_for_page("a", "/probe.txt", "round=", Duration::from_secs(30));
        let round: u32 = first
            .lines()
            .next()
            .unwrap()
            .trim_start_matches("round=")
            .parse()
            .unwrap();
        let report = wait_for_page(
            "a",
            "/probe.txt",
            &format!("round={}", round + 2),
            Duration::from_secs(60),
        );
        eprintln!("probes from inside a:\n{report}");
        // The control: a guest reaches its own gateway, so the probe works.
        assert!(
            report.contains("self=reached"),
            "the probe itself fails:\n{report}"
        );
        for probe in ["bgw", "bagent", "bhealth", "ownhost", "bhost"] {
            assert!(
                report.contains(&format!("{probe}=blocked")),
                "{probe} not blocked:\n{report}"
            );
        }
        let report_b = wait_for_page("b", "/probe.txt", "agw=", Duration::from_secs(30));
        assert!(report_b.contains("agw=blocked"), "b reached a:\n{report_b}");

        // The agents answer root on the host, and nobody else; the gateway
        // root and the proxy (root here), not nobody.
        for port in [52u16, 53, 9000] {
            let addr: SocketAddr = format!("10.200.0.2:{port}").parse().unwrap();
            TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                .unwrap_or_else(|e| panic!("root cannot reach port {port}: {e}"));
            let as_nobody = tcp_connect_as("two_tenants_route_isolate_and_evict", 65534, addr);
            assert!(as_nobody.is_err(), "uid 65534 reached guest port {port}");
        }

        // Bad input: duplicate name, full pool, invalid name; nothing is made.
        let out = lobster.spawn("a", "");
        assert_eq!(out.status.code(), Some(11), "duplicate: {}", output(&out));
        let out = lobster.spawn("c", "");
        assert_eq!(out.status.code(), Some(17), "exhausted: {}", output(&out));
        assert!(output(&out).contains("no free tenant slot"));
        let out = lobster.spawn("Bad_Name", "");
        assert_eq!(out.status.code(), Some(12));

        // Logs come from the agent; follow streams them.
        let out = lobster.run(&["--json", "logs", "a", "-s", "agent", "-n", "20"]);
        assert!(out.status.success(), "logs: {}", output(&out));
        let lines: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
        assert!(!lines.is_empty(), "the agent logged nothing");
        let mut follow = lobster
            .command(&["logs", "a", "-s", "agent", "-n", "3", "--follow"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(follow.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        follow.kill().unwrap();
        follow.wait().unwrap();
        assert!(!first.trim().is_empty(), "logs --follow printed nothing");

        // snap: a compressed, crash-consistent copy of a's disk, VM paused briefly.
        let out = lobster.run(&["--json", "snap", "a"]);
        assert!(out.status.success(), "snap: {}", output(&out));
        let snap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(snap["disk_bytes"], 256u64 << 20);
        assert!(snap["archive_bytes"].as_u64().unwrap() < 16 << 20, "{snap}");
        assert!(snap["paused_ms"].as_u64().unwrap() > 0, "{snap}");
        let archive = PathBuf::from(snap["path"].as_str().unwrap());
        let image = lobster.dir.path().join("restored.ext4");
        sh(&[
            "zstd",
            "-q",
            "-d",
            "--sparse",
            archive.to_str().unwrap(),
            "-o",
            image.to_str().unwrap(),
        ]);
        let meta = sh(&["debugfs", "-R", "ls -l /meta", image.to_str().unwrap()]);
        assert!(
            meta.contains("agent.token"),
            "the snapshot is not a's disk:\n{meta}"
        );
        wait_for_page("a", "/", "hello from a", Duration::from_secs(10));
        // snap --output: the archive goes where it is told.
        let wanted = lobster.dir.path().join("a-disk.ext4.zst");
        let out = lobster.run(&["--json", "snap", "a", "--output", wanted.to_str().unwrap()]);
        assert!(out.status.success(), "snap --output: {}", output(&out));
        let snap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(snap["path"], wanted.to_str().unwrap(), "{snap}");
        assert_eq!(
            std::fs::metadata(&wanted).unwrap().len(),
            snap["archive_bytes"].as_u64().unwrap()
        );

        // Evict a: nothing of it is left, b still answers.
        let out = lobster.run(&["evict", "-y", "a"]);
        assert!(out.status.success(), "evict a: {}", text(&out.stderr));
        lobster.assert_gone("a", a["id"].as_str().unwrap());
        wait_for_page("b", "/", "hello from b", Duration::from_secs(10));
        let out = lobster.run(&["evict", "-y", "a"]);
        assert_eq!(
            out.status.code(),
            Some(10),
            "evicting a gone tenant is not found"
        );

        // Caddy down: a spawn fails at the route step and rolls back fully.
        let caddy = lobster.caddy_pid.unwrap();
        sh(&["kill", &caddy.to_string()]);
        poll::within(Duration::from_secs(10), || {
            (!Path::new(&format!("/proc/{caddy}")).exists()).then_some(())
        });
        let out = lobster.spawn("c", "");
        assert!(!out.status.success());
        let stderr = output(&out);
        assert!(
            stderr.contains("failed at step route") && stderr.contains("rolled back"),
            "{stderr}"
        );
        assert!(
            stderr.contains(lobster.admin().to_str().unwrap()),
            "the error names the admin address: {stderr}"
        );
        let links = sh(&["ip", "-o", "link", "show"]);
        assert_eq!(
            links.matches("lob-").count(),
            1,
            "only b's tap remains:\n{links}"
        );
        assert_eq!(lobster.tenant("c"), serde_json::Value::Null);

        // With Caddy down there is no route to remove: evict completes.
        let out = lobster.run(&["evict", "-y", "b"]);
        assert!(out.status.success(), "evict b: {}", output(&out));
        lobster.assert_gone("b", b["id"].as_str().unwrap());
    });
}

#[test]
#[ignore = "t2: needs root, qemu, caddy and images"]
fn a_killed_spawn_leaves_nothing_after_the_next_command() {
    in_netns(
        "a_killed_spawn_leaves_nothing_after_the_next_command",
        |_ctx: &Ctx| {
            require_t2();
            let lobster = Lobster::init(2, true);
            // A secret, so the spawn has a secrets phase to be killed in.
            let secrets = lobster.dir.path().join("k-secrets.env");
            std::fs::write(&secrets, "API_KEY=sk-k\n").unwrap();
            // The route step hangs on a silent admin API, so a VMM runs
            // whenever the kill lands from the agent phase on (the secrets
            // and workload phases are short calls: the kill lands in them
            // or in a later step, at the latest in the hanging route).
            let phases = [
                "overlay", "network", "firewall", "vm", "agent", "secrets", "workload", "route",
            ];
            for phase in phases {
                let admin = SilentAdmin::start(&lobster.admin());
                let (mut child, seen) = start_until_phase(
                    lobster.command(&[
                        "spawn",
                        "k",
                        "--command",
                        WORKLOAD,
                        "--env",
                        "TENANT=k",
                        "--secrets-file",
                        secrets.to_str().unwrap(),
                    ]),
                    phase,
                );
                let marker = format!("[{phase}] ...");
                let id = lobster.id("k");
                if ["agent", "secrets", "workload", "route"].contains(&phase) {
                    // The control: a VMM really runs (in its own session, so it
                    // survives the CLI) when the CLI dies.
                    poll::until(
                        &format!("a VMM running at {phase}"),
                        Duration::from_secs(5),
                        || (!lobster.vmms(&id).is_empty()).then_some(()),
                    );
                }
                child.kill().unwrap(); // SIGKILL
                eprintln!("killed spawn at {phase} after: {seen:?}");
                child.wait().unwrap();
                admin.stop();
                assert!(
                    seen.iter().any(|l| l.contains(&marker)),
                    "never reached {phase}: {seen:?}"
                );
                let record = lobster.tenant("k");
                // `list` (the next command) finished the interrupted spawn.
                assert_eq!(
                    record,
                    serde_json::Value::Null,
                    "after a kill at {phase}: {record}"
                );
                let links = sh(&["ip", "-o", "link", "show"]);
                assert!(
                    !links.contains("lob-"),
                    "after a kill at {phase}: tap left:\n{links}"
                );
                let rules = sh(&["iptables-save"]);
                assert!(
                    !rules.contains("LOB-"),
                    "after a kill at {phase}: rules left"
                );
                assert!(
                    lobster.vmms(&id).is_empty(),
                    "after a kill at {phase}: VMM left"
                );
                let jail = lobster.state().join(format!("jail/qemu/{id}"));
                assert!(!jail.exists(), "after a kill at {phase}: jail left");
                let overlays: Vec<_> = std::fs::read_dir(lobster.state().join("overlays"))
                    .unwrap()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|f| !f.starts_with('.'))
                    .collect();
                assert!(overlays.is_empty(), "after a kill at {phase}: {overlays:?}");
            }
        },
    );
}

#[test]
#[ignore = "t2: needs root, qemu, caddy and images"]
fn missing_image_is_refused_before_anything_is_made() {
    in_netns(
        "missing_image_is_refused_before_anything_is_made",
        |_ctx: &Ctx| {
            require_t2();
            let lobster = Lobster::init(2, true);
            let mut config: serde_json::Value =
                serde_json::from_slice(&std::fs::read(lobster.config()).unwrap()).unwrap();
            config["paths"]["kernel"] = "/nonexistent/vmlinuz".into();
            std::fs::write(lobster.config(), config.to_string()).unwrap();
            let out = lobster.spawn("m", "");
            assert_eq!(out.status.code(), Some(10));
            assert!(
                output(&out).contains("kernel image /nonexistent/vmlinuz is missing"),
                "{}",
                output(&out)
            );
            assert_eq!(lobster.tenant("m"), serde_json::Value::Null);
            assert!(!sh(&["ip", "-o", "link", "show"]).contains("lob-"));
        },
    );
}

/// The LOB* chains of a table as `iptables-save` prints them (rules only).
fn lobster_rules() -> Vec<String> {
    sh(&["iptables-save"])
        .lines()
        .filter(|l| l.starts_with("-A LOB"))
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "t2: needs root, qemu, caddy and images"]
fn watchdog_repairs_vm_tap_rules_route_and_workload() {
    in_netns(
        "watchdog_repairs_vm_tap_rules_route_and_workload",
        |_ctx: &Ctx| {
            require_t2();
            let lobster = Lobster::init(1, false);
            let out = lobster.spawn("a", "");
            assert!(out.status.success(), "spawn a failed");
            let a: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let id = a["id"].as_str().unwrap().to_owned();
            wait_for_page("a", "/", "hello from a", Duration::from_secs(60));
            let rules_before = lobster_rules();
            assert!(!rules_before.is_empty());

            let mut watch = Watch::start(&lobster);
            watch.wait("the start reconcile", Duration::from_secs(30), |e| {
                e["event"] == "reconciled"
            });
            watch.wait("a healthy first tick", Duration::from_secs(60), |e| {
                e["event"] == "tick_complete" && e["healthy"] == 1
            });
            // tank shows what the watchdog wrote.
            let out = lobster.run(&["--json", "tank"]);
            assert!(out.status.success(), "{}", output(&out));
            let tank: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(tank["tenants"][0]["state"], "healthy", "{tank}");
            assert_eq!(tank["tenants"][0]["health"], "ok", "{tank}");
            assert_eq!(tank["watchdog"]["alive"], true, "{tank}");

            // 1. The VM process is killed: a new VM boots on the same disk.
            let old_pid = lobster.tenant("a")["vm"]["identity"]["pid"]
                .as_u64()
                .unwrap();
            sh(&["kill", "-KILL", &old_pid.to_string()]);
            let started = Instant::now();
            watch.repaired("a", &["restart_vm"]);
            wait_for_page("a", "/", "hello from a", Duration::from_secs(60));
            eprintln!("killed VM: answering again after {:?}", started.elapsed());
            let new_pid = lobster.tenant("a")["vm"]["identity"]["pid"]
                .as_u64()
                .unwrap();
            assert_ne!(new_pid, old_pid, "the registry records the new VM");
            assert!(Path::new(&format!("/proc/{new_pid}")).exists());

            // 2. The TAP is deleted: recreated, rules re-applied, and a new
            //    VMM (the old one held the deleted device).
            sh(&["ip", "link", "del", &format!("lob-{id}")]);
            let started = Instant::now();
            watch.repaired("a", &["ensure_tap", "apply_firewall", "restart_vm"]);
            wait_for_page("a", "/", "hello from a", Duration::from_secs(60));
            eprintln!("deleted TAP: answering again after {:?}", started.elapsed());
            assert!(sh(&["ip", "-o", "link", "show"]).contains(&format!("lob-{id}")));

            // 3. Every lobster chain is flushed: the rules come back as planned.
            for line in sh(&["iptables-save"]).lines() {
                if let Some(chain) = line.strip_prefix(":LOB") {
                    let chain = format!("LOB{}", chain.split_whitespace().next().unwrap());
                    let table =
                        if chain.ends_with("-NAT") || chain.starts_with("LOBSTER-POSTROUTING") {
                            "nat"
                        } else {
                            "filter"
                        };
                    sh(&["iptables", "-t", table, "-F", &chain]);
                }
            }
            assert!(lobster_rules().is_empty(), "the flush left rules");
            watch.repaired("a", &["apply_firewall"]);
            let mut restored = lobster_rules();
            let mut want = rules_before.clone();
            restored.sort();
            want.sort();
            assert_eq!(restored, want, "the rules are back exactly as planned");

            // 4. The Caddy route is deleted: put back, the page is served again.
            admin_request(&lobster.admin(), "DELETE", "/id/lobster-a").unwrap();
            // Caddy answers an unmatched host with an empty 200.
            let page = http("127.0.0.1:80", "a.lobster.local", "/").unwrap_or_default();
            assert!(!page.contains("hello from a"), "still routed: {page}");
            watch.repaired("a", &["put_route"]);
            wait_for_page("a", "/", "hello from a", Duration::from_secs(30));

            // 5. The workload is stopped through the agent: relaunched.
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let host = lobster_core::Host::open(Some(&lobster.config())).unwrap();
            let stopped = runtime
                .block_on(async {
                    host.agent("a")
                        .await?
                        .stop(Duration::from_secs(5))
                        .await
                        .map_err(lobster_core::Error::from)
                })
                .unwrap();
            assert_eq!(
                stopped.state,
                lobster_core::agent::WorkloadState::Stopped,
                "{stopped:?}"
            );
            watch.repaired("a", &["relaunch_workload"]);
            wait_for_page("a", "/", "hello from a", Duration::from_secs(30));

            // molt agrees: everything passes, nothing to repair.
            let out = lobster.run(&["--json", "molt", "a"]);
            assert!(out.status.success(), "molt: {}", output(&out));
            let molt: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(molt[0]["healthy"], true, "{molt}");
            assert_eq!(molt[0]["repairs"], serde_json::json!([]), "{molt}");

            watch.stop();

            // 6. A "reboot" while no watchdog runs: the VM dies, the TAP, every
            //    firewall rule and chain, and the route are gone. A new
            //    watchdog reconciles rules and routes at start, then brings
            //    the TAP and the VM back.
            let pid = lobster.tenant("a")["vm"]["identity"]["pid"]
                .as_u64()
                .unwrap();
            sh(&["kill", "-KILL", &pid.to_string()]);
            sh(&["ip", "link", "del", &format!("lob-{id}")]);
            for table in ["filter", "nat"] {
                sh(&["iptables", "-t", table, "-F"]);
                sh(&["iptables", "-t", table, "-X"]);
            }
            admin_request(&lobster.admin(), "DELETE", "/id/lobster-a").unwrap();
            let started = Instant::now();
            let mut watch = Watch::start(&lobster);
            let reconciled = watch.wait("the start reconcile", Duration::from_secs(30), |e| {
                e["event"] == "reconciled"
            });
            assert!(
                reconciled["firewall_changes"].as_u64().unwrap() > 0,
                "{reconciled}"
            );
            assert_eq!(reconciled["routes_added"], serde_json::json!(["a"]));
            watch.repaired("a", &["ensure_tap", "apply_firewall", "restart_vm"]);
            wait_for_page("a", "/", "hello from a", Duration::from_secs(60));
            eprintln!(
                "after a reboot: answering again after {:?}",
                started.elapsed()
            );
            let mut restored = lobster_rules();
            restored.sort();
            assert_eq!(restored, want, "the rules are back exactly as planned");
            watch.stop();

            // 7. Guest text reaches no terminal raw: the VM is replaced by a
            //    guest that prints an OSC 52 (clipboard write) sequence on
            //    its console and powers off; molt's report and spawn's error
            //    show the console tail, sanitised.
            let product_initrd = lobster.set_initrd(&osc52_initrd(lobster.dir.path()));
            let pid = lobster.tenant("a")["vm"]["identity"]["pid"]
                .as_u64()
                .unwrap();
            sh(&["kill", "-KILL", &pid.to_string()]);
            let out = lobster.run(&["molt", "a"]);
            assert!(!out.status.success(), "molt: {}", output(&out));
            assert_guest_text_sanitised("molt", &out);

            let out = lobster.run(&["evict", "-y", "a"]);
            assert!(out.status.success(), "evict a: {}", output(&out));
            lobster.assert_gone("a", &id);

            let out = lobster.run(&["spawn", "b", "--command", "sleep 3600"]);
            assert!(!out.status.success(), "spawn b: {}", output(&out));
            assert_guest_text_sanitised("spawn", &out);
            assert_eq!(lobster.tenant("b"), serde_json::Value::Null);
            lobster.set_initrd(&product_initrd);

            // `watch -d` detaches; one watchdog per state directory; its log
            // is readable with `logs --watchdog`; SIGTERM stops it.
            let out = lobster.run(&["--json", "watch", "-d", "--no-host-setup"]);
            assert!(out.status.success(), "watch -d: {}", output(&out));
            let daemon: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let pid = daemon["pid"].as_u64().unwrap().to_string();
            let out = lobster.run(&["watch", "--no-host-setup"]);
            assert_eq!(
                out.status.code(),
                Some(11),
                "second watchdog: {}",
                output(&out)
            );
            assert!(
                output(&out).contains("a watchdog already runs"),
                "{}",
                output(&out)
            );
            let out = lobster.run(&["--json", "logs", "--watchdog", "-n", "50"]);
            assert!(out.status.success(), "logs --watchdog: {}", output(&out));
            let lines: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
            assert!(
                lines.iter().any(|l| l.contains("\"event\":\"started\"")),
                "{lines:?}"
            );
            sh(&["kill", "-TERM", &pid]);
            poll::until("watch -d to obey SIGTERM", Duration::from_secs(20), || {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
                (!stat.is_ok_and(|s| !s.contains(") Z "))).then_some(())
            });
        },
    );
}
