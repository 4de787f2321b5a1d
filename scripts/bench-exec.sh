#!/usr/bin/env bash
# exec benchmark with a real guest (QEMU/TCG, the minimal image), inside a
# network namespace this script creates and deletes, side by side in the
# same run with a raw TCP stream to the same guest (a perl server in the
# guest on the gateway port). Prints:
#   - round trip: `lobsterd exec T -- true` (a new CLI process, config,
#     authenticated connection, process start and exit in the guest) vs a
#     raw TCP connect + 1-byte echo, a raw connect whose server forks
#     `true` in the guest before answering (the guest's own process cost
#     under TCG), and `lobsterd list` (the CLI's own start, no guest);
#     p50/p99 over REPS;
#   - throughput, MB/s of 64 MiB: stdin (`exec -i T -- sh -c 'cat >/dev/null'`)
#     and stdout (`exec T -- head -c 64M /dev/zero`) vs raw TCP into a sink
#     and out of a source in the guest.
# usage: scripts/bench-exec.sh [REPS]   (default 30)
# Needs root, qemu, caddy, iptables, jq, python3 and guest/images/build.sh
# minimal. LOBSTERD=<binary> skips the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-30}
T=bench VCPUS=1 MEM=256 ROOTFS=rootfs-minimal.ext4
source scripts/lib/bench-host.sh

# The raw side: one connection at a time; its first byte picks the mode
# (e: echo, x: run `true` then answer, s: sink, o: 64 MiB out).
SERVER='exec perl -MIO::Socket::INET -e '\''
$s = IO::Socket::INET->new(LocalPort => 9000, Listen => 16, ReuseAddr => 1) or die "$!";
while (my $c = $s->accept) {
  sysread($c, my $m, 1);
  if ($m eq "e") { while (sysread($c, my $b, 65536)) { syswrite($c, $b) } }
  elsif ($m eq "s") { 1 while sysread($c, my $b, 65536) }
  elsif ($m eq "x") { system("true"); syswrite($c, "x") }
  elsif ($m eq "o") { my $z = "\0" x 65536; for (1 .. 1024) { syswrite($c, $z) or last } }
  close $c;
}'\'''
L spawn "$T" --command "$SERVER" >/dev/null 2>&1
GUEST=$(L --json list | jq -r --arg t "$T" '.[] | select(.name == $t) | .allocation.guest_ip')
echo "minimal tenant (1 vCPU, 256 MiB, QEMU/TCG), guest $GUEST; $REPS repetitions"

# Percentiles of the milliseconds on stdin.
pct() { sort -n | awk '{ v[NR] = $1 } END { i50 = int(NR * 0.5 + 0.5); i99 = int(NR * 0.99 + 0.5);
    if (i50 < 1) i50 = 1; if (i99 < 1) i99 = 1; printf "p50 %6.1f ms  p99 %6.1f ms\n", v[i50], v[i99] }'; }
us() { date +%s%N | cut -c1-16; }
times_of() {
    for _ in $(seq 1 "$REPS"); do
        local t; t=$(us); "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
        echo "scale=3; ($(us) - $t) / 1000" | bc
    done
}
L exec "$T" -- true >/dev/null || { echo "exec does not work" >&2; exit 1; }
cat >"$WORK/raw.py" <<'PY'
import socket, sys, time
host, op = sys.argv[1], sys.argv[2]
def conn(mode):
    s = socket.create_connection((host, 9000), timeout=30)
    s.sendall(mode)
    return s
if op == "rtt":
    for _ in range(int(sys.argv[3])):
        t = time.monotonic(); s = conn(b"e"); s.sendall(b"x")
        assert s.recv(1) == b"x"; s.close()
        print(round((time.monotonic() - t) * 1000, 3))
elif op == "spawn":
    for _ in range(int(sys.argv[3])):
        t = time.monotonic(); s = conn(b"x")
        assert s.recv(1) == b"x"; s.close()
        print(round((time.monotonic() - t) * 1000, 3))
elif op == "in":
    t = time.monotonic(); s = conn(b"s"); block = bytes(65536)
    for _ in range(1024): s.sendall(block)
    s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
    print(round(64 * 1.048576 / (time.monotonic() - t), 1))
elif op == "out":
    t = time.monotonic(); s = conn(b"o"); n = 0
    while True:
        b = s.recv(1 << 20)
        if not b: break
        n += len(b)
    assert n == 64 << 20, n
    print(round(64 * 1.048576 / (time.monotonic() - t), 1))
PY
echo "round trip:"
printf '  %-48s %s\n' "lobsterd exec $T -- true" "$(times_of L exec "$T" -- true | pct)"
printf '  %-48s %s\n' "raw TCP connect + 1-byte echo" "$(in_ns python3 "$WORK/raw.py" "$GUEST" rtt "$REPS" | pct)"
printf '  %-48s %s\n' "raw TCP connect + guest forks \`true\` + 1 byte" "$(in_ns python3 "$WORK/raw.py" "$GUEST" spawn "$REPS" | pct)"
printf '  %-48s %s\n' "lobsterd list (CLI start, no guest)" "$(times_of L list | pct)"

mbps() { local t; t=$(us); "$@"; echo "scale=1; 64 * 1.048576 * 1000000 / ($(us) - $t)" | bc; }
echo "throughput, 64 MiB (MB/s):"
for _ in 1 2 3; do
    ein=$(mbps sh -c "head -c 67108864 /dev/zero | nsenter --net=/run/netns/$NS $BIN --config $WORK/config.json exec -i $T -- sh -c 'cat >/dev/null'")
    eout=$(mbps sh -c "nsenter --net=/run/netns/$NS $BIN --config $WORK/config.json exec $T -- head -c 67108864 /dev/zero >/dev/null")
    rin=$(in_ns python3 "$WORK/raw.py" "$GUEST" in)
    rout=$(in_ns python3 "$WORK/raw.py" "$GUEST" out)
    printf '  stdin: exec %6s  raw TCP %6s    stdout: exec %6s  raw TCP %6s\n' "$ein" "$rin" "$eout" "$rout"
done
