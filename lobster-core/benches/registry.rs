//! Registry cost: one allocate + release (each a locked, fsynced,
//! atomically replaced write) and one read, with N tenants already held.
//! `cargo bench -p lobster-core --bench registry` prints a table.

use std::time::Instant;

use lobster_core::config::Config;
use lobster_core::store::Store;
use lobster_testkit::bench::median;
use lobster_testkit::registry::{insert, new_tenant, running_record};

fn main() {
    let config = Config::default();
    println!(
        "{:>8} {:>14} {:>14} {:>12} {:>12}",
        "tenants", "allocate", "release", "read", "file"
    );
    for held in [0usize, 100, 1000] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let held_records: Vec<_> = (0..held)
            .map(|i| running_record(&config, &format!("held{i}"), i as u32))
            .collect();
        insert(&store, &held_records);
        let (mut alloc, mut release, mut read) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..30 {
            let t = Instant::now();
            store
                .allocate(&config, new_tenant(&format!("bench{i}")))
                .unwrap();
            alloc.push(t.elapsed());
            let t = Instant::now();
            store.release(&format!("bench{i}")).unwrap();
            release.push(t.elapsed());
            let t = Instant::now();
            store.read().unwrap();
            read.push(t.elapsed());
        }
        let size = std::fs::metadata(store.path())
            .map(|m| m.len())
            .unwrap_or(0);
        println!(
            "{held:>8} {:>14?} {:>14?} {:>12?} {:>9} KiB",
            median(alloc),
            median(release),
            median(read),
            size / 1024
        );
    }
}
