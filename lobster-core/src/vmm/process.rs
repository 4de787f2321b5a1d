//! Supervision of one VMM process through a pidfd.
//!
//! A VMM is started in its own session and process group, with its stdout
//! and stderr appended to the VM's [`ConsoleLog`]. Its identity is the pid
//! plus the start time from `/proc/<pid>/stat`, which the tenant registry
//! stores so a later process can [`VmProcess::attach`] and be sure it found
//! the same process, not a reused pid. Dropping a `VmProcess` never kills
//! the VM (VMs outlive the CLI); a detached task reaps it when it exits and
//! keeps its console log under the cap meanwhile.

use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use super::console::ConsoleLog;
use super::{Result, VmmError};
use crate::base::NOTIFY_SOCKET;
use crate::sys::confine::{confine_on_exec, Confinement};
use crate::sys::pidfd::{self, Reaped};

/// How often the supervisor trims the console log while the VM runs.
const LOG_CAP_INTERVAL: Duration = Duration::from_secs(1);

/// What identifies a VMM process across orchestrator restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmIdentity {
    /// Process id.
    pub pid: i32,
    /// Start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    pub start_time: u64,
}

impl VmIdentity {
    /// The identity of process `pid` as it runs now.
    pub fn of(pid: i32) -> std::io::Result<VmIdentity> {
        Ok(VmIdentity {
            pid,
            start_time: read_start_time(pid)?,
        })
    }

    /// Whether the process this names still runs (pid and start time match,
    /// and it is not a zombie waiting to be reaped).
    pub fn is_alive(self) -> bool {
        let zombie = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|stat| {
                let rest = &stat[stat.rfind(')')? + 1..];
                rest.split_whitespace().next().map(|state| state == "Z")
            })
            .unwrap_or(false);
        !zombie && read_start_time(self.pid).is_ok_and(|t| t == self.start_time)
    }
}

/// How a VMM process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// Ended, but it was not our child, so its status is not known.
    Unknown,
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
            ExitStatus::Unknown => f.write_str("exit status unknown (not our child)"),
        }
    }
}

/// A supervised VMM process.
#[derive(Debug, Clone)]
pub struct VmProcess {
    vm_id: String,
    identity: VmIdentity,
    pidfd: Arc<AsyncFd<OwnedFd>>,
    exit: watch::Receiver<Option<ExitStatus>>,
    console: ConsoleLog,
}

impl VmProcess {
    /// Starts `command` in a new session with stdin from /dev/null and
    /// stdout+stderr appended to `console`. Must run inside a tokio runtime.
    pub fn spawn(vm_id: &str, command: Command, console: ConsoleLog) -> Result<VmProcess> {
        Self::spawn_confined(vm_id, command, console, None)
    }

    /// [`VmProcess::spawn`], the child confined by `confinement` (its
    /// cgroup, jail root and uid; see [`crate::sys::confine`]) before it
    /// executes: no instruction of the VMM runs outside it.
    pub fn spawn_confined(
        vm_id: &str,
        mut command: Command,
        console: ConsoleLog,
        confinement: Option<&Confinement>,
    ) -> Result<VmProcess> {
        // The watchdog's readiness socket is for it alone (systemd's rule:
        // a notifying daemon's children must not inherit it).
        command.env_remove(NOTIFY_SOCKET);
        let binary = std::path::PathBuf::from(command.get_program());
        let io_err = |context: String| {
            move |source| VmmError::Io {
                context: context.clone(),
                source,
            }
        };
        let out = console.open_for_vmm().map_err(io_err(format!(
            "cannot open console log {}",
            console.path().display()
        )))?;
        let err = out
            .try_clone()
            .map_err(io_err("cannot duplicate console log fd".into()))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        pidfd::new_session_on_exec(&mut command);
        if let Some(confinement) = confinement {
            confine_on_exec(&mut command, confinement)
                .map_err(io_err(format!("vm {vm_id}: cannot confine the vmm")))?;
        }
        let child = command.spawn().map_err(|source| VmmError::Spawn {
            vm: vm_id.to_string(),
            binary: binary.clone(),
            source,
        })?;
        let pid = i32::try_from(child.id()).expect("pid fits i32");
        // The child is not reaped until we say so, so its pid cannot be
        // reused before the pidfd exists.
        let fd = pidfd::pidfd_open(pid).map_err(io_err(format!("pidfd_open({pid})")))?;
        let start_time =
            read_start_time(pid).map_err(io_err(format!("cannot read /proc/{pid}/stat")))?;
        drop(child); // std's Child neither kills nor reaps on drop.
        tracing::debug!(vm = vm_id, pid, binary = %binary.display(), "vmm process started");
        Self::supervise(vm_id, VmIdentity { pid, start_time }, fd, console)
    }

