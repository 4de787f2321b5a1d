//! A real terminal for tests: a private tmux server (`tmux -L <socket>`)
//! running one command in one pane. The test reads the screen with
//! `capture-pane`, presses keys with `send-keys`, resizes the window, and
//! checks after the command's exit that it left the terminal as it found it
//! (normal screen, cursor shown, cooked mode).

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::poll;

/// The pane's name in every session.
const PANE: &str = "main";

/// Printed by the pane's shell once the command ended and the modes are
/// printed (see [`Tmux::start_reporting`]).
const MODES_PRINTED: &str = "modes printed";

/// Fails the test (a terminal test never passes silently) when tmux cannot run.
pub fn require() {
    match Command::new("tmux").arg("-V").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("tmux -V failed: {}", text(&out.stderr)),
        Err(e) => panic!("tmux is missing (apt-get install tmux): {e}"),
    }
}

/// A private tmux server with one session, killed on drop.
#[derive(Debug)]
pub struct Tmux {
    socket: String,
    /// How long [`Tmux::wait_for`] waits.
    pub wait: Duration,
    _conf: tempfile::TempDir,
}

impl Tmux {
    /// Starts `command` (a `sh -c` line) in a `cols`x`rows` pane that stays
    /// (dead or alive) until the server is killed.
    pub fn start(name: &str, (cols, rows): (u16, u16), command: &str) -> Tmux {
        let conf = tempfile::tempdir().unwrap();
        let file = conf.path().join("tmux.conf");
        std::fs::write(&file, "set -g remain-on-exit on\nset -g status off\n").unwrap();
        let tmux = Tmux {
            socket: format!("lobster-{name}-{}", std::process::id()),
            wait: Duration::from_secs(20),
            _conf: conf,
        };
        let (cols, rows) = (cols.to_string(), rows.to_string());
        let conf = file.to_str().unwrap();
        let args = [
            "-f",
            conf,
            "new-session",
            "-d",
            "-s",
            PANE,
            "-x",
            &cols,
            "-y",
            &rows,
            command,
        ];
        let out = tmux.run(&args);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            text(&out.stderr)
        );
        tmux
    }

    /// [`Tmux::start`] of `program` and `args` (quoted for `sh`); after it
    /// exits the pane's shell prints `exited <status>` and the terminal's
    /// modes (`stty -a`), then keeps the pane alive (a dead pane has no
    /// cursor to check). See [`Tmux::wait_exit`].
    pub fn start_reporting(name: &str, size: (u16, u16), program: &Path, args: &[&str]) -> Tmux {
        let mut line = quote(program.to_str().unwrap());
        for arg in args {
            line.push(' ');
            line.push_str(&quote(arg));
        }
        let command =
            format!("{line}; echo \"exited $?\"; stty -a; echo '{MODES_PRINTED}'; exec sleep 600");
        Tmux::start(name, size, &command)
    }

    /// Runs `tmux -L <socket> ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("run tmux")
    }

    /// The visible screen of the pane, one string per line.
    pub fn screen(&self) -> Vec<String> {
        self.capture(&[])
    }

    /// The normal screen's history and visible lines.
    pub fn history(&self) -> Vec<String> {
        self.capture(&["-S", "-"])
    }

    fn capture(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["capture-pane", "-p", "-J", "-t", PANE];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        assert!(out.status.success(), "capture-pane: {}", text(&out.stderr));
        text(&out.stdout).lines().map(str::to_owned).collect()
    }

    /// Presses `keys` (tmux key names: `Enter`, `C-c`, or literal text).
    pub fn keys(&self, keys: &str) {
        let out = self.run(&["send-keys", "-t", PANE, keys]);
        assert!(
            out.status.success(),
            "send-keys {keys}: {}",
            text(&out.stderr)
        );
    }

    /// Types `line` literally, then Enter.
    pub fn type_line(&self, line: &str) {
        let out = self.run(&["send-keys", "-t", PANE, "-l", line]);
        assert!(out.status.success(), "send-keys -l: {}", text(&out.stderr));
        self.keys("Enter");
    }

    /// Resizes the window (and so the pane) to `cols`x`rows`.
    pub fn resize(&self, cols: u16, rows: u16) {
        let (cols, rows) = (cols.to_string(), rows.to_string());
        let out = self.run(&["resize-window", "-t", PANE, "-x", &cols, "-y", &rows]);
        assert!(out.status.success(), "resize-window: {}", text(&out.stderr));
    }

    /// A pane format variable (`#{...}`).
    pub fn pane(&self, format: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", PANE, format]);
        assert!(
            out.status.success(),
            "display {format}: {}",
            text(&out.stderr)
        );
        text(&out.stdout).trim().to_owned()
    }

    /// Polls the screen until `ready` holds; panics with the last screen
    /// after [`Tmux::wait`].
    pub fn wait_for(&self, what: &str, ready: impl Fn(&[String]) -> bool) -> Vec<String> {
        poll::within(self.wait, || Some(self.screen()).filter(|s| ready(s))).unwrap_or_else(|| {
            panic!(
                "timed out after {:?} waiting for {what}; the screen:\n{}",
                self.wait,
                self.screen().join("\n")
            )
        })
    }

    /// Waits for the command of [`Tmux::start_reporting`] to end; returns
    /// its exit status after checking that it left the terminal as it
    /// found it: normal screen, cursor shown, cooked mode with echo.
    pub fn wait_exit(&self) -> i32 {
        let done = |lines: Vec<String>| lines.iter().any(|l| l.contains(MODES_PRINTED));
        let exited = poll::within(self.wait, || {
            (done(self.history()) || done(self.screen())).then_some(())
        });
        assert!(
            exited.is_some(),
            "the command did not exit within {:?}; the screen:\n{}",
            self.wait,
            self.screen().join("\n")
        );
        let all = self.history().join("\n");
        let status = all
            .lines()
            .find_map(|l| l.trim().strip_prefix("exited "))
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("no exit status:\n{all}"));
        assert_eq!(
            self.pane("#{alternate_on}"),
            "0",
            "still on the alternate screen:\n{all}"
        );
        assert_eq!(
            self.pane("#{cursor_flag}"),
            "1",
            "cursor left hidden:\n{all}"
        );
        let modes: Vec<&str> = all.split_whitespace().collect();
        assert!(
            modes.contains(&"icanon") && modes.contains(&"echo") && !modes.contains(&"-icanon"),
            "raw mode left on (stty -a after the command):\n{all}"
        );
        status
    }

    /// The pid of the process the pane's shell runs (its only child).
    pub fn command_pid(&self) -> i32 {
        let shell = self.pane("#{pane_pid}");
        let children =
            std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
        let pids: Vec<&str> = children.split_whitespace().collect();
        assert_eq!(pids.len(), 1, "children of the pane's shell: {children:?}");
        pids[0].parse().unwrap()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// `word` single-quoted for `sh`.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
