//! Network cost per tenant as the host fills up, for the Nth tenant at
//! N = 1, 100, 500: TAP setup (rtnetlink + the tun driver, no subprocess),
//! firewall add and remove (one `iptables-restore --noflush` each, planned
//! without reading the ruleset), and a no-op re-apply (which reads the
//! ruleset with `iptables-save`, the path repairs take).
//!
//! Needs root; runs itself inside a private network namespace it creates
//! and deletes (`ip netns exec`), so the host's network is never touched.
//! `cargo bench -p lobster-core --bench network` prints a table.

use std::process::Command;
use std::time::{Duration, Instant};

use lobster_core::config::NetworkConfig;
use lobster_core::network::firewall::{Firewall, FirewallSettings, Iptables};
use lobster_core::network::{Network, NetworkOps, TenantNet};
use lobster_testkit::bench::median;
use lobster_testkit::netns::Netns;
use lobster_testkit::registry::tenant_net;

const NETNS_ENV: &str = "LOBSTER_BENCH_NETNS";
const CHECKPOINTS: [usize; 3] = [1, 100, 500];
const ROUNDS: usize = 7;

fn tenant(n: usize) -> TenantNet {
    tenant_net(&format!("{n:08x}"), n as u32)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    if std::env::var_os(NETNS_ENV).is_none() {
        let netns = Netns::unique("lobbench");
        let exe = std::env::current_exe().expect("bench binary path");
        let status = Command::new("ip")
            .args(["netns", "exec", netns.name()])
            .arg(exe)
            .env(NETNS_ENV, netns.name())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "bench failed");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench());
}

async fn bench() {
    let settings = FirewallSettings::from_config(&NetworkConfig::default()).unwrap();
    let fw = Firewall::new(Iptables::new(Duration::from_secs(30)), settings);
    let net = Network::connect(Duration::from_secs(5)).expect("rtnetlink");

    println!(
        "{:>5} | {:>10} {:>5} | {:>10} {:>5} | {:>10} {:>5} | {:>10} {:>5}",
        "N", "tap", "procs", "fw add", "procs", "fw remove", "procs", "fw check", "procs"
    );
    let mut present = 0;
    for &n in &CHECKPOINTS {
        // Fill up to N-1 tenants (TAP + rules), untimed.
        while present < n - 1 {
            present += 1;
            let t = tenant(present);
            net.ensure(&t).await.expect("tap");
            fw.apply_tenant(&t).expect("firewall");
        }
        // The Nth tenant, several rounds of add, re-apply (no-op) and remove.
        let t = tenant(n);
        let (mut tap, mut add, mut check, mut remove) = (vec![], vec![], vec![], vec![]);
        let (mut add_procs, mut check_procs, mut remove_procs) = (0, 0, 0);
        for _ in 0..ROUNDS {
            let start = Instant::now();
            net.ensure(&t).await.expect("tap");
            tap.push(start.elapsed());

            let before = fw.backend().commands_run();
            let start = Instant::now();
            fw.apply_tenant(&t).expect("apply");
            add.push(start.elapsed());
            add_procs = fw.backend().commands_run() - before;

            let before = fw.backend().commands_run();
            let start = Instant::now();
            assert_eq!(fw.apply_tenant(&t).expect("re-apply").changes, 0);
            check.push(start.elapsed());
            check_procs = fw.backend().commands_run() - before;

            let before = fw.backend().commands_run();
            let start = Instant::now();
            fw.remove_tenant(&t).expect("remove");
            remove.push(start.elapsed());
            remove_procs = fw.backend().commands_run() - before;
            net.remove(&t).await.expect("tap remove");
        }
        println!(
            "{:>5} | {:>10} {:>5} | {:>10} {:>5} | {:>10} {:>5} | {:>10} {:>5}",
            n,
            ms(median(tap)),
            0,
            ms(median(add)),
            add_procs,
            ms(median(remove)),
            remove_procs,
            ms(median(check)),
            check_procs
        );
    }
    let rules = Command::new("iptables-save")
        .output()
        .expect("iptables-save")
        .stdout;
    let lines = String::from_utf8_lossy(&rules)
        .lines()
        .filter(|l| l.starts_with("-A"))
        .count();
    println!("(ruleset at the end: {lines} rules; TAP setup uses rtnetlink and ioctls only: 0 subprocesses)");
}
