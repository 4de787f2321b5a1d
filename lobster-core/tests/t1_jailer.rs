//! T1: preparing a jailer chroot for real, as root: hard links into the
//! chroot, the writable overlay (and metrics file) handed to the tenant's
//! uid/gid, the shared read-only files left alone, and cleanup removing it
//! all. (The jailer binary itself is not run here: see tx_firecracker_real.)

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use lobster_core::config::{BackendKind, VmmConfig};
use lobster_core::vmm::firecracker::jailer;
use lobster_core::vmm::firecracker::plan::Features;
use lobster_core::vmm::sandbox::Hierarchy;
use lobster_core::vmm::Jail;
use lobster_testkit::vm::vm_config;

#[test]
#[ignore = "t1: needs root"]
fn chroot_is_prepared_with_tenant_ownership_and_removed_again() {
    let euid = std::fs::metadata("/proc/self").unwrap().uid();
    assert_eq!(euid, 0, "needs root (chown to the tenant uid)");
    let dir = tempfile::tempdir().unwrap();
    let mut jail = Jail::for_tenant(
        &VmmConfig::default(),
        BackendKind::Firecracker,
        10_996,
        2,
        512,
        None,
    );
    jail.chroot_base = dir.path().join("jail");
    let mut config = vm_config(dir.path(), "vm-t1", dir.path().join("vmlinux"));
    config.initrd = Some(dir.path().join("initrd"));
    config.boot_args = String::new();
    config.vcpus = 2;
    config.memory_mib = 512;
    config.jail = Some(jail.clone());
    // Each file holds its own name, so a copy is told from the source.
    let overlay = config.drives[1].path.clone();
    for file in [
        &config.kernel,
        config.initrd.as_ref().unwrap(),
        &config.drives[0].path,
        &overlay,
    ] {
        std::fs::write(file, file.file_name().unwrap().as_encoded_bytes()).unwrap();
    }
    let features = Features {
        metrics: true,
        ..Features::default()
    };
    let plan = jailer::plan(
        &config,
        &jail,
        Path::new("/usr/local/bin/firecracker"),
        &features,
        &Hierarchy::detect().expect("cgroup controllers"),
    )
    .unwrap();
    jailer::prepare("vm-t1", &plan).unwrap();

    let owner = |name: &str| {
        let m = std::fs::metadata(plan.host_path(name)).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(owner("/drive-overlay.img"), (10_996, 10_996));
    assert_eq!(owner("/metrics.json"), (10_996, 10_996));
    assert_eq!(
        owner("/drive-rootfs.img"),
        (0, 0),
        "shared base must stay root's"
    );
    assert_eq!(owner("/vmlinux"), (0, 0));
    // Private: the jail is root's alone, the tenant's files its alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&plan.jail_dir), 0o700);
    assert_eq!(mode(&plan.root), 0o700);
    assert_eq!(mode(&plan.host_path("/drive-overlay.img")), 0o600);
    assert_eq!(mode(&plan.host_path("/metrics.json")), 0o600);
    // Hard links, not copies: same inode as the source.
    assert_eq!(
        std::fs::metadata(plan.host_path("/drive-overlay.img"))
            .unwrap()
            .ino(),
        std::fs::metadata(&overlay).unwrap().ino()
    );

    jailer::cleanup("vm-t1", &plan).unwrap();
    assert!(!plan.jail_dir.exists());
    jailer::cleanup("vm-t1", &plan).unwrap();
    // The sources are untouched (only the links went away).
    assert_eq!(std::fs::read_to_string(&overlay).unwrap(), "overlay.img");
}
