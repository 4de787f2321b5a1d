//! A [`VmConfig`] fixture: one description every VMM test starts from and
//! changes only where it means something else.

use std::path::{Path, PathBuf};

use lobster_core::vmm::{Drive, Nic, VmConfig, VmPaths};

/// A VM `vm_id` rooted in `dir`: booting `kernel` with `quiet`, 1 vCPU and
/// 128 MiB, a read-only `rootfs` drive (`dir/base.img`) and a writable
/// `overlay` drive (`dir/overlay.img`); the API socket `dir/api.sock`, the
/// console log `dir/console.log` (4 MiB) and snapshots under `dir/snapshot`.
/// No initrd, NIC or jail. Only describes: [`blank_disks`] makes the drives.
pub fn vm_config(dir: &Path, vm_id: &str, kernel: PathBuf) -> VmConfig {
    let drive = |id: &str, file: &str, read_only| Drive {
        id: id.into(),
        path: dir.join(file),
        read_only,
        rate_limiter: None,
    };
    VmConfig {
        vm_id: vm_id.into(),
        kernel,
        initrd: None,
        boot_args: "quiet".into(),
        drives: vec![
            drive("rootfs", "base.img", true),
            drive("overlay", "overlay.img", false),
        ],
        nic: None,
        vcpus: 1,
        memory_mib: 128,
        paths: VmPaths {
            api_socket: dir.join("api.sock"),
            console_log: dir.join("console.log"),
            console_log_max_bytes: 4 << 20,
            snapshot_dir: dir.join("snapshot"),
        },
        jail: None,
    }
}

/// Makes every drive of `config` a blank 1 MiB file: the test guest mounts
/// none, but a VMM opens and locks them like real disks.
pub fn blank_disks(config: &VmConfig) {
    for drive in &config.drives {
        std::fs::File::create(&drive.path)
            .and_then(|f| f.set_len(1 << 20))
            .unwrap_or_else(|e| panic!("blank disk {}: {e}", drive.path.display()));
    }
}

/// A NIC `eth0` on TAP `tap` with guest MAC `mac`, without rate limits.
pub fn nic(tap: &str, mac: &str) -> Nic {
    Nic {
        id: "eth0".into(),
        tap: tap.into(),
        mac: mac.into(),
        rx_rate_limiter: None,
        tx_rate_limiter: None,
    }
}
