#!/usr/bin/env bash
# bench-cluster.sh: benchmarks of `h2resync check`, `diff` and `resync` on a generated
# 3-master cluster, every ratio measured in the same run (no timed unit tests).
#
#   tools/bench-cluster.sh [DIR] [--files N] [--dirs N] [--bytes SIZE] [--size SIZE]
#                          [--extra-percent P] [--runs N] [--cache warm|cold|both]
#                          [--src DIR] [--drop-src] [--keep] [--reuse] [--modes RABC]
#                          [--nbd [--delays "0 1 5"]] [--bin DIR]
#   defaults (the real-size set, part (R)): DIR /tmp/h2bench-cluster, --size 1T
#             --files 200000 --dirs 2000 --bytes 8400M --extra-percent 1 --runs 3
#             --cache both --src /tmp/benchsrc --modes R
#   the old 2 GB set (parts (A) (B) (C) below):
#     tools/bench-cluster.sh DIR --size 8G --bytes 2200M --extra-percent 10 --modes ABC
#   16 TiB nominal: --size 17592177655808 (16 TiB - 8 MiB). ext4 holds files up to
#     16 TiB - 4 KiB only, so `h2mkimage new --size 16T` fails with EFBIG there; 16 TiB
#     - 8 MiB is the largest size below it that h2mkimage new accepts.
#   (--modes: which of the parts (R) (A) (B) (C) below to run, e.g. --modes C;
#    --drop-src: remove the source tree once the images are built (disk: the real-size
#    tree is as big as one image); --reuse: with --modes R, keep DIR/{A,B,C}.img of an
#    earlier --keep run instead of building them again; --bin DIR: use the h2resync,
#    h2mkimage and h2bench in DIR instead of building them.)
#
# --nbd (issue 18): the set of (R) (same options, same build, --reuse too), then `diff`,
#     `check --quiet` and `resync --yes --no-snapshot` of a fresh copy of C (setup, not
#     timed), each first on the files and then with every node behind its own nbdkit
#     (file plugin, a Unix socket in DIR, the delay filter adding D ms to every read and
#     write request, the stats filter counting them) at each of --delays, medians of
#     --runs, all in the same run. Per line: the median in seconds and the ratio to the
#     local median. For resync also the bytes on the wire by node and the wire goal:
#     (all reads + all writes) / (bytes written + bytes read from the focus), <= 1.2.
#     Goals: diff and check <= 2x local at 1 ms. Needs nbdkit (tools/install-deps.sh).
#     tools/bench-nbd.sh runs it on a small set.
#
# (R) the real-size set (issue 15 item 5), steps 1, 2 and 4 below with --extra-percent 1:
#     A and B get SRC/extra, C (the stale node) does not: C is 1% of the files behind.
#     Every image is --size nominal (sparse) with ~9 GiB allocated over 10 1-GiB
#     regions (so its freemap has a level-2 FREEMAP_NODE). `h2bench cluster realsize A B C
#     --focus A --stale C`: per cache mode (warm, then cold: page cache dropped before
#     every timed command, root) and run: the extent read of the 3 images, `check`,
#     `diff`, `resync` of a fresh copy of C (A and B are used in place: resync never
#     writes the focus or a node in sync), `dd oflag=direct conv=fsync` of the bytes
#     resync wrote (floor = diff + dd), `cp --sparse=always A` + `sync` of the copy.
#     Goals: resync >= 10x faster than cp + fsync; resync <= 2x its floor; check >= 0.7x
#     the extent read (cold); peak RSS < 200 MB; 16 TiB within 10% of 1 TiB (compare two
#     runs' DIR/realsize.json with `h2bench cluster realcompare --base X --other Y`).
#     Disk: SRC + 3 images + 2 more image-sized files (the copy of C, then the cp target).
#
# Procedure (everything under DIR; the source tree under --src is kept and reused when
# its parameters match, the images are removed at the end unless --keep):
#  1. `h2bench cluster gensrc SRC`: a deterministic tree, SRC/base.N plus SRC/extra (~10%
#     of the files, scattered over all directories, and 1 of the 10 big files). The
#     base tree is split by top-level directory into parts of ~40,000 files, populated
#     one after the other into the PFS root: h2mkimage populate fails on its own image
#     lock when a tree has more than --batch (50,000) inodes (see the report).
#     --files small and big files in --dirs leaf directories, --bytes of data in all,
#     half compressible text, half random; every mtime fixed.
#  2. A, B, C: `h2mkimage new --size SIZE --uuid-seed 1N --time T`, `pfs-create DATA
#     --type MASTER --nmasters 3 --clid CLID` (same clid, own fsid per node) and
#     `populate SRC/base.N` for each part (timed: populate throughput).
#  3. C-stale.img = a copy of C now (a node that then missed the extra files).
#  4. `h2bench cluster overlay` adds SRC/extra to A, B and C (one transaction each): the
#     three now hold the whole tree, identically (same tids, same inode numbers).
#  5. (A) C diverges slightly (h2mkimage rm of 3 files, a new file, 64 KiB rewritten in a
#     big file), then `h2bench cluster diffcheck A B C`: per run, a pread of every
#     image's allocated extents (SEEK_DATA/SEEK_HOLE; the baseline), `h2resync check
#     A B C --quiet --lock-file ...` (deep: reads every block) and `h2resync diff A B C`
#     (fast), first warm (extents read once before), then cold (page cache dropped
#     before each command: root only). check rate = allocated bytes / check seconds.
#  6. (B) `h2bench cluster resync --focus A A B C-stale`: per run, fresh copies of the
#     three (setup, not timed), then `h2resync resync --yes --no-snapshot` on them, a
#     `diff` that must say in sync, and `cp --sparse=always FOCUS COPY` (+ its fsync,
#     reported apart: resync fsyncs its writes, a plain cp does not). Run by hand with
#     `--cache cold`, the page cache is dropped before resync and before cp; with
#     `--cache hot`, the images' allocated extents are read (untimed) before resync and
#     the focus's before cp, so both start with what they read in the page cache.
#  7. (C) D: a master built separately from the focus's tree minus its last 10% of
#     directories: `new`, `pfs-create` (same clid), a node-local `snapshot` (one more
#     transaction first, so every later modify_tid differs from A's by one), the same
#     `populate` parts and `overlay` as A (same inode numbers), then `rm -r` of the last
#     10% of the top-level directories. Every tid differs, 90% of the content is equal.
#     `h2bench cluster separate A B D --focus A --target D`: per run, a fresh copy of D
#     (setup, not timed), `h2resync resync --yes --no-snapshot --allow-rollback A B
#     COPY` (D's own removals leave its root tid above A's: it is "ahead"), its bytes
#     written by block type, the copy's freemap in-use growth, a `diff` that must say
#     in sync, and `cp --sparse=always A COPY` (the whole copy it is compared with).
#     Goals: bytes written < 25% of the focus's in-use bytes, time <= 2x the cp.
#  8. `h2bench cluster report`: the table, and DIR/results.json (and DIR/separate.json).
# Peak RSS of every child: its maximum resident set as GNU time (/usr/bin/time) reports
# it; without GNU time, ru_maxrss from wait4, which on Linux includes h2bench's own peak.
# Needs ~4x the image data in free disk space, and page cache for 3 images to keep the
# (A) runs warm.
set -euo pipefail

