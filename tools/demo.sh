#!/usr/bin/env bash
# The README's demo: builds h2resync and h2mkimage, makes a small HAMMER2 image with
# our own builder in a temp dir, and inspects it with the read-only commands.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
swift build -c release --product h2resync
swift build -c release --product h2mkimage
BIN=$(swift build -c release --show-bin-path)
W=$(mktemp -d /tmp/h2resync-demo.XXXXXX)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/src/docs" "$W/src/src"
printf 'hello, HAMMER2\n' > "$W/src/README"
seq 1 20000 > "$W/src/docs/numbers.txt"
head -c 300000 /dev/urandom > "$W/src/src/blob.bin"
ln -s README "$W/src/link"
run() { echo "+ $*"; "$@"; }
run "$BIN/h2mkimage" new "$W/node.img" --size 2G
run "$BIN/h2mkimage" pfs-create "$W/node.img" DATA --type MASTER --nmasters 1
run "$BIN/h2mkimage" populate "$W/node.img" --pfs DATA "$W/src" --comp lz4 --check xxhash64
run "$BIN/h2resync" pfs "$W/node.img"
run "$BIN/h2resync" ls -l "$W/node.img" --pfs DATA /
run "$BIN/h2resync" cat "$W/node.img" --pfs DATA README
run "$BIN/h2resync" extract "$W/node.img" --pfs DATA "$W/out" --verbose
run diff -r "$W/src" "$W/out" && echo "extract is identical to the source"
run "$BIN/h2resync" show "$W/node.img" --no-freemap | tail -n 4
