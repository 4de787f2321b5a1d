//! Jailer mode: Firecracker runs chrooted, as the tenant's own uid/gid, in
//! its cgroup's limits (on the cgroup version the host's controllers live
//! on: `--cgroup-version 1` with v1 file names where they are on v1) and
//! optionally in a network namespace.
//!
//! [`plan`] is pure (golden-tested): the jailer's argv and what must be in
//! the chroot. [`prepare`] applies it before the jailer starts: it creates
//! `<chroot_base>/<exec name>/<jail id>/root`, hard-links the kernel, initrd
//! and drives into it (the writable overlay, the metrics file and a
//! restore's snapshot files are the tenant's, 0600, never through a link;
//! snapshot files are sparse-copied where a hard link cannot cross
//! filesystems), and [`cleanup`] removes the chroot and the jailer's cgroup
//! once Firecracker has exited. The jailer itself runs in
//! `tx_firecracker_real`, not in this module's tests.

use std::path::{Path, PathBuf};

use super::plan::{utf8, Features, FileNames};
use crate::sys::cgroup::{Cgroup, Controller, Hierarchy, Limits, Version};
use crate::vmm::{Jail, Result, VmConfig, VmmError};

/// The API socket inside the chroot.
pub const API_SOCKET: &str = "/api.socket";

/// A file to place in the chroot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChrootFile {
    /// Host source (hard-linked); `None` creates an empty file.
    pub source: Option<PathBuf>,
    /// Path inside the chroot (absolute, as Firecracker sees it).
    pub name: String,
    /// Hand it to the tenant's uid/gid, mode 0600 (writable files). Its
    /// source must be a regular file: a link is never followed.
    pub chown: bool,
    /// Where a hard link cannot cross filesystems, place a sparse copy
    /// (snapshot files); else the source must share the chroot's filesystem.
    pub copy_across_filesystems: bool,
}

/// Everything needed to start Firecracker under the jailer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailPlan {
    /// The jailer's arguments (without the jailer binary).
    pub args: Vec<String>,
    /// The jail directory `<chroot_base>/<exec name>/<jail id>` (removed on cleanup).
    pub jail_dir: PathBuf,
    /// The chroot: `<jail_dir>/root`.
    pub root: PathBuf,
    /// Files to place there.
    pub files: Vec<ChrootFile>,
    /// How Firecracker names the files (chroot-relative).
    pub names: FileNames,
    /// The API socket as seen from the host.
    pub api_socket: PathBuf,
    /// The jailer's cgroup, `<cgroup_parent>/<jail id>` (removed on cleanup).
    pub cgroup: Cgroup,
    /// Tenant uid and gid.
    pub owner: (u32, u32),
}

impl JailPlan {
    /// A path inside the chroot, as seen from the host.
    pub fn host_path(&self, name: &str) -> PathBuf {
        self.root.join(name.trim_start_matches('/'))
    }
}