DIR=/tmp/h2bench-cluster SRC=/tmp/benchsrc FILES=200000 DIRS=2000 BYTES=8400M SIZE=1T RUNS=3 CACHE=both KEEP=0 MODES=R
EXTRA=1 DROPSRC=0 REUSE=0 NBD=0 DELAYS="0 1 5" BIN=""
while [ $# -gt 0 ]; do
  case "$1" in
    --files) FILES=$2; shift 2 ;;
    --dirs) DIRS=$2; shift 2 ;;
    --bytes) BYTES=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --cache) CACHE=$2; shift 2 ;;
    --src) SRC=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --reuse) REUSE=1; shift ;;
    --drop-src) DROPSRC=1; shift ;;
    --extra-percent) EXTRA=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --nbd) NBD=1; shift ;;
    --delays) DELAYS=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "bench-cluster.sh: unknown option $1" >&2; exit 2 ;;
    *) DIR=$1; shift ;;
  esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [ -z "$BIN" ]; then
  echo "building (release, scratch path .build-bench)..." >&2
  swift build -c release --scratch-path .build-bench >&2
  BIN="$root/.build-bench/release"
fi
H2B="$BIN/h2bench" MK="$BIN/h2mkimage" H2R="$BIN/h2resync"
echo "h2resync $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty'), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)" >&2

