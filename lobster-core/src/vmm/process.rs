//! Supervision of one VMM process through a pidfd.
//!
//! A VMM is started in its own session and process group, with its stdout
//! and stderr piped to the log keeper of the VM's [`ConsoleLog`] (which
//! keeps the file under its cap whether or not a lobster process runs). Its identity is the pid
//! plus the start time from `/proc/<pid>/stat`, which the tenant registry
//! stores so a later process can [`VmProcess::attach`] and be sure it found
//! the same process, not a reused pid. Dropping a `VmProcess` never kills
//! the VM (VMs outlive the CLI); a detached task reaps it (and the log
//! keeper, once it has written the last output) when it exits.

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

/// How long an exited VMM's log keeper may take to write the last output
/// before the exit is reported (the error carries the log's tail).
const KEEPER_DRAIN: Duration = Duration::from_secs(5);

/// What identifies a VMM process across orchestrator restarts: pid, start
/// time and the boot it runs in. Pid and start time repeat across reboots
/// (boots are deterministic enough that an early pid can come back with the
/// same start time), so an identity recorded in another boot never names a
/// live process.
///
/// Records written before the boot id existed read back with `boot_id:
/// None` and are treated conservatively as from another boot: never alive,
/// never attached to, never signalled. A VMM they name is still found and
/// stopped by its control socket ([`super::stop_recorded`]); a `running`
/// tenant recorded so is restarted once by its health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VmIdentity {
    /// Process id.
    pub pid: i32,
    /// Start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    pub start_time: u64,
    /// The boot it was recorded in (`None` in records from before boot ids).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub boot_id: Option<BootId>,
}

impl VmIdentity {
    /// The identity of process `pid` as it runs now.
    pub fn of(pid: i32) -> std::io::Result<VmIdentity> {
        Ok(VmIdentity {
            pid,
            start_time: read_start_time(pid)?,
            boot_id: Some(BootId::current()?),
        })
    }

    /// Whether this identity was recorded in the running boot.
    pub fn in_this_boot(self) -> bool {
        self.boot_id.is_some() && BootId::current().ok() == self.boot_id
    }

    /// Whether the process this names still runs (same boot, pid and start
    /// time match, and it is not a zombie waiting to be reaped).
    pub fn is_alive(self) -> bool {
        let zombie = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|stat| {
                let rest = &stat[stat.rfind(')')? + 1..];
                rest.split_whitespace().next().map(|state| state == "Z")
            })
            .unwrap_or(false);
        self.in_this_boot()
            && !zombie
            && read_start_time(self.pid).is_ok_and(|t| t == self.start_time)
    }
}

/// The kernel's random id of one boot (`/proc/sys/kernel/random/boot_id`),
/// serialized as its usual hyphenated hex form.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BootId(u128);

/// Where the kernel publishes the id of the running boot.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

impl BootId {
    /// The running boot's id (read once per process: it cannot change).
    pub fn current() -> std::io::Result<BootId> {
        static CURRENT: std::sync::OnceLock<Option<BootId>> = std::sync::OnceLock::new();
        CURRENT
            .get_or_init(|| {
                std::fs::read_to_string(BOOT_ID_PATH)
                    .ok()
                    .and_then(|s| s.parse().ok())
            })
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("cannot read the boot id from {BOOT_ID_PATH}"),
                )
            })
    }
}

impl std::str::FromStr for BootId {
    type Err = &'static str;

    /// 32 hex digits, hyphens anywhere (the kernel writes 8-4-4-4-12).
    fn from_str(s: &str) -> std::result::Result<BootId, Self::Err> {
        let hex: String = s.trim().chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("a boot id is 32 hex digits");
        }
        u128::from_str_radix(&hex, 16)
            .map(BootId)
            .map_err(|_| "a boot id is 32 hex digits")
    }
}

impl std::fmt::Display for BootId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = format!("{:032x}", self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
}

impl std::fmt::Debug for BootId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BootId({self})")
    }
}

