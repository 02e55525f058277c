#!/usr/bin/env bash
# bench-read.sh: read-throughput benchmark of Hammer2Format on HAMMER2 images.
#
#   tools/bench-read.sh [h2bench read options] IMAGE...
#   e.g. tools/bench-read.sh --runs 5 /tmp/bench/medium.img
#        tools/bench-read.sh --json --pfs DATA a.img b.img > results.json
#
# For each image it times, warm-cache and median of --runs (default 3), each phase in a
# fresh child process: `cat IMAGE > /dev/null`, a read of only the allocated extents
# (SEEK_DATA/SEEK_HOLE), the full topology walk (freemap included, DATA decompressed)
# and an extract of the PFS into a temporary directory. It prints MB/s, the ratios of
# walk and extract rates to the cat and extent-read rates, and each phase's peak RSS.
#
# Images: any HAMMER2 image works (a DragonFly BSD newfs_hammer2 device or file image,
# the test oracle images, ...). This script never builds an image maker. One way to make
# images on Linux is makefs(8) with HAMMER2 support (github.com/kusumi/makefs), built
# somewhere outside this repository:
#
#   makefs -t hammer2 -s 8g -Z bench.img SRCDIR           # 4 volume headers need >= 8g
#   makefs -t hammer2 -s 2g -Z -o v=1 small.img SRCDIR    # 1 volume header, 2g is enough
#   (-o c=lz4|zlib|none|autozero, -o C=xxhash64|iscsi32|sha192|none; default lz4/xxhash64;
#    the PFS is named DATA unless -o m=NAME)
#
# Fill SRCDIR with a mix of many small and a few large files, half text (compressible)
# and half random (e.g. head -c 100M /dev/urandom). The whole image, holes included, is
# read once before measuring, so its apparent size should fit in free RAM.
set -euo pipefail

if [ $# -eq 0 ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
echo "building h2bench (release, scratch path .build-bench)..." >&2
swift build -c release --scratch-path .build-bench --product h2bench >&2
bin="$root/.build-bench/release/h2bench"
echo "h2resync $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet 2>/dev/null || echo '+dirty'), $(nproc 2>/dev/null || echo '?') CPUs" >&2
exec "$bin" read "$@"
