//! T2: `lobsterd exec` and `cp` end to end with a real guest (QEMU under
//! TCG, the minimal image), its real agent, TAP and firewall, inside a
//! network namespace the test creates. One guest serves every assertion:
//! exit codes, streams, a 64 MiB stdin, timeouts, environment and user,
//! a directory tree copied in and out with its modes and the copy cap, an
//! interactive shell in a real terminal (tmux), and a suspended tenant
//! woken by exec. A second guest runs the minimal image's OpenClaw
//! stand-in as its gateway for `configure` and `devices`.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::t2::*;
use lobster_testkit::netns::{in_netns, Ctx};
use lobster_testkit::tmux::{self, Tmux};
use lobster_testkit::tree::{listing, tree, TREE_BYTES, TREE_ENTRIES};

/// The workload: idles (exec is what is tested).
const WORKLOAD: &str = "exec sleep 100000";

/// `lobsterd exec ARGS` with stdin from `input` (empty when `None`).
fn exec(lobster: &Lobster, args: &[&str], input: Option<&Path>) -> Output {
    let mut command = lobster.command(&[&["exec"], args].concat());
    match input {
        Some(path) => command.stdin(std::fs::File::open(path).unwrap()),
        None => command.stdin(Stdio::null()),
    };
    command.output().unwrap()
}

/// Asserts `lobsterd exec NAME -- ARGV` exits `want`; returns its output.
fn exits(lobster: &Lobster, name: &str, argv: &[&str], want: i32) -> Output {
    let out = exec(lobster, &[&[name, "--"], argv].concat(), None);
    assert_eq!(out.status.code(), Some(want), "{argv:?}: {}", output(&out));
    out
}

/// 64 MiB of deterministic noise (xorshift), in a file.
fn noise(path: &Path, bytes: usize) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..bytes / 8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        file.write_all(&x.to_le_bytes()).unwrap();
    }
    file.flush().unwrap();
}

/// The first word `sha256sum` prints for `out`.
fn digest(out: &[u8]) -> String {
    text(out).split_whitespace().next().unwrap_or("").to_owned()
}