/// Plans the jailer invocation for `config` (which must have `jail` set)
/// on a host whose cgroup controllers are where `hierarchy` says.
pub fn plan(
    config: &VmConfig,
    jail: &Jail,
    firecracker: &Path,
    features: &Features,
    hierarchy: &Hierarchy,
) -> Result<JailPlan> {
    config.validate()?;
    let exec_name = firecracker
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.contains("firecracker"))
        .ok_or_else(|| VmmError::InvalidConfig {
            vm: config.vm_id.clone(),
            field: "vmm.firecracker.binary".into(),
            reason: format!(
                "{} must name a file whose name contains `firecracker` (a jailer rule)",
                firecracker.display()
            ),
        })?;
    if !firecracker.is_absolute() {
        return Err(VmmError::InvalidConfig {
            vm: config.vm_id.clone(),
            field: "vmm.firecracker.binary".into(),
            reason: "the jailer needs an absolute path".into(),
        });
    }
    let jail_dir = jail.chroot_base.join(exec_name).join(&jail.id);
    let root = jail_dir.join("root");

    let mut files = vec![ChrootFile {
        source: Some(config.kernel.clone()),
        name: "/vmlinux".into(),
        chown: false,
        copy_across_filesystems: false,
    }];
    if let Some(initrd) = &config.initrd {
        files.push(ChrootFile {
            source: Some(initrd.clone()),
            name: "/initrd".into(),
            chown: false,
            copy_across_filesystems: false,
        });
    }
    for drive in &config.drives {
        files.push(ChrootFile {
            source: Some(drive.path.clone()),
            name: format!("/drive-{}.img", drive.id),
            chown: !drive.read_only,
            copy_across_filesystems: false,
        });
    }
    if features.metrics {
        files.push(ChrootFile {
            source: None,
            name: "/metrics.json".into(),
            chown: true,
            copy_across_filesystems: false,
        });
    }
    let names = FileNames {
        kernel: "/vmlinux".into(),
        initrd: config.initrd.as_ref().map(|_| "/initrd".into()),
        drives: config
            .drives
            .iter()
            .map(|d| format!("/drive-{}.img", d.id))
            .collect(),
        metrics: features.metrics.then(|| "/metrics.json".into()),
    };

    let mut args: Vec<String> = vec![
        "--id".into(),
        jail.id.clone(),
        "--exec-file".into(),
        utf8(config, "vmm.firecracker.binary", firecracker)?,
        "--uid".into(),
        jail.uid.to_string(),
        "--gid".into(),
        jail.gid.to_string(),
        "--chroot-base-dir".into(),
        utf8(config, "jail.chroot_base", &jail.chroot_base)?,
    ];
    // The jailer takes one version for all controllers.
    let version = hierarchy
        .single_version()
        .map_err(|reason| VmmError::Unsupported {
            vm: config.vm_id.clone(),
            operation: "the jailer's cgroup",
            reason,
        })?;
    args.extend([
        "--cgroup-version".into(),
        match version {
            Version::V1 => "1".into(),
            Version::V2 => "2".into(),
        },
        "--parent-cgroup".into(),
        utf8(config, "vmm.cgroup_parent", &jail.cgroup_parent)?,
    ]);
    for controller in Controller::ALL {
        for (file, value) in jail.limits.files(controller, version) {
            if !Limits::is_optional(file) {
                args.extend(["--cgroup".into(), format!("{file}={value}")]);
            }
        }
    }
    if let Some(netns) = &jail.netns {
        args.extend(["--netns".into(), utf8(config, "jail.netns", netns)?]);
    }
    args.extend(["--".into(), "--api-sock".into(), API_SOCKET.into()]);

    Ok(JailPlan {
        args,
        api_socket: root.join(API_SOCKET.trim_start_matches('/')),
        cgroup: Cgroup::at(hierarchy, &jail.cgroup()),
        jail_dir,
        root,
        files,
        names,
        owner: (jail.uid, jail.gid),
    })
}

/// Creates the chroot and places the files. On failure nothing is left.
pub fn prepare(vm: &str, plan: &JailPlan) -> Result<()> {
    let result = place_files(plan);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&plan.jail_dir);
    }
    result.map_err(|(context, source)| VmmError::Io {
        context: format!("vm {vm}: {context}"),
        source,
    })
}

