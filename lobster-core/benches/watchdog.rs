//! Cost of one watchdog tick over fakes: `cargo bench -p lobster-core --bench watchdog`.
//!
//! A real registry and real overlay files in a temporary directory; TAPs,
//! firewall (in-memory ruleset), proxy routes and guests are the crate's
//! fakes, so the numbers are the watchdog's own cost: registry reads,
//! per-tenant locks, checks, the state machine, events and `watch.json`.
//! Real probes (netlink, iptables-save, Caddy, VMM API, agent) come on top
//! and run with bounded concurrency.
//!
//! Prints, per tenant count, wall and process CPU time (all threads,
//! `CLOCK_PROCESS_CPUTIME_ID`) of a healthy tick and of a tick where 1% of
//! the tenants need a VM restart, then where a healthy tick's time goes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lobster_core::health::Watchdog;
use lobster_core::network::NetworkOps;
use lobster_core::proxy::RouteOps;
use lobster_core::store::TenantRecord;
use lobster_core::tenant::plan;
use lobster_testkit::bench::{median, percentile};
use lobster_testkit::registry::{insert, running_record};
use lobster_testkit::rig::FakeHost;

/// Process CPU time so far (every thread, blocking pool included).
fn cpu_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Wall and CPU time of one run of `op`.
async fn measure<F: std::future::Future<Output = ()>>(op: F) -> (Duration, Duration) {
    let (wall, cpu) = (Instant::now(), cpu_now());
    op.await;
    (wall.elapsed(), cpu_now().saturating_sub(cpu))
}

fn row(label: &str, n: usize, samples: &[(Duration, Duration)]) {
    let wall: Vec<_> = samples.iter().map(|s| s.0).collect();
    let cpu: Vec<_> = samples.iter().map(|s| s.1).collect();
    println!(
        "{label:<16} {n:>6} {:>6} {:>11.2?} {:>11.2?} {:>11.2?} {:>11.2?}",
        samples.len(),
        percentile(&wall, 0.5),
        percentile(&wall, 0.9),
        percentile(&cpu, 0.5),
        percentile(&cpu, 0.9),
    );
}

struct Bench {
    fake: FakeHost,
    watchdog: Watchdog,
    names: Vec<String>,
}

impl Bench {
    /// A host with `tenants` running, healthy tenants over fakes.
    async fn new(tenants: u32) -> Bench {
        let fake = FakeHost::new(|_| {}).await;
        let config = fake.config();
        let records: Vec<TenantRecord> = (0..tenants)
            .map(|slot| {
                let mut r = running_record(config, &format!("t{slot}"), slot);
                r.vm = Some(fake.guests.boot(&r.name));
                r
            })
            .collect();
        insert(&fake.store(), &records);
        // The host side in bulk (one reconcile each), not tenant by tenant.
        let mut nets = Vec::new();
        let mut tenant_routes = Vec::new();
        for r in &records {
            let overlay = plan::overlay(config, r);
            std::fs::create_dir_all(overlay.path().parent().unwrap()).unwrap();
            std::fs::write(overlay.path(), b"overlay").unwrap();
            let net = plan::tenant_net(r).unwrap();
            fake.network.ensure(&net).await.unwrap();
            nets.push(net);
            tenant_routes.push(plan::route(config, r).unwrap());
        }
        fake.firewall.reconcile(&nets).unwrap();
        fake.routes.reconcile(&tenant_routes).await.unwrap();
        let watchdog = fake.watchdog(Arc::new(|_| {}));
        Bench {
            fake,
            watchdog,
            names: records.into_iter().map(|r| r.name).collect(),
        }
    }
}

#[tokio::main]
async fn main() {
    println!(
        "{:<16} {:>6} {:>6} {:>11} {:>11} {:>11} {:>11}",
        "tick", "tenants", "ticks", "wall p50", "wall p90", "cpu p50", "cpu p90"
    );
    let mut parts = Vec::new();
    for (tenants, ticks) in [(1u32, 200usize), (100, 50), (1000, 15)] {
        let bench = Bench::new(tenants).await;
        bench.watchdog.tick().await.unwrap(); // unknown -> healthy, lock files made
        let mut healthy = Vec::new();
        for _ in 0..ticks {
            healthy.push(measure(async { bench.watchdog.tick().await.unwrap() }).await);
        }
        row("healthy", tenants as usize, &healthy);

        if tenants >= 100 {
            // 1% of the tenants lose their VM before each tick (a different
            // 1% each time, so every repair is a first attempt).
            let broken = tenants as usize / 100;
            let mut repairing = Vec::new();
            for (i, chunk) in bench.names.chunks(broken).take(ticks).enumerate() {
                for name in chunk {
                    bench.fake.guests.kill_vm(name);
                }
                repairing.push(measure(async { bench.watchdog.tick().await.unwrap() }).await);
                assert!(
                    chunk
                        .iter()
                        .all(|n| bench.fake.guests.guest(n).unwrap().launches == 2),
                    "tick {i} repaired its tenants"
                );
            }
            row("1% restart", tenants as usize, &repairing);
        }
        parts.push((tenants, breakdown(&bench).await));
    }
    println!();
    println!("where a healthy tick goes (medians; sequential, one thread):");
    println!(
        "{:>7} {:>14} {:>11} {:>14} {:>16} {:>14}",
        "tenants", "registry read", "survey", "lock+fresh each", "examine each", "status json"
    );
    for (tenants, p) in parts {
        println!(
            "{tenants:>7} {:>14.2?} {:>11.2?} {:>14.2?} {:>16.2?} {:>14.2?}",
            p[0], p[1], p[2], p[3], p[4]
        );
    }
}

/// Medians of a tick's parts: the registry read, the survey (ruleset and
/// routes), one tenant's lock and freshness check (the registry is not
/// written meanwhile), one tenant's checks, and the status serialisation.
async fn breakdown(bench: &Bench) -> [Duration; 5] {
    let store = bench.fake.store();
    let rounds = if bench.names.len() > 100 { 5 } else { 50 };
    let mut read = Vec::new();
    let mut survey = Vec::new();
    let mut lock_check = Vec::new();
    let mut examine = Vec::new();
    let mut status = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let snapshot = store.snapshot().unwrap();
        read.push(t.elapsed());
        let t = Instant::now();
        let view = bench.fake.doctor.survey().await;
        survey.push(t.elapsed());
        let sample: Vec<&String> = bench.names.iter().take(20).collect();
        for name in &sample {
            let t = Instant::now();
            let lock = store.lock_tenant(name, Duration::ZERO).unwrap().unwrap();
            assert!(!store.changed_since(&snapshot).unwrap());
            let record = snapshot.registry.tenants[name.as_str()].clone();
            drop(lock);
            lock_check.push(t.elapsed());
            let t = Instant::now();
            bench.fake.doctor.examine(&view, &record).await;
            examine.push(t.elapsed());
        }
        let t = Instant::now();
        serde_json::to_vec(&bench.watchdog.status()).unwrap();
        status.push(t.elapsed());
    }
    [
        median(read),
        median(survey),
        median(lock_check),
        median(examine),
        median(status),
    ]
}
