#!/usr/bin/env python3
"""The calendar-retention benchmark's fleet and history, seeded straight into
moto (not through the proxy), and what is held afterwards.

  year.py fleet   --endpoint-url URL --clock-file PATH --instances 60 --volumes 2
  year.py history --endpoint-url URL --clock-file PATH --job NAME
                  --every day|week|month --ages FIRST-LAST
  year.py held    --endpoint-url URL --job NAME [--job NAME...] [--volumes N]
                  [--keep-daily N --keep-weekly N --keep-monthly N [--new]]
                  [--label L] [--results FILE]
  year.py manifest --endpoint-url URL --job NAME --manifest PATH
                  (--keep-daily N --keep-weekly N --keep-monthly N | --retention-days 7d)
  year.py plan-time --trace FILE --from LINE [--delay-ms 50]
  year.py summary --results FILE --held FILE --days D --volumes N

fleet: N instances tagged Scheduled-Snapshots=true (fleet.py's make_fleet),
each with K volumes, no snapshots.

history: for every volume of the selected instances, one snapshot of job NAME
per day (week, calendar month) FIRST..LAST periods ago, with ebsnap's tag
contract (ebsnap:job, ebsnap:instance-id, ebsnap:device, ebsnap:run-id: one
run id per period, shared by all volumes of that period; Name) and its
description, in the create call. Period n's snapshots are made n days (n*7
days; n calendar months, same day of the month) less one hour ago, by moving
moto's clock (libfaketime reads the offset from --clock-file), as fleet.py's
history is: the snapshot of the run n periods ago, on a schedule at this hour.

held: counts the job's snapshots in moto, in all and per volume. With
--keep-*, checks them against the rules (as docs/guide/retention.md gives
them, computed here independently of ebsnap): each volume
must hold exactly what the rules keep of its snapshots as of now, plus, with
--new, the one snapshot younger than an hour (made by the run the rules just
judged, which does not count it). Exits 1 otherwise.

manifest: what report.py needs of a run (fleet.py's manifest): the selected
instances and volumes, the job's snapshots, and how many of them the rules
(or --retention-days) delete now, counted here, not by ebsnap.

plan-time: from the proxy's trace (one line per call, from line --from on):
the time between the answer to the run's last Describe* call (its arrival
plus the round trip) and the arrival of its first other call. That is what
ebsnap does in between: read the last page, build the plan, start executing.

summary: the table of one job with calendar rules against the three jobs.

The endpoint must be on 127.0.0.1; credentials are moto's dummies.
"""

import argparse
import calendar
import json
import random
import sys
import time
from datetime import datetime, timedelta, timezone

import fleet

SELECTION_KEY = fleet.SELECTION_KEY


def log(message):
    print(f"year: {message}", file=sys.stderr, flush=True)


def selected_volumes(ec2):
    """(instance id, Name, device, volume id) of every volume of the selected instances."""
    volumes = []
    for page in ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "tag-key", "Values": [SELECTION_KEY]}]):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                name = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}["Name"]
                for mapping in instance["BlockDeviceMappings"]:
                    volumes.append((instance["InstanceId"], name, mapping["DeviceName"],
                                    mapping["Ebs"]["VolumeId"]))
    return sorted(volumes)


def months_ago(now, months):
    """The same day of the month (clamped), `months` calendar months before now."""
    year, month = divmod(now.year * 12 + now.month - 1 - months, 12)
    month += 1
    day = min(now.day, calendar.monthrange(year, month)[1])
    return now.replace(year=year, month=month, day=day)


