//! `init`: write the configuration, create the state directories, and check
//! the prerequisites, naming each missing one and how to get it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::base::find_program;
use crate::config::{Backend, Config, ConfigError};
use crate::error::Result;
use crate::store::{Store, StoreError};

/// What `init` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// Route domain for a newly written configuration.
    pub domain: Option<String>,
    /// Root every path of a newly written configuration under this directory.
    pub state_dir: Option<PathBuf>,
    /// Overwrite an existing configuration that differs.
    pub force: bool,
}

/// What `init` did and found.
#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    /// The configuration file.
    pub config_path: PathBuf,
    /// `written`, `unchanged` or `kept` (an existing, different file).
    pub config_action: &'static str,
    /// Directories that now exist.
    pub directories: Vec<PathBuf>,
    /// Every prerequisite with its state.
    pub prerequisites: Vec<Prerequisite>,
}

impl InitReport {
    /// The prerequisites that are missing.
    pub fn missing(&self) -> impl Iterator<Item = &Prerequisite> {
        self.prerequisites.iter().filter(|p| !p.ok)
    }
}

/// One thing lobster needs on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Prerequisite {
    /// Short name (`root`, `caddy`, `kernel`, ...).
    pub name: &'static str,
    /// Whether it is in place.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// How to get it, when missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Writes the configuration (idempotent), creates the directories and an
/// empty registry, and checks the prerequisites.
pub fn init(config_path: &Path, options: &InitOptions) -> Result<InitReport> {
    let mut desired = Config::default();
    if let Some(domain) = &options.domain {
        desired.domain = domain.clone();
        desired.validate()?;
    }
    if let Some(root) = &options.state_dir {
        desired.paths = crate::config::PathsConfig::under(root);
    }
    let config_action = match std::fs::read_to_string(config_path) {
        Ok(text) => {
            let existing = Config::from_json(&text);
            match existing {
                Ok(existing) if existing == desired => "unchanged",
                Ok(_) if !options.force => "kept",
                Err(e) if !options.force => {
                    return Err(e.in_file(config_path).into());
                }
                _ => {
                    write_config(config_path, &desired)?;
                    "written"
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_config(config_path, &desired)?;
            "written"
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: config_path.to_path_buf(),
                source,
            }
            .into())
        }
    };
    let config = Config::load(config_path)?;
    let p = &config.paths;
    let directories = vec![
        p.state_dir.clone(),
        p.overlays_dir.clone(),
        p.snapshots_dir.clone(),
        p.logs_dir.clone(),
        p.sockets_dir.clone(),
    ];
    for dir in &directories {
        create_private_dir(dir)?;
    }
    // An empty registry, unless one exists (a corrupt one is reported).
    let store = Store::new(&p.state_dir);
    store.update(|reg| Ok::<_, StoreError>(reg.tenants.len()))?;
    if !store.path().exists() {
        std::fs::write(
            store.path(),
            b"{\n  \"schema_version\": 1,\n  \"tenants\": {}\n}\n",
        )
        .map_err(|source| StoreError::Io {
            context: "cannot create registry",
            path: store.path().to_path_buf(),
            source,
        })?;
        set_mode(store.path(), 0o600)?;
    }
    Ok(InitReport {
        config_path: config_path.to_path_buf(),
        config_action,
        directories,
        prerequisites: preflight(&config),
    })
}

