//! What a failing VM test leaves for the reader, and what it must not leave
//! running.

use std::path::Path;

use lobster_core::vmm::{ConsoleLog, VmIdentity};

/// Prints the guest console when the test fails and, pass or fail, kills
/// every VM handed to [`Evidence::watch`] that still runs (by PID, and only
/// if the PID is still the same process).
#[derive(Debug)]
pub struct Evidence {
    console: ConsoleLog,
    vms: Vec<VmIdentity>,
    groups: Vec<crate::cgroup::MemoryGroup>,
}

impl Evidence {
    /// Evidence of the guest whose console log is `console_log`.
    pub fn new(console_log: &Path) -> Evidence {
        Evidence {
            console: ConsoleLog::new(console_log, 1 << 30),
            vms: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// Kills `vm` on drop unless it is gone by then.
    pub fn watch(&mut self, vm: VmIdentity) {
        self.vms.push(vm);
    }

    /// Kills every process in `group` on drop (a jailed VMM whose pid the
    /// test may never learn: whatever runs in its cgroup is its).
    pub fn watch_group(&mut self, group: crate::cgroup::MemoryGroup) {
        self.groups.push(group);
    }

    /// The console being kept.
    pub fn console(&self) -> &ConsoleLog {
        &self.console
    }
}

impl Drop for Evidence {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- guest console ({}) ----\n{}\n---- end ----",
                self.console.path().display(),
                self.console.tail_bytes(16 * 1024)
            );
        }
        for vm in &self.vms {
            kill(*vm);
        }
        for pid in self.groups.iter().flat_map(|g| g.members()) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// Whether `vm` still runs: its PID exists, is the same process (start
/// time) and is not a zombie.
pub fn alive(vm: VmIdentity) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", vm.pid)).is_ok_and(|stat| {
        // Fields after the command name, which may hold spaces and ')'.
        let rest = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.first() != Some(&"Z")
            && fields.get(19).and_then(|t| t.parse::<u64>().ok()) == Some(vm.start_time)
    })
}

/// SIGKILLs `vm` if it is [`alive`]; a test ends only what it started.
pub fn kill(vm: VmIdentity) {
    if alive(vm) {
        if let Some(pid) = rustix::process::Pid::from_raw(vm.pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}
