//! `lobster-init`: PID 1 in the guest's real root (after the initramfs has
//! assembled the overlay and configured eth0).
//!
//! It mounts the kernel and tmpfs file systems, starts `lobster-agent` and
//! restarts it with backoff whenever it exits, reaps every orphan, and on
//! SIGTERM/SIGUSR2/SIGPWR (power off) or SIGINT (ctrl-alt-del: reboot) stops
//! all processes (TERM, 5 s, KILL), syncs, remounts the overlay root and the
//! tenant disk read-only so the disk is clean, and then powers off. The
//! ACPI power button (QEMU `system_powerdown`) powers off the same way.

use std::io::Read;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lobster_init::{
    action_for, agent_backoff, find_power_button, is_power_key_press, unmount_plan, Action,
    Unmount, EARLY_MOUNTS, INPUT_EVENT_SIZE,
};
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::reboot::{reboot, set_cad_enabled, RebootMode};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

const AGENT: &str = "/usr/local/bin/lobster-agent";
/// An agent run shorter than this counts as a failure for the backoff.
const AGENT_STABLE: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(5);

fn say(msg: &str) {
    eprintln!("lobster-init: {msg}");
}

fn main() {
    if std::process::id() != 1 {
        say("must run as PID 1 (the guest's init)");
        std::process::exit(2);
    }
    let signals = handled_signals();
    if let Err(e) = signals.thread_block() {
        say(&format!("blocking signals: {e}"));
    }
    let sfd = match SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC) {
        Ok(fd) => fd,
        Err(e) => fatal(&format!("signalfd: {e}")),
    };
    mount_early();
    if let Err(e) = set_cad_enabled(false) {
        say(&format!("disabling ctrl-alt-del reboot: {e}"));
    }
    if let Ok(name) = std::fs::read_to_string("/etc/hostname") {
        let _ = nix::unistd::sethostname(name.trim());
    }
    let action = supervise(&sfd);
    shut_down(action);
}

fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGPWR,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    set
}

fn mount_early() {
    for m in EARLY_MOUNTS {
        // Re-read each time: /proc itself is the first mount.
        let mounted = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        if lobster_init::mount_points(&mounted)
            .iter()
            .any(|p| p == m.target)
        {
            continue;
        }
        let _ = std::fs::create_dir_all(m.target);
        let flags = MsFlags::MS_NOSUID
            | if m.fstype == "devtmpfs" || m.fstype == "devpts" {
                MsFlags::empty()
            } else {
                MsFlags::MS_NODEV
            };
        let data = (!m.data.is_empty()).then_some(m.data);
        if let Err(e) = mount(Some(m.source), m.target, Some(m.fstype), flags, data) {
            say(&format!("mounting {} on {}: {e}", m.fstype, m.target));
        }
    }
}

/// Runs until a shutdown signal; returns what to do.
fn supervise(sfd: &SignalFd) -> Action {
    let mut agent: Option<(Pid, Instant)> = None;
    let mut failures = 0u32;
    let mut restart_at = Some(Instant::now());
    let mut power_button = find_power_button(std::path::Path::new("/sys/class/input"))
        .and_then(|path| std::fs::File::open(&path).ok());
    if power_button.is_none() {
        say("no ACPI power button; power off through the agent or a signal");
    }
    loop {
        if agent.is_none() && restart_at.is_some_and(|t| Instant::now() >= t) {
            restart_at = None;
            match start_agent() {
                Ok(pid) => agent = Some((pid, Instant::now())),
                Err(e) => {
                    say(&format!("starting {AGENT}: {e}"));
                    failures += 1;
                    restart_at = Some(Instant::now() + agent_backoff(failures));
                }
            }
        }
        let timeout = match restart_at {
            Some(t) => PollTimeout::try_from(
                t.saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(60_000) as i32,
            )
            .unwrap_or(PollTimeout::NONE),
            None => PollTimeout::NONE,
        };
        let (signal_ready, button_ready) = {
            let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
            if let Some(button) = power_button.as_ref() {
                fds.push(PollFd::new(button.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => {
                    say(&format!("poll: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), fds.get(1).is_some_and(ready))
        };
        if button_ready {
            let mut event = [0u8; INPUT_EVENT_SIZE];
            match power_button.as_mut().map(|b| b.read_exact(&mut event)) {
                Some(Ok(())) if is_power_key_press(&event) => {
                    say("ACPI power button pressed");
                    return Action::PowerOff;
                }
                Some(Ok(())) => {}
                _ => power_button = None,
            }
        }
        if !signal_ready {
            continue;
        }
        let Ok(Some(info)) = sfd.read_signal() else {
            continue;
        };
        match action_for(info.ssi_signo as i32) {
            Action::Reap => {
                for pid in reap_all() {
                    if let Some((agent_pid, started)) = agent {
                        if pid == agent_pid {
                            agent = None;
                            failures = if started.elapsed() >= AGENT_STABLE {
                                0
                            } else {
                                failures + 1
                            };
                            let delay = agent_backoff(failures);
                            say(&format!(
                                "lobster-agent exited; restarting in {:.1}s",
                                delay.as_secs_f64()
                            ));
                            restart_at = Some(Instant::now() + delay);
                        }
                    }
                }
            }
            Action::Ignore => {}
            shutdown => return shutdown,
        }
    }
}

fn start_agent() -> std::io::Result<Pid> {
    let child = Command::new(AGENT)
        .arg("--guest")
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", "/root")
        .stdin(Stdio::null())
        .spawn()?;
    // Reaped through waitpid(-1) below, never through the Child handle.
    let pid = Pid::from_raw(child.id() as i32);
    drop(child);
    Ok(pid)
}

/// Reaps every exited child; returns their pids.
fn reap_all() -> Vec<Pid> {
    let mut pids = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return pids,
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    pids.push(pid);
                }
            }
        }
    }
}

fn shut_down(action: Action) -> ! {
    let verb = if action == Action::Reboot {
        "reboot"
    } else {
        "power off"
    };
    say(&format!("{verb}: stopping all processes"));
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        reap_all();
        if matches!(
            waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)),
            Err(Errno::ECHILD)
        ) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    std::thread::sleep(Duration::from_millis(100));
    reap_all();
    nix::unistd::sync();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut clean = true;
    for step in unmount_plan(&mounts) {
        match step {
            Unmount::Detach(p) => {
                if let Err(e) = umount2(p.as_str(), MntFlags::MNT_DETACH) {
                    say(&format!("unmounting {p}: {e}"));
                }
            }
            Unmount::ReadOnly(p) => {
                let flags = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                if let Err(e) = mount(None::<&str>, p.as_str(), None::<&str>, flags, None::<&str>) {
                    say(&format!("remounting {p} read-only: {e}"));
                    clean = false;
                }
            }
        }
    }
    nix::unistd::sync();
    say(if clean {
        "file systems clean"
    } else {
        "file systems NOT clean (see above)"
    });
    say(&format!("{verb} now"));
    let mode = if action == Action::Reboot {
        RebootMode::RB_AUTOBOOT
    } else {
        RebootMode::RB_POWER_OFF
    };
    let err = reboot(mode).err();
    fatal(&format!("reboot syscall failed: {err:?}"))
}

/// PID 1 must never exit (that panics the kernel): report and idle.
fn fatal(msg: &str) -> ! {
    say(msg);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
