//! T2: real guests built by `guest/images/build.sh` (kernel, initramfs,
//! lobster-init, lobster-agent, Debian rootfs), booted by the QEMU backend
//! (`lobster_core::vmm`), reached through the `Agent` client over the
//! tenant network.
//!
//! Each test creates its own network namespace (`lobt2-<pid>-<n>`) with a
//! TAP for the guest NIC; QEMU and every socket to the guest live inside it
//! (a dedicated thread enters the namespace and runs a current-thread tokio
//! runtime, so QEMU and its children inherit it). Nothing touches the host's
//! own network. On failure the guest console is printed.
//!
//! Prerequisites (a test fails naming what is missing): root, `ip`,
//! `debugfs`, `qemu-system-x86_64`, and the images (`guest/images/build.sh
//! minimal`; `full` for the OpenClaw test).

#![allow(clippy::tests_outside_test_module)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lobster_core::agent::provision::{generate_token, write_token, GuestNetwork};
use lobster_core::agent::{
    exit_status, Agent, ExecEvent, LogSource, OpenClawSpec, RestartPolicy, Secret, WorkloadSpec,
    WorkloadState,
};
use lobster_core::config::{Accel, Config, VmmConfig};
use lobster_core::tenant::openclaw::{
    config_get_request, config_set_request, devices_request, DevicesOp, RESTART_GRACE,
};
use lobster_core::tenant::ExecRequest;
use lobster_core::vmm::qemu::{QemuSettings, QemuVmm};
use lobster_core::vmm::{Vm, Vmm};
use lobster_testkit::images;
use lobster_testkit::netns::{require, Netns};
use lobster_testkit::poll::until_async;
use lobster_testkit::vm::{nic, vm_config};
use lobster_testkit::Evidence;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST_IP: &str = "10.77.0.1";
const GUEST_IP: &str = "10.77.0.2";
const GUEST_MAC: &str = "06:00:0a:4d:00:02";
const BOOT_BOUND: Duration = Duration::from_secs(90);

// --- prerequisites ---------------------------------------------------------

fn require_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(found, "missing {tool} on PATH (apt-get install {package})");
}

fn require_image(name: &str, build: &str) -> PathBuf {
    images::require(name, &format!("run guest/images/build.sh {build}"))
}

