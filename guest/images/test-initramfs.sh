#!/usr/bin/env bash
# A tiny initramfs for the VMM backend tests (not the product initramfs):
# busybox-static plus an /init that prints a boot marker, then a counter to
# the console every 100 ms, so tests can see boot, pause/resume and whether a
# restored snapshot carries on from where it stopped.
#   $LOBSTER_IMAGES/test/initramfs.cpio.gz
# Needs: busybox (static), cpio, gzip. Idempotent: rebuilds only when this
# script or busybox changed.
source "$(dirname "$0")/common.sh"

OUT=$LOBSTER_IMAGES/test
BUSYBOX=${BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] || die "$BUSYBOX not found (apt-get install busybox-static)"
! command -v file >/dev/null || file -L "$BUSYBOX" | grep -q 'statically linked' \
    || die "$BUSYBOX is not statically linked (apt-get install busybox-static)"

stamp="$(sha256sum "$0" "$BUSYBOX" | sha256sum | cut -c1-16)"
if [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$stamp" ]; then
    step test-initramfs "cached"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{bin,dev,proc,sys}
cp "$BUSYBOX" "$work/bin/busybox"
ln -s busybox "$work/bin/sh"
cat >"$work/init" <<'INIT'
#!/bin/sh
# Test guest: marker, then a counter every 100 ms (n=<count>).
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null
echo "LOBSTER-TEST-GUEST-READY"
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
