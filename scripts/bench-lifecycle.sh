#!/usr/bin/env bash
# Spawn/evict benchmark with real guests (QEMU, minimal image), run inside a
# network namespace this script creates and deletes. Prints:
#   - per-phase spawn latency (median of N sequential spawns), from the
#     CLI's own progress lines;
#   - evict time;
#   - wall time of 4 concurrent spawns, and of their evicts.
# Needs root, qemu, caddy, iptables and guest/images/build.sh minimal.
# usage: scripts/bench-lifecycle.sh [N]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5}
IMAGES=${LOBSTER_IMAGES:-$PWD/.artifacts/images}
NS=lobbench$$
WORK=$(mktemp -d)
cargo build -q --release --locked -p lobster-cli
BIN=$PWD/target/release/lobsterd
CADDY_PID=
cleanup() {
    for n in $(seq 0 5) c0 c1 c2 c3; do L evict -y "t$n" >/dev/null 2>&1 || true; done
    [ -n "$CADDY_PID" ] && kill "$CADDY_PID" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
cat >"$WORK/config.json" <<JSON
{ "tenant_defaults": { "vcpus": 1, "memory_mib": 256, "overlay_size_mib": 256 },
  "paths": { "state_dir": "$WORK/state", "kernel": "$IMAGES/kernel/vmlinux",
             "initrd": "$IMAGES/initramfs.cpio.gz", "rootfs": "$IMAGES/rootfs-minimal.ext4",
             "overlays_dir": "$WORK/state/overlays", "sockets_dir": "$WORK/state/run",
             "snapshots_dir": "$WORK/state/snapshots", "logs_dir": "$WORK/state/logs" },
  "vmm": { "backend": "qemu", "qemu": { "accel": "tcg" } } }
JSON
# `ip netns exec` mounts a fresh /sys: the cgroup hierarchies every VMM is
# confined in are mounted again there, as this script sees them.
CGROUPS='awk '"'"'{ split($0, a, " - "); split(a[1], l, " "); split(a[2], r, " ");
    if (l[5] ~ /^\/sys\/fs\/cgroup/) print r[1], r[2], r[3], l[5] }'"'"' "/proc/$0/mountinfo" |
    while read -r fstype src opts point; do mkdir -p "$point" && mount -t "$fstype" -o "$opts" "$src" "$point"; done'
L() { ip netns exec "$NS" sh -c "$CGROUPS"' && exec "$@"' "$$" "$BIN" --config "$WORK/config.json" "$@"; }
CADDY_PID=$(L --json init | jq -r '.host_setup.caddy_pid')
WORKLOAD='mkdir -p /tmp/w && echo ok > /tmp/w/index.html && exec busybox httpd -f -p 9000 -h /tmp/w'

ms() { date +%s%N | cut -c1-13; }
declare -A phases
evicts=()
for i in $(seq 1 "$N"); do
    L spawn "t$i" --command "$WORKLOAD" 2>"$WORK/spawn.err" >/dev/null
    while read -r step time; do phases[$step]+="$time "; done < <(
        sed -nE 's/^  \[([a-z]+)\] done in ([0-9.]+)(µs|ms|s)$/\1 \2 \3/p' "$WORK/spawn.err" |
            awk '{ v=$2; if ($3=="µs") v=v/1000; if ($3=="s") v=v*1000; printf "%s %.2f\n", $1, v }')
    t=$(ms); L evict -y "t$i" >/dev/null; evicts+=($(( $(ms) - t )))
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "spawn phases (median of $N, ms):"
control=0
for step in allocate overlay token network firewall vm agent secrets workload route registry; do
    [ -n "${phases[$step]:-}" ] || continue
    m=$(echo "${phases[$step]}" | median)
    printf '  %-9s %8s\n' "$step" "$m"
    case $step in agent|workload) ;; *) control=$(echo "$control + $m" | bc) ;; esac
done
echo "  control plane (all but vm boot wait=agent, workload): $control ms"
echo "evict (median of $N): $(printf '%s ' "${evicts[@]}" | median) ms"

t=$(ms)
for i in 0 1 2 3; do L spawn "c$i" --command "$WORKLOAD" >/dev/null 2>&1 & done
wait
echo "4 concurrent spawns: $(( $(ms) - t )) ms wall"
echo "running: $(L --json list | jq -r '[.[] | select(.status=="running")] | length') of 4"
t=$(ms)
for i in 0 1 2 3; do L evict -y "c$i" >/dev/null 2>&1 & done
wait
echo "4 concurrent evicts: $(( $(ms) - t )) ms wall"
