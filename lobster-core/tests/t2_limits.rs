//! T2: a tenant's network and disk rates and its console log cap hold
//! under a real QEMU/TCG guest, with no lobster process alive: inside the
//! test's own network namespace, the test shapes a real TAP, re-executes
//! itself to launch the VM, and that process exits; the guest (the test
//! guest with `lobster.test_load`) then sends 2 MiB to a sink here,
//! receives 2 MiB from here, writes 12 MiB to its overlay disk and floods
//! its serial console forever. One booted guest serves every assertion.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use std::io::{Read, Write};
use std::net::TcpListener;

use lobster_core::config::VmmConfig;
use lobster_core::network::{Network, NetworkOps};
use lobster_core::vmm::qemu::{QemuSettings, QemuVmm};
use lobster_core::vmm::{ConsoleLog, RateLimiter, TokenBucket, VmConfig, VmIdentity, Vmm};
use lobster_testkit::evidence::{alive, kill};
use lobster_testkit::images::test_guest;
use lobster_testkit::netns::{in_netns, Ctx};
use lobster_testkit::registry::tenant_net;
use lobster_testkit::vm::{blank_disks, nic, vm_config};

const LAUNCH_ENV: &str = "LOBSTER_T2_LIMITS_DIR";
const TEST: &str = "net_and_disk_rates_and_console_cap_hold_with_no_lobster_process_alive";
/// The TAP's bandwidth each way.
const NET_BITS_PER_S: u64 = 2_000_000;
/// What the guest sends, and receives.
const NET_BYTES: u64 = 2 << 20;
/// The overlay disk's configured bandwidth (a third of what the guest
/// writes unthrottled under TCG here: 1.5 MiB/s).
const DISK_BYTES_PER_S: u64 = 512 << 10;
/// The console log's cap.
const LOG_CAP: u64 = 65_536;
/// One flood line of the test guest: `flood <n> ` plus 72 characters.
const FLOOD_TAIL: &str = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz";

/// Kills the VM when the test ends, pass or fail.
struct KillOnDrop(VmIdentity);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill(self.0);
    }
}

fn backend(config: &VmConfig) -> QemuVmm {
    QemuVmm::new(QemuSettings::from_config(
        &VmmConfig::default(),
        &config.kernel,
    ))
}

/// The launching process: starts the VM, records it, exits.
fn launch(dir: &Path) {
    let config: VmConfig =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let identity = runtime.block_on(async {
        let vm = backend(&config).launch(&config).await.expect("launch");
        vm.identity()
    });
    std::fs::write(
        dir.join("identity.json"),
        serde_json::to_vec(&identity).unwrap(),
    )
    .unwrap();
}

fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

/// Sink on `listener`: reads up to `NET_BYTES`, then closes. Returns the
/// bytes and the seconds from accept to the last byte.
fn sink(listener: TcpListener) -> std::thread::JoinHandle<(u64, f64)> {
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let start = Instant::now();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        while total < NET_BYTES {
            match conn.read(&mut buf).unwrap() {
                0 => break,
                n => total += n as u64,
            }
        }
        (total, start.elapsed().as_secs_f64())
    })
}

/// Source on `listener`: sends `NET_BYTES` and closes. Returns when it
/// accepted.
fn source(listener: TcpListener) -> std::thread::JoinHandle<Instant> {
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let start = Instant::now();
        let chunk = vec![0x5au8; 1 << 16];
        for _ in 0..NET_BYTES / chunk.len() as u64 {
            conn.write_all(&chunk).unwrap();
        }
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        // Held open until the guest has read everything and closed.
        let _ = conn.read(&mut [0u8; 1]);
        start
    })
}

/// Prints and checks a measured rate against `limit` (same unit).
fn check_rate(what: &str, rate: f64, limit: f64, unit: &str, scale: f64) {
    println!(
        "{what}: {:.3} {unit} for a limit of {:.3} {unit} ({:.2}x)",
        rate / scale,
        limit / scale,
        rate / limit
    );
    assert!(rate <= 1.3 * limit, "{what}: {rate:.0} over {limit:.0}");
    assert!(
        rate >= 0.3 * limit,
        "{what}: {rate:.0}, far under {limit:.0}: no load?"
    );
}

#[test]
#[ignore = "t2: needs root, QEMU and the guest images"]
fn net_and_disk_rates_and_console_cap_hold_with_no_lobster_process_alive() {
    if let Some(dir) = std::env::var_os(LAUNCH_ENV) {
        launch(Path::new(&dir));
        return;
    }
    in_netns(TEST, body);
}

