#!/usr/bin/env bash
# Installs everything lobster's build, tests and demo need on Debian 12, as
# root. Idempotent: already-present tools are skipped. Used by .ci/run and
# scripts/demo; run it by hand on a new machine.
set -euo pipefail

log() { printf '[install-deps] %s\n' "$*" >&2; }

# --- system packages ---------------------------------------------------------
APT_PACKAGES=(
    # T1/T2: networking and firewall inside test namespaces
    iproute2 iptables
    # reverse proxy (tests start their own instances on loopback)
    caddy
    # T2: real guests under QEMU (microvm machine, TCG here)
    qemu-system-x86
    # guest images: kernel extraction, initramfs, root filesystem; the full
    # image's Node.js and OpenClaw come from the npm registry (checked by hash)
    debootstrap busybox-static kmod lz4 cpio e2fsprogs xz-utils zstd openssl coreutils
    # bindings (C and Go over the C ABI, Python venv), leak checks
    gcc g++ golang-go valgrind python3-venv pkgconf
    # tests and demo helpers
    jq tmux curl procps bc
)
command -v npm >/dev/null || APT_PACKAGES+=(npm)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's caddy package starts a service on :80 where systemd runs. lobster
# runs its own Caddy (as its user `lobster-caddy`, admin API on a private unix
# socket, ports 80 and 443), and its tests run their own instances: the
# package's service would only hold the ports.
if [ -d /run/systemd/system ] && systemctl is-enabled --quiet caddy.service 2>/dev/null; then
    log "systemctl disable --now caddy.service (lobster starts its own Caddy)"
    systemctl disable --now caddy.service
fi

# --- Rust tools ----------------------------------------------------------------
command -v cargo >/dev/null || { log "cargo is required (rustup)"; exit 1; }
if ! command -v cargo-nextest >/dev/null; then
    log "cargo install cargo-nextest"
    cargo install --locked cargo-nextest
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

# --- bindings: header generator and Python build/test tools ---------------------
# Pinned: scripts/test-bindings.sh regenerates include/lobster.h with exactly
# this cbindgen and fails on any difference, so a different version would
# show up as header drift.
CBINDGEN_VERSION=0.29.4
if [ "$(cbindgen --version 2>/dev/null)" != "cbindgen $CBINDGEN_VERSION" ]; then
    log "cargo install cbindgen $CBINDGEN_VERSION"
    cargo install --locked --force cbindgen --version "$CBINDGEN_VERSION"
fi
# maturin builds lobster-py (PEP 517 backend); pytest runs its tests; mypy's
# stubtest checks _lobster.pyi against the compiled module. Installed for the
# interpreter `python3` names; test-bindings.sh uses them from a venv created
# with --system-site-packages. (PIP_BREAK_SYSTEM_PACKAGES lets this work on
# Debian's own python3 too, which is marked externally managed.)
# schemathesis fuzzes the HTTP API against its OpenAPI document (lobster-api's
# schemathesis test; its CLI must be on PATH).
PY_PACKAGES=(maturin==1.16.0 pytest==9.2.0 mypy==2.4.1 schemathesis==4.32.5)
if ! python3 -c 'import maturin, pytest, mypy, schemathesis' 2>/dev/null || ! command -v schemathesis >/dev/null; then
    log "pip install ${PY_PACKAGES[*]}"
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q "${PY_PACKAGES[@]}"
fi
