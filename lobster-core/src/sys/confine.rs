//! Confining a child between fork and exec: into its cgroup, into a
//! private mount namespace whose root is a jail directory holding only
//! bind mounts of its files, and down to an unprivileged uid/gid with no
//! supplementary groups and `no_new_privs`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A host path made visible inside the jail at `target` (a path in the
/// jail root, which must already exist: an empty file or directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// The host path.
    pub source: PathBuf,
    /// The mount point, as a host path inside the jail root.
    pub target: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

/// How a child is confined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// `cgroup.procs` files the child writes itself into.
    pub cgroup_procs: Vec<PathBuf>,
    /// The jail root and what is bound into it; `None` keeps the host's view.
    pub root: Option<(PathBuf, Vec<Bind>)>,
    /// The uid the child runs as.
    pub uid: u32,
    /// The gid the child runs as.
    pub gid: u32,
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

/// Makes the command's child confine itself as `confinement` says before
/// it executes (after every hook registered earlier). Fails before the
/// fork when a cgroup file cannot be opened or a path is unusable.
pub fn confine_on_exec(command: &mut Command, confinement: &Confinement) -> io::Result<()> {
    let procs: Vec<OwnedFd> = confinement
        .cgroup_procs
        .iter()
        .map(|file| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(file)
                .map(OwnedFd::from)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", file.display())))
        })
        .collect::<io::Result<_>>()?;
    let root = match &confinement.root {
        None => None,
        Some((root, binds)) => {
            let binds = binds
                .iter()
                .map(|b| Ok((c_path(&b.source)?, c_path(&b.target)?, b.read_only)))
                .collect::<io::Result<Vec<_>>>()?;
            Some((c_path(root)?, binds))
        }
    };
    let (uid, gid) = (confinement.uid, confinement.gid);
    // SAFETY: the closure runs between fork and exec. It calls only
    // async-signal-safe system calls (write, unshare, mount, chroot, chdir,
    // setgroups, setresgid, setresuid, prctl) on data prepared before the
    // fork, and allocates nothing. The fds stay open until exec closes them.
    unsafe {
        command.pre_exec(move || {
            let check = |rc: libc::c_int| {
                if rc < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            };
            for fd in &procs {
                // "0" is the writing process, on v1 and v2 alike.
                if libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some((root, binds)) = &root {
                check(libc::unshare(libc::CLONE_NEWNS))?;
                // Nothing mounted here propagates back to the host.
                check(libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                for (source, target, read_only) in binds {
                    check(libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    ))?;
                    let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID;
                    if *read_only {
                        flags |= libc::MS_RDONLY;
                    }
                    // A remount may not drop locked flags (nodev, noexec)
                    // of the source mount; it keeps them if asked to.
                    if libc::mount(
                        std::ptr::null(),
                        target.as_ptr(),
                        std::ptr::null(),
                        flags,
                        std::ptr::null(),
                    ) < 0
                    {
                        let mut st: libc::statvfs = std::mem::zeroed();
                        check(libc::statvfs(target.as_ptr(), &mut st))?;
                        let locked = st.f_flag
                            & (libc::ST_NODEV | libc::ST_NOEXEC | libc::ST_NOSUID) as libc::c_ulong;
                        let mut kept = flags;
                        if locked & libc::ST_NODEV as libc::c_ulong != 0 {
                            kept |= libc::MS_NODEV;
                        }
                        if locked & libc::ST_NOEXEC as libc::c_ulong != 0 {
                            kept |= libc::MS_NOEXEC;
                        }
                        check(libc::mount(
                            std::ptr::null(),
                            target.as_ptr(),
                            std::ptr::null(),
                            kept,
                            std::ptr::null(),
                        ))?;
                    }
                }
                check(libc::chroot(root.as_ptr()))?;
                check(libc::chdir(c"/".as_ptr()))?;
            }
            super::identity::become_for_good(uid, gid)
        });
    }
    Ok(())
}

/// Makes `target` the same character device as `host` (its own node, so
/// its owner and mode are the jail's: `uid`:`gid`, 0600).
pub fn mirror_device(host: &Path, target: &Path, uid: u32, gid: u32) -> io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(host)?;
    if !meta.file_type().is_char_device() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a character device", host.display()),
        ));
    }
    let path = c_path(target)?;
    // SAFETY: mknod reads the NUL-terminated path only during the call.
    if unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o600, meta.rdev()) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("mknod {}: {e}", target.display()),
        ));
    }
    std::os::unix::fs::chown(target, Some(uid), Some(gid))
}
