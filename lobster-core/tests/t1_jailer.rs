//! T1: preparing a jailer chroot for real, as root: hard links into the
//! chroot, the writable overlay (and metrics file) handed to the tenant's
//! uid/gid, the shared read-only files left alone, and cleanup removing it
//! all. (The jailer binary itself is not run here: see tx_firecracker_real.)

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use lobster_core::config::VmmConfig;
use lobster_core::vmm::firecracker::jailer;
use lobster_core::vmm::firecracker::plan::Features;
use lobster_core::vmm::{Drive, Jail, VmConfig, VmPaths};

#[test]
#[ignore = "t1: needs root"]
fn chroot_is_prepared_with_tenant_ownership_and_removed_again() {
    let euid = std::fs::metadata("/proc/self").unwrap().uid();
    assert_eq!(euid, 0, "needs root (chown to the tenant uid)");
    let dir = tempfile::tempdir().unwrap();
    for file in ["vmlinux", "initrd", "rootfs.ext4", "overlay.ext4"] {
        std::fs::write(dir.path().join(file), file).unwrap();
    }
    let mut jail = Jail::for_tenant(&VmmConfig::default(), 10_996, 2, 512, None);
    jail.chroot_base = dir.path().join("jail");
    let config = VmConfig {
        vm_id: "vm-t1".into(),
        kernel: dir.path().join("vmlinux"),
        initrd: Some(dir.path().join("initrd")),
        boot_args: String::new(),
        drives: vec![
            Drive {
                id: "rootfs".into(),
                path: dir.path().join("rootfs.ext4"),
                read_only: true,
                rate_limiter: None,
            },
            Drive {
                id: "overlay".into(),
                path: dir.path().join("overlay.ext4"),
                read_only: false,
                rate_limiter: None,
            },
        ],
        nic: None,
        vcpus: 2,
        memory_mib: 512,
        paths: VmPaths {
            api_socket: dir.path().join("api.sock"),
            console_log: dir.path().join("console.log"),
            console_log_max_bytes: 1 << 20,
            snapshot_dir: dir.path().join("snap"),
        },
        jail: Some(jail.clone()),
    };
    let features = Features {
        metrics: true,
        ..Features::default()
    };
    let plan = jailer::plan(
        &config,
        &jail,
        Path::new("/usr/local/bin/firecracker"),
        &features,
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
    // Hard links, not copies: same inode as the source.
    assert_eq!(
        std::fs::metadata(plan.host_path("/drive-overlay.img"))
            .unwrap()
            .ino(),
        std::fs::metadata(dir.path().join("overlay.ext4"))
            .unwrap()
            .ino()
    );

    jailer::cleanup("vm-t1", &plan).unwrap();
    assert!(!plan.jail_dir.exists());
    jailer::cleanup("vm-t1", &plan).unwrap();
    // The sources are untouched (only the links went away).
    assert_eq!(
        std::fs::read_to_string(dir.path().join("overlay.ext4")).unwrap(),
        "overlay.ext4"
    );
}
