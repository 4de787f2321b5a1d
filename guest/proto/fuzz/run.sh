#!/usr/bin/env bash
# Runs the request-parser fuzz target for a bounded time (default 60 s).
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
#   guest/proto/fuzz/run.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null || { echo "error: cargo-fuzz missing (cargo install cargo-fuzz)" >&2; exit 1; }
exec cargo +nightly fuzz run request_parser -- -max_total_time="${1:-60}"
