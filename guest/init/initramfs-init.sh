#!/bin/busybox sh
# lobster initramfs /init: load the virtio and overlay modules, check and
# mount the tenant disk, join it over the read-only base with overlayfs,
# configure eth0 from lobster.* kernel keys (the kernel's ip= is not built
# in), and switch_root to /sbin/lobster-init.
#
# Kernel keys: lobster.ip=<addr>/<prefix> lobster.gw=<addr> lobster.dns=<addr>
#              lobster.base=<dev> (vda) lobster.disk=<dev> (vdb)
#              lobster.rescue=1 (a shell instead of power-off on failure)
# Failures never panic the kernel: they print one clear line and power off
# (or open a rescue shell), so the host sees a stopped guest and a reason.
/bin/busybox mkdir -p /proc /sys /dev /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin

mount -t devtmpfs -o mode=0755 devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys

IP= GW= DNS= BASE=vda DISK=vdb RESCUE=
for word in $(cat /proc/cmdline); do
    case "$word" in
        lobster.ip=*) IP=${word#*=} ;;
        lobster.gw=*) GW=${word#*=} ;;
        lobster.dns=*) DNS=${word#*=} ;;
        lobster.base=*) BASE=${word#*=} ;;
        lobster.disk=*) DISK=${word#*=} ;;
        lobster.rescue=*) RESCUE=${word#*=} ;;
    esac
done

log() { echo "lobster-initramfs: $*"; }
fail() {
    echo "lobster-initramfs: FATAL: $*"
    if [ "$RESCUE" = 1 ]; then
        echo "lobster-initramfs: rescue shell (exit to power off)"
        setsid cttyhack sh
    fi
    echo "lobster-initramfs: powering off"
    sync
    poweroff -f
    sleep 3600
}

# Modules, in dependency order (resolved from modules.dep at build time).
while read -r mod; do
    [ -n "$mod" ] || continue
    insmod "/lib/modules/$mod" 2>/tmp/insmod.err || {
        grep -q 'File exists' /tmp/insmod.err || fail "insmod $mod: $(cat /tmp/insmod.err)"
    }
done </lib/modules/load.list

# Wait (bounded) for both disks.
i=0
while [ ! -b "/dev/$BASE" ] || [ ! -b "/dev/$DISK" ]; do
    i=$((i + 1))
    [ $i -le 100 ] || fail "disks /dev/$BASE (base) and /dev/$DISK (tenant) did not appear within 5 s"
    usleep 50000
done

mkdir -p /lobster/base /lobster/disk /newroot
mount -t ext4 -o ro "/dev/$BASE" /lobster/base || fail "mounting the base image /dev/$BASE read-only"

# e2fsck -p: 0 clean, 1 errors fixed, 2 fixed (reboot advised), >=4 not fixed.
e2fsck -p "/dev/$DISK" >/tmp/fsck.log 2>&1
rc=$?
if [ $rc -ge 4 ]; then
    cat /tmp/fsck.log
    fail "tenant disk /dev/$DISK has errors e2fsck could not repair (exit $rc)"
fi
[ $rc -eq 0 ] || log "tenant disk /dev/$DISK repaired by e2fsck (exit $rc)"
mount -t ext4 -o rw,noatime "/dev/$DISK" /lobster/disk || fail "mounting the tenant disk /dev/$DISK"
mkdir -p /lobster/disk/upper /lobster/disk/work /lobster/disk/meta
chmod 0700 /lobster/disk/meta
mount -t overlay overlay \
    -o lowerdir=/lobster/base,upperdir=/lobster/disk/upper,workdir=/lobster/disk/work /newroot \
    || fail "mounting the overlay root"
[ -x /newroot/sbin/lobster-init ] || fail "the base image has no /sbin/lobster-init"

# Network: addresses and routes survive switch_root.
ip link set lo up
if [ -n "$IP" ]; then
    ip link set eth0 up || fail "no eth0 (virtio_net not loaded?)"
    ip addr add "$IP" dev eth0 || fail "adding $IP to eth0"
    [ -z "$GW" ] || ip route add default via "$GW" dev eth0 || fail "default route via $GW"
fi
if [ -n "$DNS" ]; then
    echo "nameserver $DNS" >/newroot/etc/resolv.conf
fi

# Hand the disks and /dev to the real root, then switch.
mount --move /lobster/base /newroot/lobster/base || fail "moving the base mount"
mount --move /lobster/disk /newroot/lobster/disk || fail "moving the tenant disk mount"
mount --move /dev /newroot/dev
umount /proc /sys
log "root ready ($(cat /newroot/etc/debian_version 2>/dev/null || echo ?)), starting lobster-init"
exec switch_root /newroot /sbin/lobster-init
