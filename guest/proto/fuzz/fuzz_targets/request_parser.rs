//! Fuzz target: the agent's request path (see `src/request_path.rs`, which
//! the stable test `guest/proto/tests/fuzz_request_path.rs` drives too).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../src/request_path.rs"]
mod request_path;

fuzz_target!(|data: &[u8]| request_path::run(data));