fn sh(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// Fails the test unless `e2fsck -fn` finds `disk` clean.
fn assert_clean(disk: &Path) {
    let fsck = Command::new("e2fsck")
        .args(["-fn"])
        .arg(disk)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "tenant disk not clean after shutdown:\n{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
}

// --- the test's network namespace -------------------------------------------

/// A network namespace with `tap0` (host side of the guest's /30).
struct GuestNetns(Netns);

impl GuestNetns {
    fn create() -> GuestNetns {
        require(&["ip"]);
        let ns = Netns::unique("lobt2-");
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&["tuntap", "add", "dev", "tap0", "mode", "tap"]);
        ns.ip(&["addr", "add", &format!("{HOST_IP}/30"), "dev", "tap0"]);
        ns.ip(&["link", "set", "tap0", "up"]);
        // A permanent neighbour entry saves the guest's first ARP round trip.
        ns.ip(&[
            "neigh",
            "add",
            GUEST_IP,
            "lladdr",
            GUEST_MAC,
            "dev",
            "tap0",
            "nud",
            "permanent",
        ]);
        GuestNetns(ns)
    }

    /// Runs `body` on a thread inside the namespace, on a current-thread
    /// runtime; re-raises its panic.
    fn run<F, Fut>(&self, body: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let path = self.0.path();
        let handle = std::thread::spawn(move || {
            let ns =
                std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("entering the test netns");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(body());
        });
        if let Err(panic) = handle.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

// --- guests --------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Minimal,
    Full,
}

/// A tenant's files: its disk (from the overlay template, with a token) and
/// the VM's working directory. Outlives single boots.
struct Tenant {
    dir: tempfile::TempDir,
    disk: PathBuf,
    token: String,
    variant: Variant,
}

impl Tenant {
    async fn new(variant: Variant) -> Tenant {
        require_tool("debugfs", "e2fsprogs");
        let template = require_image("overlay-template.ext4", "minimal");
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("tenant.ext4");
        sh(
            "cp",
            &[
                "--sparse=always",
                template.to_str().unwrap(),
                disk.to_str().unwrap(),
            ],
        );
        let token = generate_token().unwrap();
        write_token(&disk, &token)
            .await
            .expect("writing the agent token onto the tenant disk");
        Tenant {
            dir,
            disk,
            token,
            variant,
        }
    }

    fn base(&self) -> PathBuf {
        match self.variant {
            Variant::Minimal => require_image("rootfs-minimal.ext4", "minimal"),
            Variant::Full => require_image("rootfs-full.ext4", "full"),
        }
    }

    /// Boots the tenant and waits for its agent's health answer.
    async fn boot(&self, boot: u32) -> Guest {
        let started = Instant::now();
        let guest = self.launch(boot).await;
        let health = guest.agent.wait_ready(BOOT_BOUND).await;
        if let Err(e) = &health {
            panic!("the agent did not answer health within {BOOT_BOUND:?}: {e}");
        }
        eprintln!(
            "boot {boot}: agent answered health {:.1}s after launch",
            started.elapsed().as_secs_f64()
        );
        guest
    }

    /// Boots the tenant with a workload that only sleeps.
    async fn boot_idle(&self) -> Guest {
        let guest = self.boot(1).await;
        guest
            .agent
            .configure(shell("exec sleep 10000", None), true)
            .await
            .unwrap();
        guest
    }

    /// Starts the VM (inside the current netns thread) without waiting for the guest.
    async fn launch(&self, boot: u32) -> Guest {
        require_tool("qemu-system-x86_64", "qemu-system-x86");
        let kernel = require_image("kernel/vmlinuz", "minimal");
        let initrd = require_image("initramfs.cpio.gz", "minimal");
        let net = GuestNetwork {
            address: GUEST_IP.parse().unwrap(),
            prefix: 30,
            gateway: HOST_IP.parse().unwrap(),
            dns: None,
            agent_port: 52,
            health_port: 53,
        };
        let memory_mib = if self.variant == Variant::Full {
            1536
        } else {
            256
        };
        let run = self.dir.path().join(format!("boot{boot}"));
        let mut config = vm_config(&run, &format!("t2-boot{boot}"), kernel.clone());
        config.initrd = Some(initrd);
        config.boot_args = format!("quiet {}", net.kernel_args());
        config.drives[0].path = self.base();
        config.drives[1].path = self.disk.clone();
        config.nic = Some(nic("tap0", GUEST_MAC));
        config.vcpus = if self.variant == Variant::Full { 2 } else { 1 };
        config.memory_mib = memory_mib;
        config.paths.console_log_max_bytes = 8 << 20;
        let mut vmm_config = VmmConfig::default();
        vmm_config.qemu.binary = PathBuf::from("qemu-system-x86_64");
        vmm_config.qemu.accel = match std::env::var("LOBSTER_TEST_ACCEL").as_deref() {
            Ok("kvm") => Accel::Kvm,
            Ok("auto") => Accel::Auto,
            _ => Accel::Tcg,
        };
        vmm_config.ready_timeout_ms = 30_000;
        let vmm = QemuVmm::new(QemuSettings::from_config(&vmm_config, &kernel));
        let mut evidence = Evidence::new(&config.paths.console_log);
        let vm = vmm.launch(&config).await.expect("launching the guest");
        evidence.watch(vm.identity());
        Guest {
            vm,
            evidence,
            agent: Agent::new(
                format!("{GUEST_IP}:52").parse().unwrap(),
                format!("{GUEST_IP}:53").parse().unwrap(),
                self.token.clone(),
            ),
        }
    }
}

/// A booted guest. Dropping it kills the VMM (printing the console first if
/// the test is failing).
struct Guest {
    vm: Box<dyn Vm>,
    evidence: Evidence,
    agent: Agent,
}

impl Guest {
    /// Everything the guest printed on its console so far.
    fn console(&self) -> String {
        self.evidence.console().read_all()
    }

    /// Asks the agent to power off and waits for the VMM to exit.
    async fn power_off(&self) {
        self.agent.shutdown(false).await.expect("shutdown request");
        let exit = self.vm.process().wait_exit(Duration::from_secs(60)).await;
        assert!(exit.is_some(), "the guest did not power off within 60 s");
    }
}

fn shell(script: &str, port: Option<u16>) -> WorkloadSpec {
    WorkloadSpec {
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: Default::default(),
        cwd: None,
        openclaw: None,
        restart: RestartPolicy::Always,
        port,
    }
}

/// `GET path` over plain HTTP/1.0; the status line and the body (≤ 1 MiB).
async fn http_get(addr: &str, path: &str) -> std::io::Result<(String, String)> {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        (&mut s).take(1 << 20).read_to_end(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text.lines().next().unwrap_or("").to_owned();
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "http get timed out",
            ))
        })
}

