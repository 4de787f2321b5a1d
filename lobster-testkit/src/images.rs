//! Where the guest images are: `$LOBSTER_IMAGES`, else
//! `<repo>/.artifacts/images` (what `guest/images/build.sh` writes).

use std::path::{Path, PathBuf};

/// The root of the workspace.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("lobster-testkit lives in the workspace root")
        .to_path_buf()
}

/// The guest image directory.
pub fn images() -> PathBuf {
    std::env::var_os("LOBSTER_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".artifacts/images"))
}

/// `images()/name`; fails the test with `missing <path>: <build>` when it
/// does not exist (`build` says what makes it).
pub fn require(name: &str, build: &str) -> PathBuf {
    let path = images().join(name);
    assert!(path.exists(), "missing {}: {build}", path.display());
    path
}

/// The test guest: `kernel/<kernel>` (`vmlinuz` for QEMU, `vmlinux` for
/// Firecracker) and the test initramfs, whose /init prints
/// `LOBSTER-TEST-GUEST-READY` and then `n=<counter>` every 100 ms (or,
/// with `lobster.test_load`, puts network, disk and console load on the
/// host). The initramfs is cheap and local (busybox, the virtio modules,
/// cpio): built here when missing or out of date.
pub fn test_guest(kernel: &str) -> (PathBuf, PathBuf) {
    let kernel = require(&format!("kernel/{kernel}"), "run guest/images/kernel.sh");
    let initrd = images().join("test/initramfs.cpio.gz");
    // The script rebuilds only when it, busybox or the kernel's modules
    // changed (a stamp), so a stale initramfs never runs a newer test.
    let status = std::process::Command::new("bash")
        .arg(repo_root().join("guest/images/test-initramfs.sh"))
        .env("LOBSTER_IMAGES", images())
        .status()
        .expect("run guest/images/test-initramfs.sh");
    assert!(status.success(), "guest/images/test-initramfs.sh failed");
    (kernel, initrd)
}

/// The marker the test guest prints once booted.
pub const TEST_GUEST_READY: &str = "LOBSTER-TEST-GUEST-READY";

/// The last counter value (`n=<k>`) the test guest printed in `text`.
pub fn last_counter(text: &str) -> Option<u64> {
    counters(text).last()
}

/// The first counter value the test guest printed in `text`.
pub fn first_counter(text: &str) -> Option<u64> {
    counters(text).next()
}

fn counters(text: &str) -> impl DoubleEndedIterator<Item = u64> + '_ {
    text.lines().filter_map(|l| {
        l.trim()
            .strip_prefix("n=")
            .and_then(|n| n.trim().parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_from_console_lines() {
        let text = "boot\nn=4\r\n  n=5 \nnoise n=9\nn=x\n";
        assert_eq!(first_counter(text), Some(4));
        assert_eq!(last_counter(text), Some(5));
        assert_eq!(last_counter("nothing"), None);
    }
}