fn body(_ctx: &Ctx) {
    let (kernel, initrd) = test_guest("vmlinux");
    let dir = tempfile::tempdir().unwrap();
    let mut config = vm_config(dir.path(), "t2-limits", kernel);
    config.initrd = Some(initrd);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut tap = tenant_net("t2limits", 1);
    tap.bandwidth_bits_per_s = Some(NET_BITS_PER_S);
    rt.block_on(async {
        let network = Network::connect(Duration::from_secs(5)).expect("rtnetlink");
        network.ensure(&tap).await.expect("shaped tap");
    });
    config.nic = Some(nic(&tap.tap, &tap.mac.to_string()));
    config.boot_args = format!(
        "quiet lobster.test_load lobster.test_ip={}/30 lobster.test_gw={}",
        tap.guest_ip, tap.host_ip
    );
    let up = sink(TcpListener::bind((tap.host_ip, 7101)).unwrap());
    let down = source(TcpListener::bind((tap.host_ip, 7102)).unwrap());
    config.paths.console_log_max_bytes = LOG_CAP;
    let bucket = TokenBucket {
        size: DISK_BYTES_PER_S,
        one_time_burst: 0,
        refill_time_ms: 1000,
    };
    config.drives[1].rate_limiter = Some(RateLimiter {
        bandwidth: Some(bucket),
        ops: None,
    });
    blank_disks(&config);
    let overlay: PathBuf = config.drives[1].path.clone();
    std::fs::File::options()
        .write(true)
        .open(&overlay)
        .and_then(|f| f.set_len(64 << 20))
        .unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();

    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--ignored", "--nocapture"])
        .env(LAUNCH_ENV, dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "launch: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let identity: VmIdentity =
        serde_json::from_slice(&std::fs::read(dir.path().join("identity.json")).unwrap()).unwrap();
    let vm = KillOnDrop(identity);
    assert!(alive(vm.0), "the VM died with its launcher");
    // From here no lobster process exists: the launcher has exited, and
    // this one only reads files.
    let console = ConsoleLog::new(&config.paths.console_log, 1 << 30);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let wait =
        |needle: &str, secs| rt.block_on(console.wait_for(needle, 0, Duration::from_secs(secs)));
    // Network: both directions at the TAP's rate.
    assert!(
        wait("LOAD-NET-UP-DONE", 240).is_some(),
        "the guest did not send: {}",
        console.tail()
    );
    let (sent, secs) = up.join().unwrap();
    assert_eq!(sent, NET_BYTES, "the guest sent all of it");
    let limit = NET_BITS_PER_S as f64 / 8.0;
    check_rate("guest to host", sent as f64 / secs, limit, "MB/s", 1e6);
    assert!(
        wait("LOAD-NET-DOWN-DONE", 120).is_some(),
        "the guest did not receive: {}",
        console.tail()
    );
    let received_at = Instant::now();
    let accepted = down.join().unwrap();
    let secs = (received_at - accepted).as_secs_f64();
    check_rate("host to guest", NET_BYTES as f64 / secs, limit, "MB/s", 1e6);

    assert!(
        wait("LOAD-DISK-START", 120).is_some(),
        "the guest did not start writing: {}",
        console.tail()
    );

    // Disk: the guest's 12 MiB reach the overlay file at the configured
    // rate (from the guest's start marker to its end marker, as seen here).
    let start = (Instant::now(), allocated(&overlay));
    assert!(
        wait("LOAD-DISK-DONE", 180).is_some(),
        "the guest did not finish writing: {}",
        console.tail()
    );
    let end = (Instant::now(), allocated(&overlay));
    let written = end.1 - start.1;
    let rate = written as f64 / (end.0 - start.0).as_secs_f64();
    let limit = DISK_BYTES_PER_S as f64;
    println!(
        "disk: {:.1} MiB written at {:.3} MiB/s for a limit of {:.3} MiB/s ({:.2}x)",
        written as f64 / f64::from(1 << 20),
        rate / f64::from(1 << 20),
        limit / f64::from(1 << 20),
        rate / limit
    );
    assert!(written >= 11 << 20, "only {written} bytes reached the disk");
    assert!(
        rate <= 1.3 * limit,
        "disk writes at {rate:.0} B/s, over {limit:.0}"
    );
    assert!(
        rate >= 0.3 * limit,
        "disk writes at {rate:.0} B/s: no load?"
    );

    // Console: 60 s of flooding leaves the log within its cap throughout.
    let flood_start = Instant::now();
    let mut largest = 0;
    while flood_start.elapsed() < Duration::from_secs(60) {
        largest = largest.max(std::fs::metadata(console.path()).unwrap().len());
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = console.read_all();
    let last: u64 = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("flood ")?.split(' ').next()?.parse().ok())
        .expect("flood lines in the log");
    let flooded = last * (FLOOD_TAIL.len() as u64 + 8);
    println!(
        "console: about {} KiB flooded in 60 s; the log was at most {largest} bytes (cap {LOG_CAP}), {} at the end",
        flooded / 1024,
        text.len()
    );
    assert!(largest <= LOG_CAP, "the log reached {largest} bytes");
    assert!(
        flooded > 4 * LOG_CAP,
        "the guest flooded only {flooded} bytes"
    );
    assert!(text.contains(FLOOD_TAIL), "the newest output is kept");
    drop(vm);
}