/// Checks what lobster needs on this host; never fails, reports instead.
pub fn preflight(config: &Config) -> Vec<Prerequisite> {
    let mut out = Vec::new();
    let root = rustix::process::geteuid().is_root();
    out.push(check(
        "root",
        root,
        if root {
            "running as root".into()
        } else {
            "not running as root".into()
        },
        "run lobsterd as root (TAP devices, firewall rules and VMs need it)",
    ));
    let tun = Path::new("/dev/net/tun").exists();
    out.push(check(
        "tun",
        tun,
        device_detail("/dev/net/tun", tun),
        "modprobe tun",
    ));
    out.push(accelerator(config));
    let vmm = &config.vmm;
    let firecracker = find_program(&vmm.firecracker.binary);
    let jailer = find_program(&vmm.firecracker.jailer);
    let qemu = find_program(&vmm.qemu.binary);
    let fc_fix = "install Firecracker and its jailer from the project's release tarball (verify its checksum) into /usr/local/bin";
    let qemu_fix = "apt-get install qemu-system-x86";
    match vmm.backend {
        Backend::Firecracker => {
            out.push(program(
                "firecracker",
                &vmm.firecracker.binary,
                &firecracker,
                fc_fix,
            ));
            if vmm.firecracker.use_jailer {
                out.push(program("jailer", &vmm.firecracker.jailer, &jailer, fc_fix));
                if let Some(binary) = &firecracker {
                    out.push(statically_linked(binary));
                }
            }
        }
        Backend::Qemu => out.push(program("qemu", &vmm.qemu.binary, &qemu, qemu_fix)),
        Backend::Auto => {
            let any = firecracker.is_some() || qemu.is_some();
            let detail = match (&firecracker, &qemu) {
                (Some(f), _) => format!("firecracker at {}", f.display()),
                (None, Some(q)) => format!("no firecracker; qemu at {}", q.display()),
                (None, None) => "neither firecracker nor qemu-system-x86_64 found".into(),
            };
            out.push(check(
                "vmm",
                any,
                detail,
                &format!("{qemu_fix}, or: {fc_fix}"),
            ));
        }
    }
    out.push(cgroups());
    let images = "build the guest images: guest/images/build.sh (see README)";
    for (name, path) in [
        ("kernel", &config.paths.kernel),
        ("initrd", &config.paths.initrd),
        ("rootfs", &config.paths.rootfs),
    ] {
        let ok = path.is_file();
        let detail = format!(
            "{} {}",
            path.display(),
            if ok { "exists" } else { "is missing" }
        );
        out.push(check(name, ok, detail, images));
    }
    for (name, binary, fix) in [
        ("caddy", "caddy", "apt-get install caddy"),
        ("iptables", "iptables-restore", "apt-get install iptables"),
    ] {
        let found = find_program(Path::new(binary));
        out.push(program(name, Path::new(binary), &found, fix));
    }
    out
}

/// Whether guests will run with hardware virtualisation: the configured
/// accelerator, or the probe (a real boot under KVM, cached per host boot).
/// Informational: QEMU with TCG works everywhere, only slower.
fn accelerator(config: &Config) -> Prerequisite {
    use crate::config::Accel;
    let detail = match (config.vmm.qemu.accel, find_program(&config.vmm.qemu.binary)) {
        (Accel::Kvm, _) => "vmm.qemu.accel is kvm".to_owned(),
        (Accel::Tcg, _) => {
            "vmm.qemu.accel is tcg: guests run under software emulation (slow)".to_owned()
        }
        (Accel::Auto, None) => "no qemu to probe KVM with".to_owned(),
        (Accel::Auto, Some(_)) if !config.paths.kernel.is_file() => {
            "KVM not probed yet: the guest kernel is missing".to_owned()
        }
        (Accel::Auto, Some(qemu)) => {
            match crate::vmm::qemu::accel::kvm_usable(&qemu, &config.paths.kernel) {
                Ok(()) => "KVM runs guests: hardware virtualisation".to_owned(),
                Err(why) => format!(
                    "KVM does not run guests here ({why}): QEMU uses TCG software emulation; \
                     a guest boots in seconds, the OpenClaw gateway needs minutes"
                ),
            }
        }
    };
    Prerequisite {
        name: "accel",
        ok: true,
        detail,
        fix: None,
    }
}

/// The jailer executes Firecracker inside an empty chroot: a dynamically
/// linked binary finds no loader there and fails with a bare ENOENT.
fn statically_linked(binary: &Path) -> Prerequisite {
    let ok = !has_interpreter(binary).unwrap_or(false);
    let detail = if ok {
        format!("{} is statically linked", binary.display())
    } else {
        format!(
            "{} is dynamically linked: under the jailer (an empty chroot) it fails with ENOENT",
            binary.display()
        )
    };
    check(
        "firecracker-static",
        ok,
        detail,
        "use the statically linked release binary (x86_64-unknown-linux-musl), or set vmm.firecracker.use_jailer = false",
    )
}

