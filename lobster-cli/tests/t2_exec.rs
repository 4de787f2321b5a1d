//! T2: `lobsterd exec` end to end with a real guest (QEMU under TCG, the
//! minimal image), its real agent, TAP and firewall, inside a network
//! namespace the test creates. One guest serves every assertion: exit
//! codes, streams, a 64 MiB stdin, timeouts, environment and user, an
//! interactive shell in a real terminal (tmux), and a suspended tenant
//! woken by exec.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::t2::*;
use lobster_testkit::netns::{in_netns, Ctx};
use lobster_testkit::tmux::{self, Tmux};

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
        let lobster = Lobster::init(1, false);

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
    });
}
