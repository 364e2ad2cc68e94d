#!/usr/bin/env bash
# ebsnap's benchmark, run by hand (never in CI). No AWS account: everything
# talks to moto's EC2 emulator on 127.0.0.1 through proxy.py, which adds a
# round trip per call, enforces EC2's token buckets, paginates like EC2 and
# counts the calls.
#
#   bash examples/bench/run.sh            ebsnap (default and --per-volume) and
#                                         the naive aws-cli cron script on the
#                                         same fleet: 40 instances x 3 volumes,
#                                         7 days of daily snapshots + 2 older
#   bash examples/bench/run.sh --memory   ebsnap's peak RSS, dry run and real
#                                         run: 1,000 instances x 3 volumes,
#                                         30,000 job snapshots (10 days)
#   bash examples/bench/run.sh --retention  calendar retention, a year in one
#                                         job: 60 instances x 2 volumes, 365
#                                         days of dailies purged to the steady
#                                         state of --keep-daily 7 --keep-weekly 5
#                                         --keep-monthly 12, then a day's run;
#                                         against the three jobs (daily 7d,
#                                         weekly 35d, monthly 365d) it replaces
#
# Options: --instances N  --volumes K (per instance, root included)
#          --days D (history inside the retention, = --retention Dd;
#            with --retention: the days of dailies before yesterday's, 365)
#          --expired-days E (older days, deleted by the run)
#          --delay-ms MS (proxy's round trip, default 50)  --no-aws-cli
#          --consistency-window MS (EC2's eventual consistency, default 0: off:
#            for MS after a create the proxy leaves the new snapshots out of
#            DescribeSnapshots and answers InvalidSnapshot.NotFound to a
#            describe by id, CreateTags or DeleteSnapshot on them)
#          --only LIST (of ebsnap,per-volume,aws-cli: the runs to measure)
#          --stock-moto (moto_server unpatched: O(n^2) tag lookups)
#          --keep (keep the work directory with logs and JSON)
#          --purge-rate N (--retention: the first purge's --max-rate, 100, its top)
# EBSNAP=/path/to/ebsnap (or EBSNAP_BIN=) uses that binary, any build; by
# default a release build in ${CARGO_TARGET_DIR:-~/.cache/ebsnap/release-target}
# (built here).
#
# Needs what the tests need (tests/install-deps.sh installs moto 5.2.5 in its
# own venv and libfaketime) plus aws-cli v1, pip-installed into that venv.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

awscli_version="1.46.3"
only="ebsnap,per-volume,aws-cli"
mode=compare instances="" volumes="" days="" expired="" delay=50 with_awscli=1 stock_moto=0 keep=0
window=0 purge_rate=100
while [ $# -gt 0 ]; do
  case "$1" in
    --memory) mode=memory; shift ;;
    --retention) mode=retention; shift ;;
    --purge-rate) purge_rate=$2; shift 2 ;;
    --instances) instances=$2; shift 2 ;;
    --volumes) volumes=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    --expired-days) expired=$2; shift 2 ;;
    --delay-ms) delay=$2; shift 2 ;;
    --consistency-window) window=$2; shift 2 ;;
    --no-aws-cli) with_awscli=0; shift ;;
    --only) only=$2; shift 2 ;;
    --stock-moto) stock_moto=1; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$here/run.sh" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$window" in
  ''|*[!0-9]*) echo "run.sh: --consistency-window takes milliseconds, e.g. 3000" >&2; exit 2 ;;
esac
if [ "$mode" = memory ]; then
  : "${instances:=1000}" "${volumes:=3}" "${days:=7}" "${expired:=3}"
  with_awscli=0
elif [ "$mode" = retention ]; then
  : "${instances:=60}" "${volumes:=2}" "${days:=365}" "${expired:=0}"
  with_awscli=0
else
  : "${instances:=40}" "${volumes:=3}" "${days:=7}" "${expired:=2}"
fi

step() { printf '\n=== %s\n' "$*"; }
fail() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }

step "Emulator and libfaketime (tests/install-deps.sh)"
. tests/install-deps.sh
venv=$(dirname "$(dirname "$EBSNAP_MOTO_SERVER")")
python="$venv/bin/python"
wanted() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
if [ "$with_awscli" = 1 ] && wanted aws-cli && [ ! -x "$venv/bin/aws" ]; then
  echo "installing awscli==$awscli_version into $venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "awscli==$awscli_version" >&2
fi

