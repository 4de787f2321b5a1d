//! The sandbox of a VMM that lobster confines itself (QEMU): the process
//! enters its own cgroup, gets a private mount namespace whose root is the
//! jail `<chroot_base>/<backend>/<vm_id>/root` holding only bind mounts of
//! its files (each at its host path) and its own device nodes, and drops
//! to the tenant's uid/gid with no supplementary groups and
//! `no_new_privs`; [`VmProcess::spawn_confined`](super::VmProcess) does
//! that between fork and exec.
//!
//! [`plan`] is pure; [`prepare`] makes the jail and the cgroup; [`cleanup`]
//! removes both (idempotent). [`members`] names the processes in a VM's
//! cgroup: whatever runs there is the tenant's VMM, whoever started it.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Jail, Result, VmConfig, VmmError};
pub use crate::sys::cgroup::{Cgroup, Hierarchy};
use crate::sys::confine::{Bind, Confinement};

/// Host directories every dynamically linked VMM needs: libraries and
/// firmware (read-only).
const SYSTEM_DIRS: [&str; 1] = ["/usr"];
/// Host files the dynamic loader reads (read-only, when present).
const SYSTEM_FILES: [&str; 1] = ["/etc/ld.so.cache"];
/// Merged-/usr links recreated in the jail when the host has them.
const SYSTEM_LINKS: [&str; 4] = ["/lib", "/lib64", "/bin", "/sbin"];

/// The VMM's control socket inside its jail: short, so that the host's path
/// to it (`<jail>/root/run/vmm.sock`) fits a unix socket address.
pub const SOCKET: &str = "/run/vmm.sock";

/// Longest path a unix socket address holds.
const SOCKET_PATH_MAX: usize = 107;

/// Everything needed to confine one VMM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxPlan {
    /// `<chroot_base>/<backend>/<vm_id>` (root-only, removed on cleanup).
    pub jail_dir: PathBuf,
    /// The new root: `<jail_dir>/root`.
    pub root: PathBuf,
    /// Host paths bound into the jail at the same path (read-only unless
    /// the VMM writes them: its writable drives).
    pub binds: Vec<Bind>,
    /// Character devices given their own node in the jail, owned by the tenant.
    pub devices: Vec<PathBuf>,
    /// Directories made inside the jail for the tenant (its control
    /// socket's, see [`SOCKET`]).
    pub private_dirs: Vec<PathBuf>,
    /// The VM's cgroup, relative to each controller's mount.
    pub cgroup: PathBuf,
    /// The jail it came from (uid, gid, limits).
    pub jail: Jail,
}

impl SandboxPlan {
    /// A host path as seen from the host inside the jail root.
    pub fn in_root(&self, path: &Path) -> PathBuf {
        in_root(&self.root, path)
    }
}

