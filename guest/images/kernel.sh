#!/usr/bin/env bash
# Guest kernel from Debian's cloud kernel package (pinned, checksum-verified):
#   $LOBSTER_IMAGES/kernel/vmlinuz   bzImage (QEMU)
#   $LOBSTER_IMAGES/kernel/vmlinux   uncompressed ELF (Firecracker, QEMU PVH)
#   $LOBSTER_IMAGES/kernel/modules/  lib/modules/<version> tree with modules.dep
#   $LOBSTER_IMAGES/kernel/version   the kernel release string
# Needs: apt-get, dpkg-deb, lz4, depmod (kmod). Idempotent: skips if done.
source "$(dirname "$0")/common.sh"

KERNEL_PKG=${KERNEL_PKG:-linux-image-6.1.0-56-cloud-amd64-unsigned}
KERNEL_PKG_VERSION=${KERNEL_PKG_VERSION:-6.1.192-2}
KERNEL_PKG_SHA256=${KERNEL_PKG_SHA256:-7ff7fc8da85d313242c20698c6b34542aea447673c7c1975b0d38bd6005100b5}
OUT=$LOBSTER_IMAGES/kernel

stamp="$KERNEL_PKG=$KERNEL_PKG_VERSION"
if [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$stamp" ]; then
    step kernel "cached: $(cat "$OUT/version")"
    exit 0
fi

deb=$LOBSTER_CACHE/${KERNEL_PKG}_${KERNEL_PKG_VERSION}_amd64.deb
if [ ! -f "$deb" ]; then
    step kernel "downloading $KERNEL_PKG=$KERNEL_PKG_VERSION"
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -q "$KERNEL_PKG=$KERNEL_PKG_VERSION" >/dev/null) \
        || die "apt-get download $KERNEL_PKG=$KERNEL_PKG_VERSION failed (run apt-get update?)"
    mv "$tmp"/*.deb "$deb"
    rmdir "$tmp"
fi
verify_sha256 "$deb" "$KERNEL_PKG_SHA256"

step kernel "extracting"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work"
version=$(ls "$work/lib/modules")
rm -rf "$OUT"
mkdir -p "$OUT/modules/lib/modules"
cp "$work/boot/vmlinuz-$version" "$OUT/vmlinuz"
mv "$work/lib/modules/$version" "$OUT/modules/lib/modules/"
depmod -b "$OUT/modules" "$version"
echo "$version" >"$OUT/version"

# Cut the uncompressed ELF out of the bzImage: find the LZ4 frame magic
# (legacy 0x184c2102 for the kernel's lz4 -l) and decompress from there.
offset=$(grep -abo $'\x02\x21\x4c\x18' "$OUT/vmlinuz" | head -n1 | cut -d: -f1)
[ -n "$offset" ] || die "no LZ4 payload in vmlinuz"
tail -c +$((offset + 1)) "$OUT/vmlinuz" | lz4 -dc 2>/dev/null >"$OUT/vmlinux" || true
head -c 4 "$OUT/vmlinux" | grep -q $'\x7fELF' || die "extracted vmlinux is not an ELF file"

echo "$stamp" >"$OUT/.stamp"
step kernel "$version: $(sha256sum "$OUT/vmlinuz" | cut -c1-16)… vmlinuz $(du -h "$OUT/vmlinuz" | cut -f1), vmlinux $(du -h "$OUT/vmlinux" | cut -f1)"
