#!/usr/bin/env bash
# Suspend/resume benchmark with a real guest (QEMU/TCG, minimal image, 256
# MiB), inside a network namespace this script creates and deletes. Prints,
# for N suspend/resume cycles of one lobster tenant (medians):
#   - suspend time (CLI wall time) and its pause+snapshot steps;
#   - snapshot size, apparent and on disk;
#   - resume to agent ready (restore+continue+agent steps) and CLI wall time;
# and, in the same run, plain QEMU with the same machine, kernel, initramfs,
# base image and memory (a fresh tenant disk, no NIC): `stop` + `migrate` to
# a file, and a new process `-incoming defer` + `migrate-incoming` + `cont`.
# Needs root, qemu, caddy, iptables, jq, python3 and guest/images/build.sh minimal.
# usage: scripts/bench-suspend.sh [N]   (default 3; LOBSTERD=<binary> skips
# the release build and uses that lobsterd)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3}
IMAGES=${LOBSTER_IMAGES:-$PWD/.artifacts/images}
NS=lobsusp$$
WORK=$(mktemp -d)
if [ -z "${LOBSTERD:-}" ]; then
    cargo build -q --release --locked -p lobster-cli
fi
BIN=${LOBSTERD:-$PWD/target/release/lobsterd}
CADDY_PID=
cleanup() {
    L evict -y b >/dev/null 2>&1 || true
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
  "vmm": { "backend": "qemu", "qemu": { "accel": "tcg" },
           "firecracker": { "chroot_base": "$WORK/state/jail" } } }
JSON
# As in bench-lifecycle.sh: the cgroup hierarchies mounted again in the netns.
CGROUPS='awk '"'"'{ split($0, a, " - "); split(a[1], l, " "); split(a[2], r, " ");
    if (l[5] ~ /^\/sys\/fs\/cgroup/) print r[1], r[2], r[3], l[5] }'"'"' "/proc/$0/mountinfo" |
    while read -r fstype src opts point; do mkdir -p "$point" && mount -t "$fstype" -o "$opts" "$src" "$point"; done'
L() { ip netns exec "$NS" sh -c "$CGROUPS"' && exec "$@"' "$$" "$BIN" --config "$WORK/config.json" "$@"; }
CADDY_PID=$(L --json init | jq -r '.host_setup.caddy_pid')
WORKLOAD='mkdir -p /tmp/w && echo ok > /tmp/w/index.html && exec busybox httpd -f -p 9000 -h /tmp/w'

ms() { date +%s%N | cut -c1-13; }
# Milliseconds of step $1 in the progress lines of file $2.
step_ms() {
    sed -nE "s/^  \[$1\] done in ([0-9.]+)(µs|ms|s)$/\1 \2/p" "$2" |
        awk '{ v=$1; if ($2=="µs") v=v/1000; if ($2=="s") v=v*1000; printf "%.0f\n", v }'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

L spawn b --command "$WORKLOAD" >/dev/null 2>&1
sleep 5 # let the guest settle
: >"$WORK/suspend.ms"; : >"$WORK/snap.ms"; : >"$WORK/resume.ms"; : >"$WORK/restore.ms"; : >"$WORK/ready.ms"
for _ in $(seq 1 "$N"); do
    t=$(ms); L suspend b 2>"$WORK/s.err" >/dev/null; echo $(( $(ms) - t )) >>"$WORK/suspend.ms"
    echo $(( $(step_ms pause "$WORK/s.err") + $(step_ms snapshot "$WORK/s.err") )) >>"$WORK/snap.ms"
    state=$WORK/state/snapshots/b/qemu-state.bin
    apparent=$(stat -c %s "$state"); disk=$(( $(stat -c %b "$state") * $(stat -c %B "$state") ))
    # What compressing the stream would give (not done: see the report line).
    t=$(ms); zstd_bytes=$(zstd -1 -q -c "$state" | wc -c); zstd_ms=$(( $(ms) - t ))
    t=$(ms); L resume b 2>"$WORK/r.err" >/dev/null; echo $(( $(ms) - t )) >>"$WORK/resume.ms"
    restore=$(( $(step_ms restore "$WORK/r.err") + $(step_ms continue "$WORK/r.err") ))
    echo "$restore" >>"$WORK/restore.ms"
    echo $(( restore + $(step_ms agent "$WORK/r.err") )) >>"$WORK/ready.ms"
done

# Plain QEMU on the same guest, same process: `stop` + `migrate` of the
# tenant's running VMM straight over its QMP socket (no lobster around it).
ID=$(L --json list | jq -r '.[0].id')
SAME=$(python3 - "$WORK/state/jail/qemu/$ID/root/run/vmm.sock" "$WORK/same-state.bin" <<'PY'
import json, os, socket, sys, time
path, state = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX); s.connect(path); f = s.makefile("rw"); f.readline()
def call(cmd, fd=None, **args):
    line = (json.dumps({"execute": cmd, "arguments": args}) + "\n").encode()
    if fd is None: s.sendall(line)
    else: socket.send_fds(s, [line], [fd])
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r: return r
call("qmp_capabilities")
out = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
t = time.monotonic()
call("stop"); call("getfd", fd=out, fdname="bench"); call("migrate", uri="fd:bench")
while call("query-migrate")["return"].get("status") not in ("completed", "failed"): time.sleep(0.02)
save = time.monotonic() - t
os.close(out); call("cont")
print(f"{save*1000:.0f} {os.stat(state).st_size}")
PY
)
read -r ssave ssize <<<"$SAME"

