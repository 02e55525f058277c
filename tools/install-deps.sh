#!/usr/bin/env bash
# Installs the C libraries h2resync links (Debian/Ubuntu): liblz4, libzstd, libxxhash,
# zlib, libnbd (NBD client, for nodes on other hosts), and pkg-config; and nbdkit (the
# NBD server the tests start). Does nothing when they are already there.
set -euo pipefail
pkgs=(liblz4-dev libzstd-dev libxxhash-dev zlib1g-dev libnbd-dev pkg-config zstd nbdkit)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get install -y "${missing[@]}" || { $SUDO apt-get update && $SUDO apt-get install -y "${missing[@]}"; }
