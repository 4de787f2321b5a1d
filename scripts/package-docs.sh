#!/usr/bin/env bash
# Writes lobsterd's shell completions and man pages, generated from the
# same clap definitions as its parser, into a staging tree for a package:
#
#   scripts/package-docs.sh OUT
#     OUT/usr/share/bash-completion/completions/lobsterd
#     OUT/usr/share/zsh/vendor-completions/_lobsterd
#     OUT/usr/share/fish/vendor_completions.d/lobsterd.fish
#     OUT/usr/share/man/man1/lobsterd.1, lobsterd-<command>.1
#
# (`lobsterd init` installs the same files on the host it sets up, where
# those directories exist; `lobsterd uninit` removes them.)
set -euo pipefail
out=${1:?usage: scripts/package-docs.sh OUT}
cd "$(dirname "$0")/.."
cargo build -q --locked -p lobster-cli
lobsterd=target/debug/lobsterd
share="$out/usr/share"
mkdir -p "$share/bash-completion/completions" "$share/zsh/vendor-completions" \
    "$share/fish/vendor_completions.d"
"$lobsterd" completions bash >"$share/bash-completion/completions/lobsterd"
"$lobsterd" completions zsh >"$share/zsh/vendor-completions/_lobsterd"
"$lobsterd" completions fish >"$share/fish/vendor_completions.d/lobsterd.fish"
"$lobsterd" man "$share/man/man1"
