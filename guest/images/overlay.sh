#!/usr/bin/env bash
# The blank tenant disk template: a sparse ext4 image with upper/, work/
# and meta/ (0700) made with mkfs.ext4 -d. Copy it per tenant
# (cp --sparse=always) and write the agent token into meta/ with debugfs.
#   $LOBSTER_IMAGES/overlay-template.ext4
source "$(dirname "$0")/common.sh"
need mkfs.ext4
SIZE=${OVERLAY_SIZE:-1G}
OUT=$LOBSTER_IMAGES/overlay-template.ext4
stamp="$SIZE $(sha256sum "$0" | cut -c1-16)"
if [ -f "$OUT" ] && [ "$(cat "$OUT.stamp" 2>/dev/null)" = "$stamp" ]; then
    step overlay "cached: $SIZE template"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/upper" "$work/work" "$work/meta"
chmod 0700 "$work/meta"
mkfs.ext4 -q -F -b 4096 -L lobster-tenant -d "$work" "$OUT.tmp" "$SIZE" >/dev/null
mv "$OUT.tmp" "$OUT"
echo "$stamp" >"$OUT.stamp"
step overlay "$(basename "$OUT"): $SIZE sparse, $(du -h "$OUT" | cut -f1) allocated"
