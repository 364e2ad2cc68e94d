#!/usr/bin/env python3
"""The benchmark's fleet, seeded straight into moto (not through the proxy).

  fleet.py build  --endpoint-url URL --clock-file PATH [--instances 40]
                  [--volumes 3] [--days 7] [--expired-days 2] [--manifest PATH]
  fleet.py verify --endpoint-url URL --manifest PATH

build: N instances tagged Scheduled-Snapshots=true (Name bench-0001...), each
with K volumes (the root volume plus K-1 attached at /dev/sdf, /dev/sdg...),
and the history ebsnap would have left running daily: one snapshot per volume
per day for days 1..D+E, each day's run made (days*24 - 1) hours ago by moving
moto's clock (libfaketime reads the offset from --clock-file). Days 1..D are
inside a retention of D days, days D+1..D+E outside it, so a run with
`--retention Dd` deletes E snapshots per volume. Every snapshot carries
ebsnap's tag contract (ebsnap:job=default, ebsnap:instance-id, ebsnap:device,
ebsnap:run-id, Name) and its description, in the create call. Writes a
manifest (JSON) of what it made.

verify: after one run, checks what moto holds: each volume has exactly one
new snapshot (younger than an hour) with the whole tag contract, D snapshots
in all before it, and none older than D days. Exits 1 otherwise.

The endpoint must be on 127.0.0.1; credentials are moto's dummies.
"""

import argparse
import json
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import boto3
import botocore.config
import importlib.util
import os

# The demo's seeding: one snapshot made and tagged the way ebsnap does it.
_spec = importlib.util.spec_from_file_location(
    "demo_fleet", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "demo-fleet.py"))
demo_fleet = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo_fleet)

REGION = "us-east-1"
ZONE = "us-east-1a"
JOB = "default"
SELECTION_KEY = "Scheduled-Snapshots"
DATA_DEVICES = [f"/dev/sd{c}" for c in "fghijklmnop"]
THREADS = 4  # moto serves ~200 calls/s on one core whatever the client does
RUN_BATCH = 25  # instances per RunInstances call


def client(endpoint):
    return boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=botocore.config.Config(
            max_pool_connections=THREADS * 2,
            retries={"mode": "standard", "max_attempts": 3},
        ),
    )


set_clock = demo_fleet.set_clock


def parallel(fn, items):
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(fn, items))


def log(message):
    print(f"fleet: {message}", file=sys.stderr, flush=True)


def job_snapshots(ec2):
    return ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "tag:ebsnap:job", "Values": [JOB]}]
    )["Snapshots"]


def make_fleet(ec2, instances, volumes_per_instance):
    """The instances and their volumes, no snapshots; returns (instance id,
    Name, device, volume id) for every volume, sorted."""
    started = time.monotonic()
    image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

    # Instances, RUN_BATCH per call (moto names their root device /dev/sda1).
    batches = []
    for first in range(0, instances, RUN_BATCH):
        batches.append(list(range(first, min(first + RUN_BATCH, instances))))

    def launch(batch):
        out = ec2.run_instances(
            ImageId=image_id, MinCount=len(batch), MaxCount=len(batch),
            InstanceType="t3.micro", Placement={"AvailabilityZone": ZONE},
        )["Instances"]
        for number, instance in zip(batch, out):
            ec2.create_tags(Resources=[instance["InstanceId"]], Tags=[
                {"Key": "Name", "Value": f"bench-{number + 1:04d}"},
                {"Key": SELECTION_KEY, "Value": "true"},
            ])
        return [i["InstanceId"] for i in out]

    instance_ids = [i for ids in parallel(launch, batches) for i in ids]

    def add_volumes(instance_id):
        for device in DATA_DEVICES[: volumes_per_instance - 1]:
            volume_id = ec2.create_volume(AvailabilityZone=ZONE, Size=10, VolumeType="gp3")["VolumeId"]
            ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device=device)

    parallel(add_volumes, instance_ids)
    log(f"{len(instance_ids)} instances with {volumes_per_instance} volumes each "
        f"in {time.monotonic() - started:.0f} s")

    # (instance id, Name, device, volume id) for every volume.
    volumes = []
    reservations = ec2.describe_instances(
        Filters=[{"Name": "tag-key", "Values": [SELECTION_KEY]}]
    )["Reservations"]
    for reservation in reservations:
        for instance in reservation["Instances"]:
            name = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}["Name"]
            for mapping in instance["BlockDeviceMappings"]:
                volumes.append((instance["InstanceId"], name, mapping["DeviceName"],
                                mapping["Ebs"]["VolumeId"]))
    volumes.sort()
    if len(volumes) != instances * volumes_per_instance:
        sys.exit(f"fleet: expected {instances * volumes_per_instance} volumes, found {len(volumes)}")
    return volumes


