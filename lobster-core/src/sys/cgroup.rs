//! cgroup mechanics for one VMM: where each controller lives (cgroup v2
//! first, else a v1 hierarchy), a per-VM group with memory, CPU and pids
//! limits, entering it, its members, and removing it.
//!
//! A host may split its controllers: this module decides per controller.
//! The group of a VM is `<mount of each controller>/<relative path>`; with
//! v2 all controllers share one directory, with v1 there is one directory
//! per controller hierarchy.

use std::io;
use std::path::{Path, PathBuf};

/// The controllers a VMM is limited by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Controller {
    /// Memory (guest memory plus the VMM's own).
    Memory,
    /// CPU bandwidth.
    Cpu,
    /// Number of tasks (processes and threads).
    Pids,
}

impl Controller {
    /// Every controller lobster limits.
    pub const ALL: [Controller; 3] = [Controller::Memory, Controller::Cpu, Controller::Pids];

    /// The kernel's name of the controller.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Pids => "pids",
        }
    }
}

/// cgroup version of a hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// A v1 hierarchy with the controller attached.
    V1,
    /// The unified hierarchy.
    V2,
}

/// Where one controller is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Its version.
    pub version: Version,
    /// The mount point.
    pub path: PathBuf,
}

/// Where the host has each of the controllers lobster limits (memory, cpu, pids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    mounts: Vec<(Controller, Mount)>,
}

impl Hierarchy {
    /// The host's hierarchy, from `/proc/self/mountinfo`.
    pub fn detect() -> io::Result<Hierarchy> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        Hierarchy::parse(&mountinfo, |mount| {
            std::fs::read_to_string(mount.join("cgroup.controllers")).ok()
        })
        .map_err(|reason| io::Error::new(io::ErrorKind::Unsupported, reason))
    }

    /// The hierarchy described by `mountinfo`; `v2_controllers` reads a v2
    /// mount's `cgroup.controllers`. A controller on a v2 mount that offers
    /// it wins over a v1 hierarchy. Fails naming the missing controllers.
    pub fn parse(
        mountinfo: &str,
        v2_controllers: impl Fn(&Path) -> Option<String>,
    ) -> Result<Hierarchy, String> {
        let mut v1: Vec<(PathBuf, Vec<String>)> = Vec::new();
        let mut v2: Vec<(PathBuf, String)> = Vec::new();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(point) = left.split(' ').nth(4) else {
                continue;
            };
            let point = PathBuf::from(unescape(point));
            let mut right = right.split(' ');
            let (fstype, _source, options) = (right.next(), right.next(), right.next());
            match fstype {
                Some("cgroup2") => {
                    let offered = v2_controllers(&point).unwrap_or_default();
                    v2.push((point, offered));
                }
                Some("cgroup") => {
                    let options = options.unwrap_or("").split(',').map(str::to_owned);
                    v1.push((point, options.collect()));
                }
                _ => {}
            }
        }
        let mut mounts = Vec::new();
        let mut missing = Vec::new();
        for controller in Controller::ALL {
            let name = controller.name();
            let on_v2 = v2
                .iter()
                .find(|(_, offered)| offered.split_whitespace().any(|c| c == name))
                .map(|(path, _)| Mount {
                    version: Version::V2,
                    path: path.clone(),
                });
            let on_v1 = || {
                v1.iter()
                    .find(|(_, options)| options.iter().any(|o| o == name))
                    .map(|(path, _)| Mount {
                        version: Version::V1,
                        path: path.clone(),
                    })
            };
            match on_v2.or_else(on_v1) {
                Some(mount) => mounts.push((controller, mount)),
                None => missing.push(name),
            }
        }
        if !missing.is_empty() {
            return Err(format!(
                "no cgroup hierarchy offers the {} controller(s)",
                missing.join(", ")
            ));
        }
        Ok(Hierarchy { mounts })
    }

    /// Where `controller` is mounted.
    pub fn mount(&self, controller: Controller) -> &Mount {
        &self
            .mounts
            .iter()
            .find(|(c, _)| *c == controller)
            .expect("every controller is detected")
            .1
    }

    /// Where each controller lives, e.g. `memory: v1 at /sys/fs/cgroup/memory`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .mounts
            .iter()
            .map(|(c, m)| {
                let version = match m.version {
                    Version::V1 => "v1",
                    Version::V2 => "v2",
                };
                format!("{}: {version} at {}", c.name(), m.path.display())
            })
            .collect();
        parts.join(", ")
    }

    /// The one version every controller lives on, for tools that take a
    /// single one (Firecracker's jailer); a split host has none.
    pub fn single_version(&self) -> Result<Version, String> {
        let first = self.mount(Controller::Memory).version;
        match self.mounts.iter().find(|(_, m)| m.version != first) {
            None => Ok(first),
            Some((c, m)) => Err(format!(
                "the memory controller is on cgroup {first:?} but {} is on {:?}",
                c.name(),
                m.version
            )),
        }
    }
}

