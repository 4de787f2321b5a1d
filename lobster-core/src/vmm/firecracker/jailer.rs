//! Jailer mode: Firecracker runs chrooted, as the tenant's own uid/gid, in
//! cgroup v2 limits and optionally in a network namespace.
//!
//! [`plan`] is pure (golden-tested): the jailer's argv and what must be in
//! the chroot. [`prepare`] applies it before the jailer starts: it creates
//! `<chroot_base>/<exec name>/<vm_id>/root`, hard-links the kernel, initrd
//! and drives into it (the writable overlay, and the metrics file, are
//! chowned to the tenant), and [`cleanup`] removes the chroot and the
//! jailer's cgroup once Firecracker has exited. The jailer itself is not run
//! by this module's tests (no jailer binary on the development host).

use std::path::{Path, PathBuf};

use super::plan::{utf8, Features, FileNames};
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
    /// Hand it to the tenant's uid/gid (writable files).
    pub chown: bool,
}

/// Everything needed to start Firecracker under the jailer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailPlan {
    /// The jailer's arguments (without the jailer binary).
    pub args: Vec<String>,
    /// The jail directory `<chroot_base>/<exec name>/<vm_id>` (removed on cleanup).
    pub jail_dir: PathBuf,
    /// The chroot: `<jail_dir>/root`.
    pub root: PathBuf,
    /// Files to place there.
    pub files: Vec<ChrootFile>,
    /// How Firecracker names the files (chroot-relative).
    pub names: FileNames,
    /// The API socket as seen from the host.
    pub api_socket: PathBuf,
    /// The jailer's cgroup directory (removed on cleanup).
    pub cgroup_dir: PathBuf,
    /// Tenant uid and gid.
    pub owner: (u32, u32),
}

impl JailPlan {
    /// A path inside the chroot, as seen from the host.
    pub fn host_path(&self, name: &str) -> PathBuf {
        self.root.join(name.trim_start_matches('/'))
    }
}

/// Plans the jailer invocation for `config` (which must have `jail` set).
pub fn plan(
    config: &VmConfig,
    jail: &Jail,
    firecracker: &Path,
    features: &Features,
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
    let jail_dir = jail.chroot_base.join(exec_name).join(&config.vm_id);
    let root = jail_dir.join("root");

    let mut files = vec![ChrootFile {
        source: Some(config.kernel.clone()),
        name: "/vmlinux".into(),
        chown: false,
    }];
    if let Some(initrd) = &config.initrd {
        files.push(ChrootFile {
            source: Some(initrd.clone()),
            name: "/initrd".into(),
            chown: false,
        });
    }
    for drive in &config.drives {
        files.push(ChrootFile {
            source: Some(drive.path.clone()),
            name: format!("/drive-{}.img", drive.id),
            chown: !drive.read_only,
        });
    }
    if features.metrics {
        files.push(ChrootFile {
            source: None,
            name: "/metrics.json".into(),
            chown: true,
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
        config.vm_id.clone(),
        "--exec-file".into(),
        utf8(config, "vmm.firecracker.binary", firecracker)?,
        "--uid".into(),
        jail.uid.to_string(),
        "--gid".into(),
        jail.gid.to_string(),
        "--chroot-base-dir".into(),
        utf8(config, "jail.chroot_base", &jail.chroot_base)?,
        "--cgroup-version".into(),
        "2".into(),
    ];
    if let Some(bytes) = jail.memory_max_bytes {
        args.extend(["--cgroup".into(), format!("memory.max={bytes}")]);
    }
    if let Some((quota, period)) = jail.cpu_max {
        args.extend(["--cgroup".into(), format!("cpu.max={quota} {period}")]);
    }
    if let Some(netns) = &jail.netns {
        args.extend(["--netns".into(), utf8(config, "jail.netns", netns)?]);
    }
    args.extend(["--".into(), "--api-sock".into(), API_SOCKET.into()]);

    Ok(JailPlan {
        args,
        api_socket: root.join(API_SOCKET.trim_start_matches('/')),
        cgroup_dir: PathBuf::from("/sys/fs/cgroup")
            .join(exec_name)
            .join(&config.vm_id),
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
    use std::os::unix::fs::chown;
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
    std::fs::create_dir_all(&plan.root)
        .map_err(|e| (format!("cannot create chroot {}", plan.root.display()), e))?;
    for file in &plan.files {
        let target = plan.host_path(&file.name);
        match &file.source {
            Some(source) => std::fs::hard_link(source, &target).map_err(|e| {
                (
                    format!(
                        "cannot hard-link {} into the chroot as {} (chroot_base must be on the same filesystem)",
                        source.display(),
                        target.display()
                    ),
                    e,
                )
            })?,
            None => {
                std::fs::File::create(&target)
                    .map_err(|e| (format!("cannot create {}", target.display()), e))?;
            }
        }
        if file.chown {
            chown(&target, Some(plan.owner.0), Some(plan.owner.1))
                .map_err(|e| (format!("cannot chown {}", target.display()), e))?;
        }
    }
    Ok(())
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
    if let Err(e) = std::fs::remove_dir(&plan.cgroup_dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            failures.push((plan.cgroup_dir.clone(), e));
        }
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
            uid: 10007,
            gid: 10007,
            chroot_base: "/srv/jailer".into(),
            memory_max_bytes: Some(1_200 << 20),
            cpu_max: Some((200_000, 100_000)),
            netns: Some("/var/run/netns/lobster-alice".into()),
        }
    }

    #[test]
    fn jailer_argv_matches_golden() {
        let config = sample();
        let plan = plan(
            &config,
            &jail(),
            Path::new("/usr/local/bin/firecracker"),
            &Features::default(),
        )
        .unwrap();
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
            "--cgroup",
            "memory.max=1258291200",
            "--cgroup",
            "cpu.max=200000 100000",
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
            plan.cgroup_dir,
            Path::new("/sys/fs/cgroup/firecracker/vm-alice")
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
            let err = plan(&config, &jail(), Path::new(binary), &Features::default()).unwrap_err();
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
        let p = plan(&config, &j, Path::new("/usr/bin/firecracker"), &features).unwrap();
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
    fn prepare_rolls_back_when_a_source_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = sample();
        config.kernel = dir.path().join("missing-kernel");
        let mut j = jail();
        j.chroot_base = dir.path().join("jail");
        let p = plan(
            &config,
            &j,
            Path::new("/usr/bin/firecracker"),
            &Features::default(),
        )
        .unwrap();
        let err = prepare("vm-alice", &p).unwrap_err();
        assert!(err.to_string().contains("missing-kernel"), "{err}");
        assert!(!p.jail_dir.exists());
    }
}