fn in_root(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// The directory of `jail` for `backend` (`qemu`, `firecracker`).
pub fn jail_dir(jail: &Jail, backend: &str) -> PathBuf {
    jail.chroot_base.join(backend).join(&jail.id)
}

/// The control socket of a VMM as the host reaches it: [`SOCKET`] in its
/// jail, else `paths.api_socket`.
pub fn host_socket(config: &VmConfig, backend: &str) -> PathBuf {
    match &config.jail {
        Some(jail) => in_root(&jail_dir(jail, backend).join("root"), Path::new(SOCKET)),
        None => config.paths.api_socket.clone(),
    }
}

/// Plans the sandbox of `config` (which must have a jail) running
/// `binary`, with `devices` (e.g. `/dev/kvm`, `/dev/net/tun`).
pub fn plan(
    config: &VmConfig,
    backend: &str,
    binary: &Path,
    devices: &[&Path],
) -> Result<SandboxPlan> {
    let jail = config.jail.clone().ok_or_else(|| VmmError::InvalidConfig {
        vm: config.vm_id.clone(),
        field: "jail".into(),
        reason: "a sandbox needs a jail".into(),
    })?;
    let absolute = |field: &str, path: &Path| {
        if path.is_absolute() {
            Ok(path.to_path_buf())
        } else {
            Err(VmmError::InvalidConfig {
                vm: config.vm_id.clone(),
                field: field.into(),
                reason: format!("{} must be absolute in a sandbox", path.display()),
            })
        }
    };
    let ro = |source: PathBuf| Bind {
        target: PathBuf::new(),
        source,
        read_only: true,
    };
    let mut binds: Vec<Bind> = SYSTEM_DIRS.iter().map(|d| ro(d.into())).collect();
    binds.extend(
        SYSTEM_FILES
            .iter()
            .filter(|f| Path::new(f).exists())
            .map(|f| ro(f.into())),
    );
    let binary = absolute("binary", binary)?;
    if !SYSTEM_DIRS.iter().any(|d| binary.starts_with(d)) {
        binds.push(ro(binary));
    }
    binds.push(ro(absolute("kernel", &config.kernel)?));
    if let Some(initrd) = &config.initrd {
        binds.push(ro(absolute("initrd", initrd)?));
    }
    for (i, drive) in config.drives.iter().enumerate() {
        let mut bind = ro(absolute(&format!("drives[{i}].path"), &drive.path)?);
        bind.read_only = drive.read_only;
        binds.push(bind);
    }
    let jail_dir = jail_dir(&jail, backend);
    let root = jail_dir.join("root");
    for bind in &mut binds {
        bind.target = in_root(&root, &bind.source);
    }
    let socket = host_socket(config, backend);
    if socket.as_os_str().len() > SOCKET_PATH_MAX {
        return Err(VmmError::InvalidConfig {
            vm: config.vm_id.clone(),
            field: "jail.chroot_base".into(),
            reason: format!(
                "the control socket {} would be longer than {SOCKET_PATH_MAX} bytes; use a shorter chroot base",
                socket.display()
            ),
        });
    }
    Ok(SandboxPlan {
        private_dirs: Path::new(SOCKET)
            .parent()
            .map(Path::to_path_buf)
            .into_iter()
            .collect(),
        devices: devices.iter().map(|d| d.to_path_buf()).collect(),
        cgroup: jail.cgroup(),
        jail_dir,
        root,
        binds,
        jail,
    })
}

fn io(vm: &str, what: String) -> impl FnOnce(std::io::Error) -> VmmError + '_ {
    move |source| VmmError::Io {
        context: format!("vm {vm}: {what}"),
        source,
    }
}

/// The host's cgroup hierarchy (memory, cpu and pids controllers).
pub fn hierarchy(vm: &str) -> Result<Hierarchy> {
    Hierarchy::detect().map_err(io(vm, "cannot find the cgroup controllers".into()))
}

/// Makes the jail and the cgroup of `plan` (replacing stale ones; on
/// failure nothing is left) and hands the writable drives to the tenant
/// (0600). Returns how the VMM process confines itself.
pub fn prepare(config: &VmConfig, plan: &SandboxPlan) -> Result<Confinement> {
    let made = make(config, plan);
    if made.is_err() {
        let _ = cleanup(config, plan);
    }
    made
}

fn make(config: &VmConfig, plan: &SandboxPlan) -> Result<Confinement> {
    let vm = config.vm_id.as_str();
    let (uid, gid) = (plan.jail.uid, plan.jail.gid);
    remove_dir(vm, &plan.jail_dir)?;
    let mut private = std::fs::DirBuilder::new();
    private.recursive(true).mode(0o700);
    private
        .create(&plan.jail_dir)
        .map_err(io(vm, format!("cannot create {}", plan.jail_dir.display())))?;
    // The jail's inside is only reachable through the root-only jail_dir.
    let mut inner = std::fs::DirBuilder::new();
    inner.recursive(true).mode(0o755);
    for bind in &plan.binds {
        let target = &bind.target;
        let parent = target.parent().unwrap_or(&plan.root);
        inner
            .create(parent)
            .map_err(io(vm, format!("cannot create {}", parent.display())))?;
        let made = if bind.source.is_dir() {
            inner.create(target)
        } else {
            std::fs::File::create(target).map(drop)
        };
        made.map_err(io(vm, format!("cannot create {}", target.display())))?;
        if !bind.read_only {
            std::os::unix::fs::chown(&bind.source, Some(uid), Some(gid))
                .and_then(|()| {
                    std::fs::set_permissions(&bind.source, std::fs::Permissions::from_mode(0o600))
                })
                .map_err(io(
                    vm,
                    format!("cannot hand {} to the tenant", bind.source.display()),
                ))?;
        }
    }
    for link in SYSTEM_LINKS {
        if let Ok(to) = std::fs::read_link(link) {
            let at = plan.in_root(Path::new(link));
            std::os::unix::fs::symlink(&to, &at)
                .map_err(io(vm, format!("cannot link {}", at.display())))?;
        }
    }
    for device in &plan.devices {
        let at = plan.in_root(device);
        let parent = at.parent().unwrap_or(&plan.root);
        inner
            .create(parent)
            .map_err(io(vm, format!("cannot create {}", parent.display())))?;
        crate::sys::confine::mirror_device(device, &at, uid, gid)
            .map_err(io(vm, format!("cannot make device {}", at.display())))?;
    }
    for dir in &plan.private_dirs {
        let at = plan.in_root(dir);
        private
            .create(&at)
            .and_then(|()| std::os::unix::fs::chown(&at, Some(uid), Some(gid)))
            .map_err(io(vm, format!("cannot create {}", at.display())))?;
    }
    let cgroup = Cgroup::at(&hierarchy(vm)?, &plan.cgroup);
    cgroup
        .create(&plan.jail.limits)
        .map_err(io(vm, "cannot create its cgroup".into()))?;
    Ok(Confinement {
        cgroup_procs: cgroup.procs_files(),
        root: Some((plan.root.clone(), plan.binds.clone())),
        uid,
        gid,
    })
}