/// `\040`-style escapes of mountinfo paths.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The limits of one VMM's group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory in bytes (guest memory plus the VMM's overhead).
    pub memory_bytes: u64,
    /// CPU time allowed per `cpu_period_us`, in microseconds.
    pub cpu_quota_us: u64,
    /// The CPU accounting period, in microseconds.
    pub cpu_period_us: u64,
    /// Tasks (threads count).
    pub pids: u64,
}

impl Limits {
    /// The files that set these limits on `version`, as (file name, value),
    /// in the order they must be written.
    pub fn files(&self, controller: Controller, version: Version) -> Vec<(&'static str, String)> {
        let memory = self.memory_bytes.to_string();
        match (controller, version) {
            (Controller::Memory, Version::V2) => {
                vec![("memory.max", memory), ("memory.swap.max", "0".into())]
            }
            (Controller::Memory, Version::V1) => vec![
                ("memory.limit_in_bytes", memory.clone()),
                // Present only with swap accounting; then swap counts too.
                ("memory.memsw.limit_in_bytes", memory),
            ],
            (Controller::Cpu, Version::V2) => vec![(
                "cpu.max",
                format!("{} {}", self.cpu_quota_us, self.cpu_period_us),
            )],
            (Controller::Cpu, Version::V1) => vec![
                ("cpu.cfs_period_us", self.cpu_period_us.to_string()),
                ("cpu.cfs_quota_us", self.cpu_quota_us.to_string()),
            ],
            (Controller::Pids, _) => vec![("pids.max", self.pids.to_string())],
        }
    }
}

/// Files a limit may lack on some kernels (optional swap accounting).
const OPTIONAL: [&str; 2] = ["memory.memsw.limit_in_bytes", "memory.swap.max"];

impl Limits {
    /// Whether a host may lack limit `file` (then it is skipped).
    pub fn is_optional(file: &str) -> bool {
        OPTIONAL.contains(&file)
    }
}

/// One VMM's group: `<mount>/<relative>` for every controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    /// (controller, version, directory); v2 controllers share a directory.
    dirs: Vec<(Controller, Version, PathBuf)>,
    /// The mount of each v2 controller (where enabling starts).
    v2_mount: Option<PathBuf>,
}

impl Cgroup {
    /// The group at `relative` (e.g. `lobster/alice`) in `hierarchy`.
    pub fn at(hierarchy: &Hierarchy, relative: &Path) -> Cgroup {
        let dirs = Controller::ALL
            .iter()
            .map(|&c| {
                let mount = hierarchy.mount(c);
                (c, mount.version, mount.path.join(relative))
            })
            .collect();
        let v2_mount = Controller::ALL
            .iter()
            .map(|&c| hierarchy.mount(c))
            .find(|m| m.version == Version::V2)
            .map(|m| m.path.clone());
        Cgroup { dirs, v2_mount }
    }

    /// Each distinct directory of the group.
    pub fn dirs(&self) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = Vec::new();
        for (_, _, dir) in &self.dirs {
            if !dirs.contains(&dir.as_path()) {
                dirs.push(dir);
            }
        }
        dirs
    }

    /// The `cgroup.procs` file of each directory (writing a pid, or `0` for
    /// the writer, moves a process in).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs().iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// The limit files with their values, as [`Cgroup::create`] writes them.
    pub fn limit_files(&self, limits: &Limits) -> Vec<(PathBuf, String)> {
        self.dirs
            .iter()
            .flat_map(|(c, v, dir)| {
                limits
                    .files(*c, *v)
                    .into_iter()
                    .map(move |(file, value)| (dir.join(file), value))
            })
            .collect()
    }

    /// Creates the group (replacing the limits of one left behind) and
    /// sets `limits`. On v2 the controllers are enabled down the path.
    pub fn create(&self, limits: &Limits) -> io::Result<()> {
        let context = |path: &Path, e: io::Error| {
            io::Error::new(e.kind(), format!("{}: {e}", path.display()))
        };
        for (controller, version, dir) in &self.dirs {
            if let (Version::V2, Some(mount)) = (version, &self.v2_mount) {
                enable_down_to(mount, dir, controller.name()).map_err(|e| context(dir, e))?;
            }
            match std::fs::create_dir(dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(dir).map_err(|e| context(dir, e))?
                }
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(context(dir, e)),
                _ => {}
            }
        }
        for (file, value) in self.limit_files(limits) {
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
            match std::fs::write(&file, &value) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && OPTIONAL.contains(&name) => {}
                Err(e) => return Err(context(&file, e)),
                Ok(()) => {}
            }
        }
        Ok(())
    }

    /// The processes in the group (any of its directories).
    pub fn members(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = Vec::new();
        for file in self.procs_files() {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            for pid in text.lines().filter_map(|l| l.trim().parse().ok()) {
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
        }
        pids
    }

    /// Removes the group's directories (its processes must be gone);
    /// absent is fine.
    pub fn remove(&self) -> io::Result<()> {
        for dir in self.dirs() {
            match std::fs::remove_dir(dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot remove cgroup {}: {e}", dir.display()),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Removes the group's directories and every group below them, deepest
    /// first (their processes must be gone). Returns true if any existed.
    pub fn remove_tree(&self) -> io::Result<bool> {
        fn remove(dir: &Path) -> io::Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    remove(&entry.path())?;
                }
            }
            std::fs::remove_dir(dir).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot remove cgroup {}: {e}", dir.display()),
                )
            })
        }
        let existing: Vec<&Path> = self.dirs().into_iter().filter(|d| d.exists()).collect();
        for dir in &existing {
            remove(dir)?;
        }
        Ok(!existing.is_empty())
    }

    /// Whether any directory of the group exists.
    pub fn exists(&self) -> bool {
        self.dirs().iter().any(|d| d.exists())
    }
}

