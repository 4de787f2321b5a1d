//! The minimal image's OpenClaw CLI stand-in (`guest/images/openclaw-standin.sh`,
//! installed there as `/usr/local/bin/openclaw`), run on the host under
//! dash (the guest's `/bin/sh`) and busybox sh with a private `HOME`: the
//! argv, stdout/stderr split and exit codes lobster relies on, as the real
//! CLI has them (openclaw@2026.9.6). Its gateway (busybox httpd) listens on
//! 127.0.0.1 only (`OPENCLAW_STANDIN_HOST`), on a port free at the start.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

mod common;

use common::until;

const STANDIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../images/openclaw-standin.sh");
/// The shells it must work under.
const SHELLS: &[&[&str]] = &[&["dash"], &["busybox", "sh"]];
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One stand-in installation: a shell, a private home and a gateway port.
struct Standin {
    shell: &'static [&'static str],
    home: tempfile::TempDir,
    port: u16,
}

/// A running stand-in gateway, killed (by its pid) when dropped.
struct Gateway {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Standin {
    fn new(shell: &'static [&'static str]) -> Standin {
        Standin {
            shell,
            home: tempfile::tempdir().unwrap(),
            port: free_port(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.shell[0]);
        cmd.args(&self.shell[1..])
            .arg(STANDIN)
            .args(args)
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", self.home.path())
            .env("OPENCLAW_GATEWAY_PORT", self.port.to_string())
            .env("OPENCLAW_STANDIN_HOST", "127.0.0.1")
            .current_dir(self.home.path())
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs and requires exit code `rc`; returns (stdout, stderr).
    fn expect(&self, rc: i32, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(
            out.status.code(),
            Some(rc),
            "{:?} {args:?}: stdout {stdout:?} stderr {stderr:?}",
            self.shell
        );
        (stdout, stderr)
    }

    fn state(&self) -> PathBuf {
        self.home.path().join(".openclaw")
    }

    /// Starts `openclaw gateway` and waits until it answers HTTP.
    fn gateway(&self) -> Gateway {
        let mut child = self
            .command(&["gateway"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let gateway = Gateway { child, stdout };
        let port = self.port;
        until(
            "the stand-in gateway's HTTP answer",
            Duration::from_secs(10),
            || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
                s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
                let mut answer = String::new();
                s.read_to_string(&mut answer).ok()?;
                answer.ends_with("ok\n").then_some(())
            },
        );
        gateway
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn config_set_and_get_round_trip() {
    for shell in SHELLS {
        let s = Standin::new(shell);
        let key = "agents.defaults.heartbeat.every";
        let (out, err) = s.expect(1, &["config", "get", key]);
        assert_eq!(out, "");
        assert!(
            err.starts_with(&format!("Config path is valid but unset: {key}.")),
            "{err}"
        );
        let (out, _) = s.expect(1, &["config", "get", "--json", key]);
        let failure: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(failure["ok"], false);
        assert_eq!(failure["error"]["type"], "cli_error");

        let (out, _) = s.expect(0, &["config", "set", key, "2h"]);
        assert_eq!(
            out,
            format!("Updated {key}. Restart the gateway to apply.\n")
        );
        assert_eq!(s.expect(0, &["config", "get", key]).0, "2h\n");
        assert_eq!(s.expect(0, &["config", "get", key, "--json"]).0, "\"2h\"\n");
        assert_eq!(s.expect(0, &["config", "set", key, "2h"]).0, "No change\n");
        s.expect(0, &["config", "set", key, "3h"]);
        assert_eq!(s.expect(0, &["config", "get", key]).0, "3h\n");

        // Other keys are kept; JSON keeps numbers and escapes strings.
        s.expect(0, &["config", "set", "logging.level", "debug"]);
        s.expect(0, &["config", "set", "gateway.reload.debounceMs", "250"]);
        s.expect(0, &["config", "set", "ui.seamColor", "a\"b\\c\td"]);
        assert_eq!(s.expect(0, &["config", "get", key]).0, "3h\n");
        assert_eq!(
            s.expect(0, &["config", "get", "--json", "gateway.reload.debounceMs"])
                .0,
            "250\n"
        );
        let json = s.expect(0, &["config", "get", "ui.seamColor", "--json"]).0;
        assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), "a\"b\\c\td");
        assert_eq!(mode(&s.state().join("standin-config")), 0o600);
        assert_eq!(mode(&s.state()), 0o700);
    }
}

#[test]
fn bad_keys_and_values_are_refused_with_rc_1_and_never_evaluated() {
    for shell in SHELLS {
        let s = Standin::new(shell);
        for key in [
            "",
            "a..b",
            ".a",
            "a.",
            "a=b",
            "gateway[\"port\"]",
            "$(touch pwned)",
            "`touch pwned`",
            "a;touch pwned",
            "../../pwned",
        ] {
            let (out, err) = s.expect(1, &["config", "set", key, "1"]);
            assert_eq!(out, "", "{key:?}");
            assert!(
                err.starts_with("Config validation failed"),
                "{key:?}: {err}"
            );
            let (_, err) = s.expect(1, &["config", "get", key]);
            assert!(err.starts_with("Unknown config path"), "{key:?}: {err}");
        }
        for value in ["two\nlines", "esc\u{1b}[2J", "cr\r"] {
            s.expect(1, &["config", "set", "logging.level", value]);
        }
        s.expect(1, &["config", "set", "logging.level"]);
        s.expect(1, &["config", "get"]);
        s.expect(1, &["config", "nosuch"]);
        s.expect(1, &["nosuch"]);
        assert!(!s.state().join("standin-config").exists());
        assert!(!s.home.path().join("pwned").exists());
    }
}

#[test]
fn configure_needs_a_terminal_like_the_real_cli() {
    for shell in SHELLS {
        let s = Standin::new(shell);
        for args in [&["configure"][..], &["config"]] {
            let (out, err) = s.expect(1, args);
            assert_eq!(out, "");
            assert!(
                err.starts_with(
                    "Interactive configuration requires an interactive terminal (TTY)."
                ),
                "{err}"
            );
        }
        assert_eq!(s.expect(0, &["--version"]).0, "OpenClaw 0.0.0-standin\n");
    }
}

#[test]
fn devices_fail_while_the_gateway_is_down() {
    for shell in SHELLS {
        let s = Standin::new(shell);
        let down = format!(
            "Gateway not reachable at ws://127.0.0.1:{} (ECONNREFUSED).",
            s.port
        );
        let (out, err) = s.expect(1, &["devices", "list", "--timeout", "60000"]);
        assert_eq!(out, "");
        assert!(err.starts_with(&down), "{err}");
        let (out, _) = s.expect(1, &["devices", "list", "--timeout", "60000", "--json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"]["message"], down.as_str());
        s.expect(1, &["devices", "approve", "x"]);
        s.expect(1, &["devices", "reject", "x"]);
        s.expect(1, &["devices", "simulate-request", "phone"]);
        // `devices` alone prints its usage and succeeds, as the real CLI does.
        assert!(s
            .expect(0, &["devices"])
            .0
            .starts_with("Usage: openclaw devices"));
        s.expect(1, &["devices", "nosuch"]);
    }
}

#[test]
fn devices_list_approve_and_reject_a_simulated_request() {
    for shell in SHELLS {
        let s = Standin::new(shell);
        s.expect(0, &["config", "set", "logging.level", "debug"]);
        let mut gateway = s.gateway();
        assert!(gateway.line().starts_with(&format!(
            "openclaw stand-in gateway pid {} port {}",
            gateway.child.id(),
            s.port
        )));
        assert_eq!(
            gateway.line(),
            "openclaw stand-in config: logging.level=debug\n"
        );

        let t = ["--timeout", "60000"];
        assert_eq!(
            s.expect(0, &["devices", "list"]).0,
            "No device pairing entries.\n"
        );
        let json = s.expect(0, &["devices", "list", t[0], t[1], "--json"]).0;
        assert_eq!(
            serde_json::from_str::<Value>(&json).unwrap(),
            serde_json::json!({"pending": [], "paired": []})
        );

        let id = s.expect(0, &["devices", "simulate-request", "my phone"]).0;
        let id = id.trim();
        let json = s.expect(0, &["devices", "list", "--json", t[0], t[1]]).0;
        let list: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(list["pending"][0]["requestId"], id);
        assert_eq!(list["pending"][0]["displayName"], "my phone");
        let device = list["pending"][0]["deviceId"].as_str().unwrap().to_owned();

        // Without an id the real CLI only previews: rc 1.
        let (out, err) = s.expect(1, &["devices", "approve"]);
        assert_eq!(out, format!("Selected pending device request {id}\n"));
        assert!(
            err.contains(&format!("openclaw devices approve {id}")),
            "{err}"
        );

        let (out, _) = s.expect(0, &["devices", "approve", id, t[0], t[1]]);
        assert_eq!(out, format!("Approved {device} ({id})\n"));
        let (_, err) = s.expect(1, &["devices", "approve", id, t[0], t[1]]);
        assert!(
            err.starts_with(&format!("No pending device request matches {id}.")),
            "{err}"
        );
        let list: Value =
            serde_json::from_str(&s.expect(0, &["devices", "list", "--json"]).0).unwrap();
        assert_eq!(list["pending"], serde_json::json!([]));
        assert_eq!(list["paired"][0]["deviceId"], device.as_str());

        let id = s.expect(0, &["devices", "simulate-request"]).0;
        let id = id.trim();
        let (out, _) = s.expect(0, &["devices", "reject", id, "--json"]);
        let rejected: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(rejected["requestId"], id);
        let (out, err) = s.expect(1, &["devices", "reject", id]);
        assert_eq!(out, "");
        assert!(err.contains("Reason: unknown requestId"), "{err}");
        let (out, _) = s.expect(1, &["devices", "reject", id, "--json"]);
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["ok"], false);
        for hostile in ["../standin-config", "..", "*", "$(id)"] {
            s.expect(1, &["devices", "approve", hostile]);
            s.expect(1, &["devices", "reject", hostile]);
        }
        s.expect(1, &["devices", "simulate-request", "$(id)"]);
        assert!(s.state().join("standin-config").is_file());

        // A CLI aimed at another port does not reach this gateway.
        let mut other = s.command(&["devices", "list"]);
        other.env("OPENCLAW_GATEWAY_PORT", free_port().to_string());
        assert_eq!(other.output().unwrap().status.code(), Some(1));

        drop(gateway);
        s.expect(1, &["devices", "list"]);
    }
}