    /// Re-attaches to a VMM started earlier (possibly by another process).
    ///
    /// Fails with [`VmmError::NotRunning`] when no such process runs, and
    /// [`VmmError::IdentityMismatch`] when the pid now belongs to another one.
    pub fn attach(vm_id: &str, identity: VmIdentity, console: ConsoleLog) -> Result<VmProcess> {
        let not_running = || VmmError::NotRunning {
            vm: vm_id.to_string(),
            pid: identity.pid,
        };
        let fd = pidfd::pidfd_open(identity.pid).map_err(|e| match e.raw_os_error() {
            Some(libc::ESRCH) => not_running(),
            _ => VmmError::Io {
                context: format!("pidfd_open({})", identity.pid),
                source: e,
            },
        })?;
        // Checked after the pidfd exists: if it matches now, the pidfd
        // refers to the process we recorded.
        let found = read_start_time(identity.pid).map_err(|_| not_running())?;
        if found != identity.start_time {
            return Err(VmmError::IdentityMismatch {
                vm: vm_id.to_string(),
                pid: identity.pid,
                expected: identity.start_time,
                found,
            });
        }
        Self::supervise(vm_id, identity, fd, console)
    }

    fn supervise(
        vm_id: &str,
        identity: VmIdentity,
        fd: OwnedFd,
        console: ConsoleLog,
    ) -> Result<VmProcess> {
        let pidfd = Arc::new(pidfd::async_pidfd(fd).map_err(|source| VmmError::Io {
            context: format!("cannot register pidfd of pid {}", identity.pid),
            source,
        })?);
        let (tx, rx) = watch::channel(None);
        tokio::spawn(watch_exit(
            vm_id.to_string(),
            pidfd.clone(),
            console.clone(),
            tx,
        ));
        Ok(VmProcess {
            vm_id: vm_id.to_string(),
            identity,
            pidfd,
            exit: rx,
            console,
        })
    }

    /// The VM this process runs.
    pub fn vm_id(&self) -> &str {
        &self.vm_id
    }

    /// Pid and start time, for the registry.
    pub fn identity(&self) -> VmIdentity {
        self.identity
    }

    /// The console log.
    pub fn console(&self) -> &ConsoleLog {
        &self.console
    }

    /// `Some` once the process has ended.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    /// Waits up to `within` for the process to end.
    pub async fn wait_exit(&self, within: Duration) -> Option<ExitStatus> {
        let mut rx = self.exit.clone();
        let result = tokio::time::timeout(within, rx.wait_for(Option::is_some)).await;
        match result {
            Ok(Ok(status)) => *status,
            _ => self.exit_status(),
        }
    }

    /// The error describing this process's death, with the log tail.
    pub fn exited_error(&self, status: ExitStatus) -> VmmError {
        VmmError::Exited {
            vm: self.vm_id.clone(),
            status,
            log_tail: self.console.tail(),
        }
    }

    /// Fails with [`VmmError::Exited`] if the process has ended.
    pub fn check_alive(&self) -> Result<()> {
        match self.exit_status() {
            Some(status) => Err(self.exited_error(status)),
            None => Ok(()),
        }
    }

