//! The `request_parser` fuzz target's body (`guest/proto/fuzz`), driven on
//! stable so it runs with every test run: each seed of the fuzz corpus,
//! then random bytes and random mutations of the seeds (byte changes,
//! insertions, deletions, splices of two seeds). Seeded: the same inputs
//! every run unless `PROPTEST_RNG_SEED` says otherwise. Coverage-guided
//! fuzzing of the same body is `guest/proto/fuzz/run.sh`.

#[path = "../fuzz/src/request_path.rs"]
mod request_path;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed};

/// The fuzz target's seed corpus (read once).
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/request_parser");
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|entry| std::fs::read(entry.expect("a seed").path()).expect("read a seed"))
            .collect();
        seeds.sort();
        assert!(seeds.len() >= 5, "the seed corpus in {dir} is missing");
        seeds
    })
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Set(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    /// The tail from here replaced by another seed's tail.
    Splice(Index, Index, Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<Index>().prop_map(Edit::Delete),
        (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(i, s, j)| Edit::Splice(i, s, j)),
    ]
}

fn mutate(mut data: Vec<u8>, edits: &[Edit], seeds: &[Vec<u8>]) -> Vec<u8> {
    for e in edits {
        let len = data.len().max(1);
        match e {
            Edit::Set(i, b) if !data.is_empty() => data[i.index(len)] = *b,
            Edit::Insert(i, b) => data.insert(i.index(len + 1).min(data.len()), *b),
            Edit::Delete(i) if !data.is_empty() => drop(data.remove(i.index(len))),
            Edit::Splice(i, s, j) => {
                let other = s.get(seeds);
                data.truncate(i.index(len + 1));
                data.extend_from_slice(&other[j.index(other.len() + 1).min(other.len())..]);
            }
            _ => {}
        }
    }
    data
}

fn config(cases: u32) -> Config {
    let mut config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    if config.rng_seed == RngSeed::Random {
        config.rng_seed = RngSeed::Fixed(0x10b5_7e75);
    }
    config
}

#[test]
fn every_seed_passes() {
    for seed in seeds() {
        request_path::run(seed);
    }
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn random_bytes(data in prop::collection::vec(any::<u8>(), 0..600)) {
        request_path::run(&data);
    }

    #[test]
    fn mutated_seeds(seed in any::<Index>(), edits in prop::collection::vec(edit(), 1..8)) {
        let seeds = seeds();
        request_path::run(&mutate(seed.get(seeds).clone(), &edits, seeds));
    }
}
