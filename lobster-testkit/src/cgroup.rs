//! What the kernel says about a process's confinement, read independently
//! of lobster's own cgroup code: its memory cgroup (v1 or v2) and that
//! group's limit, peak and failure count, the limit files of its other
//! controllers, its seccomp mode, its uid.

use std::path::{Path, PathBuf};

/// The mount of the v1 hierarchy with `controller`, or (`None`) of the
/// unified one.
fn mount(controller: Option<&str>) -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let point = left.split(' ').nth(4)?;
        let mut right = right.split(' ');
        let (fstype, options) = (right.next()?, right.nth(1)?);
        let wanted = match controller {
            None => fstype == "cgroup2",
            Some(controller) => fstype == "cgroup" && options.split(',').any(|o| o == controller),
        };
        wanted.then(|| PathBuf::from(point))
    })
}

/// A process's memory cgroup, as the kernel reports it.
#[derive(Debug, Clone)]
pub struct MemoryGroup {
    /// The group's directory.
    pub dir: PathBuf,
    /// Whether it is on the v2 hierarchy.
    pub v2: bool,
}

impl MemoryGroup {
    /// The memory cgroup of `pid`; `None` when it sits at a hierarchy's root.
    pub fn of(pid: i32) -> Option<MemoryGroup> {
        let (dir, v2) = group_of(pid, "memory")?;
        Some(MemoryGroup { dir, v2 })
    }

    /// The memory cgroup at `relative` (e.g. `lobster/alice`) on the host's
    /// memory hierarchy (v1 where a v1 hierarchy has the controller).
    pub fn at(relative: &Path) -> Option<MemoryGroup> {
        let (v2, mount) = match mount(Some("memory")) {
            Some(v1) => (false, v1),
            None => (true, mount(None)?),
        };
        Some(MemoryGroup {
            dir: mount.join(relative),
            v2,
        })
    }

    /// The processes in the group.
    pub fn members(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    fn read(&self, v1: &str, v2: &str) -> String {
        let file = self.dir.join(if self.v2 { v2 } else { v1 });
        std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .trim()
            .to_string()
    }

    /// The limit in bytes (`memory.max` / `memory.limit_in_bytes`).
    pub fn limit(&self) -> u64 {
        let text = self.read("memory.limit_in_bytes", "memory.max");
        text.parse().unwrap_or(u64::MAX)
    }

    /// What the group uses now, in bytes.
    pub fn usage(&self) -> u64 {
        self.read("memory.usage_in_bytes", "memory.current")
            .parse()
            .expect("usage")
    }

    /// The most the group ever used, in bytes.
    pub fn peak(&self) -> u64 {
        self.read("memory.max_usage_in_bytes", "memory.peak")
            .parse()
            .expect("peak")
    }

    /// How often the group hit its limit.
    pub fn hits(&self) -> u64 {
        if self.v2 {
            let events = self.read("", "memory.events");
            events
                .lines()
                .find_map(|l| l.strip_prefix("max "))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        } else {
            self.read("memory.failcnt", "").parse().expect("failcnt")
        }
    }
}

/// The directory of `pid`'s group of `controller` (a v1 hierarchy with it,
/// else the unified one) and whether it is v2; `None` at a hierarchy's root.
fn group_of(pid: i32, controller: &str) -> Option<(PathBuf, bool)> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let v1 = cgroups.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    });
    let (v2, path) = match v1 {
        Some(path) => (false, path),
        None => (
            true,
            cgroups
                .lines()
                .find_map(|l| l.strip_prefix("0::"))?
                .to_string(),
        ),
    };
    if path == "/" {
        return None;
    }
    let mount = mount((!v2).then_some(controller))?;
    Some((mount.join(path.trim_start_matches('/')), v2))
}

/// The limit file of `pid`'s `controller` group, trimmed: `v1` on a v1
/// hierarchy, `v2` on the unified one (`cpu`: `cpu.cfs_quota_us` /
/// `cpu.max`; `pids`: `pids.max` on both). Panics when there is none.
pub fn limit_file(pid: i32, controller: &str, v1: &str, v2: &str) -> String {
    let (dir, is_v2) = group_of(pid, controller)
        .unwrap_or_else(|| panic!("process {pid} has no {controller} cgroup"));
    let file = dir.join(if is_v2 { v2 } else { v1 });
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .trim()
        .to_string()
}

/// A field of `/proc/<pid>/status` (`Seccomp`, `Uid`, `Groups`, `NoNewPrivs`).
pub fn status_field(pid: i32, field: &str) -> String {
    status_field_while_alive(pid, field).unwrap_or_else(|| panic!("process {pid} has ended"))
}

/// [`status_field`], or `None` once the process has ended (a VMM the
/// kernel killed for its cgroup's limit, say), including while it is a
/// zombie not yet reaped: its status then lacks every memory field.
pub fn status_field_while_alive(pid: i32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let get = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    };
    let state = get("State").unwrap_or_default();
    if state.starts_with('Z') || state.starts_with('X') {
        return None;
    }
    Some(get(field).unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status ({state})")))
}

/// A cgroup parent of one test process (`lobster-test-<pid>`, on every
/// hierarchy), removed with the groups under it when dropped, pass or fail.
#[derive(Debug)]
pub struct TestParent {
    /// The parent, relative to each hierarchy's mount.
    pub relative: PathBuf,
}

impl TestParent {
    /// `lobster-<tier>-<pid>`.
    pub fn new(tier: &str) -> TestParent {
        TestParent {
            relative: format!("lobster-{tier}-{}", std::process::id()).into(),
        }
    }
}

impl Drop for TestParent {
    fn drop(&mut self) {
        let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            if !right.starts_with("cgroup") {
                continue;
            }
            let Some(point) = left.split(' ').nth(4) else {
                continue;
            };
            let parent = Path::new(point).join(&self.relative);
            for child in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                if !child.path().join("cgroup.procs").exists() {
                    continue;
                }
                // A VMM the test's evidence just killed may still be exiting.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while std::fs::remove_dir(child.path()).is_err()
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
            let _ = std::fs::remove_dir(&parent);
        }
    }
}
