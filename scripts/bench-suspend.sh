#!/usr/bin/env bash
# Suspend/resume benchmark with a real guest (QEMU/TCG), inside a network
# namespace this script creates and deletes, side by side with plain QEMU
# doing the same to the same guest in the same run. Prints, per repetition:
#   - lobster: `lobsterd suspend` wall time, the snapshot's size (apparent
#     and on disk), `lobsterd resume` wall time (ends once the agent
#     answers), first byte from the workload (straight to the guest, and
#     through Caddy), and a wake on request (suspended tenant, one HTTPS
#     request through Caddy, first byte);
#   - plain QEMU on the tenant's own VMM: QMP `stop` + `migrate` to a file,
#     then a new unconfined QEMU with the same command line, `-incoming`
#     from that file, `cont`, and first byte straight to the guest.
# usage: scripts/bench-suspend.sh [minimal|full] [REPS]   (default: minimal 3)
#   minimal: 1 vCPU, 256 MiB, busybox httpd as the workload;
#   full:    2 vCPUs, 1536 MiB, the OpenClaw gateway (cold start: minutes).
# Needs root, qemu, caddy, iptables, jq, python3 and guest/images/build.sh
# (minimal or full). LOBSTERD=<binary> skips the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=${1:-minimal}
REPS=${2:-3}
T=bench
case $KIND in
minimal) VCPUS=1 MEM=256 ROOTFS=rootfs-minimal.ext4 WAIT_S=120
    SPAWN_ARGS=(--command 'mkdir -p /tmp/w && echo ok > /tmp/w/index.html && exec busybox httpd -f -p 9000 -h /tmp/w') ;;
full) VCPUS=2 MEM=1536 ROOTFS=rootfs-full.ext4 WAIT_S=900 SPAWN_ARGS=() ;;
*) echo "usage: $0 [minimal|full] [REPS]" >&2; exit 2 ;;
esac
source scripts/lib/bench-host.sh
WATCH_PID= RAW_PID=
cleanup() {
    for pid in $WATCH_PID $RAW_PID; do kill "$pid" 2>/dev/null || true; done
    bench_cleanup
}
trap cleanup EXIT
CA=$(L --json ca | jq -r .path)
URL="https://$T.lobster.local/"
via_caddy() { in_ns curl -s -m "${1:-5}" -o /dev/null -w '%{http_code}' --cacert "$CA" --interface "$CLIENT" \
    --resolve "$T.lobster.local:443:$CLIENT" "$URL" || true; }
direct() { in_ns curl -s -m 5 -o /dev/null -w '%{http_code}' "http://$GUEST:9000/" || true; }
# Polls `probe` until it answers something other than nothing/502; prints
# the milliseconds since $1.
first_byte() {
    local since=$1 probe=$2 code
    while :; do
        code=$($probe)
        case $code in ''|000|502) ;; *) echo $(( $(ms) - since )); return ;; esac
        [ $(( $(ms) - since )) -lt $(( WAIT_S * 1000 )) ] || { echo "timeout"; return; }
        sleep 0.1
    done
}
size() { du -s --apparent-size --block-size=1M "$1" | cut -f1; }
disk() { du -s --block-size=1M "$1" | cut -f1; }

t0=$(ms)
L spawn "$T" "${SPAWN_ARGS[@]}" >/dev/null 2>&1
spawn_ms=$(( $(ms) - t0 ))
GUEST=$(L --json list | jq -r --arg t "$T" '.[] | select(.name == $t) | .allocation.guest_ip')
cold=$(first_byte "$t0" via_caddy)
echo "$KIND tenant ($VCPUS vCPU, $MEM MiB): spawn $spawn_ms ms; cold start to first byte through Caddy: $cold ms"

echo "lobster (ms; sizes MiB):"
printf '  %-4s %8s %9s %8s %8s %14s %14s\n' rep suspend apparent ondisk resume "1st byte direct" "1st byte Caddy"
for rep in $(seq 1 "$REPS"); do
    t=$(ms); L suspend "$T" >/dev/null 2>&1; s=$(( $(ms) - t ))
    a=$(size "$WORK/state/snapshots"); d=$(disk "$WORK/state/snapshots")
    t=$(ms); L resume "$T" >/dev/null 2>&1; r=$(( $(ms) - t ))
    fd=$(first_byte "$t" direct); fc=$(first_byte "$t" via_caddy)
    printf '  %-4s %8s %9s %8s %8s %14s %14s\n' "$rep" "$s" "$a" "$d" "$r" "$fd" "$fc"