CLID=6a1e0b8c-2f55-4e1c-9d7e-3c2b1a0f9e88
T=1700000000
mkdir -p "$DIR"
has() { case "$MODES" in *"$1"*) return 0 ;; *) return 1 ;; esac; }
LOG="$DIR/setup.jsonl"
step() { local label=$1; shift; "$H2B" cluster exec --label "$label" --log "$LOG" -- "$@"; }

# (R) the real-size set (and --nbd's)
if has R || [ "$NBD" = 1 ]; then
  if [ "$REUSE" = 1 ] && [ -f "$DIR/A.img" ] && [ -f "$DIR/B.img" ] && [ -f "$DIR/C.img" ]; then
    echo "reusing $DIR/{A,B,C}.img" >&2
  else
    rm -rf "$DIR"/*.img "$DIR/work" "$LOG" "$DIR/realsize.json"
    step gensrc "$H2B" cluster gensrc "$SRC" --files "$FILES" --dirs "$DIRS" --bytes "$BYTES" --extra-percent "$EXTRA" --mtime "$T" >/dev/null
    cp "$SRC/manifest.json" "$DIR/manifest.json"
    seed=11
    for n in A B C; do
      step "new-$n" "$MK" new "$DIR/$n.img" --size "$SIZE" --uuid-seed $seed --time $T
      step "pfs-create-$n" "$MK" pfs-create "$DIR/$n.img" DATA --type MASTER --nmasters 3 --clid $CLID --uuid-seed $seed --time $T
      for part in "$SRC"/base.*; do
        step "populate-$n.${part##*.}" "$MK" populate "$DIR/$n.img" --pfs DATA "$part" --time $T
      done
      if [ "$n" != C ]; then step "overlay-$n" "$H2B" cluster overlay "$DIR/$n.img" --pfs DATA "$SRC/extra" --time $((T + 100)); fi
      seed=$((seed + 1))
    done
    if [ "$DROPSRC" = 1 ]; then rm -rf "$SRC"; fi
    # The freemap's shape: FREEMAP_NODEs and leaves (1-GiB regions in use).
    "$H2R" show "$DIR/A.img" > "$DIR/A.show"
    echo "A.img freemap: $(grep -c FREEMAP_NODE "$DIR/A.show") FREEMAP_NODE, $(grep -c FREEMAP_LEAF "$DIR/A.show") FREEMAP_LEAF" >&2
    rm -f "$DIR/A.show"
  fi
  if [ "$NBD" = 1 ]; then
    # shellcheck source=tools/bench-nbd.sh
    . "$root/tools/bench-nbd.sh"
    if [ "$KEEP" = 0 ]; then rm -rf "$DIR"/*.img; fi
    exit 0
  fi
  "$H2B" cluster realsize "$DIR/A.img" "$DIR/B.img" "$DIR/C.img" --focus "$DIR/A.img" --stale "$DIR/C.img" \
    --h2resync "$H2R" --workdir "$DIR/work" --runs "$RUNS" --cache "$CACHE" --lock-file "$DIR/check.lock" \
    --json-out "$DIR/realsize.json"
  echo "JSON: $DIR/realsize.json"
  if [ "$KEEP" = 0 ]; then rm -rf "$DIR"/*.img "$DIR/work"; fi
  case "$MODES" in R) exit 0 ;; esac
fi

rm -rf "$DIR"/*.img "$DIR/work" "$DIR/setup.jsonl" "$DIR/diffcheck.json" "$DIR/resync.json" "$DIR/separate.json"

# 1. source tree
step gensrc "$H2B" cluster gensrc "$SRC" --files "$FILES" --dirs "$DIRS" --bytes "$BYTES" --extra-percent "$EXTRA" --mtime "$T" >/dev/null

# 2. three masters from SRC/base
seed=11
for n in A B $( (has A || has B) && echo C); do
  step "new-$n" "$MK" new "$DIR/$n.img" --size "$SIZE" --uuid-seed $seed --time $T
  step "pfs-create-$n" "$MK" pfs-create "$DIR/$n.img" DATA --type MASTER --nmasters 3 --clid $CLID --uuid-seed $seed --time $T
  for part in "$SRC"/base.*; do
    step "populate-$n.${part##*.}" "$MK" populate "$DIR/$n.img" --pfs DATA "$part" --time $T
  done
  seed=$((seed + 1))
done

# 3. the stale node for (B)
if has B; then step copy-C-stale cp --sparse=always "$DIR/C.img" "$DIR/C-stale.img"; fi

# (C)'s D: one transaction more than A before the same populate parts
if has C; then
  step new-D "$MK" new "$DIR/D.img" --size "$SIZE" --uuid-seed 14 --time $T
  step pfs-create-D "$MK" pfs-create "$DIR/D.img" DATA --type MASTER --nmasters 3 --clid $CLID --uuid-seed 14 --time $T
  step snapshot-D "$MK" snapshot "$DIR/D.img" --pfs DATA DATA.shift --uuid-seed 15 --time $T
  for part in "$SRC"/base.*; do
    step "populate-D.${part##*.}" "$MK" populate "$DIR/D.img" --pfs DATA "$part" --time $T
  done
fi

# 4. the extra files on all three (and D)
for n in A B $([ -f "$DIR/C.img" ] && echo C) $(has C && echo D); do
  step "overlay-$n" "$H2B" cluster overlay "$DIR/$n.img" --pfs DATA "$SRC/extra" --time $((T + 100))
done
if has C; then
  # D lacks the last 10% of the top-level directories (sorted by name, as populate walks).
  mapfile -t tops < <(find "$SRC"/base.* "$SRC/extra" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -u)
  ncut=$(( (${#tops[@]} + 9) / 10 ))
  for d in "${tops[@]: -$ncut}"; do
    step "separate-rm-D" "$MK" rm "$DIR/D.img" --pfs DATA "$d" -r --time $((T + 300))
  done
fi

# 5. (A): C diverges slightly
if has A; then
d1=$(cd "$SRC/base.0" && find . -mindepth 2 -maxdepth 2 -type d | sort | sed -n '1s|^\./||p')
mapfile -t victims < <(cd "$SRC/base.0/$d1" && ls | sort | sed -n 1,3p)
for f in "${victims[@]}"; do
  step "diverge-rm" "$MK" rm "$DIR/C.img" --pfs DATA "$d1/$f" --time $((T + 200))
done
head -c 100000 "$SRC"/base.*/big/big0.dat > "$DIR/new-file.bin"
head -c 65536 /dev/zero | tr '\0' 'x' > "$DIR/patch.bin"
step diverge-write-new "$MK" write "$DIR/C.img" --pfs DATA "$d1/new-file.bin" --from "$DIR/new-file.bin" --time $((T + 201))
step diverge-write-big "$MK" write "$DIR/C.img" --pfs DATA big/big0.dat --at 1048576 --from "$DIR/patch.bin" --time $((T + 202))
rm -f "$DIR/new-file.bin" "$DIR/patch.bin"

