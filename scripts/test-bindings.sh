#!/usr/bin/env bash
# Builds and tests every binding of lobster, then runs their examples:
#
#   C ABI   header drift (fresh cbindgen output == include/lobster.h), Rust unit
#           tests, C programs in lobster-capi/tests/c under valgrind's leak check
#   Go      go vet + go test -tags debug over the static library
#   Python  maturin builds the abi3 wheel; installed into a venv: stubtest,
#           mypy --strict, pytest; then alone into a fresh venv without cargo
#   parity  each core operation in every front end or excluded (scripts/parity.py)
#   examples/{c,go,python} against a temporary, seeded host
#   install  scripts/install-capi.sh into a temporary prefix; an example built
#            with `pkg-config --cflags --libs lobster` runs on the shared library
#
# Needs (scripts/install-deps.sh, "bindings"): cargo, gcc, g++, valgrind, go,
# cbindgen (pinned), python3 with venv, maturin, pytest and mypy. Anything
# missing fails the run with its name. Offline: Go uses no module proxy, the
# Python package is built without build isolation (maturin already installed).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

CBINDGEN_VERSION=0.29.4
step() { printf '\n---- bindings: %s ----\n' "$*"; }
fail() { echo "test-bindings: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || fail "missing $1 (install: $2)"; }

need cargo "rustup"
need gcc "apt-get install gcc"
need pkg-config "apt-get install pkgconf"
need g++ "apt-get install g++"
need valgrind "apt-get install valgrind"
need go "apt-get install golang-go"
need python3 "apt-get install python3"
need maturin "pip install maturin (scripts/install-deps.sh)"
need cbindgen "cargo install --locked cbindgen --version $CBINDGEN_VERSION"
[ "$(cbindgen --version)" = "cbindgen $CBINDGEN_VERSION" ] ||
    fail "cbindgen $CBINDGEN_VERSION is pinned, found $(cbindgen --version) (scripts/install-deps.sh)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step "C header is up to date (cbindgen $CBINDGEN_VERSION)"
cbindgen --quiet --config lobster-capi/cbindgen.toml --output "$work/lobster.h" lobster-capi
diff -u lobster-capi/include/lobster.h "$work/lobster.h" ||
    fail "lobster-capi/include/lobster.h is stale: regenerate it with
  cbindgen --config lobster-capi/cbindgen.toml --output lobster-capi/include/lobster.h lobster-capi"

step "C header compiles as C++ (cbindgen cpp_compat)"
printf '#include "lobster.h"\nint main() { lobster_host *h = nullptr; return lobster_host_open(nullptr, &h, nullptr) == LOBSTER_RESULT_OK; }\n' >"$work/header.cc"
g++ -std=c++17 -Wall -Wextra -Werror -pedantic -fsyntax-only -I lobster-capi/include "$work/header.cc"

step "C ABI: unit tests and C programs under valgrind"
cargo build --locked -p lobster-capi
LOBSTER_REQUIRE_VALGRIND=1 cargo test --locked -p lobster-capi

step "Go wrapper"
export GOPROXY=off
export GOCACHE=${GOCACHE:-$repo/target/go/cache} GOPATH=${GOPATH:-$repo/target/go/path}
(cd lobster-capi/go && go vet -tags debug ./... && go test -tags debug -count=1 ./...)

step "Python package"
venv=$repo/target/bindings-venv
[ -x "$venv/bin/python" ] || python3 -m venv --system-site-packages "$venv"
"$venv/bin/python" -c 'import maturin, pytest, mypy' 2>/dev/null ||
    fail "maturin, pytest and mypy must be installed for python3 (scripts/install-deps.sh)"
# The wheel a user installs: built once by maturin, abi3 (one wheel for
# every CPython >= 3.9), installed here and, below, into a fresh venv.
(cd lobster-py && maturin build --quiet --locked --out "$work/wheels") >/dev/null
wheel=$(echo "$work"/wheels/lobster-*.whl)
[ -f "$wheel" ] || fail "maturin built no wheel"
case $(basename "$wheel") in *-cp39-abi3-*) ;; *) fail "not an abi3 wheel: $(basename "$wheel")" ;; esac
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$wheel"
(cd "$work" && "$venv/bin/python" -m mypy.stubtest lobster._lobster lobster.exceptions)
"$venv/bin/python" -m mypy --strict --cache-dir=/dev/null examples/python
(cd "$work" && "$venv/bin/python" -m mypy --strict --cache-dir=/dev/null -p lobster)
"$venv/bin/python" -m pytest -q -p no:cacheprovider lobster-py/tests

step "parity: every core operation offered by each front end, or excluded with a reason (docs/parity.json)"
"$venv/bin/python" scripts/parity.py

step "examples against a seeded temporary host"
config=$("$venv/bin/python" lobster-py/tests/fixtures.py "$work/host" alice bob)
check_example() { # name, output
    grep -q "alice" <<<"$2" && grep -q "bob" <<<"$2" || fail "example $1 did not list alice and bob:
$2"
    echo "example $1: ok"
}
check_example python "$("$venv/bin/python" examples/python/list_tenants.py "$config")"
check_example python-tank "$("$venv/bin/python" examples/python/tank.py "$config")"
gcc -std=c11 -Wall -Wextra -Werror -I lobster-capi/include examples/c/list_tenants.c \
    target/debug/liblobster.a -lpthread -ldl -lm -o "$work/list_tenants"
check_example c "$(valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect \
    --errors-for-leak-kinds=definite,indirect \
    --error-exitcode=99 "$work/list_tenants" "$config")"
check_example go "$(cd examples/go && go run ./list-tenants "$config")"

step "the wheel in a fresh venv, with no Rust toolchain on PATH"
python3 -m venv "$work/fresh"
env -i HOME="$work" PATH=/usr/bin:/bin "$work/fresh/bin/python" -m pip install -q --no-index "$wheel"
! env -i PATH=/usr/bin:/bin sh -c 'command -v cargo || command -v rustc' >/dev/null ||
    fail "cargo or rustc is on the fresh venv's PATH: the check would prove nothing"
check_example wheel "$(env -i HOME="$work" PATH=/usr/bin:/bin "$work/fresh/bin/python" -c \
    'import sys, lobster; print([t.name for t in lobster.Host(sys.argv[1]).list()])' "$config")"

step "C library installed by one command, an example built with pkg-config"
scripts/install-capi.sh --debug --prefix "$work/prefix" >/dev/null
readelf -d "$work/prefix/lib/liblobster.so" | grep -q 'SONAME.*liblobster\.so\.0' ||
    fail "liblobster.so has no soname liblobster.so.0"
export PKG_CONFIG_PATH=$work/prefix/lib/pkgconfig
# shellcheck disable=SC2046 # pkg-config's words are separate flags
gcc -std=c11 -Wall -Wextra -Werror examples/c/list_tenants.c $(pkg-config --cflags --libs lobster) \
    -Wl,-rpath,"$work/prefix/lib" -o "$work/list_tenants_shared"
ldd "$work/list_tenants_shared" | grep -q "liblobster.so.0 => $work/prefix/lib/" ||
    fail "the pkg-config build does not use the installed shared library"
check_example c-pkg-config "$("$work/list_tenants_shared" "$config")"

echo
echo "test-bindings: C ABI, Go, Python and examples passed"