/// Whether the ELF file names a program interpreter (`PT_INTERP`): it is
/// dynamically linked. `None` when it is not a 64-bit little-endian ELF.
fn has_interpreter(binary: &Path) -> Option<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(binary).ok()?;
    let mut header = [0u8; 64];
    file.read_exact(&mut header).ok()?;
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return None;
    }
    let phoff = u64::from_le_bytes(header[0x20..0x28].try_into().ok()?);
    let phentsize = u64::from(u16::from_le_bytes(header[0x36..0x38].try_into().ok()?));
    let phnum = u16::from_le_bytes(header[0x38..0x3a].try_into().ok()?);
    const PT_INTERP: u32 = 3;
    for i in 0..u64::from(phnum) {
        let mut kind = [0u8; 4];
        file.seek(SeekFrom::Start(phoff + i * phentsize)).ok()?;
        file.read_exact(&mut kind).ok()?;
        if u32::from_le_bytes(kind) == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

/// Where the memory, cpu and pids controllers every VMM is limited by live.
fn cgroups() -> Prerequisite {
    use crate::vmm::sandbox::Hierarchy;
    let (ok, detail) = match Hierarchy::detect() {
        Ok(hierarchy) => (true, hierarchy.describe()),
        Err(e) => (false, e.to_string()),
    };
    check(
        "cgroups",
        ok,
        detail,
        "mount cgroup2 with the memory, cpu and pids controllers (or v1 hierarchies with them)",
    )
}

fn check(name: &'static str, ok: bool, detail: String, fix: &str) -> Prerequisite {
    Prerequisite {
        name,
        ok,
        detail,
        fix: (!ok).then(|| fix.to_owned()),
    }
}

fn program(name: &'static str, wanted: &Path, found: &Option<PathBuf>, fix: &str) -> Prerequisite {
    let detail = match found {
        Some(path) => format!("found at {}", path.display()),
        None => format!("{} not found", wanted.display()),
    };
    check(name, found.is_some(), detail, fix)
}

fn device_detail(path: &str, ok: bool) -> String {
    format!("{path} {}", if ok { "exists" } else { "is missing" })
}

fn write_config(path: &Path, config: &Config) -> Result<(), ConfigError> {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::base::replace_file(path, config.to_json_pretty().as_bytes(), 0o644)
    };
    write().map_err(|source| ConfigError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
        context: "cannot create directory",
        path: dir.to_path_buf(),
        source,
    })?;
    set_mode(dir, 0o700)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        StoreError::Io {
            context: "cannot set permissions of",
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64-bit little-endian ELF header with one program header of `kind`.
    fn elf(kind: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; 64 + 56];
        bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
        bytes[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        bytes[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        bytes[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        bytes[64..68].copy_from_slice(&kind.to_le_bytes());
        bytes
    }

    #[test]
    fn a_dynamically_linked_firecracker_is_reported_for_the_jailer() {
        let dir = tempfile::tempdir().unwrap();
        let (dynamic, fixed, script) = (
            dir.path().join("dynamic"),
            dir.path().join("static"),
            dir.path().join("script"),
        );
        std::fs::write(&dynamic, elf(3)).unwrap(); // PT_INTERP
        std::fs::write(&fixed, elf(1)).unwrap(); // PT_LOAD only
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        assert_eq!(has_interpreter(&dynamic), Some(true));
        assert_eq!(has_interpreter(&fixed), Some(false));
        assert_eq!(has_interpreter(&script), None);
        let report = statically_linked(&dynamic);
        assert!(!report.ok && report.detail.contains("ENOENT"), "{report:?}");
        assert!(report.fix.unwrap().contains("use_jailer"));
        assert!(statically_linked(&fixed).ok);
    }
}
