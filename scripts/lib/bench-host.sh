# Shared by the guest benchmarks (bench-lifecycle.sh, bench-suspend.sh,
# bench-exec.sh): one
# lobster host with real guests (QEMU/TCG) inside a network namespace the
# script creates and deletes. Source it after setting:
#   VCPUS MEM ROOTFS   the tenants' size and root filesystem image
#   T                  the tenants' names (space-separated), evicted at exit
#   OVERLAY_MIB        optional, the overlay size (default 4096) It defines NS WORK IMAGES BIN CLIENT CADDY_PID,
# `L` (lobsterd in the namespace), `in_ns`, `ms`, and `bench_cleanup`
# (evicts $T, stops Caddy, deletes the namespace and $WORK), the EXIT trap
# until the script sets its own (which then calls it).
IMAGES=${LOBSTER_IMAGES:-$PWD/.artifacts/images}
NS=lobbench$$
WORK=$(mktemp -d)
[ -n "${LOBSTERD:-}" ] || cargo build -q --release --locked -p lobster-cli
BIN=${LOBSTERD:-$PWD/target/release/lobsterd}
CADDY_PID=
bench_cleanup() {
    for t in $T; do L evict -y "$t" >/dev/null 2>&1 || true; done
    [ -n "$CADDY_PID" ] && kill "$CADDY_PID" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap bench_cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
# A client address inside the namespace (TEST-NET-1, never routed anywhere):
# OpenClaw refuses proxied requests whose client is loopback.
CLIENT=192.0.2.10
ip -n "$NS" addr add "$CLIENT/32" dev lo
cat >"$WORK/config.json" <<JSON
{ "tenant_defaults": { "vcpus": $VCPUS, "memory_mib": $MEM, "overlay_size_mib": ${OVERLAY_MIB:-4096} },
  "paths": { "state_dir": "$WORK/state", "kernel": "$IMAGES/kernel/vmlinux",
             "initrd": "$IMAGES/initramfs.cpio.gz", "rootfs": "$IMAGES/$ROOTFS",
             "overlays_dir": "$WORK/state/overlays", "sockets_dir": "$WORK/state/run",
             "snapshots_dir": "$WORK/state/snapshots", "logs_dir": "$WORK/state/logs" },
  "vmm": { "backend": "qemu", "qemu": { "accel": "tcg" } } }
JSON
# lobsterd enters only the namespace's network (`ip netns exec` would mount
# a fresh /sys that hides the cgroup hierarchies).
L() { nsenter --net="/run/netns/$NS" "$BIN" --config "$WORK/config.json" "$@"; }
in_ns() { nsenter --net="/run/netns/$NS" "$@"; }
ms() { date +%s%N | cut -c1-13; }
CADDY_PID=$(L --json init | jq -r '.host_setup.caddy_pid')
