#!/usr/bin/env bash
# The README's demo: installs the C libraries, builds h2resync and h2mkimage, builds a
# small divergent 3-master cluster with our own builder in a temp dir, shows `diff`,
# runs `resync`, and shows `diff` again, now in sync.
#
#   tools/demo.sh [--nbd]
#   --nbd: the same with every node on an NBD server (nbdkit on a Unix socket in the
#          temp dir, the nodes named nbd+unix:///N.img?socket=...), on this one machine.
set -euo pipefail
NBD=0
case "${1:-}" in
  --nbd) NBD=1 ;;
  "") ;;
  *) echo "usage: tools/demo.sh [--nbd]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
tools/install-deps.sh
swift build -c release --product h2resync
swift build -c release --product h2mkimage
BIN=$(swift build -c release --show-bin-path)
W=$(mktemp -d /tmp/h2resync-demo.XXXXXX)
SERVER=""
trap '[ -z "$SERVER" ] || kill "$SERVER" 2>/dev/null; rm -rf "$W"' EXIT
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
nodes=(A.img B.img C.img)
if [ "$NBD" = 1 ]; then
  # Each image an export named by its file name (file plugin, dir=), as a node host
  # would serve its device; h2resync prints each URI without its query.
  echo "# every node served by nbdkit on $W/nbd.sock:"
  nbdkit --exit-with-parent --foreground --unix "$W/nbd.sock" file dir="$W" &
  SERVER=$!
  for _ in $(seq 100); do [ -S "$W/nbd.sock" ] && break; sleep 0.1; done
  nodes=()
  for n in A B C; do nodes+=("nbd+unix:///$n.img?socket=$W/nbd.sock"); done
fi
run "$BIN/h2resync" diff "${nodes[@]}" || true
run "$BIN/h2resync" resync "${nodes[@]}" --yes
run "$BIN/h2resync" diff "${nodes[@]}"
run "$BIN/h2resync" pfs "${nodes[2]}"
