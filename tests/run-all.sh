#!/usr/bin/env bash
# The one command that installs what the tests need and runs them all:
#   bash tests/run-all.sh
# Extra arguments go to `cargo test` (e.g. a test name filter). A full run
# (no arguments) then checks the .deb and .rpm too (tests/package.sh: it
# packages the debug build cargo test made, installs and purges the .deb).
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/install-deps.sh
echo "moto server: $EBSNAP_MOTO_SERVER" >&2
echo "faketime:    $EBSNAP_FAKETIME_LIB" >&2
echo "promtool:    $EBSNAP_PROMTOOL" >&2
echo "moto AMIs:   $EBSNAP_MOTO_AMIS" >&2
# The end-to-end tests run on virtual time (EBSNAP_TIME_SCALE in the
# harness): what is left is the emulator's CPU and the calls' round trips,
# so four at a time even on two cores. RUST_TEST_THREADS overrides.
# --no-fail-fast: one failing test binary (the unit tests, tests/it) does not
# hide the others' results.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
# The layout first: no circle between modules, no import upward (seconds).
python3 tests/layout.py
# Every relative link and #anchor of README.md, CHANGELOG.md and docs/ resolves.
python3 tests/docs-links.py
cargo test --locked --no-fail-fast "$@"
# A build with nothing changed does nothing (seconds).
bash tests/up-to-date.sh
if [ $# -eq 0 ]; then
  bash tests/package.sh
fi
