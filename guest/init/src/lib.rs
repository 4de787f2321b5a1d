//! lobster-init: the pure parts of PID 1 (what to mount, what to unmount at
//! shutdown, how long to wait before restarting the agent), kept apart from
//! the system calls in `main.rs` so they are unit-tested on any host.

use std::time::Duration;

/// A file system PID 1 mounts at boot if it is not mounted yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarlyMount {
    /// Source (`proc`, `tmpfs`, ...).
    pub source: &'static str,
    /// Mount point.
    pub target: &'static str,
    /// File system type.
    pub fstype: &'static str,
    /// Mount data.
    pub data: &'static str,
}

/// Boot mounts, in order. `/tmp` and `/run` are tmpfs so they never fill
/// the tenant disk.
pub const EARLY_MOUNTS: [EarlyMount; 7] = [
    EarlyMount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        data: "",
    },
    EarlyMount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        data: "",
    },
    EarlyMount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        data: "mode=0755",
    },
    EarlyMount {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        data: "gid=5,mode=620,ptmxmode=000",
    },
    EarlyMount {
        source: "tmpfs",
        target: "/dev/shm",
        fstype: "tmpfs",
        data: "mode=1777",
    },
    EarlyMount {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        data: "mode=0755,size=32m",
    },
    EarlyMount {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        data: "mode=1777,size=256m",
    },
];

/// Mount points from `/proc/self/mounts` text, in mount order.
pub fn mount_points(mounts: &str) -> Vec<String> {
    mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(unescape_mount_path)
        .collect()
}

/// What shutdown does with each mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmount {
    /// Unmount (lazily) — everything not needed to keep `/` alive.
    Detach(String),
    /// Remount read-only: `/` (the overlay) and then the disks under it.
    ReadOnly(String),
}

/// The shutdown plan: detach everything except the root's building blocks
/// and the kernel file systems, newest first; then remount the overlay root
/// read-only, then the tenant disk (its upper layer) and the base.
pub fn unmount_plan(mounts: &str) -> Vec<Unmount> {
    const KEEP: [&str; 6] = [
        "/",
        "/proc",
        "/sys",
        "/dev",
        "/lobster/disk",
        "/lobster/base",
    ];
    let points = mount_points(mounts);
    let mut plan: Vec<Unmount> = points
        .iter()
        .rev()
        .filter(|p| !KEEP.contains(&p.as_str()))
        .map(|p| Unmount::Detach(p.clone()))
        .collect();
    for p in ["/", "/lobster/disk", "/lobster/base"] {
        if points.iter().any(|m| m == p) {
            plan.push(Unmount::ReadOnly(p.to_owned()));
        }
    }
    plan
}

/// `/proc/mounts` escapes space, tab, newline and backslash as octal.
fn unescape_mount_path(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(char::from(v));
            i += 4;
        } else {
            out.push(char::from(bytes[i]));
            i += 1;
        }
    }
    out
}

/// Restart delay of the agent after its `n`-th consecutive quick exit:
/// 0.5 s doubling up to 10 s (the agent is the host's only way in).
pub fn agent_backoff(consecutive_failures: u32) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << consecutive_failures.min(10));
    Duration::from_millis(ms.min(10_000))
}

/// Size of a `struct input_event` on x86_64 (timeval, type, code, value).
pub const INPUT_EVENT_SIZE: usize = 24;

/// Whether an evdev event is the power key being pressed (`EV_KEY`,
/// `KEY_POWER`, value 1): what the ACPI power button reports when the VMM
/// asks the guest to power off (QEMU `system_powerdown`).
pub fn is_power_key_press(event: &[u8; INPUT_EVENT_SIZE]) -> bool {
    const EV_KEY: u16 = 1;
    const KEY_POWER: u16 = 116;
    let kind = u16::from_ne_bytes([event[16], event[17]]);
    let code = u16::from_ne_bytes([event[18], event[19]]);
    let value = i32::from_ne_bytes([event[20], event[21], event[22], event[23]]);
    kind == EV_KEY && code == KEY_POWER && value == 1
}

/// The `/dev/input/eventN` of the ACPI power button, found through
/// `<sys_class_input>/eventN/device/name`.
pub fn find_power_button(sys_class_input: &std::path::Path) -> Option<std::path::PathBuf> {
    let entries = std::fs::read_dir(sys_class_input).ok()?;
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("event"))
        .collect();
    names.sort();
    names.into_iter().find_map(|n| {
        let name = std::fs::read_to_string(sys_class_input.join(&n).join("device/name")).ok()?;
        (name.trim() == "Power Button").then(|| std::path::Path::new("/dev/input").join(n))
    })
}

