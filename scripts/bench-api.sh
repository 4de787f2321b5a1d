#!/usr/bin/env bash
# The HTTP API's benchmark (lobster-api/benches/api.rs): GET /v1/tenants at
# 0, 100 and 1000 tenants side by side with `lobsterd --json list` and, when
# scripts/test-bindings.sh has made its venv, Python's Host.list(); then
# the bounded load. Release builds, loopback only; prints numbers.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
cargo build --locked --release -p lobster-cli
venv=$repo/target/bindings-venv
if [ -x "$venv/bin/python" ]; then
    "$venv/bin/python" -m pip install -q --no-build-isolation --force-reinstall --no-deps ./lobster-py
    export LOBSTER_BENCH_PYTHON=$venv/bin/python
else
    echo "(no $venv: run scripts/test-bindings.sh first for the Python column)" >&2
fi
LOBSTERD=$repo/target/release/lobsterd cargo bench --locked -p lobster-api --bench api
