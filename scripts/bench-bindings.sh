#!/usr/bin/env bash
# Prints the call latency of listing tenants from Rust and through every
# binding, side by side in one run, on registries of 0, 100 and 1000
# tenants: Rust `Host::list` (the baseline: lobster-testkit list-latency),
# Python Host.list()/list_async(), C lobster_host_list/_list_json, Go
# Host.List. Each figure is the fastest of 10 batches (mean per call within
# a batch). Release builds; asserts nothing. Run scripts/test-bindings.sh
# first (it creates the venv this reuses). The log-follow rate per binding
# needs a real guest: scripts/bench-follow.sh.
# Usage: scripts/bench-bindings.sh [CALLS]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
calls=${1:-2000}
venv=$repo/target/bindings-venv
[ -x "$venv/bin/python" ] || { echo "run scripts/test-bindings.sh first (creates $venv)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GOPROXY=off GOCACHE=${GOCACHE:-$repo/target/go/cache} GOPATH=${GOPATH:-$repo/target/go/path}

echo "building (release): the Python wheel, liblobster.a, lobster-testkit, the C and Go benches" >&2
"$venv/bin/python" -m pip install -q --no-build-isolation --force-reinstall --no-deps ./lobster-py
cargo build -q --locked --release -p lobster-capi -p lobster-testkit
gcc -O2 -std=c11 -Wall -Wextra -I lobster-capi/include lobster-capi/bench/list_latency.c \
    target/release/liblobster.a -lpthread -ldl -lm -o "$work/list_latency"
(cd lobster-capi/go && go build -tags lobster_release -o "$work/bench-go" ./internal/bench)

echo "list latency, us per call ($calls calls each, fastest of 10 batches)"
printf '%8s %8s %10s %12s %9s %12s %8s\n' tenants Rust "Py list" "Py async" "C list" "C list_json" "Go List"
for count in 0 100 1000; do
    names=()
    for ((i = 0; i < count; i++)); do names+=("$(printf 'tenant-%04d' "$i")"); done
    config=$("$venv/bin/python" lobster-py/tests/fixtures.py "$work/host-$count" "${names[@]}")
    rust=$(target/release/lobster-testkit list-latency "$config" "$calls")
    read -r py py_async < <("$venv/bin/python" lobster-py/bench/bench_list.py --config "$config" --calls "$calls")
    read -r _ c c_json < <("$work/list_latency" "$config" "$calls")
    go=$("$work/bench-go" list "$config" "$calls")
    printf '%8s %8s %10s %12s %9s %12s %8s\n' "$count" "$rust" "$py" "$py_async" "$c" "$c_json" "$go"
done
