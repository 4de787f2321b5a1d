#!/usr/bin/env bash
# Coverage-guided fuzzing of the agent's request path (libFuzzer through
# libfuzzer-sys) for a bounded time (default 60 s), on the stable toolchain:
# the sanitizer-coverage passes cargo-fuzz enables, without its nightly-only
# AddressSanitizer (the proto crate has no unsafe code; a panic is the crash
# libFuzzer reports). Starts from the committed seeds; new inputs go to
# corpus/, crashes to artifacts/ (both ignored by git).
#   guest/proto/fuzz/run.sh [seconds]       (or LOBSTER_FUZZ_RUNS=N, seeded)
set -euo pipefail
cd "$(dirname "$0")"
host=$(rustc -vV | sed -n 's/^host: //p')
# With --target, build scripts and proc macros are built without these flags.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR=target
cargo build --locked --release --quiet --target "$host" --bin request_parser
mkdir -p corpus/request_parser artifacts/request_parser
# LOBSTER_FUZZ_RUNS=N: exactly N runs from a fixed seed (CI: the same
# inputs every time, so a red run is a regression, not a lucky draw);
# otherwise fuzz at random for the given seconds.
if [ -n "${LOBSTER_FUZZ_RUNS:-}" ]; then
    limit=(-runs="$LOBSTER_FUZZ_RUNS" -seed="${LOBSTER_FUZZ_SEED:-1}")
else
    limit=(-max_total_time="${1:-60}")
fi
exec "target/$host/release/request_parser" "${limit[@]}" -max_len=4096 \
    -print_final_stats=1 -artifact_prefix=artifacts/request_parser/ \
    corpus/request_parser seeds/request_parser