def snapshot(ec2, job, run_id, volume):
    """One snapshot, made and tagged the way ebsnap makes and tags it."""
    instance_id, name, device, volume_id = volume
    tags = {
        "ebsnap:job": job,
        "ebsnap:instance-id": instance_id,
        "ebsnap:device": device,
        "ebsnap:run-id": run_id,
        "Name": f"{name} {device}",
    }
    ec2.create_snapshot(
        VolumeId=volume_id,
        Description=f"ebsnap job={job} instance={instance_id} ({name}) device={device}",
        TagSpecifications=[
            {"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )


def history(ec2, args):
    started = time.monotonic()
    volumes = selected_volumes(ec2)
    first, last = (int(n) for n in args.ages.split("-"))
    now = datetime.now(timezone.utc)
    made = 0
    try:
        for n in range(last, first - 1, -1):
            if args.every == "day":
                at = now - timedelta(days=n)
            elif args.every == "week":
                at = now - timedelta(days=7 * n)
            else:
                at = months_ago(now, n)
            at += timedelta(hours=1)
            # A plain number is seconds to libfaketime.
            fleet.set_clock(args.clock_file, f"-{int((now - at).total_seconds())}")
            run_id = at.strftime("%Y%m%dT%H%M%SZ") + f"-{random.getrandbits(16):04x}"
            fleet.parallel(lambda v: snapshot(ec2, args.job[0], run_id, v), volumes)
            made += len(volumes)
            if n % 30 == 0 or n == first:
                log(f"job {args.job[0]}: {args.every} {n} ago done, {made} snapshots "
                    f"in {time.monotonic() - started:.0f} s")
    finally:
        fleet.set_clock(args.clock_file, "+0")
    log(f"job {args.job[0]}: {made} snapshots ({len(volumes)} volumes x {last - first + 1} "
        f"{args.every}s, {first}..{last} ago) in {time.monotonic() - started:.1f} s "
        f"({made / max(time.monotonic() - started, 0.001):.0f} a second)")


def job_snapshots(ec2, job):
    out = []
    for page in ec2.get_paginator("describe_snapshots").paginate(
            OwnerIds=["self"], Filters=[{"Name": "tag:ebsnap:job", "Values": [job]}]):
        out.extend(page["Snapshots"])
    return out


def expected(times, rules):
    """Which of one volume's start times (UTC) the calendar rules keep: for
    each rule, the newest of each of the last N periods that have one."""
    periods = {
        "daily": lambda t: t.date(),
        "weekly": lambda t: t.isocalendar()[:2],
        "monthly": lambda t: (t.year, t.month),
    }
    keep = set()
    newest_first = sorted(times, reverse=True)
    for rule, n in rules.items():
        seen = []
        for t in newest_first:
            p = periods[rule](t)
            if p in seen:
                continue
            if len(seen) == n:
                break
            seen.append(p)
            keep.add(t)
    return keep


def judged(times, now, args):
    """The start times (of one volume) the rules keep now."""
    if args.retention_days:
        days = int(args.retention_days.rstrip("d"))
        young = {t for t in times if now - t < timedelta(days=days)}
        return young or set(sorted(times)[-1:])  # --keep-min 1
    return expected(times, rules_of(args))


def rules_of(args):
    return {k: v for k, v in (("daily", args.keep_daily), ("weekly", args.keep_weekly),
                              ("monthly", args.keep_monthly)) if v}


def manifest(ec2, args):
    now = datetime.now(timezone.utc)
    volumes = selected_volumes(ec2)
    instances = len({v[0] for v in volumes})
    by_volume = {}
    for s in job_snapshots(ec2, args.job[0]):
        by_volume.setdefault(s["VolumeId"], []).append(s["StartTime"])
    snapshots = sum(len(t) for t in by_volume.values())
    kept = sum(len(judged(t, now, args)) for t in by_volume.values())
    m = {
        "instances": instances,
        "volumes_per_instance": len(volumes) // max(instances, 1),
        "volumes": len(volumes),
        "snapshots": snapshots,
        "expired": snapshots - kept,
        "retention": args.retention_days or " ".join(
            f"--keep-{k} {v}" for k, v in rules_of(args).items()),
        "job": args.job[0],
    }
    with open(args.manifest, "w") as f:
        json.dump(m, f, indent=1)
    log(f"job {m['job']}: {snapshots} snapshots, {m['expired']} of them past {m['retention']} now")


def plan_time(args):
    with open(args.trace) as f:
        calls = [json.loads(line) for line in f.readlines()[args.from_line:]]
    describes = [c for c in calls if c["action"].startswith("Describe")]
    others = [c for c in calls if not c["action"].startswith("Describe")]
    if not describes or not others:
        print("n/a (no call after the describes)")
        return
    answered = max(c["t"] for c in describes if c["t"] < others[0]["t"]) + args.delay_ms / 1000
    print(f"{others[0]['t'] - answered:.2f} s from the last describe's answer to the first "
          f"{others[0]['action']} ({len(describes)} describes)")


def summary(args):
    with open(args.results) as f:
        runs = {r["label"]: r for r in map(json.loads, f) if r}
    with open(args.held) as f:
        held_rows = {r["label"]: r for r in map(json.loads, f) if r}
    v = args.volumes
    one = runs["run, one job (calendar rules)"]
    three = [r for label, r in runs.items() if label.startswith("run --job ")]
    purge = runs.get("purge --force, the year's first")

    def calls(rows):
        total = {}
        for r in rows:
            for a, n in r["calls"].items():
                total[a] = total.get(a, 0) + n
        creates = total.get("CreateSnapshots", 0) + total.get("CreateSnapshot", 0)
        describes = sum(n for a, n in total.items() if a.startswith("Describe"))
        return (f"{sum(total.values())}: {creates} CreateSnapshots, {total.get('CreateTags', 0)} "
                f"CreateTags, {total.get('DeleteSnapshot', 0)} DeleteSnapshot, {describes} Describe*")

    def held_cell(label):
        h = held_rows[label]
        parts = []
        for job, j in h["jobs"].items():
            spread = f"{j['per_volume_min']}" + (
                f"-{j['per_volume_max']}" if j["per_volume_max"] != j["per_volume_min"] else "")
            parts.append(f"{spread} {job}" if len(h["jobs"]) > 1 else spread)
        return f"{h['total']:,} ({' + '.join(parts)} a volume)"

    rows = [
        ("snapshots held after the day's run", held_cell("one job"), held_cell("three jobs")),
        ("snapshots created a year", f"{365 * v:,} (365 a volume)",
         f"{(365 + 52 + 12) * v:,} (365 + 52 + 12 a volume)"),
        ("calls of a day's run (all three jobs' day)", calls([one]), calls(three)),
        ("wall time of that day", f"{one['wall']:.1f} s",
         f"{sum(r['wall'] for r in three):.1f} s (" + " + ".join(f"{r['wall']:.1f}" for r in three) + ")"),
        ("peak RSS", f"{one['rss_kb'] / 1024:.1f} MiB",
         f"{max(r['rss_kb'] for r in three) / 1024:.1f} MiB (the largest of the three)"),
    ]
    print(f"| {v} volumes | one job, --keep-daily 7 --keep-weekly 5 --keep-monthly 12 | "
          "three jobs: daily 7d, weekly 35d, monthly 365d |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if purge:
        print(f"The year's first purge (--force): {purge['manifest']['snapshots']:,} snapshots, "
              f"{purge['manifest']['expired']:,} deleted, {purge['wall']:.1f} s, "
              f"peak RSS {purge['rss_kb'] / 1024:.1f} MiB; {calls([purge])}")


def held(ec2, args):
    now = datetime.now(timezone.utc)
    rules = rules_of(args)
    per_job = {}
    problems = []
    for job in args.job:
        by_volume = {}
        for s in job_snapshots(ec2, job):
            by_volume.setdefault(s["VolumeId"], []).append(s)
        counts = sorted(len(v) for v in by_volume.values())
        per_job[job] = {"total": sum(counts), "volumes": len(by_volume),
                        "per_volume_min": counts[0] if counts else 0,
                        "per_volume_max": counts[-1] if counts else 0}
        if args.volumes and len(by_volume) != args.volumes:
            problems.append(f"job {job}: {len(by_volume)} volumes hold snapshots, expected {args.volumes}")
        if rules:
            for volume_id, snaps in sorted(by_volume.items()):
                times = [s["StartTime"] for s in snaps]
                new = [t for t in times if now - t < timedelta(hours=1)]
                old = [t for t in times if now - t >= timedelta(hours=1)]
                if args.new and len(new) != 1:
                    problems.append(f"{volume_id}: {len(new)} new snapshots, expected 1")
                if not args.new and new:
                    problems.append(f"{volume_id}: {len(new)} snapshots younger than an hour")
                # What was there before the run the rules judged is at least
                # what is left; what the rules keep of what is left must be all of it.
                want = expected(old, rules)
                if set(old) != want:
                    problems.append(f"{volume_id}: holds {len(old)} judged snapshots, "
                                    f"the rules keep {len(want)} of them")
    for p in problems[:10]:
        print(f"year: unexpected: {p}", file=sys.stderr)
    total = sum(j["total"] for j in per_job.values())
    label = args.label or ", ".join(args.job)
    spread = "; ".join(
        f"{job} {j['total']} ({j['per_volume_min']}" +
        (f"-{j['per_volume_max']}" if j["per_volume_max"] != j["per_volume_min"] else "") +
        " a volume)" for job, j in per_job.items())
    log(f"{label}: {total} snapshots held: {spread}" +
        (f"; each volume holds exactly what the rules keep" if rules and not problems else ""))
    if args.results:
        with open(args.results, "a") as f:
            f.write(json.dumps({"label": label, "total": total, "jobs": per_job}) + "\n")
    if problems:
        sys.exit(f"year: {len(problems)} problems")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["fleet", "history", "held", "manifest", "plan-time",
                                            "summary"])
    parser.add_argument("--endpoint-url")
    parser.add_argument("--clock-file")
    parser.add_argument("--instances", type=int, default=60)
    parser.add_argument("--volumes", type=int, default=2,
                        help="fleet: per instance, root included; held: volumes expected in all")
    parser.add_argument("--job", action="append", default=[])
    parser.add_argument("--every", choices=["day", "week", "month"], default="day")
    parser.add_argument("--ages", default="1-365", help="FIRST-LAST periods ago")
    parser.add_argument("--keep-daily", type=int, default=0)
    parser.add_argument("--keep-weekly", type=int, default=0)
    parser.add_argument("--keep-monthly", type=int, default=0)
    parser.add_argument("--new", action="store_true",
                        help="held: each volume also has one snapshot younger than an hour")
    parser.add_argument("--retention-days", help="manifest: the job's --retention, e.g. 7d")
    parser.add_argument("--manifest")
    parser.add_argument("--trace")
    parser.add_argument("--from", dest="from_line", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--held", dest="held_file")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--label")
    parser.add_argument("--results")
    args = parser.parse_args()
    if args.command == "plan-time":
        return plan_time(args)
    if args.command == "summary":
        args.held = args.held_file
        return summary(args)
    if not args.endpoint_url:
        parser.error("--endpoint-url is needed")
    if not args.endpoint_url.startswith(("http://127.0.0.1:", "http://localhost:")):
        parser.error(f"{args.endpoint_url} is not a local emulator")
    ec2 = fleet.client(args.endpoint_url)
    if args.command == "fleet":
        if not args.clock_file:
            parser.error("fleet needs --clock-file")
        fleet.set_clock(args.clock_file, "+0")
        volumes = fleet.make_fleet(ec2, args.instances, args.volumes)
        log(f"{args.instances} instances, {len(volumes)} volumes")
    elif args.command == "history":
        if not args.clock_file or len(args.job) != 1:
            parser.error("history needs --clock-file and one --job")
        history(ec2, args)
    elif args.command == "manifest":
        if len(args.job) != 1 or not args.manifest:
            parser.error("manifest needs one --job and --manifest")
        manifest(ec2, args)
    else:
        if not args.job:
            parser.error("held needs --job")
        held(ec2, args)


if __name__ == "__main__":
    main()