/// Enables `controller` in `cgroup.subtree_control` from the v2 `mount`
/// down to the parent of `dir` (creating those groups), so `dir` can use it.
fn enable_down_to(mount: &Path, dir: &Path, controller: &str) -> io::Result<()> {
    let Ok(relative) = dir.strip_prefix(mount) else {
        return Ok(());
    };
    let mut group = mount.to_path_buf();
    let mut below = relative.components().peekable();
    loop {
        let control = group.join("cgroup.subtree_control");
        let enabled = std::fs::read_to_string(&control)?;
        if !enabled.split_whitespace().any(|c| c == controller) {
            std::fs::write(&control, format!("+{controller}"))?;
        }
        match below.next() {
            // `dir` itself is created by the caller.
            Some(part) if below.peek().is_some() => {
                group.push(part);
                match std::fs::create_dir(&group) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                    _ => {}
                }
            }
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THIS_HOST: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";

    #[test]
    fn each_controller_is_found_where_it_lives() {
        // v1 controllers and a v2 mount without controllers (this machine).
        let h = Hierarchy::parse(THIS_HOST, |_| Some(String::new())).unwrap();
        let memory = h.mount(Controller::Memory);
        assert_eq!(
            (memory.version, memory.path.as_path()),
            (Version::V1, Path::new("/sys/fs/cgroup/memory"))
        );
        // `cpu` is not `cpuacct`.
        assert_eq!(
            h.mount(Controller::Cpu).path,
            Path::new("/sys/fs/cgroup/cpu")
        );
        assert_eq!(h.single_version(), Ok(Version::V1));
        let group = Cgroup::at(&h, Path::new("lobster/alice"));
        assert_eq!(group.dirs().len(), 3);

        // A v2 mount offering memory wins over v1; cpu stays on v1: split.
        let h = Hierarchy::parse(THIS_HOST, |_| Some("memory pids".into())).unwrap();
        assert_eq!(h.mount(Controller::Memory).version, Version::V2);
        assert_eq!(h.mount(Controller::Cpu).version, Version::V1);
        assert!(h.single_version().unwrap_err().contains("cpu"));

        // Pure v2: one directory for all.
        let v2 = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate";
        let h = Hierarchy::parse(v2, |_| Some("cpuset cpu io memory pids".into())).unwrap();
        let group = Cgroup::at(&h, Path::new("lobster/alice"));
        assert_eq!(group.dirs(), [Path::new("/sys/fs/cgroup/lobster/alice")]);
        let files: Vec<String> = group
            .limit_files(&limits())
            .iter()
            .map(|(f, v)| format!("{}={v}", f.file_name().unwrap().to_str().unwrap()))
            .collect();
        assert_eq!(
            files,
            [
                "memory.max=268435456",
                "memory.swap.max=0",
                "cpu.max=50000 100000",
                "pids.max=64"
            ]
        );

        let err = Hierarchy::parse(v2, |_| Some("cpu".into())).unwrap_err();
        assert!(err.contains("memory, pids"), "{err}");
    }

    fn limits() -> Limits {
        Limits {
            memory_bytes: 256 << 20,
            cpu_quota_us: 50_000,
            cpu_period_us: 100_000,
            pids: 64,
        }
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(r"/a\040b\\c"), r"/a b\\c");
    }
}