impl Serialize for BootId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BootId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<BootId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom(format!("malformed boot id `{s}`")))
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
    /// stdout+stderr piped to `console`'s log keeper. Must run inside a
    /// tokio runtime.
    pub fn spawn(vm_id: &str, command: Command, console: ConsoleLog) -> Result<VmProcess> {
        Self::spawn_confined(vm_id, command, console, None)
    }

    /// [`VmProcess::spawn`], the child confined by `confinement` (its
    /// cgroup, jail root and uid; see lobster's `sys::confine`) before it
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
        let (out, keeper) = console.start_keeper().map_err(io_err(format!(
            "cannot start the log keeper of {}",
            console.path().display()
        )))?;
        let keeper = pidfd::pidfd_open(keeper).map_err(io_err(format!("pidfd_open({keeper})")))?;
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
        let spawned = command.spawn();
        // Only the VMM holds the pipe now: the keeper ends with it (or
        // at once, if the VMM never started).
        drop(command);
        let child = spawned.map_err(|source| VmmError::Spawn {
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
        let boot_id = Some(BootId::current().map_err(io_err("cannot identify the boot".into()))?);
        let identity = VmIdentity {
            pid,
            start_time,
            boot_id,
        };
        Self::supervise(vm_id, identity, fd, Some(keeper), console)
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
        // Recorded in another boot (or before boot ids): whatever runs
        // under that pid now is not it.
        if !identity.in_this_boot() {
            return Err(not_running());
        }
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
        Self::supervise(vm_id, identity, fd, None, console)
    }

    /// Watches the VMM (and `keeper`, the log keeper this process started).
    fn supervise(
        vm_id: &str,
        identity: VmIdentity,
        fd: OwnedFd,
        keeper: Option<OwnedFd>,
        console: ConsoleLog,
    ) -> Result<VmProcess> {
        let pidfd = Arc::new(pidfd::async_pidfd(fd).map_err(|source| VmmError::Io {
            context: format!("cannot register pidfd of pid {}", identity.pid),
            source,
        })?);
        let (tx, rx) = watch::channel(None);
        let keeper = match keeper {
            Some(fd) => Some(pidfd::async_pidfd(fd).map_err(|source| VmmError::Io {
                context: format!("cannot register the log keeper of pid {}", identity.pid),
                source,
            })?),
            None => None,
        };
        tokio::spawn(watch_exit(vm_id.to_string(), pidfd.clone(), keeper, tx));
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
    keeper: Option<AsyncFd<OwnedFd>>,
    tx: watch::Sender<Option<ExitStatus>>,
) {
    if let Ok(mut guard) = pidfd.readable().await {
        guard.retain_ready();
    }
    let status = reap(&pidfd).await;
    tracing::info!(vm = %vm_id, %status, "vmm process exited");
    if let Some(keeper) = keeper {
        // The keeper ends once it has written the VMM's last output.
        match tokio::time::timeout(KEEPER_DRAIN, keeper.readable()).await {
            Ok(_) => {
                reap(&keeper).await;
            }
            Err(_) => tracing::warn!(vm = %vm_id, "log keeper still running after the vmm exited"),
        }
    }
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

    /// A live process (this test) under another boot's id.
    fn from_another_boot() -> VmIdentity {
        let me = VmIdentity::of(std::process::id() as i32).unwrap();
        let BootId(id) = me.boot_id.unwrap();
        VmIdentity {
            boot_id: Some(BootId(id ^ 1)),
            ..me
        }
    }

    #[test]
    fn the_boot_id_round_trips_in_the_kernel_s_form() {
        let text = std::fs::read_to_string(BOOT_ID_PATH).unwrap();
        let id: BootId = text.parse().unwrap();
        assert_eq!(id.to_string(), text.trim());
        assert_eq!(BootId::current().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", text.trim()));
        assert!("1234".parse::<BootId>().is_err());
        assert!("zz".repeat(16).parse::<BootId>().is_err());
    }

    #[test]
    fn an_identity_from_another_boot_is_never_alive() {
        let me = VmIdentity::of(std::process::id() as i32).unwrap();
        assert!(me.is_alive(), "{me:?}");
        let other = from_another_boot();
        assert_eq!((other.pid, other.start_time), (me.pid, me.start_time));
        assert!(!other.is_alive());
    }

    #[test]
    fn a_record_without_a_boot_id_still_reads_and_is_never_alive() {
        let me = VmIdentity::of(std::process::id() as i32).unwrap();
        let old = format!(r#"{{"pid":{},"start_time":{}}}"#, me.pid, me.start_time);
        let legacy: VmIdentity = serde_json::from_str(&old).unwrap();
        assert_eq!(legacy.boot_id, None);
        assert!(!legacy.is_alive());
        let new: VmIdentity = serde_json::from_str(&serde_json::to_string(&me).unwrap()).unwrap();
        assert_eq!(new, me);
    }

    #[tokio::test]
    async fn attach_refuses_an_identity_from_another_boot_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let console = ConsoleLog::new(dir.path().join("c.log"), 1 << 20);
        let mut cmd = Command::new("sleep");
        cmd.arg("60");
        let p = VmProcess::spawn("vm-b", cmd, console.clone()).unwrap();
        let id = p.identity();
        assert_eq!(id.boot_id, Some(BootId::current().unwrap()));
        for wrong in [
            VmIdentity {
                boot_id: Some(BootId(id.boot_id.unwrap().0 ^ 1)),
                ..id
            },
            VmIdentity {
                boot_id: None,
                ..id
            },
        ] {
            let err = VmProcess::attach("vm-b", wrong, console.clone()).unwrap_err();
            assert!(matches!(err, VmmError::NotRunning { .. }), "{err}");
        }
        VmProcess::attach("vm-b", id, console.clone()).unwrap();
        p.kill(Duration::from_secs(10)).await.unwrap();
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

    #[test]
    fn the_console_log_stays_within_its_cap_with_no_supervisor_left() {
        let dir = tempfile::tempdir().unwrap();
        let console = ConsoleLog::new(dir.path().join("c.log"), 65_536);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut cmd = Command::new("sh");
        // 4 MiB of output once nothing of ours is left, then a last line.
        cmd.args([
            "-c",
            "sleep 1; yes 'console output line' | head -c 4194304; echo; echo the-last-line",
        ]);
        let p = runtime
            .block_on(async { VmProcess::spawn("vm-t", cmd, console.clone()) })
            .unwrap();
        let pid = p.identity().pid;
        drop(p);
        drop(runtime); // the supervising task is gone
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut largest = 0;
        while !console.read_all().ends_with("the-last-line\n") {
            largest = largest.max(std::fs::metadata(console.path()).unwrap().len());
            assert!(
                std::time::Instant::now() < deadline,
                "no last line: {largest} bytes"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let size = std::fs::metadata(console.path()).unwrap().len();
        eprintln!("4 MiB written, log at most {largest} bytes while written, {size} at the end");
        assert!(size <= 65_536 && largest <= 65_536, "{size} / {largest}");
        assert!(console.read_all().contains("console output line\n"));
        // The VMM is reaped by nobody here; it must at least have ended.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(stat.is_empty() || stat.contains(") Z "), "{stat}");
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
            start_time: id.start_time + 1,
            ..id
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
