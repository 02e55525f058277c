#!/usr/bin/env bash
# The test command (README "Run the tests"; CI runs exactly this).
# Installs missing system libraries, then runs the whole suite. The real-image suites
# need ../shared/oracle beside the repository; without it they are reported as skipped.
# Larger stress runs: H2_MUTATIONS=20000 tools/test.sh
# The large-image suite runs with H2_LARGE=1 (as in CI: .ci/run sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
if [ ! -d ../shared/oracle ] && [ -z "${H2_ORACLE_DIR:-}" ]; then
  echo "NOTE: ../shared/oracle not found: the real-image suites will be SKIPPED" >&2
fi
if [ "${H2_LARGE:-}" != 1 ]; then
  echo "NOTE: H2_LARGE=1 not set: the large-image suite (1 TiB oracle images) will be SKIPPED (.ci/run sets it)" >&2
fi
# Optimized, with testing enabled (@testable imports): the suite's time is the engine's
# own work on its images, which a debug build runs several times slower. Overflow checks
# and preconditions stay on in -O. A plain `swift test` (debug) runs the same suite.
MODE=(-c release -Xswiftc -enable-testing)
swift build "${MODE[@]}" --build-tests
# The install test's manual generator (swift-argument-parser's generate-manual), built
# beside the binaries from the checkout this build resolved: install.sh --bin-dir then
# uses it instead of building it inside the test.
swift build "${MODE[@]}" --product generate-manual
swift test "${MODE[@]}" --skip-build "$@"