def build(ec2, args):
    started = time.monotonic()
    set_clock(args.clock_file, "+0")
    volumes = make_fleet(ec2, args.instances, args.volumes)

    now = datetime.now(timezone.utc)
    total_days = args.days + args.expired_days
    try:
        for day in range(total_days, 0, -1):
            day_started = time.monotonic()
            hours = day * 24 - 1
            set_clock(args.clock_file, f"-{hours}h")
            run_id = (now - timedelta(hours=hours)).strftime("%Y%m%dT%H%M%SZ") + \
                f"-{random.getrandbits(16):04x}"

            def snapshot(volume):
                instance_id, name, device, volume_id = volume
                demo_fleet.ebsnap_snapshot(ec2, instance_id, name, device, volume_id, run_id)

            parallel(snapshot, volumes)
            log(f"day {day:2} ({hours}h ago): {len(volumes)} snapshots "
                f"in {time.monotonic() - day_started:.1f} s")
    finally:
        set_clock(args.clock_file, "+0")

    manifest = {
        "instances": args.instances,
        "volumes_per_instance": args.volumes,
        "volumes": len(volumes),
        "days": args.days,
        "expired_days": args.expired_days,
        "retention": f"{args.days}d",
        "snapshots": len(volumes) * total_days,
        "expired": len(volumes) * args.expired_days,
        "seeded_at": now.isoformat(),
        "seed_seconds": round(time.monotonic() - started, 1),
    }
    if args.check_age:
        oldest = min(s["StartTime"] for s in job_snapshots(ec2))
        if now - oldest < timedelta(days=total_days - 1):
            sys.exit("fleet: moto's clock did not move; is it running under libfaketime "
                     f"with FAKETIME_TIMESTAMP_FILE={args.clock_file} and FAKETIME_NO_CACHE=1?")
    if args.manifest:
        with open(args.manifest, "w") as f:
            json.dump(manifest, f, indent=1)
    log(f"seeded {manifest['snapshots']} job snapshots ({manifest['expired']} past "
        f"{manifest['retention']}) in {manifest['seed_seconds']} s")


def verify(ec2, manifest):
    now = datetime.now(timezone.utc)
    retention = timedelta(days=manifest["days"])
    by_volume = {}
    for s in job_snapshots(ec2):
        by_volume.setdefault(s["VolumeId"], []).append(s)
    problems = []
    if len(by_volume) != manifest["volumes"]:
        problems.append(f"{len(by_volume)} volumes have job snapshots, expected {manifest['volumes']}")
    for volume_id, snaps in sorted(by_volume.items()):
        new = [s for s in snaps if now - s["StartTime"] < timedelta(hours=1)]
        if len(new) != 1:
            problems.append(f"{volume_id}: {len(new)} new snapshots, expected 1")
        for s in new:
            tags = {t["Key"]: t["Value"] for t in s.get("Tags", [])}
            missing = [k for k in ("ebsnap:job", "ebsnap:instance-id", "ebsnap:device",
                                   "ebsnap:run-id", "Name") if k not in tags]
            if missing:
                problems.append(f"{s['SnapshotId']} lacks {', '.join(missing)}")
        if any(now - s["StartTime"] > retention for s in snaps):
            problems.append(f"{volume_id}: a snapshot older than {manifest['retention']} is left")
        if len(snaps) != manifest["days"] + 1:
            problems.append(f"{volume_id}: {len(snaps)} snapshots, expected {manifest['days']} + 1 new")
    for p in problems[:10]:
        print(f"fleet: unexpected: {p}", file=sys.stderr)
    if problems:
        sys.exit(f"fleet: {len(problems)} problems")
    log(f"verified: {manifest['volumes']} volumes, each 1 new snapshot with every tag "
        f"and {manifest['days']} kept, none past {manifest['retention']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "verify"])
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--clock-file")
    parser.add_argument("--instances", type=int, default=40)
    parser.add_argument("--volumes", type=int, default=3, help="per instance, root included")
    parser.add_argument("--days", type=int, default=7, help="days of history inside the retention")
    parser.add_argument("--expired-days", type=int, default=2, help="older days, past the retention")
    parser.add_argument("--manifest")
    parser.add_argument("--no-check-age", dest="check_age", action="store_false",
                        help="skip the look at the oldest snapshot (a DescribeSnapshots of all)")
    args = parser.parse_args()
    if not args.endpoint_url.startswith(("http://127.0.0.1:", "http://localhost:")):
        parser.error(f"{args.endpoint_url} is not a local emulator")
    if not 1 <= args.volumes <= 1 + len(DATA_DEVICES):
        parser.error(f"--volumes must be 1..{1 + len(DATA_DEVICES)}")
    ec2 = client(args.endpoint_url)
    if args.command == "build":
        if not args.clock_file:
            parser.error("build needs --clock-file")
        build(ec2, args)
    else:
        if not args.manifest:
            parser.error("verify needs --manifest")
        with open(args.manifest) as f:
            verify(ec2, json.load(f))


if __name__ == "__main__":
    main()
