//! VMM costs. `cargo bench -p lobster-core --bench vmm` prints:
//! 1. the Firecracker configuration sequence against the spec-checking fake
//!    server (per call and total, median of many rounds; each round a fresh
//!    fake), and a whole fake-backed launch (stand-in process spawn, socket
//!    wait, configuration);
//! 2. QEMU launch-to-ready on this host (TCG here): until QMP answers, and
//!    until the test guest prints its boot marker. Needs the kernel and test
//!    initramfs (`guest/images/kernel.sh`, `guest/images/test-initramfs.sh`),
//!    then pause + snapshot and restore into a new QEMU;
//!    skipped with a note otherwise. `LOBSTER_BENCH_QEMU_ROUNDS` (default 5).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lobster_core::config::VmmConfig;
use lobster_core::vmm::firecracker::client::ApiClient;
use lobster_core::vmm::firecracker::fake::{FakeFirecracker, FakeLauncher, FakeOptions};
use lobster_core::vmm::firecracker::plan::{self, Features, FileNames};
use lobster_core::vmm::firecracker::{FirecrackerSettings, FirecrackerVmm};
use lobster_core::vmm::qemu::{QemuSettings, QemuVmm};
use lobster_core::vmm::{VmConfig, Vmm};
use lobster_testkit::bench::median;
use lobster_testkit::images::{images, TEST_GUEST_READY};
use lobster_testkit::vm::{self, blank_disks, vm_config};

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// The bench VM in `dir`: the test kit's fixture with blank disks, and a
/// NIC when `nic`.
fn config(dir: &Path, kernel: PathBuf, initrd: Option<PathBuf>, nic: bool) -> VmConfig {
    let mut config = vm_config(dir, "bench", kernel);
    config.initrd = initrd;
    config.nic = nic.then(|| vm::nic("lob-bench", "06:00:0a:c8:00:02"));
    blank_disks(&config);
    config
}

async fn firecracker_fake() {
    const ROUNDS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vmlinux"), "k").unwrap();
    let vm = config(dir.path(), dir.path().join("vmlinux"), None, true);
    let features = Features::default();
    let files = FileNames::direct(&vm, &features).unwrap();
    let calls = plan::launch(&vm, &files, &features).unwrap();

    let mut per_call: BTreeMap<usize, Vec<Duration>> = BTreeMap::new();
    let mut totals = Vec::new();
    for round in 0..ROUNDS {
        let socket = dir.path().join(format!("fake{round}.sock"));
        let fake = FakeFirecracker::start(&socket, FakeOptions::default()).unwrap();
        let client = ApiClient::new("bench", &socket, Duration::from_secs(5));
        let start = Instant::now();
        let times = client.send_all(&calls).await.unwrap();
        totals.push(start.elapsed());
        for (i, t) in times.into_iter().enumerate() {
            per_call.entry(i).or_default().push(t.elapsed);
        }
        fake.stop();
        let _ = std::fs::remove_file(&socket);
    }
    println!("Firecracker configuration sequence against the fake (median of {ROUNDS} rounds)");
    for (i, samples) in per_call {
        println!(
            "  {:<32} {:>12}",
            format!("{} {}", calls[i].method, calls[i].path),
            ms(median(samples))
        );
    }
    println!("  {:<32} {:>12}", "total (8 calls)", ms(median(totals)));

    const LAUNCHES: usize = 30;
    let launcher = FakeLauncher::new(FakeOptions::default());
    let mut settings = FirecrackerSettings::from_config(&VmmConfig::default());
    settings.launcher = Arc::new(launcher);
    let vmm = FirecrackerVmm::new(settings);
    let mut launches = Vec::new();
    for _ in 0..LAUNCHES {
        let start = Instant::now();
        let vm_handle = vmm.launch(&vm).await.unwrap();
        launches.push(start.elapsed());
        vm_handle.kill().await.unwrap();
    }
    println!(
        "  {:<32} {:>12}  (spawn stand-in process + socket wait + sequence, median of {LAUNCHES})",
        "whole launch (fake backend)",
        ms(median(launches))
    );
}

async fn qemu() {
    let images = images();
    let initrd = images.join("test/initramfs.cpio.gz");
    let rounds: usize = std::env::var("LOBSTER_BENCH_QEMU_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    for kernel_name in ["vmlinuz", "vmlinux"] {
        let kernel = images.join("kernel").join(kernel_name);
        if !kernel.exists() || !initrd.exists() {
            println!(
                "QEMU: skipped ({} or {} missing)",
                kernel.display(),
                initrd.display()
            );
            return;
        }
        let vmm = QemuVmm::new(QemuSettings::from_config(&VmmConfig::default(), &kernel));
        let mut ready = Vec::new();
        let mut booted = Vec::new();
        let mut rss = Vec::new();
        let (mut snap, mut snap_bytes, mut restore) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let dir = tempfile::tempdir().unwrap();
            let vm = config(dir.path(), kernel.clone(), Some(initrd.clone()), false);
            let start = Instant::now();
            let handle = vmm.launch(&vm).await.unwrap();
            ready.push(start.elapsed());
            let console = handle.process().console().clone();
            console
                .wait_for(TEST_GUEST_READY, 0, Duration::from_secs(120))
                .await
                .expect("boot marker");
            booted.push(start.elapsed());
            let status =
                std::fs::read_to_string(format!("/proc/{}/status", handle.identity().pid)).unwrap();
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            {
                rss.push(kb);
            }
            let start = Instant::now();
            handle.pause().await.unwrap();
            let snapshot = handle.snapshot().await.unwrap();
            snap.push(start.elapsed());
            snap_bytes.push(std::fs::metadata(&snapshot.state_file).unwrap().len());
            handle.kill().await.unwrap();
            let start = Instant::now();
            let restored = vmm.restore(&vm, &snapshot, true).await.unwrap();
            restore.push(start.elapsed());
            restored.kill().await.unwrap();
        }
        println!(
            "QEMU ({:?}, -kernel {kernel_name}, 1 vCPU, 128 MiB, median of {rounds})",
            vmm.settings().accel
        );
        println!("  {:<32} {:>12}", "launch to QMP ready", ms(median(ready)));
        println!(
            "  {:<32} {:>12}",
            "launch to guest boot marker",
            ms(median(booted))
        );
        snap_bytes.sort_unstable();
        println!("  {:<32} {:>12}", "pause + snapshot", ms(median(snap)));
        println!(
            "  {:<32} {:>9} MiB",
            "snapshot file",
            snap_bytes[snap_bytes.len() / 2] >> 20
        );
        println!(
            "  {:<32} {:>12}",
            "restore to running (new qemu)",
            ms(median(restore))
        );
        if !rss.is_empty() {
            rss.sort_unstable();
            println!(
                "  {:<32} {:>9} MiB",
                "host RSS at boot marker",
                rss[rss.len() / 2] / 1024
            );
        }
    }
}

#[tokio::main]
async fn main() {
    firecracker_fake().await;
    qemu().await;
}
