#!/usr/bin/env bash
# bench-nbd.sh: `h2resync diff` and `check` of a small generated 3-master cluster, each
# node a local file, then each node behind nbdkit (file plugin, one private Unix socket,
# the delay filter adding DELAY to every read and write request), all in the same run.
#
#   tools/bench-nbd.sh [DIR] [--files N] [--dirs N] [--bytes SIZE] [--size SIZE]
#                      [--delays "0 1 5"] [--runs N] [--keep] [--bin DIR]
#   defaults: DIR /tmp/h2bench-nbd, --files 20000 --dirs 200 --bytes 300M --size 8G,
#             --delays "0 1 5" (ms), --runs 3, --bin .build/release (built if missing)
#
# The cluster: A and B hold the whole generated tree, C (stale) misses 5% of its files.
# Prints one line per command and setting: the median of the runs in seconds, and the
# ratio to the local run's median. Also `resync` of a copy of C, locally and over NBD
# at 1 ms, with the requests and bytes the server saw (nbdkit's stats filter).
# Needs nbdkit (tools/install-deps.sh). The images stay in DIR with --keep.
set -euo pipefail
DIR=/tmp/h2bench-nbd FILES=20000 DIRS=200 BYTES=300M SIZE=8G DELAYS="0 1 5" RUNS=3 KEEP=0 BIN=""
while [ $# -gt 0 ]; do
  case "$1" in
    --files) FILES=$2; shift 2 ;;
    --dirs) DIRS=$2; shift 2 ;;
    --bytes) BYTES=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --delays) DELAYS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --bin) BIN=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "bench-nbd.sh: unknown option $1" >&2; exit 2 ;;
    *) DIR=$1; shift ;;
  esac
done
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "$BIN" ]; then
  BIN="$root/.build/release"
  [ -x "$BIN/h2resync" ] || (cd "$root" && swift build -c release >&2)
fi
H2B="$BIN/h2bench" MK="$BIN/h2mkimage" H2R="$BIN/h2resync"
command -v nbdkit >/dev/null || { echo "bench-nbd.sh: nbdkit not found" >&2; exit 2; }
mkdir -p "$DIR"
CLID=6a1e0b8c-2f55-4e1c-9d7e-3c2b1a0f9e88 T=1700000000
if ! [ -f "$DIR/A.img" ] || ! [ -f "$DIR/B.img" ] || ! [ -f "$DIR/C.img" ]; then
  "$H2B" cluster gensrc "$DIR/src" --files "$FILES" --dirs "$DIRS" --bytes "$BYTES" --extra-percent 5 --mtime "$T" >/dev/null
  seed=11
  for n in A B C; do
    "$MK" new "$DIR/$n.img" --size "$SIZE" --uuid-seed $seed --time $T
    "$MK" pfs-create "$DIR/$n.img" DATA --type MASTER --nmasters 3 --clid $CLID --uuid-seed $seed --time $T
    for part in "$DIR/src"/base.*; do "$MK" populate "$DIR/$n.img" --pfs DATA "$part" --time $T; done
    # C is the stale node: it missed the extra files (5%) that A and B received.
    if [ "$n" != C ]; then "$H2B" cluster overlay "$DIR/$n.img" --pfs DATA "$DIR/src/extra" --time $((T + 100)); fi
    seed=$((seed + 1))
  done
  rm -rf "$DIR/src"
fi
echo "h2resync $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "images: $(du -sh --apparent-size "$DIR/A.img" | cut -f1) nominal, $(du -sh "$DIR/A.img" | cut -f1) allocated each"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# time_runs CMD...: the median wall time of RUNS runs (exit status 0 or 1 accepted).
time_runs() {
  for _ in $(seq "$RUNS"); do
    local s e
    s=$(date +%s.%N)
    "$@" >/dev/null 2>"$DIR/last.err" || [ $? -le 1 ] || { cat "$DIR/last.err" >&2; exit 1; }
    e=$(date +%s.%N)
    echo "$e - $s" | bc
  done | median
}
SERVER=""
serve() {  # serve DELAY_MS [--nbdkit-flags...] [filter-params...]: nbdkit on DIR/nbd.sock
  local d=$1 flags=() params=(); shift
  for a in "$@"; do case "$a" in --*) flags+=("$a") ;; *) params+=("$a") ;; esac; done
  rm -f "$DIR/nbd.sock"
  nbdkit --exit-with-parent --foreground --unix "$DIR/nbd.sock" "${flags[@]}" --filter=delay file dir="$DIR" \
    delay-read=${d}ms delay-write=${d}ms "${params[@]}" &
  SERVER=$!
  for _ in $(seq 200); do [ -S "$DIR/nbd.sock" ] && break; sleep 0.05; done
}
unserve() { [ -n "$SERVER" ] && kill "$SERVER" && wait "$SERVER" 2>/dev/null || true; SERVER=""; }
trap unserve EXIT
uri() { echo "nbd+unix:///$1?socket=$DIR/nbd.sock"; }

local_imgs=("$DIR/A.img" "$DIR/B.img" "$DIR/C.img")
for cmd in diff check; do
  opts=(); [ $cmd = check ] && opts=(--quiet)
  loc=$(time_runs "$H2R" $cmd "${opts[@]}" "${local_imgs[@]}")
  printf '%-6s local          %8.3f s\n' $cmd "$loc"
  for d in $DELAYS; do
    serve "$d" --readonly
    t=$(time_runs "$H2R" $cmd "${opts[@]}" "$(uri A.img)" "$(uri B.img)" "$(uri C.img)")
    unserve
    printf '%-6s nbd %2s ms/req  %8.3f s  %5.2fx local\n' $cmd "$d" "$t" "$(echo "$t / $loc" | bc -l)"
  done
done

# resync of the stale C: local, then over NBD (1 ms), bytes on the wire from nbdkit's stats.
cp --sparse=always "$DIR/C.img" "$DIR/R.img"
s=$(date +%s.%N); "$H2R" resync --yes --no-snapshot "${local_imgs[@]:0:2}" "$DIR/R.img" >/dev/null; e=$(date +%s.%N)
printf 'resync local          %8.3f s\n' "$(echo "$e - $s" | bc)"
cp --sparse=always "$DIR/C.img" "$DIR/R.img"
serve 1 --filter=stats statsfile="$DIR/stats.txt" statsappend=false
s=$(date +%s.%N); "$H2R" resync --yes --no-snapshot "$(uri A.img)" "$(uri B.img)" "$(uri R.img)" > "$DIR/resync.out"; e=$(date +%s.%N)
unserve
printf 'resync nbd  1 ms/req  %8.3f s\n' "$(echo "$e - $s" | bc)"
grep -E '^(read|write|flush):' -A0 "$DIR/stats.txt" || cat "$DIR/stats.txt"
"$H2R" diff "${local_imgs[@]:0:2}" "$DIR/R.img" >/dev/null && echo "after the NBD resync, a local diff: in sync"
rm -f "$DIR/R.img" "$DIR/nbd.sock" "$DIR/last.err"
if [ "$KEEP" = 0 ]; then rm -f "$DIR"/*.img; fi
