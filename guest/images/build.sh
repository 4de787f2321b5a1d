#!/usr/bin/env bash
# Builds every guest artifact into $LOBSTER_IMAGES (default <repo>/.artifacts/images):
#   kernel/  initramfs.cpio.gz  test/initramfs.cpio.gz (the VMM tests' guest)
#   bin/{lobster-agent,lobster-init}  rootfs-minimal.ext4  [rootfs-full.ext4]
#   overlay-template.ext4
# usage: guest/images/build.sh [minimal|full|all]   (default: minimal)
# Runs as root. Idempotent and cached: a second run only checks stamps.
source "$(dirname "$0")/common.sh"
what=${1:-minimal}
case "$what" in minimal|full|all) ;; *) die "usage: build.sh [minimal|full|all]" ;; esac
here=$(dirname "$0")
need cargo

"$here/kernel.sh"
"$here/initramfs.sh"
"$here/test-initramfs.sh"

step bin "cargo build --release (static glibc) lobster-agent lobster-init"
(cd "$REPO_ROOT" && RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --quiet --release --locked -p lobster-agent -p lobster-init --target x86_64-unknown-linux-gnu)
mkdir -p "$LOBSTER_IMAGES/bin"
for b in lobster-agent lobster-init; do
    src=$REPO_ROOT/target/x86_64-unknown-linux-gnu/release/$b
    ldd "$src" 2>&1 | grep -qE 'not a dynamic executable|statically linked' || die "$b is not statically linked"
    cmp -s "$src" "$LOBSTER_IMAGES/bin/$b" || install -m 0755 "$src" "$LOBSTER_IMAGES/bin/$b"
    step bin "$b $(size_of "$src") sha256 $(sha256sum "$src" | cut -c1-16)…"
done

case "$what" in
    minimal) "$here/rootfs.sh" minimal ;;
    full) "$here/rootfs.sh" full ;;
    all) "$here/rootfs.sh" minimal; "$here/rootfs.sh" full ;;
esac
"$here/overlay.sh"
step build "done in $(elapsed): $(cd "$LOBSTER_IMAGES" && ls -1 | grep -v stamp | tr '\n' ' ')"
