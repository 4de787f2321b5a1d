#!/usr/bin/env bash
# The Debian base tree shared by every rootfs variant, cached as a tarball:
#   $LOBSTER_CACHE/rootfs/<suite>-minbase-<key>.tar
# debootstrap --variant=minbase from the mirror this host's apt uses, plus a
# few packages, then trimmed (apt lists and caches, docs, man pages, locales).
# Prints the path of the tarball on stdout. Idempotent: reuses the cached tar.
source "$(dirname "$0")/common.sh"
need debootstrap tar sha256sum

SUITE=${BASE_SUITE:-bookworm}
# busybox: a tiny HTTP server and tools for tests; ca-certificates: TLS for
# the workload's outbound calls (LLM providers).
INCLUDE=${BASE_INCLUDE:-busybox,ca-certificates}

mirror_from_apt() {
    local uri
    uri=$(grep -hE '^URIs:.*debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')
    [ -n "$uri" ] || uri=$(grep -hE '^deb .*debian/? ' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')
    echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR=${BASE_MIRROR:-$(mirror_from_apt)}

key=$(printf '%s|%s|v1' "$SUITE" "$INCLUDE" | sha256sum | cut -c1-12)
tarball=$LOBSTER_CACHE/rootfs/$SUITE-minbase-$key.tar
mkdir -p "$LOBSTER_CACHE/rootfs"
if [ -f "$tarball" ]; then
    step base "cached: $(basename "$tarball") $(size_of "$tarball") sha256 $(sha256sum "$tarball" | cut -c1-16)…"
    echo "$tarball"
    exit 0
fi

work=$(mktemp -d "$LOBSTER_CACHE/rootfs/work.XXXXXX")
trap 'rm -rf "$work"' EXIT
step base "debootstrap --variant=minbase $SUITE from $MIRROR (+$INCLUDE)"
debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$work/root" "$MIRROR" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
step base "debootstrap done after $(elapsed), $(du -sh "$work/root" | cut -f1)"

r=$work/root
chroot "$r" dpkg-query -W -f '${Package}=${Version}\n' >"$r/etc/lobster-packages.txt"
rm -rf "$r"/var/cache/apt/* "$r"/var/lib/apt/lists/* "$r"/usr/share/doc/* \
    "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/lintian \
    "$r"/var/log/*.log "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old
find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
step base "trimmed to $(du -sh "$r" | cut -f1)"

tar --numeric-owner --xattrs -C "$r" -cf "$tarball.tmp" .
mv "$tarball.tmp" "$tarball"
step base "$(basename "$tarball") $(size_of "$tarball") sha256 $(sha256sum "$tarball" | cut -c1-16)… in $(elapsed)"
echo "$tarball"
