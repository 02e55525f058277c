#!/usr/bin/env bash
# Installs h2resync: tools/install.sh [--bin-dir DIR] [PREFIX]   (PREFIX default /usr/local)
#
#   PREFIX/bin                           h2resync, h2mkimage (release build)
#   PREFIX/share/man/man1                h2resync.1, h2mkimage.1 (swift-argument-parser's
#                                        generate-manual, the tool its plugin runs)
#   PREFIX/share/bash-completion/completions, PREFIX/share/zsh/site-functions,
#   PREFIX/share/fish/vendor_completions.d      shell completions
#   PREFIX/lib/systemd/system            h2resync-check@.service, h2resync-check@.timer
#   PREFIX/share/doc/h2resync            example.conf (for /etc/h2resync/), cron example
#
# DESTDIR is honoured (staged installs for packages): files go to $DESTDIR$PREFIX, paths
# written into them name $PREFIX. The release build embeds the git revision for
# `h2resync --version` (a C macro, -Xcc -DH2_GIT_REVISION=...; see Sources/CH2Version).
# --bin-dir DIR installs binaries already built in DIR (e.g. .build/debug) instead of
# building: the install test uses it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin_dir=""
prefix=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir="$(cd "$2" && pwd)"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    *) [ -z "$prefix" ] || { echo "install.sh: one PREFIX only" >&2; exit 2; }; prefix="$1"; shift ;;
  esac
done
prefix="${prefix:-/usr/local}"
case "$prefix" in /*) ;; *) echo "install.sh: PREFIX must be an absolute path" >&2; exit 2 ;; esac
dest="${DESTDIR:-}$prefix"
cd "$root"

if [ -z "$bin_dir" ]; then
  revision="$(git -C "$root" describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)"
  flags=(-c release -Xcc "-DH2_GIT_REVISION=\"$revision\"")
  for product in h2resync h2mkimage; do
    swift build "${flags[@]}" --product "$product"
  done
  bin_dir="$(swift build "${flags[@]}" --show-bin-path)"
fi
for tool in h2resync h2mkimage; do
  [ -x "$bin_dir/$tool" ] || { echo "install.sh: $bin_dir/$tool not built" >&2; exit 1; }
done

# The manual generator: swift-argument-parser's generate-manual tool, built from the
# checkout SwiftPM already resolved (no network), in its own scratch directory. The
# `swift package generate-manual` plugin runs this same tool, but it rebuilds every
# product of the package first, without our -Xcc revision flag.
# With --bin-dir, the checkout of the build that made DIR (DIR is SCRATCH/<triple>/debug).
# A generate-manual already built beside the binaries (tools/test.sh builds it with the
# package: `swift build --product generate-manual`) is used as it is.
if [ -x "$bin_dir/generate-manual" ]; then
  generate_manual="$bin_dir/generate-manual"
else
  parser=""
  for d in "$bin_dir/.." "$bin_dir/../.." "$root/.build"; do
    if [ -f "$d/checkouts/swift-argument-parser/Package.swift" ]; then
      parser="$(cd "$d/checkouts/swift-argument-parser" && pwd)"; break
    fi
  done
  if [ -z "$parser" ]; then
    swift package resolve
    parser="$root/.build/checkouts/swift-argument-parser"
  fi
  swift build --package-path "$parser" --scratch-path "$root/.build-tools" --product generate-manual >&2
  generate_manual="$(swift build --package-path "$parser" --scratch-path "$root/.build-tools" --show-bin-path)/generate-manual"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The page's date: the commit's, so the same revision gives the same page.
date="$(git -C "$root" log -1 --format=%cs 2>/dev/null || date -u +%F)"
mkdir -p "$work/man" "$work/completions"
for tool in h2resync h2mkimage; do
  "$generate_manual" "$bin_dir/$tool" --date "$date" --section 1 --output-directory "$work/man"
  [ -s "$work/man/$tool.1" ] || { echo "install.sh: no manual page for $tool" >&2; exit 1; }
  "$bin_dir/$tool" --generate-completion-script bash > "$work/completions/$tool.bash"
  "$bin_dir/$tool" --generate-completion-script zsh > "$work/completions/_$tool"
  "$bin_dir/$tool" --generate-completion-script fish > "$work/completions/$tool.fish"
done

install -d "$dest/bin" "$dest/share/man/man1" "$dest/share/bash-completion/completions" \
  "$dest/share/zsh/site-functions" "$dest/share/fish/vendor_completions.d" \
  "$dest/lib/systemd/system" "$dest/share/doc/h2resync"
for tool in h2resync h2mkimage; do
  install -m 0755 "$bin_dir/$tool" "$dest/bin/$tool"
  install -m 0644 "$work/man/$tool.1" "$dest/share/man/man1/$tool.1"
  install -m 0644 "$work/completions/$tool.bash" "$dest/share/bash-completion/completions/$tool"
  install -m 0644 "$work/completions/_$tool" "$dest/share/zsh/site-functions/_$tool"
  install -m 0644 "$work/completions/$tool.fish" "$dest/share/fish/vendor_completions.d/$tool.fish"
done
# The units and the cron example name the binary where it is installed.
for unit in h2resync-check@.service h2resync-check@.timer; do
  sed "s|/usr/local/bin/h2resync|$prefix/bin/h2resync|g" "contrib/systemd/$unit" > "$work/$unit"
  install -m 0644 "$work/$unit" "$dest/lib/systemd/system/$unit"
done
sed "s|^PATH=/usr/local/bin:|PATH=$prefix/bin:|" contrib/cron/h2resync-check > "$work/cron"
install -m 0644 "$work/cron" "$dest/share/doc/h2resync/cron.d-h2resync-check"
install -m 0644 contrib/systemd/example.conf "$dest/share/doc/h2resync/example.conf"
echo "installed h2resync ($("$dest/bin/h2resync" --version)) under $dest"