EBSNAP=${EBSNAP:-${EBSNAP_BIN:-}}
if [ -z "$EBSNAP" ]; then
  step "Building ebsnap (release)"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ebsnap/release-target}"
  cargo build --release --locked --quiet
  EBSNAP="$CARGO_TARGET_DIR/release/ebsnap"
fi
[ -x "$EBSNAP" ] || fail "no ebsnap binary at $EBSNAP"
echo "ebsnap: $EBSNAP ($("$EBSNAP" --version))"

work=$(mktemp -d "${TMPDIR:-/tmp}/ebsnap-bench.XXXXXX")
moto_pid="" proxy_pid="" fast_proxy_pid=""
cleanup() {
  local status=$?
  for pid in $fast_proxy_pid $proxy_pid $moto_pid; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$keep" = 1 ] || [ "$status" -ne 0 ]; then
    echo "run.sh: logs and JSON kept in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { # pid port what
  for _ in $(seq 150); do
    kill -0 "$1" 2>/dev/null || fail "$3 exited; see $work"
    (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
    sleep 0.2
  done
  fail "$3 does not answer on 127.0.0.1:$2"
}

step "Starting moto (under libfaketime) and the proxy"
moto_port=$(free_port)
moto="http://127.0.0.1:$moto_port"
echo "+0" >"$work/clock"
if [ "$stock_moto" = 1 ]; then
  moto_cmd=("$EBSNAP_MOTO_SERVER")
else
  moto_cmd=("$python" "$here/moto_fast.py")
fi
LD_PRELOAD="$EBSNAP_FAKETIME_LIB" FAKETIME_TIMESTAMP_FILE="$work/clock" FAKETIME_NO_CACHE=1 \
  "${moto_cmd[@]}" -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
wait_port "$moto_pid" "$moto_port" "moto"

proxy_args=(--upstream "$moto" --delay-ms "$delay" --port-file "$work/proxy.port"
  --trace "$work/proxy-trace.jsonl")
# The memory run measures ebsnap's memory, not EC2's buckets: 9,000 deletes
# at 5 a second would take half an hour.
[ "$mode" = memory ] && proxy_args+=(--no-limits)
[ "$window" -gt 0 ] && proxy_args+=(--consistency-window-ms "$window")
"$python" "$here/proxy.py" "${proxy_args[@]}" >"$work/proxy.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 100); do [ -s "$work/proxy.port" ] && break; sleep 0.1; done
[ -s "$work/proxy.port" ] || fail "the proxy did not start; see $work/proxy.log"
proxy="http://127.0.0.1:$(cat "$work/proxy.port")"
if [ "$mode" = retention ]; then
  # The first purge deletes most of a year at once: through a second proxy,
  # buckets off, as in --memory (41,000 deletes at 5 a second: over 2 hours).
  "$python" "$here/proxy.py" --upstream "$moto" --delay-ms "$delay" --no-limits \
    --port-file "$work/fast-proxy.port" --trace "$work/fast-proxy-trace.jsonl" >"$work/fast-proxy.log" 2>&1 &
  fast_proxy_pid=$!
  for _ in $(seq 100); do [ -s "$work/fast-proxy.port" ] && break; sleep 0.1; done
  [ -s "$work/fast-proxy.port" ] || fail "the second proxy did not start; see $work/fast-proxy.log"
  fast_proxy="http://127.0.0.1:$(cat "$work/fast-proxy.port")"
  echo "second proxy $fast_proxy (round trip ${delay} ms, EC2 buckets off: the first purge only)"
fi
echo "moto $moto, proxy $proxy (round trip ${delay} ms, EC2 buckets $([ "$mode" = memory ] && echo off || echo on), consistency window $([ "$window" -gt 0 ] && echo "${window} ms" || echo off))"

# ebsnap and aws-cli find only these settings: no ~/.aws, no real endpoint.
: >"$work/aws-config"
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_ENDPOINT_URL_EC2 \
  AWS_IGNORE_CONFIGURED_ENDPOINT_URLS EBSNAP_JOB EBSNAP_TAG_KEY EBSNAP_TAG_VALUE \
  EBSNAP_RETENTION EBSNAP_KEEP_MIN EBSNAP_OUTPUT EBSNAP_MAX_RATE EBSNAP_MAX_DELETE \
  EBSNAP_MIN_INTERVAL EBSNAP_TIMEOUT EBSNAP_INHERIT_TAGS EBSNAP_COPY_TAGS EBSNAP_SNAPSHOT_TAG \
  EBSNAP_TAG EBSNAP_PRE_HOOK EBSNAP_POST_HOOK
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
  AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
  AWS_CONFIG_FILE="$work/aws-config" AWS_SHARED_CREDENTIALS_FILE="$work/aws-config"

seed() { # name
  curl -fsS -X POST "$moto/moto-api/reset" >/dev/null
  "$python" "$here/fleet.py" build --endpoint-url "$moto" --clock-file "$work/clock" \
    --instances "$instances" --volumes "$volumes" --days "$days" --expired-days "$expired" \
    --manifest "$work/$1.manifest.json"
  curl -fsS -X POST "$proxy/__reset" >/dev/null   # zero the counts, refill the buckets
}

# measure NAME CMD...: runs CMD (stdout to NAME.out, stderr to NAME.err) and
# sets $wall (s), $rss_kb (peak RSS; of the largest process for a script) and
# $rc.
measure() {
  local name=$1; shift
  local start
  # Where this run's calls start in each proxy's trace (year.py plan-time).
  local trace
  for trace in proxy fast-proxy; do
    if [ -f "$work/$trace-trace.jsonl" ]; then wc -l <"$work/$trace-trace.jsonl"; else echo 0; fi \
      >"$work/$name.$trace.trace-from"
  done
  start=$(now)
  rc=0
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -v -o "$work/$name.time" "$@" >"$work/$name.out" 2>"$work/$name.err" || rc=$?
    rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/$name.time")
  else
    "$python" -c 'import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc)' "$work/$name.rss" "$@" >"$work/$name.out" 2>"$work/$name.err" || rc=$?
    rss_kb=$(cat "$work/$name.rss")
  fi
  wall=$("$python" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$start" "$(now)")
}

report() { # name label kind [ebsnap-json]
  curl -fsS "${stats_proxy:-$proxy}/__stats" >"$work/$1.stats.json"
  local extra=()
  [ -n "${4:-}" ] && extra=(--ebsnap-json "$4")
  "$python" "$here/report.py" run --label "$2" --kind "$3" --manifest "$work/$1.manifest.json" \
    --stats "$work/$1.stats.json" --wall "$wall" --rss-kb "$rss_kb" --exit "$rc" \
    --results "$work/results.jsonl" "${extra[@]}"
}

# moto answers DescribeSnapshots only whole (30,000 snapshots: ~10 s), where
# EC2 answers page by page. Have the proxy fetch ebsnap's query (as the proxy
# logs it under pages_per_query) before the run, uncounted, so the run's
# pages come at the proxy's round trip. Should ebsnap ask differently, the
# proxy fetches on the first page instead, within the run.
prefetch() { # [job [proxy]]
  local started answer
  started=$(now)
  answer=$(curl -fsS -X POST "${2:-$proxy}/__prefetch" \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0' \
    --data "Action=DescribeSnapshots&Version=2016-11-15&Owner.1=self&Filter.1.Name=tag%3Aebsnap%3Ajob&Filter.1.Value.1=${1:-default}")
  echo "proxy: prefetched ebsnap's DescribeSnapshots query, $answer, in $("$python" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$started" "$(now)") s (moto's full scan; not part of the run)"
}

ebsnap_common=(--endpoint-url "$proxy" --retention "${days}d"
  --max-delete 1000000 --lock-file "$work/ebsnap.lock")

run_ebsnap() { # name label kind manifest-name [flags...]
  local name=$1 label=$2 kind=$3 manifest=$4; shift 4
  local output=json
  [ "${1:-}" = --text ] && { output=text; shift; }
  prefetch "${prefetch_job:-default}" "${stats_proxy:-$proxy}"
  measure "$name" "$EBSNAP" "${ebsnap_command:-run}" "${ebsnap_common[@]}" --output "$output" "$@"
  [ "$manifest" = "$name" ] || cp "$work/$manifest.manifest.json" "$work/$name.manifest.json"
  if [ "$output" = json ]; then
    report "$name" "$label" "$kind" "$work/$name.out"
  else
    report "$name" "$label" "$kind"
    # The text ends with its summary line, or the report stopped early.
    tail -n 1 "$work/$name.out" | grep -Eq '^(Dry run: |Created )' ||
      fail "$label: the text report does not end with its summary line"
  fi
  if [ "$rc" -ne 0 ]; then
    tail -n 20 "$work/$name.err" >&2
    fail "$label exited $rc"
  fi
}

started=$(now)
if [ "$mode" = compare ]; then
  if wanted ebsnap; then
    step "ebsnap run (one CreateSnapshots per instance + one CreateTags per snapshot)"
    seed default
    run_ebsnap default "ebsnap" ebsnap default
    "$python" "$here/fleet.py" verify --endpoint-url "$moto" --manifest "$work/default.manifest.json"
  fi

  if wanted per-volume; then
    step "ebsnap run --per-volume (one CreateSnapshot per volume)"
    seed per-volume
    run_ebsnap per-volume "ebsnap --per-volume" ebsnap-per-volume per-volume --per-volume
    "$python" "$here/fleet.py" verify --endpoint-url "$moto" --manifest "$work/per-volume.manifest.json"
  fi

  if [ "$with_awscli" = 1 ] && wanted aws-cli; then
    step "aws-cli-cron.sh (aws-cli $awscli_version, one process per call, sequential)"
    seed aws-cli
    export AWS_CLI="$venv/bin/aws"
    measure aws-cli bash "$here/aws-cli-cron.sh" \
      --endpoint-url "$proxy" --retention-days "$days"
    report aws-cli "aws-cli script" aws-cli
    cat "$work/aws-cli.err" >&2
    [ "$rc" -eq 0 ] || fail "aws-cli-cron.sh exited $rc"
    "$python" "$here/fleet.py" verify --endpoint-url "$moto" --manifest "$work/aws-cli.manifest.json"
  fi
elif [ "$mode" = retention ]; then
  year() { "$python" "$here/year.py" "$1" --endpoint-url "$moto" --clock-file "$work/clock" "${@:2}"; }
  rules=(--keep-daily 7 --keep-weekly 5 --keep-monthly 12)
  volume_count=$((instances * volumes))
  # manifest NAME JOB RULES...: what report.py needs, the deletes the rules
  # make now counted by year.py (independently of ebsnap).
  manifest() { year manifest --manifest "$work/$1.manifest.json" --job "$2" "${@:3}"; }
  # plan_seconds NAME: from the proxy's trace, the last describe's answer to
  # the next call (year.py plan-time).
  plan_seconds() {
    "$python" "$here/year.py" plan-time --trace "$work/$2-trace.jsonl" \
      --from "$(cat "$work/$1.$2.trace-from")" --delay-ms "$delay"
  }

  step "One job, calendar rules: $instances instances x $volumes volumes, $days days of dailies"
  curl -fsS -X POST "$moto/moto-api/reset" >/dev/null
  year fleet --instances "$instances" --volumes "$volumes"
  # Days 2..days+1 ago; yesterday's run comes after the first purge.
  year history --job default --every day --ages "2-$((days + 1))"
  year held --job default --volumes "$volume_count" --label "seeded" --results "$work/held.jsonl"
  curl -fsS -X POST "$fast_proxy/__reset" >/dev/null
  curl -fsS -X POST "$proxy/__reset" >/dev/null

  step "ebsnap purge ${rules[*]}, without --force: the delete guard refuses it"
  stats_proxy=$fast_proxy
  ebsnap_common=(--endpoint-url "$fast_proxy" --lock-file "$work/ebsnap.lock")
  manifest guard default "${rules[@]}"
  prefetch default "$fast_proxy"
  measure guard "$EBSNAP" purge "${ebsnap_common[@]}" --output json "${rules[@]}" --max-rate "$purge_rate"
  [ "$rc" -ne 0 ] || fail "the purge of most of a year went through without --force"
  grep -q 'refused to delete' "$work/guard.err" || fail "the purge failed, but not on the delete guard; see $work/guard.err"
  echo "exit $rc, as expected: $(tail -n 1 "$work/guard.err")"
  report guard "purge, refused (no --force)" ebsnap-purge "$work/guard.out"
    curl -fsS -X POST "$fast_proxy/__reset" >/dev/null

  step "ebsnap purge ${rules[*]} --force (buckets off, --max-rate $purge_rate): the steady state"
  manifest purge default "${rules[@]}"
  ebsnap_command=purge run_ebsnap purge "purge --force, the year's first" ebsnap-purge purge \
    "${rules[@]}" --force --max-rate "$purge_rate"
  echo "purge: $(plan_seconds purge fast-proxy)" | tee -a "$work/plan.txt"
  year held --job default --volumes "$volume_count" "${rules[@]}" --label "after the first purge" \
    --results "$work/held.jsonl"

  step "Yesterday's run (seeded), then today's: ebsnap run ${rules[*]} (EC2's buckets on)"
  year history --job default --every day --ages 1-1
  year held --job default --volumes "$volume_count" --label "before the last run" --results "$work/held.jsonl"
  stats_proxy=$proxy
  ebsnap_common=(--endpoint-url "$proxy" --lock-file "$work/ebsnap.lock")
  curl -fsS -X POST "$proxy/__reset" >/dev/null
  manifest last default "${rules[@]}"
  cp "$work/last.manifest.json" "$work/last-dry.manifest.json"
  run_ebsnap last-dry "run --dry-run, one job" ebsnap-dry-run last-dry "${rules[@]}" --dry-run
  echo "last-dry: $(plan_seconds last-dry proxy)" | tee -a "$work/plan.txt"
  curl -fsS -X POST "$proxy/__reset" >/dev/null
  run_ebsnap last "run, one job (calendar rules)" ebsnap last "${rules[@]}"
  echo "last: $(plan_seconds last proxy)" | tee -a "$work/plan.txt"
  year held --job default --volumes "$volume_count" "${rules[@]}" --new --label "one job" \
    --results "$work/held.jsonl"

  step "Three jobs: daily (7d), weekly (35d), monthly (365d), each in its steady state"
  curl -fsS -X POST "$moto/moto-api/reset" >/dev/null
  year fleet --instances "$instances" --volumes "$volumes"
  # A run n periods ago keeps what is younger than its retention: the
  # snapshot of exactly 7 days (35, 365) ago, less the hour, is still there.
  year history --job daily --every day --ages 1-8
  year history --job weekly --every week --ages 1-6
  year history --job monthly --every month --ages 1-13
  year held --job daily --job weekly --job monthly --volumes "$volume_count" \
    --label "three jobs, before the day's runs" --results "$work/held.jsonl"
  for job in daily:7d weekly:35d monthly:365d; do
    curl -fsS -X POST "$proxy/__reset" >/dev/null
    manifest "${job%%:*}" "${job%%:*}" --retention-days "${job#*:}"
    ebsnap_common=(--endpoint-url "$proxy" --lock-file "$work/ebsnap-${job%%:*}.lock")
    job_flags=(--job "${job%%:*}" --retention "${job#*:}")
    prefetch_job=${job%%:*}
    run_ebsnap "${job%%:*}" "run --job ${job%%:*} --retention ${job#*:}" ebsnap "${job%%:*}" "${job_flags[@]}"
  done
  year held --job daily --job weekly --job monthly --volumes "$volume_count" --label "three jobs" \
    --results "$work/held.jsonl"
else
  step "Seeding the fleet: $instances instances x $volumes volumes, $((days + expired)) days"
  seed memory
  # Buckets off (proxy --no-limits), so ebsnap may go at its top rate.
  step "ebsnap run --dry-run (plan + DryRun=true calls)"
  run_ebsnap memory-dry "ebsnap --dry-run" ebsnap-dry-run memory --dry-run --max-rate 100
  curl -fsS -X POST "$proxy/__reset" >/dev/null
  step "ebsnap run --dry-run, as text (what an operator at a shell reads)"
  run_ebsnap memory-dry-text "ebsnap --dry-run (text)" ebsnap-dry-run memory --text --dry-run --max-rate 100
  curl -fsS -X POST "$proxy/__reset" >/dev/null
  step "ebsnap run"
  run_ebsnap memory-run "ebsnap" ebsnap memory --max-rate 100
  "$python" "$here/fleet.py" verify --endpoint-url "$moto" --manifest "$work/memory.manifest.json"
fi

step "Summary ($mode; round trip ${delay} ms; consistency window $([ "$window" -gt 0 ] && echo "${window} ms" || echo off); $(printf '%.0f' "$("$python" -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$started" "$(now)")") s in all)"
"$python" "$here/report.py" table "$work/results.jsonl"
if [ "$mode" = retention ]; then
  "$python" "$here/year.py" summary --results "$work/results.jsonl" --held "$work/held.jsonl" \
    --days "$days" --volumes "$volume_count"
  echo "The plan, from the proxy's trace (the last describe's answer to the next call):"
  sed 's/^/  /' "$work/plan.txt"
  echo "Times are of $EBSNAP ($("$EBSNAP" --version)); the first purge ran with EC2's buckets off"
  echo "(second proxy) and --max-rate $purge_rate; the daily runs with the buckets on."
fi
if [ "$mode" = memory ]; then
  echo "EC2's buckets were off (proxy --no-limits) and ebsnap ran with --max-rate 100; theory is what"
  echo "the buckets would impose on a real account. Peak RSS is what this mode measures."
fi
