#!/usr/bin/env bash
# The one command that installs what the tests need and runs them all:
#   bash tests/run-all.sh
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/install-deps.sh
echo "moto server: $EBSNAP_MOTO_SERVER" >&2
echo "faketime:    $EBSNAP_FAKETIME_LIB" >&2
cargo test --locked "$@"