# Plain QEMU, same machine and image (a fresh guest: its own memory), over QMP.
cp --sparse=always "$IMAGES/overlay-template.ext4" "$WORK/plain-disk.ext4"
PLAIN=$(python3 - "$IMAGES" "$WORK" <<'PY'
import json, os, socket, subprocess, sys, time
images, work = sys.argv[1], sys.argv[2]
def argv(sock, *extra):
    return ["qemu-system-x86_64", "-machine", "microvm,acpi=on,rtc=on", "-accel", "tcg,tb-size=32",
            "-cpu", "max", "-smp", "1", "-m", "256M", "-nodefaults", "-no-user-config",
            "-display", "none", "-serial", f"file:{work}/plain-console.log", "-no-reboot",
            "-kernel", f"{images}/kernel/vmlinux", "-initrd", f"{images}/initramfs.cpio.gz",
            "-append", "quiet console=ttyS0 reboot=t panic=-1 pci=off tsc=reliable",
            "-drive", f"id=rootfs,file={images}/rootfs-minimal.ext4,format=raw,if=none,cache=none,aio=threads,readonly=on",
            "-device", "virtio-blk-device,drive=rootfs",
            "-drive", f"id=overlay,file={work}/plain-disk.ext4,format=raw,if=none,cache=none,aio=threads",
            "-device", "virtio-blk-device,drive=overlay",
            "-qmp", f"unix:{sock},server=on,wait=off", *extra]
class Qmp:
    def __init__(self, path):
        for _ in range(500):
            try:
                self.s = socket.socket(socket.AF_UNIX); self.s.connect(path); break
            except OSError: time.sleep(0.01)
        self.f = self.s.makefile("rw"); self.f.readline(); self("qmp_capabilities")
    def __call__(self, cmd, **args):
        self.f.write(json.dumps({"execute": cmd, "arguments": args}) + "\n"); self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "return" in r or "error" in r: return r
    def wait_migration(self):
        while self("query-migrate")["return"].get("status") not in ("completed", "failed"): time.sleep(0.02)
state = f"{work}/plain-state.bin"
a = subprocess.Popen(argv(f"{work}/a.sock")); q = Qmp(f"{work}/a.sock")
time.sleep(40)  # boot under TCG
t = time.monotonic(); q("stop"); q("migrate", uri=f"exec:cat > {state}"); q.wait_migration()
save = time.monotonic() - t
a.kill(); a.wait()
t = time.monotonic()
b = subprocess.Popen(argv(f"{work}/b.sock", "-incoming", "defer")); q = Qmp(f"{work}/b.sock")
q("migrate-incoming", uri=f"exec:cat {state}"); q.wait_migration(); q("cont")
load = time.monotonic() - t
b.kill(); b.wait()
st = os.stat(state)
print(f"{save*1000:.0f} {load*1000:.0f} {st.st_size} {st.st_blocks*512}")
PY
)
read -r psave pload papparent pdisk <<<"$PLAIN"

echo "suspend/resume, minimal tenant (256 MiB, QEMU/TCG), median of $N:"
printf '  %-38s %8s %8s\n' "" lobster "plain qemu"
printf '  %-38s %6s ms %6s ms\n' "suspend (CLI wall time)" "$(median <"$WORK/suspend.ms")" -
printf '  %-38s %6s ms %6s ms (%s MiB)\n' "  pause + snapshot stream" "$(median <"$WORK/snap.ms")" "$psave" $((papparent >> 20))
printf '  %-38s %6s    %6s ms (%s MiB)\n' "  same guest: bare stop + migrate" "" "$ssave" $((ssize >> 20))
printf '  %-38s %6s MiB %5s MiB\n' "snapshot, apparent" $((apparent >> 20)) $((papparent >> 20))
printf '  %-38s %6s MiB %5s MiB\n' "snapshot, on disk" $((disk >> 20)) $((pdisk >> 20))
printf '  %-38s %6s MiB in %s ms\n' "  zstd -1 of the stream would be" $((zstd_bytes >> 20)) "$zstd_ms"
printf '  %-38s %6s ms %6s ms\n' "restore stream + continue" "$(median <"$WORK/restore.ms")" "$pload"
printf '  %-38s %6s ms %6s ms\n' "resume to agent ready" "$(median <"$WORK/ready.ms")" -
printf '  %-38s %6s ms %6s ms\n' "resume (CLI wall time)" "$(median <"$WORK/resume.ms")" -
