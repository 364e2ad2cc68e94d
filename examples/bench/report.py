#!/usr/bin/env python3
"""The benchmark's figures: one block per measured run, and the summary table.

  report.py run --label L --kind ebsnap|ebsnap-per-volume|aws-cli|ebsnap-dry-run|ebsnap-purge
                --manifest M --stats S --wall SECONDS --rss-kb KB --exit N
                [--ebsnap-json OUT] [--results FILE]
  report.py table FILE [--markdown]

`run` prints the calls per action against the lower bound of a clean run,
the throttled calls, the time EC2's buckets alone impose, what the proxy's
consistency window refused and hid (when it is on), and ebsnap's failed
entries, and appends the row to FILE (JSON lines). `table` prints every row of
FILE as one table; with the window on in any row, a column counts the
requests it refused (InvalidSnapshot.NotFound, retried by the client).
"""

import argparse
import json
import math
import sys

# EC2's buckets (capacity, refill per second), as EC2 documents them.
CREATE = (100, 5)
DELETE = (100, 5)
TAGS = (100, 10)

ORDER = [
    "DescribeInstances", "DescribeVolumes", "DescribeSnapshots",
    "CreateSnapshots", "CreateSnapshot", "CreateTags", "DeleteSnapshot",
]


def bucket_seconds(calls, bucket):
    capacity, rate = bucket
    return max(0.0, (calls - capacity) / rate)


def bounds(kind, m):
    """The fewest calls a clean run of this kind can make, per action."""
    n, v, s, x = m["instances"], m["volumes"], m["snapshots"], m["expired"]
    pages = lambda items, size: max(1, math.ceil(items / size))
    b = {
        "DescribeInstances": pages(n, 1000),
        "DescribeVolumes": 0,
        "DescribeSnapshots": pages(s, 1000),
        "DeleteSnapshot": x,
    }
    if kind == "ebsnap-purge":
        # `ebsnap purge` reads no instances and creates nothing.
        b.update({"DescribeInstances": 0})
    elif kind == "ebsnap":
        b.update({"CreateSnapshots": n, "CreateTags": v})
    elif kind == "ebsnap-dry-run":
        # DryRun=true calls prove the permissions: one per create and delete.
        b.update({"CreateSnapshots": n})
    else:  # one CreateSnapshot per volume, tags in the call
        b.update({"CreateSnapshot": v})
    if kind == "aws-cli":
        b["DescribeSnapshots"] = 1  # aws-cli sends no MaxResults: one answer
    return b


def theory(kind, m):
    """(seconds, formula) of the time EC2's buckets alone impose on the run."""
    n, v, x = m["instances"], m["volumes"], m["expired"]
    creates = 0 if kind == "ebsnap-purge" else n if kind in ("ebsnap", "ebsnap-dry-run") else v
    terms = [
        (bucket_seconds(creates, CREATE), f"({creates}-100)/5"),
        (bucket_seconds(x, DELETE), f"({x}-100)/5"),
    ]
    if kind == "ebsnap":
        terms.append((bucket_seconds(v, TAGS), f"({v}-100)/10"))
    return max(t for t, _ in terms), "max(" + ", ".join(f for _, f in terms) + ")"