#[test]
#[ignore = "t2: needs root, qemu, caddy, tmux and images"]
fn exec_runs_commands_in_a_real_guest() {
    in_netns("exec_runs_commands_in_a_real_guest", |_ctx: &Ctx| {
        require_t2();
        tmux::require();
        let lobster = Lobster::init(2, false);

        // Bad input, before any guest exists.
        let out = exec(&lobster, &["ghost", "--", "true"], None);
        assert_eq!(out.status.code(), Some(10), "{}", output(&out));
        assert!(output(&out).contains("ghost"), "{}", output(&out));

        let spawned = lobster.spawn_running("x", WORKLOAD, &[]);
        assert!(spawned.status.success(), "spawn: {}", output(&spawned));

        // Exit codes: 0, 1, any, 127 with a message, death by signal.
        let started = Instant::now();
        exits(&lobster, "x", &["true"], 0);
        eprintln!("exec true (CLI process to exit): {:?}", started.elapsed());
        exits(&lobster, "x", &["false"], 1);
        exits(&lobster, "x", &["sh", "-c", "exit 7"], 7);
        let out = exits(&lobster, "x", &["no-such-command"], 127);
        assert!(
            text(&out.stderr).contains("command not found: no-such-command"),
            "{}",
            output(&out)
        );
        exits(&lobster, "x", &["sh", "-c", "kill -KILL $$"], 128 + 9);
        exits(&lobster, "x", &["sh", "-c", "kill -TERM $$"], 128 + 15);

        // stdout and stderr apart.
        let out = exits(
            &lobster,
            "x",
            &["sh", "-c", "echo to-out; echo to-err >&2; echo more-out"],
            0,
        );
        assert_eq!(text(&out.stdout), "to-out\nmore-out\n", "{}", output(&out));
        assert_eq!(text(&out.stderr), "to-err\n", "{}", output(&out));

        // Environment, working directory, user.
        let out = exec(
            &lobster,
            &[
                "-e",
                "GREETING=hello world",
                "-w",
                "/tmp",
                "-u",
                "nobody",
                "x",
                "--",
                "sh",
                "-c",
                "echo \"$GREETING|$(pwd)|$(id -u)|$HOME\"",
            ],
            None,
        );
        assert!(out.status.success(), "{}", output(&out));
        let line = text(&out.stdout);
        assert!(line.starts_with("hello world|/tmp|65534|"), "{line}");

        // 64 MiB of stdin through sha256sum in the guest.
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("noise");
        noise(&data, 64 << 20);
        let host = std::process::Command::new("sha256sum")
            .arg(&data)
            .output()
            .unwrap();
        let started = Instant::now();
        let out = exec(&lobster, &["-i", "x", "--", "sha256sum"], Some(&data));
        let took = started.elapsed();
        assert!(out.status.success(), "{}", output(&out));
        assert_eq!(digest(&out.stdout), digest(&host.stdout), "64 MiB stdin");
        eprintln!(
            "64 MiB stdin through sha256sum in the guest: {took:?} ({:.1} MB/s)",
            64.0 * 1.048_576 / took.as_secs_f64()
        );
        // Without -i the remote stdin is closed at once: cat ends.
        let out = exec(&lobster, &["x", "--", "cat"], Some(&data));
        assert_eq!(out.status.code(), Some(0), "{}", output(&out));
        assert!(out.stdout.is_empty(), "cat got stdin without -i");

        // --timeout ends the remote process (and it is gone after).
        let out = exec(
            &lobster,
            &[
                "--timeout",
                "2",
                "x",
                "--",
                "sh",
                "-c",
                "echo $$ > /tmp/t.pid; exec sleep 300",
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(124), "{}", output(&out));
        exits(
            &lobster,
            "x",
            &["sh", "-c", "! kill -0 $(cat /tmp/t.pid)"],
            0,
        );

        // cp: a tree in and out, the cap, a path outside the guest's files.
        copy_round_trip(&lobster);

        // -t without a terminal: a usage error.
        let out = exec(&lobster, &["-t", "x", "--", "true"], None);
        assert_eq!(out.status.code(), Some(2), "{}", output(&out));
        assert!(output(&out).contains("terminal"), "{}", output(&out));

        // Interactive: a shell on a PTY in a real terminal.
        let config = lobster.config();
        let args = [
            "--config",
            config.to_str().unwrap(),
            "exec",
            "-it",
            "x",
            "--",
            "sh",
        ];
        let mut term = Tmux::start_reporting(
            "exec",
            (100, 30),
            Path::new(env!("CARGO_BIN_EXE_lobsterd")),
            &args,
        );
        term.wait = Duration::from_secs(60);
        // Typed only once the shell prompts (root's `# `), and each answer
        // is a word the typed line itself does not contain.
        let has = |word: &'static str| move |s: &[String]| s.iter().any(|l| l.contains(word));
        term.wait_for("the guest shell's prompt", |s| {
            s.iter().any(|l| l.starts_with('#'))
        });
        term.type_line("echo ready-$((6*7))");
        term.wait_for("the shell's answer", has("ready-42"));
        term.type_line("echo size-$(stty size | tr ' ' x)");
        term.wait_for("the first size", has("size-30x100"));
        term.resize(120, 40);
        term.type_line("echo size-$(stty size | tr ' ' x)");
        term.wait_for("the new size", has("size-40x120"));
        term.type_line("sleep 300");
        std::thread::sleep(Duration::from_secs(2));
        term.keys("C-c");
        term.type_line("echo back-$((1+1))");
        term.wait_for("Ctrl-C to end the sleep", has("back-2"));
        term.type_line("exit 3");
        assert_eq!(term.wait_exit(), 3, "the shell's exit status");
        drop(term);

        // A suspended tenant: exec wakes it and runs.
        let out = lobster.run(&["suspend", "x"]);
        assert!(out.status.success(), "suspend: {}", output(&out));
        assert_eq!(lobster.tenant("x")["status"], "suspended");
        let started = Instant::now();
        let out = exits(&lobster, "x", &["echo", "awake"], 0);
        eprintln!("exec on a suspended tenant: {:?}", started.elapsed());
        assert_eq!(text(&out.stdout), "awake\n");
        assert_eq!(lobster.tenant("x")["status"], "running");

        // OpenClaw's configure and devices, against the minimal image's
        // stand-in run as a second tenant's gateway (the default workload).
        let out = lobster.run(&["--json", "spawn", "oc"]);
        assert!(out.status.success(), "spawn oc: {}", output(&out));
        openclaw_configure_and_devices(&lobster, "oc");
    });
}

fn copy_round_trip(lobster: &Lobster) {
    const TENANT: &str = "x";
    let work = tempfile::tempdir().unwrap();

    let d = tree(work.path());

    let out = lobster.run(&[
        "exec",
        TENANT,
        "--",
        "sh",
        "-c",
        "mkdir -p /root && rm -rf /root/d",
    ]);
    assert!(out.status.success(), "preparing /root: {}", output(&out));

    // Into the guest.
    let dst = format!("{TENANT}:/root/d");
    let out = lobster.run(&["cp", d.to_str().unwrap(), &dst]);
    assert!(out.status.success(), "cp into the guest: {}", output(&out));
    assert_eq!(
        output(&out).trim(),
        format!("copied {TREE_ENTRIES} entries, {TREE_BYTES} bytes"),
        "{}",
        output(&out)
    );
    // The guest sees the modes (stat of the real guest files).
    let out = lobster.run(&[
        "exec",
        TENANT,
        "--",
        "stat",
        "-c",
        "%a %n",
        "/root/d",
        "/root/d/secret",
        "/root/d/run.sh",
    ]);
    assert!(out.status.success(), "{}", output(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "700 /root/d\n600 /root/d/secret\n755 /root/d/run.sh\n"
    );

    // Back out, into a new host directory (placed inside it, as back/d).
    let back = work.path().join("back");
    std::fs::create_dir(&back).unwrap();
    let out = lobster.run(&["--json", "cp", &dst, back.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "cp out of the guest: {}",
        output(&out)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary,
        serde_json::json!({ "entries": TREE_ENTRIES, "bytes": TREE_BYTES })
    );
    assert_eq!(
        listing(&back.join("d")),
        listing(&d),
        "byte- and mode-identical"
    );

    // Past the cap: refused naming the limit, nothing in the guest.
    lobster.edit_config(|c| c["copy"] = serde_json::json!({ "max_bytes": 4096 }));
    let big = work.path().join("big.bin");
    std::fs::write(&big, vec![1u8; 10_000]).unwrap();
    let out = lobster.run(&[
        "cp",
        big.to_str().unwrap(),
        &format!("{TENANT}:/root/big.bin"),
    ]);
    let text = output(&out);
    assert_eq!(out.status.code(), Some(12), "{text}");
    assert!(
        text.contains("4096") && text.contains("nothing was placed"),
        "{text}"
    );
    let out = lobster.run(&["exec", TENANT, "--", "sh", "-c", "ls -A /root"]);
    assert!(out.status.success(), "{}", output(&out));
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !listed.contains("big.bin") && !listed.contains(".lobster-put-"),
        "no partial file or staging directory in the guest: {listed}"
    );
    // And out of the guest: the host's cap holds too.
    let out = lobster.run(&[
        "cp",
        &format!("{TENANT}:/root/d/blob.bin"),
        work.path().join("blob").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(12), "{}", output(&out));
    assert!(
        !work.path().join("blob").exists(),
        "nothing placed on the host"
    );
    lobster.edit_config(|c| {
        c.as_object_mut().unwrap().remove("copy");
    });

    // Into /proc: refused naming the path, before any upgrade.
    let out = lobster.run(&[
        "cp",
        d.join("secret").to_str().unwrap(),
        &format!("{TENANT}:/proc/x"),
    ]);
    let text = output(&out);
    assert_eq!(out.status.code(), Some(12), "{text}");
    assert!(text.contains("/proc/x"), "{text}");
}

/// `configure --set/--get` and `devices` against the minimal image's
/// OpenClaw stand-in, which the tenant `name` runs as its gateway.
fn openclaw_configure_and_devices(lobster: &Lobster, name: &str) {
    use std::time::{Duration, Instant};

    let json = |out: &std::process::Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", output(out));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", output(out)))
    };
    // `devices list` succeeds once the stand-in gateway runs (it checks its
    // pid file); poll with a deadline, never a fixed sleep.
    let deadline = Instant::now() + Duration::from_secs(120);
    let listed = loop {
        let out = lobster.run(&["--json", "devices", name]);
        if out.status.success() {
            break json(&out);
        }
        assert!(
            Instant::now() < deadline,
            "devices list never succeeded: {}",
            output(&out)
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(listed["result"], "list", "{listed}");
    assert_eq!(listed["pending"], serde_json::json!([]), "{listed}");
    assert_eq!(listed["paired"], serde_json::json!([]), "{listed}");

    // A pending request through the stand-in's test hook, then approve it.
    let out = lobster.run(&[
        "exec",
        name,
        "--",
        "openclaw",
        "devices",
        "simulate-request",
        "phone",
    ]);
    assert!(out.status.success(), "{}", output(&out));
    // NOTE: `exec` does not set OPENCLAW_GATEWAY_PORT; the stand-in's default
    // is 9000 = the default network.gateway_port. If the T2 config changes the
    // port, pass `-e OPENCLAW_GATEWAY_PORT=<port>` above.
    let request_id = text(&out.stdout).trim().to_owned();
    let listed = json(&lobster.run(&["--json", "devices", name, "list"]));
    assert_eq!(
        listed["pending"][0]["requestId"],
        request_id.as_str(),
        "{listed}"
    );
    let approved = json(&lobster.run(&["--json", "devices", name, "approve", &request_id]));
    assert_eq!(approved["result"], "approved", "{approved}");
    let again = lobster.run(&["devices", name, "approve", &request_id]);
    assert_eq!(again.status.code(), Some(10), "{}", output(&again));

    // configure --set: written, then the gateway restarts with a new pid.
    let key = "agents.defaults.heartbeat.every";
    let unset = lobster.run(&["configure", name, "--get", key]);
    assert_eq!(unset.status.code(), Some(10), "{}", output(&unset));
    let report = json(&lobster.run(&["--json", "configure", name, "--set", &format!("{key}=2h")]));
    assert_eq!(report["restarted"], true, "{report}");
    assert_eq!(report["keys"], serde_json::json!([key]), "{report}");
    let (before, after) = (report["pid_before"].as_u64(), report["pid_after"].as_u64());
    assert!(
        before.is_some() && after.is_some() && before != after,
        "{report}"
    );

    // --get returns it.
    let got = lobster.run(&["configure", name, "--get", key]);
    assert!(got.status.success(), "{}", output(&got));
    assert_eq!(text(&got.stdout).trim(), "2h");
    let got = json(&lobster.run(&["--json", "configure", name, "--get", key]));
    assert_eq!(got["value"], "2h", "{got}");

    // The restarted gateway started with the value: its log has the new
    // pid's start line followed by the stand-in's config line.
    let logs = lobster.run(&["logs", name, "--lines", "200"]); // workload log (default service)
    assert!(logs.status.success(), "{}", output(&logs));
    let log = text(&logs.stdout);
    let start = log
        .rfind(&format!(
            "openclaw stand-in gateway pid {} ",
            after.unwrap()
        ))
        .unwrap_or_else(|| panic!("no start line of pid {after:?} in\n{log}"));
    assert!(
        log[start..].contains(&format!("openclaw stand-in config: {key}=2h")),
        "{log}"
    );

    // Owned keys are refused before anything runs: exit 12, key named, and
    // the gateway keeps its pid.
    let owned = lobster.run(&["configure", name, "--set", "gateway.port=9001"]);
    assert_eq!(owned.status.code(), Some(12), "{}", output(&owned));
    assert!(
        text(&owned.stderr).contains("gateway.port"),
        "{}",
        output(&owned)
    );
    let still = json(&lobster.run(&["--json", "configure", name, "--set", "logging.level=debug"]));
    assert_eq!(
        still["pid_before"].as_u64(),
        after,
        "the refused set restarted nothing: {still}"
    );
}
