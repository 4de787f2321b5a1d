#!/usr/bin/env bash
# Prints the call latency of listing tenants through the bindings, on an
# empty and a 100-tenant registry: Python Host.list()/list_async() (next to a
# plain json.load of the same registry) and C lobster_host_list/_list_json.
# Release builds; asserts nothing. Run scripts/test-bindings.sh first (it
# creates the venv this reuses). Usage: scripts/bench-bindings.sh [CALLS]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
calls=${1:-2000}
venv=$repo/target/bindings-venv
[ -x "$venv/bin/python" ] || { echo "run scripts/test-bindings.sh first (creates $venv)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== Python (release wheel in $venv)"
"$venv/bin/python" -m pip install -q --no-build-isolation --force-reinstall --no-deps ./lobster-py
"$venv/bin/python" lobster-py/bench/bench_list.py --calls "$calls"

echo
echo "== C (target/release/liblobster.a, gcc -O2), $calls calls each"
cargo build --locked --release -p lobster-capi
gcc -O2 -std=c11 -Wall -Wextra -I lobster-capi/include lobster-capi/bench/list_latency.c \
    target/release/liblobster.a -lpthread -ldl -lm -o "$work/list_latency"
printf '%8s %10s %16s\n' tenants "list us" "list_json us"
for count in 0 100; do
    names=()
    for ((i = 0; i < count; i++)); do names+=("$(printf 'tenant-%03d' "$i")"); done
    config=$("$venv/bin/python" lobster-py/tests/fixtures.py "$work/host-$count" "${names[@]}")
    "$work/list_latency" "$config" "$calls"
done
