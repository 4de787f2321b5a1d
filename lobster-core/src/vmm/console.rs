//! The per-VM console/log file: the VMM's stdout and stderr go through a
//! pipe to a log keeper process that appends them and keeps the file under
//! its cap by dropping the oldest part, with or without a lobster process
//! running; read back as a tail for error reports (`lobsterd logs`, molt)
//! or searched for a marker by tests.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::base::sanitize_for_terminal;

/// How many bytes of the log an error report carries.
pub const TAIL_BYTES: u64 = 4096;

/// A size-capped console log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLog {
    path: PathBuf,
    max_bytes: u64,
    /// The uid and gid the log keeper drops to (the tenant's), if any.
    keeper_ids: Option<(u32, u32)>,
}

impl ConsoleLog {
    /// A log at `path` that is kept at or below `max_bytes` (at least 64 KiB).
    pub fn new(path: impl Into<PathBuf>, max_bytes: u64) -> ConsoleLog {
        ConsoleLog {
            path: path.into(),
            max_bytes: max_bytes.max(65_536),
            keeper_ids: None,
        }
    }

    /// This log, its keeper running as `uid`/`gid` (no groups,
    /// `no_new_privs`) once it holds the pipe and the log: it needs no
    /// privilege to copy bytes, and root should not read what a guest
    /// writes.
    pub fn kept_as(self, uid: u32, gid: u32) -> ConsoleLog {
        ConsoleLog {
            keeper_ids: Some((uid, gid)),
            ..self
        }
    }

    /// The cap in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens (creating, mode 0640) the file for appending, as the VMM's output.
    pub fn open_for_vmm(&self) -> io::Result<File> {
        if let Some(dir) = self.path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        // Guest output is the tenant's: root reads it, nobody else.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
    }

    /// Starts the log keeper of this file (see `sys::log_keeper`): returns
    /// the pipe the VMM writes its stdout and stderr to, and the keeper's
    /// pid (a child of this process, which must reap it). The keeper exits
    /// once every holder of the pipe has closed it.
    pub fn start_keeper(&self) -> io::Result<(OwnedFd, i32)> {
        let append = self.open_for_vmm()?;
        let trim = OpenOptions::new().read(true).write(true).open(&self.path)?;
        let started =
            crate::sys::log_keeper::start(&append, &trim, self.max_bytes, self.keeper_ids)?;
        Ok((started.pipe, started.pid))
    }

    /// Appends a line written by lobster itself (e.g. "launching qemu").
    pub fn note(&self, line: &str) -> io::Result<()> {
        let mut file = self.open_for_vmm()?;
        writeln!(file, "[lobster] {line}")
    }