fn place_files(plan: &JailPlan) -> std::result::Result<(), (String, std::io::Error)> {
    use std::os::unix::fs::DirBuilderExt;
    // A stale chroot from an earlier run would hand Firecracker old files.
    match std::fs::remove_dir_all(&plan.jail_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err((
                format!("cannot remove stale jail {}", plan.jail_dir.display()),
                e,
            ))
        }
        _ => {}
    }
    // Root-only: nobody else reaches the tenant's files through the jail.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&plan.root)
        .map_err(|e| (format!("cannot create chroot {}", plan.root.display()), e))?;
    for file in &plan.files {
        let target = plan.host_path(&file.name);
        let placed = match (&file.source, file.chown) {
            (None, _) => create_owned(&target, plan.owner),
            (Some(source), true) => {
                place_owned(source, &target, plan.owner, file.copy_across_filesystems)
            }
            (Some(source), false) => std::fs::hard_link(source, &target),
        };
        placed.map_err(|e| {
            let how = if file.copy_across_filesystems {
                ""
            } else {
                " (chroot_base must be on the same filesystem)"
            };
            let from = file
                .source
                .as_ref()
                .map(|s| format!("{} ", s.display()))
                .unwrap_or_default();
            (
                format!(
                    "cannot place {from}in the chroot as {}{how}",
                    target.display()
                ),
                e,
            )
        })?;
    }
    Ok(())
}

/// An empty file of the tenant's, mode 0600.
fn create_owned(target: &Path, (uid, gid): (u32, u32)) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(target)?;
    std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
}

/// Places the tenant's file `source` at `target`, owned by the tenant and
/// mode 0600: a hard link, or (with `copy_across_filesystems`, where a link
/// cannot cross) a sparse copy. Only a regular file is placed, and only the
/// very file that was checked: a link planted at `source` is never
/// followed, so root hands nothing else to the tenant.
pub fn place_owned(
    source: &Path,
    target: &Path,
    (uid, gid): (u32, u32),
    copy_across_filesystems: bool,
) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let src = open_regular(source, false)?;
    let meta = src.metadata()?;
    let placed = match std::fs::hard_link(source, target) {
        Ok(()) => {
            let placed = open_regular(target, false)?;
            let landed = placed.metadata()?;
            if (landed.dev(), landed.ino()) != (meta.dev(), meta.ino()) {
                let _ = std::fs::remove_file(target);
                return Err(std::io::Error::other(
                    "the file was swapped while it was linked",
                ));
            }
            placed
        }
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) && copy_across_filesystems => {
            let copy = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(target)?;
            if let Err(e) = crate::sys::file::copy_sparse_fd(&src, &copy) {
                let _ = std::fs::remove_file(target);
                return Err(e);
            }
            copy
        }
        Err(e) => return Err(e),
    };
    std::os::unix::fs::fchown(&placed, Some(uid), Some(gid))?;
    placed.set_permissions(std::fs::Permissions::from_mode(0o600))
}

