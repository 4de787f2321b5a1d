//! Shared by the property tests (`prop_*`) and the firewall differential
//! test: a seeded proptest configuration, and generators of firewall states.
//!
//! Runs are repeatable: the seed is fixed unless `PROPTEST_RNG_SEED` is set,
//! and `PROPTEST_CASES` overrides a test's case count (e.g. to search longer
//! by hand). Failures are not persisted to files; a failing run prints its
//! shrunk input.
#![allow(dead_code)]

pub mod firewall;

use proptest::test_runner::{Config, RngSeed};

/// The seed used unless `PROPTEST_RNG_SEED` says otherwise.
const SEED: u64 = 0x10b5_7e75;

/// A configuration running `cases` cases from the fixed seed.
pub fn config(cases: u32) -> Config {
    let mut config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    if let Some(n) = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.cases = n;
    }
    if config.rng_seed == RngSeed::Random {
        config.rng_seed = RngSeed::Fixed(SEED);
    }
    config
}