def run(args):
    with open(args.manifest) as f:
        m = json.load(f)
    with open(args.stats) as f:
        stats = json.load(f)
    calls, throttled = stats["calls"], stats["throttled"]
    bound = bounds(args.kind, m)
    seconds, formula = theory(args.kind, m)
    actions = [a for a in ORDER if a in calls or bound.get(a)] + \
        sorted(a for a in calls if a not in ORDER)

    print(f"{args.label}: {args.wall:.1f} s wall, peak RSS {args.rss_kb / 1024:.1f} MiB, exit {args.exit}")
    print(f"  fleet: {m['instances']} instances x {m['volumes_per_instance']} volumes, "
          f"{m['snapshots']} job snapshots, {m['expired']} past {m['retention']}")
    print(f"  {'action':22} {'calls':>6} {'bound':>6} {'extra':>6} {'throttled':>9}")
    for a in actions:
        c, b, t = calls.get(a, 0), bound.get(a, 0), throttled.get(a, 0)
        note = "  (ebsnap:skip lookup)" if a == "DescribeVolumes" and args.kind.startswith("ebsnap") \
            else "  (one per instance)" if a == "DescribeVolumes" else ""
        print(f"  {a:22} {c:6} {b:6} {c - b:+6} {t:9}{note}")
    total, total_bound = sum(calls.values()), sum(bound.values())
    print(f"  {'total':22} {total:6} {total_bound:6} {total - total_bound:+6} {sum(throttled.values()):9}")
    errors = {a: e for a, e in stats.get("errors", {}).items()}
    if errors:
        print(f"  EC2 error codes answered: {json.dumps(errors)}")
    print(f"  bucket time (theory): {formula} = {seconds:.1f} s")
    window = stats.get("window") or {}
    if window.get("ms"):
        refused = window.get("refused", {})
        print(f"  consistency window {window['ms'] / 1000:g} s: {window.get('created', 0)} new snapshots "
              f"entered it; {sum(refused.values())} requests refused with InvalidSnapshot.NotFound"
              + (f" ({', '.join(f'{n} {a}' for a, n in refused.items())})" if refused else "")
              + f"; {sum(window.get('hidden', {}).values())} snapshots left out of describe answers")
    upstream = sum(stats.get("upstream_seconds", {}).values())
    print(f"  moto's own time, summed over calls: {upstream:.1f} s "
          f"({stats.get('pages_from_cache', 0)} pages served from the proxy's cache)")
    outcome = None
    if args.ebsnap_json:
        try:
            with open(args.ebsnap_json) as f:
                doc = json.load(f)
            outcome = {k: len(doc.get(k) or []) for k in ("created", "deleted", "kept", "failed")}
            print("  ebsnap reported: " + ", ".join(f"{v} {k}" for k, v in outcome.items()))
            failed = doc.get("failed") or []
            for entry in failed[:20]:
                what = " ".join(str(entry[k]) for k in ("region", "instance_id", "volume_id", "snapshot_id")
                                if entry.get(k))
                print(f"  failed: {what}: {entry.get('reason', '(no reason)')}")
            if len(failed) > 20:
                print(f"  failed: ... and {len(failed) - 20} more (see the JSON)")
        except (OSError, ValueError) as err:
            print(f"  ebsnap's JSON could not be read: {err}")
    row = {
        "label": args.label, "kind": args.kind, "wall": round(args.wall, 2),
        "rss_kb": args.rss_kb, "exit": args.exit, "calls": calls, "throttled": throttled,
        "bound": bound, "theory": round(seconds, 1), "manifest": m, "outcome": outcome,
        "window": window,
    }
    if args.results:
        with open(args.results, "a") as f:
            f.write(json.dumps(row) + "\n")


def window_cell(window):
    """The window's refusals: the total, and per action."""
    if not window.get("ms"):
        return "off"
    refused = window.get("refused", {})
    total = sum(refused.values())
    if not total:
        return "0"
    return f"{total} (" + ", ".join(f"{n} {a}" for a, n in refused.items()) + ")"


def table(args):
    with open(args.file) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    with_window = any((r.get("window") or {}).get("ms") for r in rows)
    header = ["run", "wall", "theory", "creates", "CreateTags", "DeleteSnapshot",
              "Describe*", "all calls", "throttled"] + \
        (["window refused"] if with_window else []) + ["peak RSS"]

    def pair(row, actions):
        c = sum(row["calls"].get(a, 0) for a in actions)
        b = sum(row["bound"].get(a, 0) for a in actions)
        return f"{c} ({b})"

    lines = []
    for r in rows:
        describes = [a for a in set(r["calls"]) | set(r["bound"]) if a.startswith("Describe")]
        lines.append([
            r["label"], f"{r['wall']:.1f} s", f"{r['theory']:.1f} s",
            pair(r, ["CreateSnapshots", "CreateSnapshot"]), pair(r, ["CreateTags"]),
            pair(r, ["DeleteSnapshot"]), pair(r, describes),
            f"{sum(r['calls'].values())} ({sum(r['bound'].values())})",
            str(sum(r["throttled"].values())),
        ] + ([window_cell(r.get("window") or {})] if with_window else []) + [
            f"{r['rss_kb'] / 1024:.1f} MiB",
        ])
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        for line in lines:
            print("  ".join(c.ljust(w) for c, w in zip(line, widths)))
    print("calls: made (lower bound of a clean run); theory: the time EC2's buckets alone impose")
    if with_window:
        print("window refused: requests the consistency window answered InvalidSnapshot.NotFound "
              "(per action); they are counted among the calls above")
    base = next((r for r in rows if r["kind"] == "ebsnap"), None)
    cli = next((r for r in rows if r["kind"] == "aws-cli"), None)
    if base and cli and base["wall"] > 0:
        print(f"aws-cli script / ebsnap: {cli['wall'] / base['wall']:.1f}x the wall time")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--label", required=True)
    r.add_argument("--kind", required=True,
                   choices=["ebsnap", "ebsnap-per-volume", "ebsnap-dry-run", "ebsnap-purge", "aws-cli"])
    r.add_argument("--manifest", required=True)
    r.add_argument("--stats", required=True)
    r.add_argument("--wall", type=float, required=True)
    r.add_argument("--rss-kb", type=int, required=True)
    r.add_argument("--exit", type=int, default=0)
    r.add_argument("--ebsnap-json")
    r.add_argument("--results")
    t = sub.add_parser("table")
    t.add_argument("file")
    t.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    run(args) if args.command == "run" else table(args)


if __name__ == "__main__":
    sys.exit(main())