    /// Sends `signal` to the process (through its pidfd: never to a
    /// reused pid). A process that is already gone is not an error.
    pub fn signal(&self, signal: i32) -> Result<()> {
        match pidfd::pidfd_send_signal(self.pidfd.get_ref(), signal) {
            Err(e) if e.raw_os_error() != Some(libc::ESRCH) => Err(VmmError::Io {
                context: format!(
                    "cannot signal vmm of {} (pid {})",
                    self.vm_id, self.identity.pid
                ),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// SIGKILLs the process and its whole process group, then waits up to
    /// `within` for it to be gone.
    pub async fn kill(&self, within: Duration) -> Result<ExitStatus> {
        if self.exit_status().is_none() {
            // The group id is the leader's pid; the kernel does not reuse a
            // pid while a group of that id exists, and the leader is alive.
            if let Err(e) = pidfd::kill_process_group(self.identity.pid, libc::SIGKILL) {
                tracing::debug!(vm = %self.vm_id, error = %e, "killpg failed; signalling the leader");
            }
            self.signal(libc::SIGKILL)?;
        }
        self.wait_exit(within)
            .await
            .ok_or_else(|| VmmError::Timeout {
                vm: self.vm_id.clone(),
                operation: "waiting for the killed vmm to exit".into(),
                after: within,
            })
    }
}

async fn watch_exit(
    vm_id: String,
    pidfd: Arc<AsyncFd<OwnedFd>>,
    console: ConsoleLog,
    tx: watch::Sender<Option<ExitStatus>>,
) {
    let mut trim = tokio::time::interval(LOG_CAP_INTERVAL);
    loop {
        tokio::select! {
            guard = pidfd.readable() => {
                let Ok(mut guard) = guard else { break };
                guard.retain_ready();
                break;
            }
            _ = trim.tick() => {
                if let Err(e) = console.enforce_cap() {
                    tracing::warn!(vm = %vm_id, error = %e, "cannot trim console log");
                }
            }
        }
    }
    let status = reap(&pidfd).await;
    tracing::info!(vm = %vm_id, %status, "vmm process exited");
    let _ = console.enforce_cap();
    let _ = tx.send(Some(status));
}

async fn reap(pidfd: &AsyncFd<OwnedFd>) -> ExitStatus {
    // The pidfd turns readable when the process exits; the zombie may need
    // a moment before waitid sees it.
    for _ in 0..200 {
        match pidfd::pidfd_try_reap(pidfd.get_ref()) {
            Ok(Some(Reaped::Exited(code))) => return ExitStatus::Code(code),
            Ok(Some(Reaped::Signaled(sig))) => return ExitStatus::Signal(sig),
            Ok(None) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(_) => return ExitStatus::Unknown,
        }
    }
    ExitStatus::Unknown
}

/// Field 22 (`starttime`) of `/proc/<pid>/stat`.
pub fn read_start_time(pid: i32) -> std::io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed stat"))
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // "pid (comm) state ppid ..." — comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_even_with_odd_comm() {
        let stat =
            "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
    }

    #[tokio::test]
    async fn exit_status_and_log_tail_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let console = ConsoleLog::new(dir.path().join("c.log"), 1 << 20);
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo booting; echo broken >&2; exit 3"]);
        let p = VmProcess::spawn("vm-t", cmd, console).unwrap();
        let status = p.wait_exit(Duration::from_secs(10)).await;
        assert_eq!(status, Some(ExitStatus::Code(3)));
        let err = p.check_alive().unwrap_err().to_string();
        assert!(
            err.contains("exit code 3") && err.contains("broken"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_vmm_never_inherits_the_watchdog_readiness_socket() {
        let dir = tempfile::tempdir().unwrap();
        let console = ConsoleLog::new(dir.path().join("c.log"), 1 << 20);
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo \"socket=[${NOTIFY_SOCKET-unset}]\""])
            .env(NOTIFY_SOCKET, "@lobster-ready-test");
        let p = VmProcess::spawn("vm-t", cmd, console.clone()).unwrap();
        assert_eq!(
            p.wait_exit(Duration::from_secs(10)).await,
            Some(ExitStatus::Code(0))
        );
        assert_eq!(console.read_all().trim(), "socket=[unset]");
    }

    #[tokio::test]
    async fn a_dying_guest_cannot_put_terminal_controls_into_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let console = ConsoleLog::new(dir.path().join("c.log"), 1 << 20);
        let mut cmd = Command::new("sh");
        // OSC 52 would set the operator's clipboard when the error is printed.
        cmd.args(["-c", r"printf '\033]52;c;cm0gLXJmIC8=\007bye\n'; exit 1"]);
        let p = VmProcess::spawn("vm-t", cmd, console).unwrap();
        assert_eq!(
            p.wait_exit(Duration::from_secs(10)).await,
            Some(ExitStatus::Code(1))
        );
        let err = p.check_alive().unwrap_err().to_string();
        assert!(err.contains("^[]52;c;") && err.contains("bye"), "{err:?}");
        assert!(!err.contains(['\x1b', '\x07']), "{err:?}");
    }

    #[tokio::test]
    async fn attach_verifies_identity_and_kill_reaches_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let console = ConsoleLog::new(dir.path().join("c.log"), 1 << 20);
        let mut cmd = Command::new("sh");
        // A child in the same group, as a jailer would have.
        cmd.args(["-c", "sleep 60 & echo $! ; wait"]);
        let p = VmProcess::spawn("vm-t", cmd, console.clone()).unwrap();
        let id = p.identity();
        let grandchild: i32 = loop {
            if let Ok(pid) = console.read_all().trim().parse() {
                break pid;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };

        let wrong = VmIdentity {
            pid: id.pid,
            start_time: id.start_time + 1,
        };
        let err = VmProcess::attach("vm-t", wrong, console.clone()).unwrap_err();
        assert!(matches!(err, VmmError::IdentityMismatch { .. }), "{err}");
        let attached = VmProcess::attach("vm-t", id, console.clone()).unwrap();

        let status = p.kill(Duration::from_secs(10)).await.unwrap();
        // Both views watch the same child here; whichever reaps first gets
        // the real status, the other learns only that it ended.
        assert!(
            matches!(
                status,
                ExitStatus::Signal(libc::SIGKILL) | ExitStatus::Unknown
            ),
            "{status:?}"
        );
        assert!(attached.wait_exit(Duration::from_secs(10)).await.is_some());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::path::Path::new(&format!("/proc/{grandchild}")).exists()
            && std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "group member survived"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let err = VmProcess::attach("vm-t", id, console).unwrap_err();
        assert!(matches!(err, VmmError::NotRunning { .. }), "{err}");
    }
}
