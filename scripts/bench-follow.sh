#!/usr/bin/env bash
# Log-follow throughput per binding with a real guest (QEMU/TCG, the minimal
# image), inside a network namespace this script creates and deletes: the
# workload writes numbered lines at a steady rate, and each front
# end follows it for SECONDS, side by side in one run: `lobsterd logs
# --follow` (the Rust CLI, the raw path), Python Host.follow_logs, C
# lobster_log_follow_next, Go Host.FollowLogs. Prints lines/s and the host
# CPU each follower spends per line; asserts nothing.
# usage: scripts/bench-follow.sh [SECONDS]   (default 10; run
# scripts/test-bindings.sh first: the venv). Needs root, qemu, caddy,
# iptables, jq, gcc, go and guest/images/build.sh minimal.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-10}
T=follow VCPUS=1 MEM=256 ROOTFS=rootfs-minimal.ext4
venv=$PWD/target/bindings-venv
[ -x "$venv/bin/python" ] || { echo "run scripts/test-bindings.sh first (creates $venv)" >&2; exit 1; }
source scripts/lib/bench-host.sh
export GOPROXY=off GOCACHE=${GOCACHE:-$PWD/target/go/cache} GOPATH=${GOPATH:-$PWD/target/go/path}

"$venv/bin/python" -m pip install -q --no-build-isolation --force-reinstall --no-deps ./lobster-py
cargo build -q --locked --release -p lobster-capi
gcc -O2 -std=c11 -Wall -Wextra -I lobster-capi/include lobster-capi/bench/follow_rate.c \
    target/release/liblobster.a -lpthread -ldl -lm -o "$WORK/follow_rate"
(cd lobster-capi/go && go build -tags lobster_release -o "$WORK/bench-go" ./internal/bench)

# Numbered lines at a steady 2000 a second (bursts of 200 every 0.1 s),
# below what the guest's agent ships under TCG (~10000/s: a writer faster
# than that gets every follower dropped as fallen behind), so each front
# end sees the same stream; what differs is the host CPU each spends per
# line (user + system time of the follower's process).
L spawn "$T" --command 'n=0; while :; do busybox seq $((n+1)) $((n+200)); n=$((n+200)); busybox sleep 0.1; done' >/dev/null
echo "minimal tenant (1 vCPU, 256 MiB, QEMU/TCG) writing 2000 lines/s; each follower $SECONDS_EACH s"
# Runs a follower that prints lines (count: its stdout's lines) or a rate
# (rate: its last line), within SECONDS_EACH (+5 s to start); prints
# lines/s and host CPU microseconds per line.
cat >"$WORK/measure.py" <<'PY'
import resource, subprocess, sys, time
mode, span, argv = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
before = resource.getrusage(resource.RUSAGE_CHILDREN)
start = time.monotonic()
if mode == "count":
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    lines = 0
    while time.monotonic() - start < span and proc.stdout.readline():
        lines += 1
    proc.terminate()
    proc.wait()
    rate = lines / (time.monotonic() - start)
else:
    rate = float(subprocess.run(argv, stdout=subprocess.PIPE, check=True, timeout=span + 30).stdout.split()[-1])
    lines = rate * span
after = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
print(f"{rate:10.0f} lines/s {cpu * 1e6 / max(lines, 1):10.1f} us CPU/line")
PY
row() { # label, mode, command...
    local label=$1 mode=$2
    shift 2
    printf '%-34s %s\n' "$label" "$(in_ns python3 "$WORK/measure.py" "$mode" "$SECONDS_EACH" "$@")"
}
row "lobsterd logs --follow (Rust CLI)" count "$BIN" --config "$WORK/config.json" logs --follow -n 0 "$T"
row "Python Host.follow_logs" rate "$venv/bin/python" lobster-py/bench/bench_follow.py "$WORK/config.json" "$T" "$SECONDS_EACH"
row "C lobster_log_follow_next" rate "$WORK/follow_rate" "$WORK/config.json" "$T" "$SECONDS_EACH"
row "Go Host.FollowLogs" rate "$WORK/bench-go" follow "$WORK/config.json" "$T" "$SECONDS_EACH"
