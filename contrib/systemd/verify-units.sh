#!/usr/bin/env bash
# Verifies the h2resync units with `systemd-analyze verify`:
#   contrib/systemd/verify-units.sh UNIT_DIR [H2RESYNC_BINARY]
# The units are copied to a temp dir; with H2RESYNC_BINARY their ExecStart runs it
# (verify checks that ExecStart exists: the source units name /usr/local/bin/h2resync).
# Any message from systemd-analyze fails (it only warns about unknown keys or bad
# values, with exit code 0). Works without systemd as PID 1 (containers): --man=no,
# no bus. Exit 77 with a SKIPPED line when systemd-analyze is missing.
set -euo pipefail
units="$1"
binary="${2:-}"
if ! command -v systemd-analyze >/dev/null; then
  echo "SKIPPED units verify: systemd-analyze not found (Debian package: systemd)"
  exit 77
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$units/h2resync-check@.service" "$units/h2resync-check@.timer" "$work/"
if [ -n "$binary" ]; then
  binary="$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")"
  sed -i "s|^ExecStart=[^ ]*h2resync |ExecStart=$binary |" "$work/h2resync-check@.service"
fi
# An instance of each template, as systemd would load it.
cp "$work/h2resync-check@.service" "$work/h2resync-check@verify.service"
cp "$work/h2resync-check@.timer" "$work/h2resync-check@verify.timer"
out="$(cd "$work" && systemd-analyze verify --man=no ./h2resync-check@verify.service ./h2resync-check@verify.timer 2>&1)" || {
  echo "$out" >&2; echo "units verify: FAILED" >&2; exit 1; }
if [ -n "$out" ]; then echo "$out" >&2; echo "units verify: FAILED (warnings)" >&2; exit 1; fi
echo "units verify: OK ($(systemd-analyze --version | head -1))"
