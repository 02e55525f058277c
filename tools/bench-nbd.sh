#!/usr/bin/env bash
# bench-nbd.sh: the NBD benchmark (issue 18) on a small generated set:
#
#   tools/bench-nbd.sh [DIR] [bench-cluster.sh options]
#   = tools/bench-cluster.sh /tmp/h2bench-nbd --nbd --size 8G --files 20000 --dirs 200
#       --bytes 300M --extra-percent 5 --src /tmp/h2bench-nbd/src --drop-src [options]
#
# (the set and its build are bench-cluster.sh's (R); see its --nbd). Sourced by
# bench-cluster.sh --nbd, this file holds the NBD runs: with DIR, RUNS, DELAYS, H2R and
# the set DIR/{A,B,C}.img (C the stale node) set by it.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  exec "$(dirname "$0")/bench-cluster.sh" /tmp/h2bench-nbd --nbd --size 8G --files 20000 --dirs 200 --bytes 300M \
    --extra-percent 5 --src /tmp/h2bench-nbd/src --drop-src "$@"
fi

command -v nbdkit >/dev/null || { echo "bench-cluster.sh --nbd: nbdkit not found" >&2; exit 2; }
echo "load $(cut -d' ' -f1-3 /proc/loadavg); images: $(du -sh --apparent-size "$DIR/A.img" | cut -f1) nominal," \
  "$(du -sh "$DIR/A.img" | cut -f1)/$(du -sh "$DIR/B.img" | cut -f1)/$(du -sh "$DIR/C.img" | cut -f1) allocated"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
PREP=""
# time_runs CMD...: the median wall time of RUNS runs (exit status 0 or 1 accepted);
# $PREP, when set, runs before each, untimed.
time_runs() {
  for _ in $(seq "$RUNS"); do
    local s e
    [ -z "$PREP" ] || $PREP
    s=$(date +%s.%N)
    "$@" >/dev/null 2>"$DIR/last.err" || [ $? -le 1 ] || { cat "$DIR/last.err" >&2; exit 1; }
    e=$(date +%s.%N)
    echo "$e - $s" | bc
  done | median
}
SERVERS=()
# serve DELAY_MS NODE...: one nbdkit per node DIR/NODE.img on DIR/NODE.sock (single-file
# form: the export name is ignored), stats filter outermost (what the client sent),
# then the delay filter.
serve() {
  local d=$1 n; shift
  for n in "$@"; do
    rm -f "$DIR/$n.sock" "$DIR/stats-$n.txt"
    nbdkit --exit-with-parent --foreground --unix "$DIR/$n.sock" --filter=stats --filter=delay file "$DIR/$n.img" \
      statsfile="$DIR/stats-$n.txt" statsappend=false delay-read="${d}ms" delay-write="${d}ms" &
    SERVERS+=($!)
  done
  for n in "$@"; do
    for _ in $(seq 200); do [ -S "$DIR/$n.sock" ] && break; sleep 0.05; done
  done
}
# Stops the servers (each writes its statsfile as it exits).
unserve() {
  local p
  for p in "${SERVERS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  SERVERS=()
}
trap unserve EXIT
uri() { echo "nbd+unix:///$1.img?socket=$DIR/$1.sock"; }
# bytes NODE OP: the bytes of OP (read, write) in NODE's statsfile, per run (its line:
# "read: 31 ops, 0.005 s, 6.75 MiB, ...").
bytes() {
  awk -v op="$2:" -v runs="$RUNS" '$1 == op {
      v = $6; u = $7; sub(/,$/, "", u)
      m = (u == "KiB") ? 1024 : (u == "MiB") ? 1048576 : (u == "GiB") ? 1073741824 : (u == "TiB") ? 1099511627776 : 1
      printf "%.0f\n", v * m / runs; found = 1 }
    END { if (!found) print 0 }' "$DIR/stats-$1.txt"
}
mib() { echo "scale=2; $1 / 1048576" | bc; }

for cmd in diff check resync; do
  case $cmd in
    diff) opts=(); nodes=(A B C); PREP="" ;;
    check) opts=(--quiet --lock-file "$DIR/check.lock"); nodes=(A B C); PREP="" ;;
    resync) opts=(--yes --no-snapshot); nodes=(A B R); PREP="cp --sparse=always $DIR/C.img $DIR/R.img" ;;
  esac
  loc=$(time_runs "$H2R" $cmd "${opts[@]}" $(for n in "${nodes[@]}"; do echo "$DIR/$n.img"; done))
  printf '%-6s local          %8.3f s\n' $cmd "$loc"
  for d in $DELAYS; do
    serve "$d" "${nodes[@]}"
    t=$(time_runs "$H2R" $cmd "${opts[@]}" $(for n in "${nodes[@]}"; do uri "$n"; done))
    unserve
    printf '%-6s nbd %2s ms/req  %8.3f s  %5.2fx local\n' $cmd "$d" "$t" "$(echo "$t / $loc" | bc -l)"
    if [ $cmd = resync ]; then
      # Where the bytes on the wire went, per run; the focus is the node diff names.
      focus=$("$H2R" diff --json "$DIR/A.img" "$DIR/B.img" "$DIR/C.img" | sed -n 's/.*"focus" *: *"[^"]*\/\([AB]\)\.img".*/\1/p' | head -1 || true)
      w=$(bytes R write) f=$(bytes "${focus:-A}" read) total=$w
      line="       wire per run:"
      for n in A B R; do r=$(bytes $n read); total=$((total + r)); line+=" $n read $(mib "$r") MiB,"; done
      echo "$line R written $(mib "$w") MiB; focus ${focus:-A}"
      printf '       wire goal: (reads + writes) / (written + focus reads) = %.2f (goal <= 1.2)\n' \
        "$(echo "$total / ($w + $f)" | bc -l)"
    fi
  done
done
PREP=""
cp --sparse=always "$DIR/C.img" "$DIR/R.img"
serve 0 A B R
"$H2R" resync --yes --no-snapshot "$(uri A)" "$(uri B)" "$(uri R)" >/dev/null
unserve
"$H2R" diff "$DIR/A.img" "$DIR/B.img" "$DIR/R.img" >/dev/null && echo "after a resync over NBD, a local diff: in sync"
rm -f "$DIR/R.img" "$DIR"/*.sock "$DIR"/stats-*.txt "$DIR/last.err"