fn remove_dir(vm: &str, dir: &Path) -> Result<()> {
    // Bind mounts live in the VMM's own namespace: here they are plain files.
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io(vm, format!("cannot remove {}", dir.display()))(e))
        }
        _ => Ok(()),
    }
}

/// The cgroup of `config`'s jail; `None` without a jail, or on a host
/// without the controllers (where no VMM can have been put in one).
pub fn cgroup(config: &VmConfig) -> Option<Cgroup> {
    let jail = config.jail.as_ref()?;
    let hierarchy = Hierarchy::detect().ok()?;
    Some(Cgroup::at(&hierarchy, &jail.cgroup()))
}

/// The processes in the cgroup of `config`'s jail.
pub fn members(config: &VmConfig) -> Vec<i32> {
    cgroup(config).map(|c| c.members()).unwrap_or_default()
}

/// Removes the jail directory and the cgroup of `plan`; absent is fine.
pub fn cleanup(config: &VmConfig, plan: &SandboxPlan) -> Result<()> {
    super::remove_jail(config, &plan.jail_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::vm_config::tests::sample;

    #[test]
    fn the_jail_holds_only_the_vm_s_files_at_their_host_paths() {
        let mut config = sample();
        let vmm = crate::config::VmmConfig::default();
        config.jail = Some(Jail::for_tenant(
            &vmm,
            crate::config::BackendKind::Qemu,
            "0a1b2c3d",
            10007,
            1,
            256,
            None,
        ));
        let tun = Path::new("/dev/net/tun");
        let p = plan(&config, "qemu", Path::new("/usr/bin/qemu"), &[tun]).unwrap();
        assert_eq!(p.root, Path::new("/srv/jailer/qemu/0a1b2c3d/root"));
        let binds: Vec<(String, bool)> = p
            .binds
            .iter()
            .map(|b| (b.source.display().to_string(), b.read_only))
            .filter(|(s, _)| s != "/etc/ld.so.cache")
            .collect();
        let ro = |s: &str| (s.to_string(), true);
        assert_eq!(
            binds,
            [
                ro("/usr"),
                ro("/img/vmlinux"),
                ro("/img/initramfs.cpio.gz"),
                ro("/img/rootfs.ext4"),
                ("/var/lib/lobsterd/overlays/alice.ext4".into(), false),
            ]
        );
        let kernel = p.binds.iter().find(|b| b.source == config.kernel).unwrap();
        assert_eq!(
            kernel.target,
            Path::new("/srv/jailer/qemu/0a1b2c3d/root/img/vmlinux")
        );
        assert_eq!(p.private_dirs, [Path::new("/run")]);
        assert_eq!(p.cgroup, Path::new("lobster/0a1b2c3d"));
        assert_eq!(
            host_socket(&config, "qemu"),
            Path::new("/srv/jailer/qemu/0a1b2c3d/root/run/vmm.sock")
        );
        // The longest tenant name still fits under the default base.
        let mut long = config.clone();
        long.jail.as_mut().unwrap().id = "a".repeat(64);
        assert!(plan(&long, "qemu", Path::new("/usr/bin/qemu"), &[]).is_ok());
        long.jail.as_mut().unwrap().chroot_base = format!("/{}", "b".repeat(20)).into();
        let err = plan(&long, "qemu", Path::new("/usr/bin/qemu"), &[]).unwrap_err();
        assert!(err.to_string().contains("chroot_base"), "{err}");
        config.kernel = "relative".into();
        let err = plan(&config, "qemu", Path::new("/usr/bin/qemu"), &[]).unwrap_err();
        assert!(err.to_string().contains("kernel"), "{err}");
    }
}
