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
