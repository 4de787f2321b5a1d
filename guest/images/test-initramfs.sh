#!/usr/bin/env bash
# A tiny initramfs for the VMM backend tests (not the product initramfs):
# busybox-static plus an /init that prints a boot marker, then a counter to
# the console every 100 ms, so tests can see boot, pause/resume and whether a
# restored snapshot carries on from where it stopped. With `lobster.test_load`
# on the kernel command line it loads the virtio block driver instead and
# puts load on the host (see /init below) for the rate and log-cap tests.
#   $LOBSTER_IMAGES/test/initramfs.cpio.gz
# Needs: busybox (static), cpio, gzip, the kernel's modules (kernel.sh).
# Idempotent: rebuilds only when this script, busybox or the modules changed.
source "$(dirname "$0")/common.sh"

OUT=$LOBSTER_IMAGES/test
BUSYBOX=${BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] || die "$BUSYBOX not found (apt-get install busybox-static)"
! command -v file >/dev/null || file -L "$BUSYBOX" | grep -q 'statically linked' \
    || die "$BUSYBOX is not statically linked (apt-get install busybox-static)"

KDIR=$LOBSTER_IMAGES/kernel
[ -f "$KDIR/version" ] || die "no kernel in $KDIR: run guest/images/kernel.sh first"
mdir=$KDIR/modules/lib/modules/$(cat "$KDIR/version")
# In load order (each after what it needs).
MODULES=(virtio/virtio_ring virtio/virtio virtio/virtio_mmio block/virtio_blk ../net/core/failover net/net_failover net/virtio_net)

stamp="$(sha256sum "$0" "$BUSYBOX" "$mdir/modules.dep" | sha256sum | cut -c1-16)"
if [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$stamp" ]; then
    step test-initramfs "cached"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{bin,dev,proc,sys}
cp "$BUSYBOX" "$work/bin/busybox"
mkdir -p "$work/lib/modules"
for m in "${MODULES[@]}"; do
    cp "$mdir/kernel/drivers/$m.ko" "$work/lib/modules/"
done
ln -s busybox "$work/bin/sh"
cat >"$work/init" <<'INIT'
#!/bin/sh
# Test guest: marker, then a counter every 100 ms (n=<count>).
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null
echo "LOBSTER-TEST-GUEST-READY"
case " $(/bin/busybox cat /proc/cmdline) " in *" lobster.test_load "*)
    # Load: with `lobster.test_ip=<guest cidr>` and `lobster.test_gw=<host>`,
    # 2 MB sent to <host>:7101 and 2 MB received from <host>:7102; then
    # 12 MiB of writes to the second disk (vdb); then the console flooded
    # with numbered lines, forever.
    for m in virtio_ring virtio virtio_mmio virtio_blk failover net_failover virtio_net; do
        /bin/busybox insmod /lib/modules/$m.ko
    done
    for a in $(/bin/busybox cat /proc/cmdline); do
        case $a in
            lobster.test_ip=*) ip=${a#*=} ;;
            lobster.test_gw=*) gw=${a#*=} ;;
        esac
    done
    if [ -n "${ip:-}" ]; then
        i=0
        while ! /bin/busybox ip link set eth0 up 2>/dev/null && [ $i -lt 100 ]; do
            /bin/busybox usleep 100000; i=$((i + 1))
        done
        /bin/busybox ip addr add "$ip" dev eth0
        echo "LOAD-NET-UP-START"
        /bin/busybox dd if=/dev/zero bs=65536 count=32 2>/dev/null | /bin/busybox nc "$gw" 7101
        echo "LOAD-NET-UP-DONE"
        /bin/busybox nc "$gw" 7102 >/dev/null </dev/null
        echo "LOAD-NET-DOWN-DONE"
    fi
    i=0
    while [ ! -b /dev/vdb ] && [ $i -lt 100 ]; do /bin/busybox usleep 100000; i=$((i + 1)); done
    echo "LOAD-DISK-START"
    /bin/busybox dd if=/dev/zero of=/dev/vdb bs=65536 count=192 conv=fsync 2>&1
    echo "LOAD-DISK-DONE"
    n=0
    while true; do
        echo "flood $n 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz"
        n=$((n + 1))
    done
    ;;
esac
n=0
while true; do
    echo "n=$n"
    n=$((n + 1))
    /bin/busybox usleep 100000
done
INIT
chmod 0755 "$work/init"
mkdir -p "$OUT"
(cd "$work" && find . | cpio -o -H newc --quiet | gzip -1) >"$OUT/initramfs.cpio.gz.tmp"
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
echo "$stamp" >"$OUT/.stamp"
step test-initramfs "$(du -h "$OUT/initramfs.cpio.gz" | cut -f1) at $OUT/initramfs.cpio.gz"
