#!/usr/bin/env bash
# The cron job ebsnap replaces, done the naive way, as the original script
# did it: one aws-cli process per call, one call after another.
#
#   aws-cli-cron.sh --endpoint-url URL [--retention-days 7]
#
# 1. find the instances tagged Scheduled-Snapshots;
# 2. for each instance, list its volumes;
# 3. for each volume, aws ec2 create-snapshot, tagged in the call (here with
#    ebsnap's tag contract, so the benchmark's history is "its own");
# 4. list the snapshots it made (by its tag) and delete, one by one, each
#    older than the retention.
#
# For the benchmark only: it talks to the endpoint given (the proxy in front
# of moto on 127.0.0.1) with the credentials in the environment. Uses `aws`
# from $AWS_CLI, else from PATH.
set -euo pipefail

endpoint=""
retention_days=7
while [ $# -gt 0 ]; do
  case "$1" in
    --endpoint-url) endpoint=$2; shift 2 ;;
    --retention-days) retention_days=$2; shift 2 ;;
    *) echo "aws-cli-cron.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$endpoint" in
  http://127.0.0.1:*|http://localhost:*) ;;
  *) echo "aws-cli-cron.sh: --endpoint-url must be a local emulator on 127.0.0.1" >&2; exit 2 ;;
esac

aws() { "${AWS_CLI:-aws}" --endpoint-url "$endpoint" "$@"; }

job=default
run_id="$(date -u +%Y%m%dT%H%M%SZ)-cron"
created=0
deleted=0

# 1. The instances to back up: id and Name.
instances=$(aws ec2 describe-instances \
  --filters Name=tag-key,Values=Scheduled-Snapshots \
            Name=instance-state-name,Values=pending,running,stopping,stopped \
  --query 'Reservations[].Instances[].[InstanceId, Tags[?Key==`Name`]|[0].Value]' \
  --output text)

while read -r instance name; do
  [ -n "$instance" ] || continue
  [ "$name" != "None" ] || name=$instance
  # 2. Its volumes: id and the device they are attached at.
  volumes=$(aws ec2 describe-volumes \
    --filters "Name=attachment.instance-id,Values=$instance" \
    --query 'Volumes[].[VolumeId, Attachments[0].Device]' --output text)
  while read -r volume device; do
    [ -n "$volume" ] || continue
    # 3. One snapshot, tagged in the call.
    tags=$(printf '[{"ResourceType":"snapshot","Tags":[{"Key":"ebsnap:job","Value":"%s"},{"Key":"ebsnap:instance-id","Value":"%s"},{"Key":"ebsnap:device","Value":"%s"},{"Key":"ebsnap:run-id","Value":"%s"},{"Key":"Name","Value":"%s %s"}]}]' \
      "$job" "$instance" "$device" "$run_id" "$name" "$device")
    aws ec2 create-snapshot --volume-id "$volume" \
      --description "ebsnap job=$job instance=$instance ($name) device=$device" \
      --tag-specifications "$tags" --output text --query SnapshotId >/dev/null
    created=$((created + 1))
  done <<<"$volumes"
done <<<"$instances"

# 4. Its snapshots older than the retention, deleted one by one.
cutoff=$(date -u -d "-$retention_days days" +%s)
snapshots=$(aws ec2 describe-snapshots --owner-ids self \
  --filters "Name=tag:ebsnap:job,Values=$job" \
  --query 'Snapshots[].[SnapshotId, StartTime]' --output text)
while read -r snapshot start; do
  [ -n "$snapshot" ] || continue
  if [ "$(date -u -d "$start" +%s)" -lt "$cutoff" ]; then
    aws ec2 delete-snapshot --snapshot-id "$snapshot"
    deleted=$((deleted + 1))
  fi
done <<<"$snapshots"

echo "aws-cli-cron.sh: created $created snapshots, deleted $deleted" >&2