done

# Wake on request: the watchdog keeps the wake listener of a suspended tenant.
L watch >"$WORK/watch.log" 2>&1 &
WATCH_PID=$!
L suspend "$T" >/dev/null 2>&1
SOCKET=/run/lobsterd-wake/$(L --json list | jq -r --arg t "$T" '.[] | select(.name == $t) | .id').sock
until [ -S "$SOCKET" ]; do sleep 0.1; done
t=$(ms); code=$(via_caddy 120); w=$(( $(ms) - t ))
echo "  wake on request: HTTPS $code through Caddy after $w ms; status now $(L --json list | jq -r --arg t "$T" '.[] | select(.name == $t) | .status')"
kill "$WATCH_PID"; wait "$WATCH_PID" 2>/dev/null || true; WATCH_PID=

# Plain QEMU, same guest: the tenant's own VMM writes its migration stream
# to a file over QMP; a new QEMU with the same command line loads it.
PID=$(L --json list | jq -r --arg t "$T" '.[] | select(.name == $t) | .vm.identity.pid')
mapfile -d '' ARGV <"/proc/$PID/cmdline"
QMP="/proc/$PID/root/run/vmm.sock"
cat >"$WORK/qmp.py" <<'PY'
import json, os, socket, sys, time
def qmp(path):
    s = socket.socket(socket.AF_UNIX); s.connect(path); f = s.makefile("rw")
    json.loads(f.readline())
    def cmd(name, args=None, fd=None):
        msg = json.dumps({"execute": name, **({"arguments": args} if args else {})}) + "\n"
        if fd is None: s.sendall(msg.encode())
        else: socket.send_fds(s, [msg.encode()], [fd])
        while True:
            r = json.loads(f.readline())
            if "return" in r: return r["return"]
            if "error" in r: sys.exit(f"{name}: {r['error']}")
    cmd("qmp_capabilities"); return cmd
def migrated(cmd, what):
    while True:
        st = cmd("query-migrate").get("status")
        if st == "completed": return
        if st in ("failed", "cancelled"): sys.exit(f"{what}: {st}")
        time.sleep(0.02)
op, path, file = sys.argv[1:4]
if op == "save":
    cmd = qmp(path); t = time.monotonic(); cmd("stop")
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    cmd("getfd", {"fdname": "f"}, fd); cmd("migrate", {"uri": "fd:f"}); migrated(cmd, "migrate")
    print(round((time.monotonic() - t) * 1000))
else:
    t = time.monotonic()
    while not os.path.exists(path): time.sleep(0.01)
    cmd = qmp(path); fd = os.open(file, os.O_RDONLY)
    cmd("getfd", {"fdname": "f"}, fd); cmd("migrate-incoming", {"uri": "fd:f"})
    while cmd("query-status")["status"] not in ("paused", "postmigrate", "running"): time.sleep(0.02)
    migrated(cmd, "incoming"); cmd("cont"); print(round((time.monotonic() - t) * 1000))
PY
echo "plain QEMU, same guest (ms; sizes MiB):"
save=$(python3 "$WORK/qmp.py" save "$QMP" "$WORK/raw.mig")
kill -KILL "$PID"
while [ -e "/proc/$PID" ]; do sleep 0.05; done
echo "  stop + migrate to a file: $save ms, $(size "$WORK/raw.mig") MiB apparent, $(disk "$WORK/raw.mig") MiB on disk"
RAW=()
skip=0
for a in "${ARGV[@]}"; do
    if [ $skip = 1 ]; then skip=0; continue; fi
    case $a in -qmp) RAW+=(-qmp "unix:$WORK/raw.sock,server=on,wait=off"); skip=1 ;; *) RAW+=("$a") ;; esac
done
t=$(ms)
# nsenter execs QEMU: $! is QEMU's pid. The tenant's VMM was itself
# restored with `-incoming defer`, which its command line already carries.
case " ${RAW[*]} " in *" -incoming defer "*) ;; *) RAW+=(-incoming defer) ;; esac
nsenter --net="/run/netns/$NS" "${RAW[@]}" >"$WORK/raw-console.log" 2>&1 &
RAW_PID=$!
python3 "$WORK/qmp.py" load "$WORK/raw.sock" "$WORK/raw.mig" >/dev/null
fd=$(first_byte "$t" direct)
echo "  new QEMU, load, cont (from the process start): first byte direct after $fd ms"
kill "$RAW_PID"; wait "$RAW_PID" 2>/dev/null || true; RAW_PID=