async fn workload_log_has(agent: &Agent, needle: &str) -> Option<()> {
    let tail = agent.logs(LogSource::Workload, 500).await.ok()?;
    tail.lines.iter().any(|l| l.contains(needle)).then_some(())
}

// --- tests -------------------------------------------------------------------------

#[test]
#[ignore = "t2: needs root, qemu and images"]
fn minimal_guest_agent_answers_health_hello_and_stats() {
    let ns = GuestNetns::create();
    ns.run(|| async {
        let tenant = Tenant::new(Variant::Minimal).await;
        let guest = tenant.boot(1).await;
        let hello = guest.agent.hello().await.unwrap();
        assert_eq!(hello.protocol, lobster_agent_proto::PROTOCOL_VERSION);
        let health = guest.agent.health().await.unwrap();
        assert_eq!(health.workload, WorkloadState::Unconfigured);
        let stats = guest.agent.stats().await.unwrap();
        assert!(stats.memory.total_kib > 100_000, "{stats:?}");
        assert!(stats.connections.established >= 1, "{stats:?}");
        let wrong = Agent::new(
            guest.agent.rpc_addr(),
            format!("{GUEST_IP}:53").parse().unwrap(),
            "wrong",
        );
        assert!(
            wrong.health().await.is_err(),
            "a wrong token must be refused by the guest"
        );
        let held = guest
            .agent
            .hold_acquire("t2", Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(held.id, "t2");
        assert_eq!(guest.agent.stats().await.unwrap().holds, 1);
    });
}

#[test]
#[ignore = "t2: needs root, qemu and images"]
fn injected_secret_reaches_a_workload_serving_http_over_the_tenant_network() {
    let ns = GuestNetns::create();
    ns.run(|| async {
        let tenant = Tenant::new(Variant::Minimal).await;
        let guest = tenant.boot(1).await;
        let secret = "sk-t2-secret-7f3a";
        guest
            .agent
            .inject_secrets(
                [("LOBSTER_TEST_SECRET".to_string(), secret.to_string())].into(),
                false,
            )
            .await
            .unwrap();
        let script =
            "mkdir -p /srv/www && printf '%s' \"$LOBSTER_TEST_SECRET\" >/srv/www/secret.txt \
                      && echo serving && exec busybox httpd -f -v -p 8080 -h /srv/www";
        let status = guest
            .agent
            .configure(shell(script, Some(8080)), true)
            .await
            .unwrap();
        assert_eq!(status.state, WorkloadState::Running);
        let addr = format!("{GUEST_IP}:8080");
        let (line, body) = until_async(
            "the workload's HTTP answer",
            Duration::from_secs(30),
            || async {
                http_get(&addr, "/secret.txt")
                    .await
                    .ok()
                    .filter(|(l, _)| l.contains("200"))
            },
        )
        .await;
        assert!(line.starts_with("HTTP/1."), "{line}");
        assert_eq!(
            body, secret,
            "the secret reached the workload's environment"
        );
        let secrets_on_disk = guest.agent.logs(LogSource::Agent, 1000).await.unwrap();
        assert!(
            secrets_on_disk.lines.iter().all(|l| !l.contains(secret)),
            "secret in the agent log"
        );
    });
}

#[test]
#[ignore = "t2: needs root, qemu and images"]
fn guest_logs_are_readable_and_followable() {
    let ns = GuestNetns::create();
    ns.run(|| async {
        let tenant = Tenant::new(Variant::Minimal).await;
        let guest = tenant.boot(1).await;
        let script = "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done";
        guest
            .agent
            .configure(shell(script, None), true)
            .await
            .unwrap();
        until_async("tick 3 in the log", Duration::from_secs(30), || {
            workload_log_has(&guest.agent, "tick 3")
        })
        .await;
        let mut follow = guest
            .agent
            .follow_logs(LogSource::Workload, 0)
            .await
            .unwrap();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.len() < 5 && Instant::now() < deadline {
            if let Some(line) = follow.next_line(Duration::from_secs(2)).await.unwrap() {
                seen.push(line);
            }
        }
        assert!(seen.len() >= 5, "followed lines: {seen:?}");
        assert!(seen.iter().all(|l| l.starts_with("tick ")), "{seen:?}");
        let agent_log = guest.agent.logs(LogSource::Agent, 50).await.unwrap();
        assert!(
            agent_log
                .lines
                .iter()
                .any(|l| l.contains("workload: started")),
            "{agent_log:?}"
        );
    });
}

#[test]
#[ignore = "t2: needs root, qemu and images"]
fn shutdown_powers_off_and_leaves_the_tenant_disk_clean() {
    let ns = GuestNetns::create();
    ns.run(|| async {
        let tenant = Tenant::new(Variant::Minimal).await;
        let guest = tenant.boot_idle().await;
        let started = Instant::now();
        guest.power_off().await;
        eprintln!(
            "powered off {:.1}s after the shutdown request",
            started.elapsed().as_secs_f64()
        );
        let console = guest.console();
        assert!(
            console.contains("lobster-init: file systems clean"),
            "console:\n{console}"
        );
        assert_clean(&tenant.disk);
        let state = Command::new("dumpe2fs")
            .args(["-h"])
            .arg(&tenant.disk)
            .output()
            .unwrap();
        let state = String::from_utf8_lossy(&state.stdout);
        assert!(
            state
                .lines()
                .any(|l| l.starts_with("Filesystem state:") && l.ends_with("clean")),
            "{state}"
        );
    });
}

#[test]
#[ignore = "t2: needs root, qemu and images"]
fn the_vmm_power_button_shuts_the_guest_down_cleanly() {
    let ns = GuestNetns::create();
    ns.run(|| async {
        let tenant = Tenant::new(Variant::Minimal).await;
        let guest = tenant.boot_idle().await;
        // QEMU's system_powerdown presses the ACPI power button.
        let outcome = guest.vm.shutdown(Duration::from_secs(30)).await.unwrap();
        let console = guest.console();
        assert!(
            matches!(outcome, lobster_core::vmm::ShutdownOutcome::Graceful(_)),
            "{outcome:?}; console:\n{console}"
        );
        assert!(
            console.contains("lobster-init: ACPI power button pressed"),
            "console:\n{console}"
        );
        assert!(
            console.contains("lobster-init: file systems clean"),
            "console:\n{console}"
        );
        assert_clean(&tenant.disk);
    });
}

#[test]
#[ignore = "t2: needs root, qemu and images"]
fn overlay_writes_survive_a_reboot_and_the_base_image_is_unchanged() {
    let ns = GuestNetns::create();
    ns.run(|| async {
        let tenant = Tenant::new(Variant::Minimal).await;
        let base_before = sha256(&tenant.base());
        {
            let guest = tenant.boot(1).await;
            let script = "echo persisted-on-boot-1 >/root/marker && rm /etc/debian_version && sync && echo wrote && exec sleep 10000";
            guest.agent.configure(shell(script, None), true).await.unwrap();
            until_async("the write", Duration::from_secs(30), || workload_log_has(&guest.agent, "wrote")).await;
            guest.power_off().await;
        }
        {
            let guest = tenant.boot(2).await;
            let status = guest.agent.status().await.unwrap();
            assert_eq!(status.state, WorkloadState::Stopped, "the workload was stopped at shutdown: {status:?}");
            let script = "echo \"boot2: $(cat /root/marker) $(ls /etc/debian_version 2>&1 | tr -d '\\n' | tail -c 25)\"; exec sleep 10000";
            guest.agent.configure(shell(script, None), true).await.unwrap();
            until_async("the boot-2 report", Duration::from_secs(30), || {
                workload_log_has(&guest.agent, "boot2: persisted-on-boot-1")
            })
            .await;
            let logs = guest.agent.logs(LogSource::Workload, 50).await.unwrap();
            let report = logs.lines.iter().find(|l| l.starts_with("boot2:")).unwrap();
            assert!(report.contains("No such file"), "the deletion (whiteout) persisted too: {report}");
            guest.power_off().await;
        }
        assert_eq!(sha256(&tenant.base()), base_before, "the shared base image must not change");
    });
}

#[test]
#[ignore = "t2: needs root, qemu and images"]
fn a_corrupt_tenant_disk_powers_off_with_a_clear_message_instead_of_a_panic() {
    let ns = GuestNetns::create();
    ns.run(|| async {
        let tenant = Tenant::new(Variant::Minimal).await;
        // Zero the primary superblock and the first block groups' metadata.
        sh(
            "dd",
            &[
                "if=/dev/zero",
                &format!("of={}", tenant.disk.display()),
                "bs=4096",
                "count=64",
                "conv=notrunc",
                "status=none",
            ],
        );
        let guest = tenant.launch(1).await;
        let exit = guest.vm.process().wait_exit(BOOT_BOUND).await;
        let console = guest.console();
        assert!(
            exit.is_some(),
            "the guest did not power off; console:\n{console}"
        );
        assert!(
            console.contains(
                "lobster-initramfs: FATAL: tenant disk /dev/vdb has errors e2fsck could not repair"
            ),
            "console:\n{console}"
        );
        assert!(!console.contains("Kernel panic"), "console:\n{console}");
    });
}

#[test]
#[ignore = "t2: needs root, qemu and images"]
fn init_reaps_orphans_and_restarts_a_killed_agent_which_restarts_the_workload() {
    let ns = GuestNetns::create();
    ns.run(|| async {
        let tenant = Tenant::new(Variant::Minimal).await;
        let guest = tenant.boot(1).await;
        // Orphans (children of exited subshells) are reparented to PID 1,
        // which must reap them. On its first run the workload also kills its
        // parent, the agent (/run is tmpfs: the marker lasts this boot only).
        let script = "(sleep 0.2 &); (sleep 0.2 &); (sleep 0.2 &); sleep 2; \
            z=$(cat /proc/[0-9]*/stat 2>/dev/null | grep -c ') Z '); echo \"run $$ zombies=$z\"; \
            if [ ! -e /run/agent-killed ]; then touch /run/agent-killed; kill -9 $PPID; fi; exec sleep 10000";
        let first = guest.agent.configure(shell(script, None), true).await.unwrap();
        let first_pid = first.pid.unwrap();
        // The agent dies ~2 s in; lobster-init restarts it; the new agent
        // kills the old workload group and starts the persisted workload.
        let status = until_async("a new agent with a new workload", Duration::from_secs(60), || async {
            let s = guest.agent.status().await.ok()?;
            (s.state == WorkloadState::Running && s.pid != Some(first_pid)).then_some(s)
        })
        .await;
        let health = guest.agent.health().await.unwrap();
        assert!(health.agent_uptime_ms < health.system_uptime_ms, "{health:?}");
        until_async("the second run's report", Duration::from_secs(30), || async {
            let logs = guest.agent.logs(LogSource::Workload, 100).await.ok()?;
            let runs: Vec<&String> = logs.lines.iter().filter(|l| l.starts_with("run ")).collect();
            (runs.len() >= 2).then(|| {
                assert!(runs.iter().all(|l| l.ends_with("zombies=0")), "zombies left: {runs:?}");
            })
        })
        .await;
        let agent_log = guest.agent.logs(LogSource::Agent, 200).await.unwrap();
        let starts = agent_log.lines.iter().filter(|l| l.contains("serving rpc")).count();
        assert_eq!(starts, 2, "the agent started twice: {:?} (status {status:?})", agent_log.lines);
    });
}

#[test]
#[ignore = "t2: needs root, qemu and images"]
fn full_image_openclaw_gateway_answers_http_on_the_configured_port() {
    let ns = GuestNetns::create();
    ns.run(|| async {
        let tenant = Tenant::new(Variant::Full).await;
        let guest = tenant.boot(1).await;
        let gateway_token = generate_token().unwrap();
        let spec = WorkloadSpec {
            command: Vec::new(), // the default: openclaw gateway
            env: Default::default(),
            cwd: None,
            openclaw: Some(OpenClawSpec {
                port: 9000,
                gateway_token: Secret(gateway_token),
                extra: serde_json::Value::Null,
            }),
            restart: RestartPolicy::Always,
            port: None,
        };
        let started = Instant::now();
        let status = guest.agent.configure(spec, true).await.unwrap();
        assert_eq!(status.command, ["/usr/local/bin/openclaw", "gateway"]);
        let addr = format!("{GUEST_IP}:9000");
        // ~154 s on an idle 2-core host under TCG (DESIGN.md §3), 488 s
        // measured on a busy one. Below nextest's 900 s limit for this test
        // (.config/nextest.toml), so the gateway log is printed on failure.
        let within = Duration::from_secs(840);
        let deadline = Instant::now() + within;
        let answer = loop {
            if let Ok((line, _)) = http_get(&addr, "/").await {
                if line.starts_with("HTTP/1.") {
                    break line;
                }
            }
            let s = guest.agent.status().await.unwrap();
            if Instant::now() >= deadline {
                let logs = guest.agent.logs(LogSource::Workload, 80).await.unwrap();
                panic!(
                    "the gateway did not answer HTTP within {within:?}; status {s:?}; log:\n{}",
                    logs.lines.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        eprintln!(
            "openclaw gateway answered `{answer}` {:.0}s after configure",
            started.elapsed().as_secs_f64()
        );
        let stats = guest.agent.stats().await.unwrap();
        eprintln!("guest stats with the gateway up: {stats:?}");
        assert!(stats.workload_rss_kib.unwrap_or(0) > 50_000, "{stats:?}");
        openclaw_devices_and_config_round_trip(&guest.agent).await;
    });
}

/// Runs `request` on `agent` with stdin closed: (exit status, stdout, stderr).
async fn run_cli(agent: &Agent, request: &ExecRequest) -> (i32, String, String) {
    let (input, mut output) = agent.exec(request.params()).await.unwrap().split();
    input.close_stdin().await.unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        match output.next().await.unwrap() {
            Some(ExecEvent::Stdout(b)) => out.extend_from_slice(&b),
            Some(ExecEvent::Stderr(b)) => err.extend_from_slice(&b),
            Some(ExecEvent::Exit(exit)) => {
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                return (exit_status(&exit), text(&out), text(&err));
            }
            None => panic!("exec session ended without an exit"),
        }
    }
}

/// The real OpenClaw CLI through exec, exactly as `Host::devices` and
/// `Host::config_set`/`config_get` build it (this test has no tenant
/// record, so it runs their requests on the guest's agent): `devices list
/// --json` answers the two arrays; a key set, the gateway restarted with a
/// new pid, and the key read back (the agent keeps user keys across
/// gateway starts).
async fn openclaw_devices_and_config_round_trip(agent: &Agent) {
    let mut config = Config::default();
    config.network.gateway_port = 9000; // the OpenClawSpec port above
    let list = devices_request(&config, &DevicesOp::List).unwrap();
    let started = Instant::now();
    // The CLI reaches the gateway's WebSocket side, which may come up
    // after HTTP; a cold CLI start under TCG is slow.
    let deadline = started + Duration::from_secs(300);
    let listed: serde_json::Value = loop {
        let (status, stdout, stderr) = run_cli(agent, &list).await;
        if status == 0 {
            break serde_json::from_str(&stdout)
                .unwrap_or_else(|e| panic!("devices list --json: {e}: {stdout}"));
        }
        assert!(
            Instant::now() < deadline,
            "devices list never succeeded: status {status}\n{stdout}\n{stderr}"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    eprintln!(
        "openclaw devices list --json after {:?}: {listed}",
        started.elapsed()
    );
    assert!(
        listed["pending"].is_array() && listed["paired"].is_array(),
        "{listed}"
    );

    let key = "agents.defaults.heartbeat.every";
    let set = config_set_request(&config, key, "2h").unwrap();
    // Under TCG a cold `openclaw config set` has run past its 300 s bound
    // (124) while the gateway's SQLite was busy; setting the same value
    // again is idempotent, so one more try is the test's, not the product's.
    // The first try may have written the value before it was cut off: then
    // the second says "No change", and the read-back below still checks it.
    let (mut status, mut stdout, mut stderr) = run_cli(agent, &set).await;
    let retried = status == 124;
    if retried {
        eprintln!("openclaw config set timed out once under TCG; trying again");
        (status, stdout, stderr) = run_cli(agent, &set).await;
    }
    assert_eq!(status, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(key) || (retried && stdout.contains("No change")),
        "{stdout}"
    );
    let before = agent.status().await.unwrap().pid;
    agent.restart(RESTART_GRACE).await.unwrap();
    let after = agent.status().await.unwrap().pid;
    assert!(
        after.is_some() && after != before,
        "{before:?} -> {after:?}"
    );
    let get = config_get_request(&config, key).unwrap();
    let (status, stdout, stderr) = run_cli(agent, &get).await;
    assert_eq!(status, 0, "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "2h");
    eprintln!(
        "openclaw devices and config round trip: {:?}",
        started.elapsed()
    );
}
