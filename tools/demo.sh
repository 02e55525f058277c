#!/usr/bin/env bash
# The README's demo: installs the C libraries, builds h2resync and h2mkimage, builds a
# small divergent 3-master cluster with our own builder in a temp dir, shows `diff`,
# runs `resync`, and shows `diff` again, now in sync.
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
printf 'old notes\n' > "$W/src/notes.txt"
ln -s README "$W/src/link"
run() { echo "+ $*"; "$@"; }
CLID=6a1e0b8c-2f55-4e1c-9d7e-3c2b1a0f9e88
T=1700000000
for n in A B C; do
  "$BIN/h2mkimage" new "$W/$n.img" --size 2G --time $T
  "$BIN/h2mkimage" pfs-create "$W/$n.img" DATA --type MASTER --nmasters 3 --clid $CLID --time $T
  "$BIN/h2mkimage" populate "$W/$n.img" --pfs DATA "$W/src" --time $T
done
echo "# C misses two changes that A and B received:"
seq 1 100 > "$W/extra.txt"
for n in A B; do
  "$BIN/h2mkimage" write "$W/$n.img" --pfs DATA docs/new.txt --from "$W/extra.txt" --time $((T + 1))
  "$BIN/h2mkimage" rm "$W/$n.img" --pfs DATA notes.txt --time $((T + 2))
done
cd "$W"
run "$BIN/h2resync" diff A.img B.img C.img || true
run "$BIN/h2resync" resync A.img B.img C.img --yes
run "$BIN/h2resync" diff A.img B.img C.img
run "$BIN/h2resync" pfs C.img
