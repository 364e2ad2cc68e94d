#!/usr/bin/env bash
# ebsnap's main job, on a fresh machine with no AWS account:
#   bash examples/demo.sh
#
# Starts an EC2 emulator (moto's server) on 127.0.0.1, fills it with a small
# fleet and 9 days of ebsnap's daily backups (examples/demo-fleet.py), then runs
# `ebsnap run --dry-run` and `ebsnap run` against it, and checks what the
# emulator holds afterwards. Nothing leaves this machine: the AWS settings are
# dummies and the endpoint is the emulator. Exits non-zero if any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }
fail() { printf 'demo: %s\n' "$*" >&2; exit 1; }

step "Installing the emulator and libfaketime (once; see tests/install-deps.sh)"
. tests/install-deps.sh
python="$(dirname "$EBSNAP_MOTO_SERVER")/python"   # the emulator's venv, with boto3

step "Building ebsnap (the first build compiles the AWS SDK: a few minutes)"
# --all-targets builds the tests too, so cargo resolves the same features as
# `cargo test` (the dev-dependencies switch on aws-sdk-ec2's test-util): the
# demo and bash tests/run-all.sh share one compile of the AWS SDK instead of
# doing it twice.
cargo build --all-targets --locked --quiet
ebsnap="${CARGO_TARGET_DIR:-target}/debug/ebsnap"
[ -x "$ebsnap" ] || fail "cargo built no $ebsnap"

work=$(mktemp -d)
moto_pid=""
cleanup() {
  if [ -n "$moto_pid" ]; then
    kill "$moto_pid" 2>/dev/null || true
    wait "$moto_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
endpoint="http://127.0.0.1:$port"
step "Starting the EC2 emulator on $endpoint"
# libfaketime moves the emulator's clock (not ebsnap's) by the offset in
# $work/clock, re-read on every call: demo-fleet.py writes "-215h" there to
# make a snapshot that is 215 hours old.
echo "+0" >"$work/clock"
LD_PRELOAD="$EBSNAP_FAKETIME_LIB" FAKETIME_TIMESTAMP_FILE="$work/clock" FAKETIME_NO_CACHE=1 \
  "$EBSNAP_MOTO_SERVER" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 150); do
  kill -0 "$moto_pid" 2>/dev/null || { cat "$work/moto.log" >&2; fail "the emulator did not start"; }
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.2
done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || fail "the emulator does not answer on $endpoint"

# ebsnap reads these through the standard AWS chain, as it would on a real
# host. Empty config files keep anyone's real ~/.aws out of the demo, and
# the unset variables anyone's own settings (an EC2 endpoint of their own,
# an EBSNAP_RETENTION) that would send ebsnap elsewhere or change its plan.
: >"$work/aws-config"
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_REGION \
  AWS_ENDPOINT_URL_EC2 AWS_IGNORE_CONFIGURED_ENDPOINT_URLS \
  EBSNAP_JOB EBSNAP_TAG_KEY EBSNAP_TAG_VALUE EBSNAP_RETENTION EBSNAP_KEEP_MIN EBSNAP_OUTPUT
export AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
  AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
  AWS_CONFIG_FILE="$work/aws-config" AWS_SHARED_CREDENTIALS_FILE="$work/aws-config"

step "The fleet: mongo-1 and redis-1 tagged for backup, mongo-arbiter opted out, proxy untagged; 9 days of daily backups"
"$python" examples/demo-fleet.py build --clock-file "$work/clock" || fail "building the fleet failed"

step "ebsnap run --dry-run   (the plan; DryRun=true calls check the permissions; changes nothing)"
"$ebsnap" run --dry-run || fail "ebsnap run --dry-run exited $?"

step "ebsnap run   (what cron calls: snapshot every selected volume, then purge what is older than 7d)"
echo "(it prints a summary on a terminal; from cron, stdout not a terminal, it is silent unless something fails)"
TIMEFORMAT="ebsnap run took %Rs (wall)"
time "$ebsnap" run || fail "ebsnap run exited $?"

step "What the emulator holds now"
"$python" examples/demo-fleet.py check || fail "the run did not leave what it should"

step "Done"
