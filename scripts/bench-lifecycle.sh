#!/usr/bin/env bash
# Spawn/evict benchmark with real guests (QEMU, minimal image), run inside a
# network namespace this script creates and deletes. Prints:
#   - per-phase spawn latency (median of N sequential spawns), from the
#     CLI's own progress lines;
#   - evict time;
#   - wall time of 4 concurrent spawns, and of their evicts.
# Needs root, qemu, caddy, iptables, jq, bc and guest/images/build.sh
# minimal. LOBSTERD=<binary> skips the release build.
# usage: scripts/bench-lifecycle.sh [N]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5}
T="$(printf 't%s ' $(seq 0 "$N")) c0 c1 c2 c3" VCPUS=1 MEM=256 OVERLAY_MIB=256 ROOTFS=rootfs-minimal.ext4
source scripts/lib/bench-host.sh
WORKLOAD='mkdir -p /tmp/w && echo ok > /tmp/w/index.html && exec busybox httpd -f -p 9000 -h /tmp/w'

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
