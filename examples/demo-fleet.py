#!/usr/bin/env python3
"""The fleet that examples/demo.sh shows ebsnap at work on, in an EC2 emulator
(moto's server on 127.0.0.1), never in AWS.

  demo-fleet.py build --clock-file PATH   make the fleet and a week of backups
  demo-fleet.py check                     show the snapshots, check a run's outcome

The fleet is the company in the README:

  mongo-1        Scheduled-Snapshots=true   root volume + 200 GiB data volume
  redis-1        Scheduled-Snapshots=true   root volume +  50 GiB data volume
  mongo-arbiter  Scheduled-Snapshots=false  root volume; holds no data, opts out
  proxy          (untagged)                 root volume; the host cron runs ebsnap on

and the history ebsnap would have left had it run daily for the past 9 days:
one snapshot of each of the 4 selected volumes per day, tagged exactly as
ebsnap tags them (one run id per day). Plus one snapshot made by hand 30 days
ago without ebsnap's tags, which ebsnap must never touch.

Snapshots get their age from the emulator's clock: moto runs under libfaketime
reading its offset from a file (FAKETIME_TIMESTAMP_FILE, FAKETIME_NO_CACHE=1),
so writing "-215h" to that file before a CreateSnapshot makes its StartTime
215 hours ago. The file is set back to "+0" at the end, even on failure.

The endpoint comes from --endpoint-url or $AWS_ENDPOINT_URL and must be on
127.0.0.1 or localhost. Credentials are the emulator's dummies (test/test),
the region us-east-1.
"""

import argparse
import os
import random
import sys
from datetime import datetime, timedelta, timezone

import boto3

REGION = "us-east-1"
ZONE = "us-east-1a"
JOB = "default"
SELECTION_KEY = "Scheduled-Snapshots"
HISTORY_DAYS = 9
RETENTION = timedelta(days=7)  # ebsnap's default --retention
DATA_DEVICE = "/dev/sdf"

# name, selection tag value (None: untagged), data volume size in GiB (None: none)
FLEET = [
    ("mongo-1", "true", 200),
    ("redis-1", "true", 50),
    ("mongo-arbiter", "false", None),
    ("proxy", None, None),
]


def client(endpoint):
    return boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def set_clock(path, offset):
    """Moves the emulator's clock: libfaketime re-reads this file on every
    clock call (FAKETIME_NO_CACHE=1), so the next request sees the offset."""
    with open(path, "w") as f:
        f.write(offset + "\n")


