#!/usr/bin/env bash
# A root filesystem image from the cached Debian base tree (base.sh):
#   $LOBSTER_IMAGES/rootfs-<variant>.ext4   read-only base, shared by tenants
#   $LOBSTER_IMAGES/rootfs-<variant>.packages   dpkg package=version list
# variant minimal: Debian minbase + busybox + ca-certificates + lobster-init
#                  + lobster-agent (fast tests; any command as workload)
#                  + the OpenClaw CLI stand-in (openclaw-standin.sh)
# variant full:    minimal + Node.js 24 + OpenClaw (openclaw.sh), pinned
# The guest binaries come from $LOBSTER_IMAGES/bin (build.sh puts them there).
# Made with mkfs.ext4 -d (no loop mounts). Idempotent: rebuilt only when an
# input changes.
source "$(dirname "$0")/common.sh"
need mkfs.ext4 tar sha256sum
variant=${1:-minimal}
case "$variant" in minimal|full) ;; *) die "usage: rootfs.sh minimal|full" ;; esac
here=$(dirname "$0")
BIN=$LOBSTER_IMAGES/bin
OUT=$LOBSTER_IMAGES/rootfs-$variant.ext4
for b in lobster-agent lobster-init; do
    [ -x "$BIN/$b" ] || die "$BIN/$b missing: run guest/images/build.sh (it builds the static binaries)"
done

base_tar=$("$here/base.sh")
oc_tar=
[ "$variant" = minimal ] || oc_tar=$("$here/openclaw.sh")
standin=$here/openclaw-standin.sh

stamp=$( {
    echo "$base_tar $oc_tar ${OPENCLAW_LEASE_START_TIMEOUT_MS-60000}"
    cat "$BIN/lobster-agent" "$BIN/lobster-init" "$0"
    [ -n "$oc_tar" ] || cat "$standin"
} | sha256sum | cut -c1-16)
if [ -f "$OUT" ] && [ "$(cat "$OUT.stamp" 2>/dev/null)" = "$stamp" ]; then
    step "rootfs-$variant" "cached: $(size_of "$OUT") sha256 $(cat "$OUT.sha256" | cut -c1-16)…"
    exit 0
fi

work=$(mktemp -d "$LOBSTER_CACHE/rootfs/stage.XXXXXX")
trap 'rm -rf "$work"' EXIT
r=$work/root
mkdir -p "$r"
step "rootfs-$variant" "unpacking the base tree"
tar --numeric-owner -xf "$base_tar" -C "$r"

install -m 0755 -s "$BIN/lobster-init" "$r/sbin/lobster-init"
ln -sf lobster-init "$r/sbin/init"
install -m 0755 -s "$BIN/lobster-agent" "$r/usr/local/bin/lobster-agent"
mkdir -p "$r/lobster/base" "$r/lobster/disk" "$r/var/lib/lobster-agent" "$r/var/log/lobster"
chmod 0700 "$r/var/lib/lobster-agent"
echo lobster >"$r/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tlobster\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"
echo '# lobster: the initramfs and lobster-init mount everything' >"$r/etc/fstab"
: >"$r/etc/machine-id"
: >"$r/etc/resolv.conf"

if [ -n "$oc_tar" ]; then
    step "rootfs-$variant" "adding Node.js and OpenClaw"
    tar --numeric-owner -xf "$oc_tar" -C "$r"
    ln -sf /opt/node/bin/node "$r/usr/local/bin/node"
    cat >"$r/usr/local/bin/openclaw" <<'WRAP'
#!/bin/sh
exec /opt/node/bin/node /opt/openclaw/node_modules/openclaw/openclaw.mjs "$@"
WRAP
    chmod 0755 "$r/usr/local/bin/openclaw"
    # OpenClaw gives its state-lease heartbeat worker a hard-coded 5 s to
    # start. Under TCG on a busy host that takes 5.1-5.4 s (measured), so the
    # gateway exits at every start. Raise that one constant (default 60 s,
    # still bounded by the lease's own expiry); set
    # OPENCLAW_LEASE_START_TIMEOUT_MS= (empty) to keep upstream's value.
    lease_ms=${OPENCLAW_LEASE_START_TIMEOUT_MS-60000}
    if [ -n "$lease_ms" ]; then
        dist=$r/opt/openclaw/node_modules/openclaw/dist
        mapfile -t files < <(grep -rlE 'LEASE_HEARTBEAT_START_TIMEOUT_MS ?= ?5e3' "$dist")
        [ "${#files[@]}" -eq 4 ] || die "expected 4 OpenClaw files with the lease start timeout, found ${#files[@]} (new OpenClaw version?)"
        sed -i -E "s/LEASE_HEARTBEAT_START_TIMEOUT_MS( ?)=( ?)5e3/LEASE_HEARTBEAT_START_TIMEOUT_MS\1=\2$lease_ms/" "${files[@]}"
        step "rootfs-$variant" "OpenClaw lease heartbeat start timeout: 5000 -> $lease_ms ms (${#files[@]} files)"
    fi
else
    # A shell stand-in for the OpenClaw CLI (config get/set, configure,
    # devices, a busybox gateway), so `lobsterd configure`/`devices` and the
    # default workload run on this image too; see the script's header.
    install -m 0755 "$standin" "$r/usr/local/bin/openclaw"
fi

cp "$r/etc/lobster-packages.txt" "$LOBSTER_IMAGES/rootfs-$variant.packages"
used_mb=$(du -sm "$r" | cut -f1)
size_mb=$(( used_mb + used_mb / 4 + 64 ))
step "rootfs-$variant" "mkfs.ext4 -d: ${used_mb} MiB of files in a ${size_mb} MiB image"
mkfs.ext4 -q -F -b 4096 -L "lobster-$variant" -O ^has_journal -d "$r" "$OUT.tmp" "${size_mb}M" >/dev/null
mv "$OUT.tmp" "$OUT"
sha256sum "$OUT" | cut -d' ' -f1 >"$OUT.sha256"
echo "$stamp" >"$OUT.stamp"
step "rootfs-$variant" "$(basename "$OUT"): ${size_mb} MiB (files ${used_mb} MiB), sha256 $(cut -c1-16 "$OUT.sha256")… in $(elapsed)"