/// Opens `path` for reading (and writing, with `write`) if it is a
/// regular file, never following a link (nor blocking on a FIFO).
pub(crate) fn open_regular(path: &Path, write: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// Removes the jail directory and the jailer's cgroup; absent is fine.
/// Keeps going after a failure and reports every one.
pub fn cleanup(vm: &str, plan: &JailPlan) -> Result<()> {
    let mut failures = Vec::new();
    if let Err(e) = std::fs::remove_dir_all(&plan.jail_dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            failures.push((plan.jail_dir.clone(), e));
        }
    }
    if let Err(e) = plan.cgroup.remove() {
        failures.push((plan.cgroup.dirs()[0].to_path_buf(), e));
    }
    match failures.len() {
        0 => Ok(()),
        _ => {
            let (first, source) = failures.remove(0);
            let others: Vec<String> = failures
                .iter()
                .map(|(p, e)| format!("{}: {e}", p.display()))
                .collect();
            Err(VmmError::Io {
                context: format!(
                    "vm {vm}: cannot remove {}{}",
                    first.display(),
                    if others.is_empty() {
                        String::new()
                    } else {
                        format!(" (also failed: {})", others.join("; "))
                    }
                ),
                source,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::vm_config::tests::sample;

    fn jail() -> Jail {
        Jail {
            id: "vm-alice".into(),
            uid: 10007,
            gid: 10007,
            chroot_base: "/srv/jailer".into(),
            cgroup_parent: "lobster".into(),
            limits: Limits {
                memory_bytes: 1_200 << 20,
                cpu_quota_us: 200_000,
                cpu_period_us: 100_000,
                pids: 130,
            },
            netns: Some("/var/run/netns/lobster-alice".into()),
        }
    }

    /// A host with every controller on cgroup v2.
    fn v2() -> Hierarchy {
        let mountinfo = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw";
        Hierarchy::parse(mountinfo, |_| Some("cpu memory pids".into())).unwrap()
    }

    /// A host like this one: controllers on v1, an empty v2 mount.
    fn v1() -> Hierarchy {
        let mountinfo = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw";
        Hierarchy::parse(mountinfo, |_| Some(String::new())).unwrap()
    }

    fn fc_plan(config: &VmConfig, jail: &Jail, binary: &str) -> Result<JailPlan> {
        plan(config, jail, Path::new(binary), &Features::default(), &v2())
    }

    #[test]
    fn on_cgroup_v1_the_jailer_gets_v1_and_v1_file_names() {
        let p = plan(
            &sample(),
            &jail(),
            Path::new("/usr/local/bin/firecracker"),
            &Features::default(),
            &v1(),
        )
        .unwrap();
        let joined = p.args.join(" ");
        assert!(
            joined.contains(
                "--cgroup-version 1 --parent-cgroup lobster \
--cgroup memory.limit_in_bytes=1258291200 \
--cgroup cpu.cfs_period_us=100000 --cgroup cpu.cfs_quota_us=200000 \
--cgroup pids.max=130 --netns"
            ),
            "{joined}"
        );
        assert_eq!(
            p.cgroup.dirs(),
            [
                Path::new("/sys/fs/cgroup/memory/lobster/vm-alice"),
                Path::new("/sys/fs/cgroup/cpu/lobster/vm-alice"),
                Path::new("/sys/fs/cgroup/pids/lobster/vm-alice"),
            ]
        );
        // A host whose controllers are split cannot be served by one flag.
        let split = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw";
        let split = Hierarchy::parse(split, |_| Some("memory pids".into())).unwrap();
        let err = plan(
            &sample(),
            &jail(),
            Path::new("/usr/local/bin/firecracker"),
            &Features::default(),
            &split,
        )
        .unwrap_err();
        assert!(err.to_string().contains("cpu"), "{err}");
    }

    #[test]
    fn jailer_argv_matches_golden() {
        let config = sample();
        let plan = fc_plan(&config, &jail(), "/usr/local/bin/firecracker").unwrap();
        // Evict finds the same jail without planning.
        let mut vmm = crate::config::VmmConfig::default();
        vmm.firecracker.binary = "/usr/local/bin/firecracker".into();
        let mut jailed = config.clone();
        jailed.jail = Some(jail());
        assert_eq!(
            crate::vmm::jail_dir(crate::config::BackendKind::Firecracker, &vmm, &jailed),
            Some(plan.jail_dir.clone())
        );
        let golden = [
            "--id",
            "vm-alice",
            "--exec-file",
            "/usr/local/bin/firecracker",
            "--uid",
            "10007",
            "--gid",
            "10007",
            "--chroot-base-dir",
            "/srv/jailer",
            "--cgroup-version",
            "2",
            "--parent-cgroup",
            "lobster",
            "--cgroup",
            "memory.max=1258291200",
            "--cgroup",
            "cpu.max=200000 100000",
            "--cgroup",
            "pids.max=130",
            "--netns",
            "/var/run/netns/lobster-alice",
            "--",
            "--api-sock",
            "/api.socket",
        ];
        assert_eq!(plan.args, golden);
        assert_eq!(
            plan.root,
            Path::new("/srv/jailer/firecracker/vm-alice/root")
        );
        assert_eq!(
            plan.api_socket,
            Path::new("/srv/jailer/firecracker/vm-alice/root/api.socket")
        );
        assert_eq!(
            plan.cgroup.dirs(),
            [Path::new("/sys/fs/cgroup/lobster/vm-alice")]
        );
        assert_eq!(
            plan.names,
            FileNames {
                kernel: "/vmlinux".into(),
                initrd: Some("/initrd".into()),
                drives: vec!["/drive-rootfs.img".into(), "/drive-overlay.img".into()],
                metrics: None,
            }
        );
        // Only the writable overlay is handed to the tenant.
        let chowned: Vec<&str> = plan
            .files
            .iter()
            .filter(|f| f.chown)
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(chowned, ["/drive-overlay.img"]);
    }

    #[test]
    fn jailer_rejects_relative_or_misnamed_binaries() {
        let config = sample();
        for binary in ["firecracker", "/usr/bin/fc"] {
            let err = fc_plan(&config, &jail(), binary).unwrap_err();
            assert!(err.to_string().contains("vmm.firecracker.binary"), "{err}");
        }
    }

    #[test]
    fn prepare_links_files_and_cleanup_removes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = sample();
        for (i, name) in ["kernel", "initrd", "base", "overlay"].iter().enumerate() {
            let path = dir.path().join(name);
            std::fs::write(&path, name).unwrap();
            match i {
                0 => config.kernel = path,
                1 => config.initrd = Some(path),
                n => config.drives[n - 2].path = path,
            }
        }
        let mut j = jail();
        j.chroot_base = dir.path().join("jail");
        // chown to ourselves: works without root, still exercises the call.
        // Our own ids, read from a directory we just created.
        use std::os::unix::fs::MetadataExt;
        let me = std::fs::metadata(dir.path()).unwrap();
        (j.uid, j.gid) = (me.uid(), me.gid());
        let features = Features {
            metrics: true,
            ..Features::default()
        };
        let p = plan(
            &config,
            &j,
            Path::new("/usr/bin/firecracker"),
            &features,
            &v2(),
        )
        .unwrap();
        prepare("vm-alice", &p).unwrap();
        assert_eq!(
            std::fs::read_to_string(p.host_path("/drive-overlay.img")).unwrap(),
            "overlay"
        );
        assert_eq!(
            std::fs::metadata(p.host_path("/vmlinux")).unwrap().nlink(),
            2
        );
        assert!(p.host_path("/metrics.json").exists());
        cleanup("vm-alice", &p).unwrap();
        assert!(!p.jail_dir.exists());
        cleanup("vm-alice", &p).unwrap(); // idempotent
    }

    #[test]
    fn a_tenant_file_is_placed_private_and_a_planted_link_never_followed() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let me = std::fs::metadata(dir.path()).unwrap();
        let owner = (me.uid(), me.gid());
        let secret = dir.path().join("registry.json");
        std::fs::write(&secret, "every token").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let planted = dir.path().join("snapshot.mem");
        std::os::unix::fs::symlink(&secret, &planted).unwrap();
        let target = dir.path().join("in-jail.mem");
        assert!(place_owned(&planted, &target, owner, true).is_err());
        assert!(target.symlink_metadata().is_err(), "nothing may land");
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "the link's target was changed");

        let real = dir.path().join("snapshot.state");
        std::fs::write(&real, "state").unwrap();
        place_owned(&real, &target, owner, true).unwrap();
        let placed = std::fs::symlink_metadata(&target).unwrap();
        assert_eq!(
            placed.ino(),
            std::fs::metadata(&real).unwrap().ino(),
            "a hard link"
        );
        assert_eq!(placed.permissions().mode() & 0o777, 0o600);
        assert_eq!((placed.uid(), placed.gid()), owner);
    }

    #[test]
    fn prepare_rolls_back_when_a_source_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = sample();
        config.kernel = dir.path().join("missing-kernel");
        let mut j = jail();
        j.chroot_base = dir.path().join("jail");
        let p = fc_plan(&config, &j, "/usr/bin/firecracker").unwrap();
        let err = prepare("vm-alice", &p).unwrap_err();
        assert!(err.to_string().contains("missing-kernel"), "{err}");
        assert!(!p.jail_dir.exists());
    }
}