/// What PID 1 does on a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reap children (SIGCHLD).
    Reap,
    /// Stop everything and power off (SIGTERM, SIGUSR2, SIGPWR).
    PowerOff,
    /// Stop everything and reboot (SIGINT: ctrl-alt-del).
    Reboot,
    /// Nothing.
    Ignore,
}

/// The action for a signal number.
pub fn action_for(signal: i32) -> Action {
    match signal {
        17 => Action::Reap,               // SIGCHLD
        15 | 12 | 30 => Action::PowerOff, // SIGTERM, SIGUSR2, SIGPWR
        2 => Action::Reboot,              // SIGINT (ctrl-alt-del with CAD disabled)
        _ => Action::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
rootfs / rootfs rw 0 0
overlay / overlay rw,lowerdir=/lobster/base,upperdir=/lobster/disk/upper,workdir=/lobster/disk/work 0 0
/dev/vda /lobster/base ext4 ro 0 0
/dev/vdb /lobster/disk ext4 rw 0 0
devtmpfs /dev devtmpfs rw 0 0
proc /proc proc rw 0 0
sysfs /sys sysfs rw 0 0
devpts /dev/pts devpts rw 0 0
tmpfs /run tmpfs rw 0 0
tmpfs /tmp tmpfs rw 0 0
tmpfs /srv/my\\040dir tmpfs rw 0 0
";

    #[test]
    fn shutdown_detaches_newest_first_then_remounts_root_and_disks_read_only() {
        let plan = unmount_plan(MOUNTS);
        assert_eq!(
            plan,
            vec![
                Unmount::Detach("/srv/my dir".into()),
                Unmount::Detach("/tmp".into()),
                Unmount::Detach("/run".into()),
                Unmount::Detach("/dev/pts".into()),
                Unmount::ReadOnly("/".into()),
                Unmount::ReadOnly("/lobster/disk".into()),
                Unmount::ReadOnly("/lobster/base".into()),
            ]
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(agent_backoff(0), Duration::from_millis(500));
        assert_eq!(agent_backoff(1), Duration::from_secs(1));
        assert_eq!(agent_backoff(5), Duration::from_secs(10));
        assert_eq!(agent_backoff(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn power_key_presses_are_recognised() {
        let mut ev = [0u8; INPUT_EVENT_SIZE];
        ev[16..18].copy_from_slice(&1u16.to_ne_bytes());
        ev[18..20].copy_from_slice(&116u16.to_ne_bytes());
        ev[20..24].copy_from_slice(&1i32.to_ne_bytes());
        assert!(is_power_key_press(&ev));
        ev[20..24].copy_from_slice(&0i32.to_ne_bytes()); // release
        assert!(!is_power_key_press(&ev));
        ev[18..20].copy_from_slice(&30u16.to_ne_bytes()); // KEY_A
        ev[20..24].copy_from_slice(&1i32.to_ne_bytes());
        assert!(!is_power_key_press(&ev));
    }

    #[test]
    fn the_power_button_is_found_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for (ev, name) in [
            ("event0", "AT Translated Set 2 keyboard"),
            ("event1", "Power Button"),
        ] {
            std::fs::create_dir_all(dir.path().join(ev).join("device")).unwrap();
            std::fs::write(dir.path().join(ev).join("device/name"), format!("{name}\n")).unwrap();
        }
        assert_eq!(
            find_power_button(dir.path()),
            Some("/dev/input/event1".into())
        );
        assert_eq!(find_power_button(&dir.path().join("none")), None);
    }

    #[test]
    fn signals_map_to_actions() {
        assert_eq!(
            action_for(nix::sys::signal::Signal::SIGCHLD as i32),
            Action::Reap
        );
        assert_eq!(
            action_for(nix::sys::signal::Signal::SIGUSR2 as i32),
            Action::PowerOff
        );
        assert_eq!(
            action_for(nix::sys::signal::Signal::SIGPWR as i32),
            Action::PowerOff
        );
        assert_eq!(
            action_for(nix::sys::signal::Signal::SIGINT as i32),
            Action::Reboot
        );
        assert_eq!(
            action_for(nix::sys::signal::Signal::SIGHUP as i32),
            Action::Ignore
        );
    }
}
