#!/usr/bin/env bash
# Builds lobster's C library and installs it the way a C library is
# installed: one command, the same layout cargo-c gives.
#
#   scripts/install-capi.sh [--prefix DIR] [--destdir DIR] [--debug]
#
#   PREFIX/include/lobster.h
#   PREFIX/lib/liblobster.a
#   PREFIX/lib/liblobster.so.VERSION, liblobster.so.MAJOR -> it, liblobster.so -> it
#   PREFIX/lib/pkgconfig/lobster.pc
#
# Default prefix /usr/local; --destdir stages under a root (packaging);
# --debug installs the debug build (tests). Then:
#   gcc app.c $(pkg-config --cflags --libs lobster)            # shared
#   gcc app.c $(pkg-config --cflags lobster) \
#       "$(pkg-config --variable=libdir lobster)/liblobster.a" -lpthread -ldl -lm   # static
# (with PKG_CONFIG_PATH=PREFIX/lib/pkgconfig for a prefix pkg-config does
# not search; `-llobster` picks the shared library where both are, hence
# the archive by path). Installed as root into /usr or /usr/local, the
# linker cache is refreshed (ldconfig); elsewhere use -Wl,-rpath or
# LD_LIBRARY_PATH.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
prefix=/usr/local destdir="" profile=release
while [ $# -gt 0 ]; do
    case $1 in
        --prefix) prefix=$2; shift 2 ;;
        --destdir) destdir=$2; shift 2 ;;
        --debug) profile=debug; shift ;;
        *) echo "install-capi: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
case $prefix in /*) ;; *) echo "install-capi: --prefix must be absolute: $prefix" >&2; exit 2 ;; esac

cd "$repo"
if [ "$profile" = release ]; then
    cargo build --locked --release -p lobster-capi
else
    cargo build --locked -p lobster-capi
fi
version=$(cargo metadata --locked --no-deps --format-version 1 |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "lobster-capi"))')
major=${version%%.*}
built=$repo/target/$profile
root=$destdir$prefix

install -d -m 0755 "$root/include" "$root/lib/pkgconfig"
install -m 0644 lobster-capi/include/lobster.h "$root/include/lobster.h"
install -m 0644 "$built/liblobster.a" "$root/lib/liblobster.a"
install -m 0755 "$built/liblobster.so" "$root/lib/liblobster.so.$version"
ln -sfn "liblobster.so.$version" "$root/lib/liblobster.so.$major"
ln -sfn "liblobster.so.$major" "$root/lib/liblobster.so"
cat >"$root/lib/pkgconfig/lobster.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: lobster
Description: microVM tenants on one host (the C API of lobster)
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -llobster
Libs.private: -lpthread -ldl -lm
PC
case $prefix in /usr | /usr/local) system=1 ;; *) system=0 ;; esac
if [ "$system" = 1 ] && [ -z "$destdir" ] && [ "$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then
    ldconfig
fi
echo "install-capi: lobster $version ($profile) installed under $root"
