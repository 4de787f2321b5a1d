#!/usr/bin/env bash
# The initramfs: busybox (static), e2fsck (with its libraries, from this
# host's e2fsprogs), the virtio/overlay modules of the pinned kernel with
# their dependencies in load order, and guest/init/initramfs-init.sh as /init.
#   $LOBSTER_IMAGES/initramfs.cpio.gz
# Needs: kernel.sh done, busybox-static, e2fsprogs, cpio, gzip.
# Idempotent: rebuilt only when an input changes.
source "$(dirname "$0")/common.sh"
need cpio gzip ldd sha256sum
BUSYBOX=${BUSYBOX:-/bin/busybox}
E2FSCK=${E2FSCK:-/sbin/e2fsck}
# evdev + button: the ACPI power button (QEMU system_powerdown) reaches lobster-init.
MODULES=(virtio_mmio virtio_blk virtio_net overlay evdev button)
KDIR=$LOBSTER_IMAGES/kernel
OUT=$LOBSTER_IMAGES/initramfs.cpio.gz
INIT_SCRIPT=$REPO_ROOT/guest/init/initramfs-init.sh

[ -f "$KDIR/version" ] || die "no kernel in $KDIR: run guest/images/kernel.sh first"
file -b "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' || ldd "$BUSYBOX" 2>&1 | grep -q 'not a dynamic' \
    || die "$BUSYBOX is not static (apt-get install busybox-static)"
version=$(cat "$KDIR/version")
mdir=$KDIR/modules/lib/modules/$version

stamp=$(cat "$INIT_SCRIPT" "$BUSYBOX" "$E2FSCK" "$mdir/modules.dep" "$0" | sha256sum | cut -c1-16)
if [ -f "$OUT" ] && [ "$(cat "$OUT.stamp" 2>/dev/null)" = "$stamp" ]; then
    step initramfs "cached: $(size_of "$OUT") sha256 $(sha256sum "$OUT" | cut -c1-16)…"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
r=$work/root
mkdir -p "$r"/{bin,sbin,etc,proc,sys,dev,tmp,lib/modules,lobster/base,lobster/disk,newroot}
cp "$BUSYBOX" "$r/bin/busybox"
ln -s /proc/mounts "$r/etc/mtab"
install -m 0755 "$INIT_SCRIPT" "$r/init"

# e2fsck and the shared libraries it needs (same Debian release as the guest).
cp "$E2FSCK" "$r/sbin/e2fsck"
for lib in $(ldd "$E2FSCK" | grep -oE '/[^ ]+\.so[^ ]*'); do
    mkdir -p "$r$(dirname "$lib")"
    cp -L "$lib" "$r$lib"
done

# Modules plus dependencies, dependencies first, each once.
declare -A seen=()
order=()
add_module() { # relative path from modules.dep
    local rel=$1 dep
    [ -z "${seen[$rel]:-}" ] || return 0
    seen[$rel]=1
    for dep in $(grep -E "^$rel:" "$mdir/modules.dep" | cut -d: -f2); do
        add_module "$dep"
    done
    order+=("$rel")
}
for m in "${MODULES[@]}"; do
    rel=$(grep -oE "^[^:]*/$m\.ko[^:]*" "$mdir/modules.dep" | head -n1)
    [ -n "$rel" ] || die "module $m not in $mdir/modules.dep"
    add_module "$rel"
done
for rel in "${order[@]}"; do
    mkdir -p "$r/lib/modules/$(dirname "$rel")"
    cp "$mdir/$rel" "$r/lib/modules/$rel"
done
printf '%s\n' "${order[@]}" >"$r/lib/modules/load.list"
step initramfs "modules: ${order[*]##*/}"

(cd "$r" && find . -print0 | LC_ALL=C sort -z | cpio --null --create --format=newc --reproducible --quiet) \
    | gzip -9 -n >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "$stamp" >"$OUT.stamp"
step initramfs "$(size_of "$OUT") sha256 $(sha256sum "$OUT" | cut -c1-16)… in $(elapsed)"
