//! A private tmux server for tests that need a real terminal: start a
//! command in a pane of a given size, read the screen, press keys.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use lobster_testkit::poll;

use super::text;

/// How long a screen may take to show what a test waits for.
pub const WAIT: Duration = Duration::from_secs(20);

/// Fails the test (T1 never passes silently) when tmux cannot run.
pub fn require_tmux() {
    match Command::new("tmux").arg("-V").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("tmux -V failed: {}", text(&out.stderr)),
        Err(e) => panic!("tmux is missing (apt-get install tmux): {e}"),
    }
}

/// A private tmux server (`tmux -L <socket>`), killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn start(name: &str, config: &Path, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: format!("lobster-{name}-{}", std::process::id()),
        };
        let conf = config.to_str().unwrap();
        let out = tmux.run(&[
            "-f",
            conf,
            "new-session",
            "-d",
            "-s",
            "main",
            "-x",
            "160",
            "-y",
            "40",
            command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            text(&out.stderr)
        );
        tmux
    }

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

    /// The normal screen's history and visible lines (tmux scrolls a line
    /// into history when it prints "Pane is dead" at the bottom).
    pub fn history(&self) -> Vec<String> {
        self.capture(&["-S", "-"])
    }

    fn capture(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["capture-pane", "-p", "-J", "-t", "main"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        assert!(out.status.success(), "capture-pane: {}", text(&out.stderr));
        text(&out.stdout).lines().map(str::to_owned).collect()
    }

    pub fn keys(&self, keys: &str) {
        let out = self.run(&["send-keys", "-t", "main", keys]);
        assert!(
            out.status.success(),
            "send-keys {keys}: {}",
            text(&out.stderr)
        );
    }

    /// A pane format variable (`#{...}`).
    pub fn pane(&self, format: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", "main", format]);
        assert!(
            out.status.success(),
            "display {format}: {}",
            text(&out.stderr)
        );
        text(&out.stdout).trim().to_owned()
    }

    /// Polls the screen until `ready` holds; panics with the last screen
    /// after [`WAIT`].
    pub fn wait_for(&self, what: &str, ready: impl Fn(&[String]) -> bool) -> Vec<String> {
        poll::within(WAIT, || Some(self.screen()).filter(|s| ready(s))).unwrap_or_else(|| {
            panic!(
                "timed out after {WAIT:?} waiting for {what}; the screen:\n{}",
                self.screen().join("\n")
            )
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}