def age(start_time, now):
    """'6d23h', '23h', '0h' for a snapshot's StartTime."""
    hours = int((now - start_time).total_seconds() // 3600)
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if days else f"{hours}h"


# ---------------------------------------------------------------- build


def launch(ec2, image_id, name, selection, data_size):
    """Starts one instance (with a data volume when data_size is set); returns
    its id and {device: volume id}."""
    tags = [{"Key": "Name", "Value": name}]
    if selection is not None:
        tags.append({"Key": SELECTION_KEY, "Value": selection})
    instance_id = ec2.run_instances(
        ImageId=image_id,
        MinCount=1,
        MaxCount=1,
        InstanceType="r6g.large",
        Placement={"AvailabilityZone": ZONE},
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"][0]["InstanceId"]
    if data_size is not None:
        volume_id = ec2.create_volume(AvailabilityZone=ZONE, Size=data_size, VolumeType="gp3")[
            "VolumeId"
        ]
        ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device=DATA_DEVICE)
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    volumes = {
        m["DeviceName"]: m["Ebs"]["VolumeId"]
        for m in instance.get("BlockDeviceMappings", [])
        if "Ebs" in m
    }
    return instance_id, volumes


def ebsnap_snapshot(ec2, instance_id, name, device, volume_id, run_id):
    """One snapshot, made and tagged the way ebsnap makes and tags it."""
    tags = {
        "ebsnap:job": JOB,
        "ebsnap:instance-id": instance_id,
        "ebsnap:device": device,
        "ebsnap:run-id": run_id,
        "Name": f"{name} {device}",
    }
    ec2.create_snapshot(
        VolumeId=volume_id,
        Description=f"ebsnap job={JOB} instance={instance_id} ({name}) device={device}",
        TagSpecifications=[
            {"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )


def build(ec2, clock_file):
    set_clock(clock_file, "+0")
    # Any image will do: moto ships a catalogue of public AMIs.
    image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

    selected = []  # (instance id, name, {device: volume id})
    for name, selection, data_size in FLEET:
        instance_id, volumes = launch(ec2, image_id, name, selection, data_size)
        tag = f"{SELECTION_KEY}={selection}" if selection else "untagged"
        print(f"instance {instance_id}  {name:13} {tag:26} "
              + ", ".join(f"{d} {v}" for d, v in sorted(volumes.items())))
        if selection == "true":
            selected.append((instance_id, name, volumes))

    now = datetime.now(timezone.utc)
    try:
        # A snapshot someone made by hand before an upgrade: no ebsnap tags.
        mongo_data = selected[0][2][DATA_DEVICE]
        set_clock(clock_file, f"-{30 * 24}h")
        ec2.create_snapshot(
            VolumeId=mongo_data,
            Description="by hand: mongo-1 before the MongoDB 7.0 upgrade",
            TagSpecifications=[
                {"ResourceType": "snapshot",
                 "Tags": [{"Key": "Name", "Value": "mongo-1 before upgrade"}]}
            ],
        )

        # The daily runs, oldest first, each an hour later in the day than
        # now: the 7-day-old backups are 6d23h old, clearly inside the default
        # 7d retention, and the two older days clearly outside it.
        for days in range(HISTORY_DAYS, 0, -1):
            hours = days * 24 - 1
            set_clock(clock_file, f"-{hours}h")
            # ebsnap's run id: the run's start time and 4 random hex digits.
            run_id = (now - timedelta(hours=hours)).strftime("%Y%m%dT%H%M%SZ") + \
                f"-{random.getrandbits(16):04x}"
            for instance_id, name, volumes in selected:
                for device, volume_id in sorted(volumes.items()):
                    ebsnap_snapshot(ec2, instance_id, name, device, volume_id, run_id)
    finally:
        set_clock(clock_file, "+0")

    snapshots = show(ec2)
    oldest = max((now - s["StartTime"] for s in snapshots), default=timedelta(0))
    if oldest < timedelta(days=HISTORY_DAYS - 1):
        sys.exit("demo-fleet: the emulator's clock did not move (the oldest snapshot is "
                 f"{age(now - oldest, now)} old); is it running under libfaketime with "
                 f"FAKETIME_TIMESTAMP_FILE={clock_file} and FAKETIME_NO_CACHE=1?")


# ---------------------------------------------------------------- check


def show(ec2):
    """Prints each volume's snapshots, newest first, and the ones that are not
    ebsnap's; returns them all (the emulator's built-in AMI snapshots aside)."""
    now = datetime.now(timezone.utc)
    names = {}
    volumes = {}  # volume id: (instance name, device)
    for reservation in ec2.describe_instances()["Reservations"]:
        for instance in reservation["Instances"]:
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            names[instance["InstanceId"]] = tags.get("Name", instance["InstanceId"])
            for m in instance.get("BlockDeviceMappings", []):
                if "Ebs" in m:
                    volumes[m["Ebs"]["VolumeId"]] = (names[instance["InstanceId"]], m["DeviceName"])

    snapshots = [
        s for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
        if s["VolumeId"] in volumes
    ]
    print(f"{'instance':13} {'device':9}  snapshots, newest first (age)")
    for volume_id, (name, device) in sorted(volumes.items(), key=lambda kv: kv[1]):
        ours = sorted(
            (s for s in snapshots if s["VolumeId"] == volume_id and is_ebsnaps(s)),
            key=lambda s: s["StartTime"], reverse=True,
        )
        ages = " ".join(age(s["StartTime"], now) for s in ours) or "none"
        print(f"{name:13} {device:9} {len(ours):2}: {ages}")
    for s in snapshots:
        if not is_ebsnaps(s):
            print(f"not ebsnap's: {s['SnapshotId']} {age(s['StartTime'], now)} old, "
                  f"\"{s.get('Description', '')}\"")
    return snapshots


def is_ebsnaps(snapshot):
    return any(t["Key"] == "ebsnap:job" and t["Value"] == JOB for t in snapshot.get("Tags", []))


def check(ec2):
    """Shows the snapshots, then checks what one `ebsnap run` with the
    defaults must have left; exits 1 when it did not."""
    snapshots = show(ec2)
    now = datetime.now(timezone.utc)
    problems = []
    ours = [s for s in snapshots if is_ebsnaps(s)]
    selected_volumes = {
        m["Ebs"]["VolumeId"]
        for r in ec2.describe_instances(
            Filters=[{"Name": f"tag:{SELECTION_KEY}", "Values": ["true"]}]
        )["Reservations"]
        for i in r["Instances"]
        for m in i["BlockDeviceMappings"]
    }
    for volume_id in sorted(selected_volumes):
        mine = [s for s in ours if s["VolumeId"] == volume_id]
        if not any(now - s["StartTime"] < timedelta(hours=1) for s in mine):
            problems.append(f"{volume_id} got no new snapshot")
        if any(now - s["StartTime"] > RETENTION for s in mine):
            problems.append(f"{volume_id} still has a snapshot older than 7d")
        if len(mine) != 8:
            problems.append(f"{volume_id} has {len(mine)} snapshots, expected 7 kept + 1 new")
    if any(s["VolumeId"] not in selected_volumes for s in ours):
        problems.append("a volume of an instance not selected was snapshotted")
    if not any(not is_ebsnaps(s) for s in snapshots):
        problems.append("the hand-made snapshot is gone")
    for problem in problems:
        print(f"demo-fleet: unexpected: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print("as expected: one new snapshot per selected volume, none older than 7d; "
          "the hosts not selected and the hand-made snapshot untouched")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "check"])
    parser.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"),
                        help="the emulator's URL (default: $AWS_ENDPOINT_URL)")
    parser.add_argument("--clock-file",
                        help="build: the libfaketime offset file the emulator reads")
    args = parser.parse_args()
    if not args.endpoint_url:
        parser.error("no emulator: pass --endpoint-url or set AWS_ENDPOINT_URL")
    if not args.endpoint_url.startswith(("http://127.0.0.1:", "http://localhost:")):
        parser.error(f"{args.endpoint_url} is not a local emulator; this script never talks to AWS")
    ec2 = client(args.endpoint_url)
    if args.command == "build":
        if not args.clock_file:
            parser.error("build needs --clock-file, the emulator's FAKETIME_TIMESTAMP_FILE")
        build(ec2, args.clock_file)
    else:
        check(ec2)


if __name__ == "__main__":
    main()
