//! The real firewall backend: `iptables-save` to read, one
//! `iptables-restore --noflush` per change to write (atomic per table, and
//! it only touches the chains and rules the batch names).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::rules::{Batch, Ruleset};
use super::FirewallBackend;
use crate::network::NetworkError;

/// Runs the iptables tools (nft or legacy backend, whichever they are).
#[derive(Debug)]
pub struct Iptables {
    save: String,
    restore: String,
    timeout: Duration,
    commands: AtomicUsize,
}

impl Iptables {
    /// Uses `iptables-save` and `iptables-restore` from PATH; each run may
    /// take at most `timeout`.
    pub fn new(timeout: Duration) -> Iptables {
        Iptables::with_commands("iptables-save", "iptables-restore", timeout)
    }

    /// Uses the named tools (e.g. `iptables-legacy-save`).
    pub fn with_commands(save: &str, restore: &str, timeout: Duration) -> Iptables {
        Iptables {
            save: save.into(),
            restore: restore.into(),
            timeout,
            commands: AtomicUsize::new(0),
        }
    }

    /// How many subprocesses this backend has started.
    pub fn commands_run(&self) -> usize {
        self.commands.load(Ordering::Relaxed)
    }

    fn run(
        &self,
        program: &str,
        args: &[&str],
        input: Option<&str>,
    ) -> Result<String, NetworkError> {
        let command = std::iter::once(program)
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        let failed = |stderr: String, source| NetworkError::Firewall {
            command: command.clone(),
            stderr,
            source,
        };
        self.commands.fetch_add(1, Ordering::Relaxed);
        let mut child = Command::new(program)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(String::new(), Some(e)))?;
        // Feed stdin and drain both pipes on threads so no pipe can fill up.
        let writer = child
            .stdin
            .take()
            .zip(input.map(str::to_owned))
            .map(|(mut stdin, text)| std::thread::spawn(move || stdin.write_all(text.as_bytes())));
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            stdout.read_to_string(&mut s).map(|_| s)
        });
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child
                .try_wait()
                .map_err(|e| failed(String::new(), Some(e)))?
            {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(NetworkError::FirewallTimeout {
                        command,
                        timeout_ms: self.timeout.as_millis() as u64,
                    });
                }
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        };
        if let Some(writer) = writer {
            let _ = writer.join();
        }
        let stderr = err.join().unwrap_or_default().trim().to_string();
        let stdout = out
            .join()
            .map_err(|_| failed(stderr.clone(), None))?
            .map_err(|e| failed(stderr.clone(), Some(e)))?;
        if !status.success() {
            return Err(failed(stderr, None));
        }
        Ok(stdout)
    }
}

impl FirewallBackend for Iptables {
    fn read(&self) -> Result<Ruleset, NetworkError> {
        let text = self.run(&self.save, &[], None)?;
        Ruleset::parse_save(&text)
    }

    fn apply(&self, batch: &Batch) -> Result<(), NetworkError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.run(
            &self.restore,
            &["--noflush", "-w", "5"],
            Some(&batch.render()),
        )
        .map(drop)
    }
}
