//! Registry cost: one allocate + release (each a locked, fsynced,
//! atomically replaced write) and one read, with N tenants already held.
//! `cargo bench -p lobster-core --bench registry` prints a table.

mod support;

use std::time::{Duration, Instant};

use lobster_core::config::Config;
use lobster_core::store::{NewTenant, Resources, Store};

fn new(name: String) -> NewTenant {
    NewTenant {
        name,
        resources: Resources {
            vcpus: 1,
            memory_mib: 256,
            overlay_size_mib: 512,
            backend: None,
        },
        workload: Default::default(),
        owner: None,
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let config = Config::default();
    println!(
        "{:>8} {:>14} {:>14} {:>12} {:>12}",
        "tenants", "allocate", "release", "read", "file"
    );
    for held in [0usize, 100, 1000] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store
            .update(|reg| {
                for i in 0..held {
                    let name = format!("held{i}");
                    let mut rec = support::running_record(&config, &name, i as u32);
                    rec.name = name.clone();
                    reg.tenants.insert(name, rec);
                }
                Ok::<_, lobster_core::store::StoreError>(())
            })
            .unwrap();
        let (mut alloc, mut release, mut read) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..30 {
            let t = Instant::now();
            store.allocate(&config, new(format!("bench{i}"))).unwrap();
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
