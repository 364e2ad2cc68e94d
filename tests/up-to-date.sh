#!/usr/bin/env bash
# A build with nothing changed does nothing: builds the tests (which the
# caller just built), then fails if cargo compiled or re-ran anything of
# ebsnap's. build.rs once named a missing .git/packed-refs, which cargo takes
# as changed, and every build rebuilt the crate.
#   bash tests/up-to-date.sh
# tests/run-all.sh runs it after cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --no-run --message-format=json >/dev/null 2>&1 || {
  echo "up-to-date: cargo test --no-run failed" >&2
  exit 1
}
stale=$(cargo test --locked --no-run --message-format=json 2>/dev/null |
  python3 -c '
import json, sys
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") == "compiler-artifact" and not msg.get("fresh", True):
        print(msg["target"]["name"], msg["target"]["kind"])
')
if [ -n "$stale" ]; then
  echo "up-to-date: FAIL: a second build with nothing changed compiled again:" >&2
  echo "$stale" >&2
  echo "up-to-date: see CARGO_LOG=cargo::core::compiler::fingerprint=info cargo build" >&2
  exit 1
fi
echo "up-to-date: a second build compiled nothing" >&2