"$H2B" cluster diffcheck "$DIR/A.img" "$DIR/B.img" "$DIR/C.img" --h2resync "$H2R" --runs "$RUNS" --cache "$CACHE" \
  --lock-file "$DIR/check.lock" --workdir "$DIR" --json-out "$DIR/diffcheck.json" >/dev/null
fi
rm -f "$DIR/C.img"  # no longer needed: frees room for (B)'s copies

# 6. (B): A and B hold everything, C-stale lacks SRC/extra
if has B; then
  "$H2B" cluster resync "$DIR/A.img" "$DIR/B.img" "$DIR/C-stale.img" --focus "$DIR/A.img" --h2resync "$H2R" \
    --workdir "$DIR/work" --runs "$RUNS" --json-out "$DIR/resync.json" >/dev/null
  rm -f "$DIR/C-stale.img"
fi

# 7. (C): D, built separately, resynced from A (B the third master)
if has C; then
  "$H2B" cluster separate "$DIR/A.img" "$DIR/B.img" "$DIR/D.img" --focus "$DIR/A.img" --target "$DIR/D.img" \
    --h2resync "$H2R" --workdir "$DIR/work" --runs "$RUNS" --json-out "$DIR/separate.json"
fi

# 8. report
"$H2B" cluster report --manifest "$SRC/manifest.json" --setup "$LOG" \
  $(has A && echo --diffcheck "$DIR/diffcheck.json") $(has B && echo --resync "$DIR/resync.json") --json-out "$DIR/results.json"
echo "JSON: $DIR/results.json"
cat "$DIR/results.json"
if has C; then echo "JSON (C): $DIR/separate.json"; fi
if [ "$KEEP" = 0 ]; then rm -rf "$DIR"/*.img "$DIR/work"; fi