    /// Drops the oldest output if the file exceeds the cap, keeping about
    /// half the cap. Returns how many bytes were dropped.
    pub fn enforce_cap(&self) -> io::Result<u64> {
        match OpenOptions::new().read(true).write(true).open(&self.path) {
            Ok(file) => crate::sys::file::drop_head_to_fit(file.as_fd(), self.max_bytes, 0),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// The last `TAIL_BYTES` of the log, lossily decoded, starting at a
    /// line, each line made safe for a terminal (the guest writes this log:
    /// the tail goes into errors that operators read).
    pub fn tail(&self) -> String {
        self.tail_bytes(TAIL_BYTES)
            .lines()
            .map(sanitize_for_terminal)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The last `max` bytes of the log, lossily decoded, starting at a line.
    pub fn tail_bytes(&self, max: u64) -> String {
        let Ok(mut file) = File::open(&self.path) else {
            return String::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let start = len.saturating_sub(max);
        let mut buf = Vec::new();
        if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut buf).is_err() {
            return String::new();
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        match (start > 0, text.find('\n')) {
            (true, Some(i)) => text[i + 1..].to_string(),
            _ => text,
        }
    }

    /// The whole current log (lossy). For tests and small logs.
    pub fn read_all(&self) -> String {
        std::fs::read(&self.path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Polls until the log contains `needle` after byte `from`, or `within`
    /// passes. Returns the byte offset just past the first match.
    pub async fn wait_for(&self, needle: &str, from: u64, within: Duration) -> Option<u64> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(bytes) = std::fs::read(&self.path) {
                let start = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
                if let Some(i) = find(&bytes[start..], needle.as_bytes()) {
                    return Some((start + i + needle.len()) as u64);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_keeps_the_newest_output() {
        let dir = tempfile::tempdir().unwrap();
        let log = ConsoleLog::new(dir.path().join("c.log"), 64 * 1024);
        let mut f = log.open_for_vmm().unwrap();
        for i in 0..20_000 {
            writeln!(f, "line {i:06}").unwrap();
        }
        let before = std::fs::metadata(log.path()).unwrap().len();
        let dropped = log.enforce_cap().unwrap();
        let after = std::fs::metadata(log.path()).unwrap().len();
        assert!(dropped > 0 && after <= 64 * 1024, "{before} -> {after}");
        // The writer keeps appending at the (new) end.
        writeln!(f, "line last").unwrap();
        let tail = log.tail_bytes(64);
        assert!(tail.ends_with("line 019999\nline last\n"), "{tail:?}");
        assert_eq!(log.enforce_cap().unwrap(), 0);
    }

    #[test]
    fn the_cap_holds_where_the_head_cannot_be_collapsed() {
        // tmpfs has no FALLOC_FL_COLLAPSE_RANGE: the tail is copied forward.
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let log = ConsoleLog::new(dir.path().join("c.log"), 65_536);
        let text: String = (0..20_000).map(|i| format!("line {i:06}\n")).collect();
        std::fs::write(log.path(), &text).unwrap();
        assert_eq!(log.enforce_cap().unwrap(), text.len() as u64 - 32_768);
        let kept = log.read_all();
        assert_eq!(kept, text[text.len() - 32_768..]);
    }

    #[test]
    fn tail_starts_at_a_line_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let log = ConsoleLog::new(dir.path().join("c.log"), 1 << 20);
        std::fs::write(log.path(), "aaaa\nbbbb\ncccc\n").unwrap();
        assert_eq!(log.tail_bytes(8), "cccc\n");
        assert_eq!(log.tail_bytes(100), "aaaa\nbbbb\ncccc\n");
    }

    #[test]
    fn the_tail_carries_no_terminal_control_from_the_guest() {
        let dir = tempfile::tempdir().unwrap();
        let log = ConsoleLog::new(dir.path().join("c.log"), 1 << 20);
        // OSC 52 (set the operator's clipboard), a CSI colour, a C1 CSI.
        let hostile = "booting\n\x1b]52;c;cm0gLXJmIC8=\x07\x1b[31mred\u{9b}2J\npowered off\n";
        std::fs::write(log.path(), hostile).unwrap();
        let tail = log.tail();
        assert!(!tail.contains(['\x1b', '\x07', '\u{9b}']), "{tail:?}");
        assert_eq!(tail.lines().count(), 3, "{tail:?}");
        assert!(tail.ends_with("powered off"), "{tail:?}");
    }

    #[test]
    fn the_keeper_drops_to_the_tenant_s_ids() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: the keeper's privilege drop needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let log = ConsoleLog::new(dir.path().join("c.log"), 1 << 20).kept_as(10_993, 10_994);
        let (pipe, pid) = log.start_keeper().unwrap();
        let status = crate::sys::pidfd::pidfd_open(pid).unwrap();
        let field = |name: &str| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap()
        };
        // It drops right after fork: wait until it has.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while field("Uid:") != "10993 10993 10993 10993" {
            assert!(
                std::time::Instant::now() < deadline,
                "uid {}",
                field("Uid:")
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(field("Gid:"), "10994 10994 10994 10994");
        assert_eq!(field("Groups:"), "");
        assert_eq!(field("NoNewPrivs:"), "1");
        // And still writes the root-owned 0600 log through what it holds.
        let mut writer = std::fs::File::from(pipe);
        writeln!(writer, "hello from the guest").unwrap();
        drop(writer);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while crate::sys::pidfd::pidfd_try_reap(&status)
            .unwrap()
            .is_none()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the keeper did not exit"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(log.read_all(), "hello from the guest\n");
    }

    #[test]
    fn missing_log_has_an_empty_tail_and_needs_no_trim() {
        let log = ConsoleLog::new("/nonexistent/lobster/c.log", 1 << 20);
        assert_eq!(log.tail(), "");
        assert_eq!(log.enforce_cap().unwrap(), 0);
    }
}
