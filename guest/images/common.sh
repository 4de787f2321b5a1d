# Shared settings of the image builders (sourced, not run).
# Outputs go to $LOBSTER_IMAGES (default <repo>/.artifacts/images); downloads
# are cached in $LOBSTER_CACHE (default /var/cache/lobster) so a rebuild is fast.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOBSTER_IMAGES=${LOBSTER_IMAGES:-$REPO_ROOT/.artifacts/images}
LOBSTER_CACHE=${LOBSTER_CACHE:-/var/cache/lobster}
mkdir -p "$LOBSTER_IMAGES" "$LOBSTER_CACHE"

step() { printf '  [%s] %s\n' "$1" "$2" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# verify_sha256 FILE EXPECTED
verify_sha256() {
    local got
    got=$(sha256sum "$1" | cut -d' ' -f1)
    [ "$got" = "$2" ] || die "$1: sha256 $got, expected $2 (pinned)"
}

# Seconds since the script started (for "built in Ns" lines).
SECONDS=0
elapsed() { printf '%ss' "$SECONDS"; }

# size_of PATH: apparent size for files, used size for sparse images too.
size_of() { du -sh --apparent-size "$1" | cut -f1; }

# need CMD...: fail early naming the missing tool.
need() {
    local c
    for c in "$@"; do command -v "$c" >/dev/null || die "missing tool: $c"; done
}

[ "$(id -u)" = 0 ] || die "image builders run as root (debootstrap, device nodes, file ownership)"
