#!/usr/bin/env python3
"""The layout check: ebsnap's module graph, file by file, has no circle and no
import from a lower layer to a higher one (the crate docs in src/lib.rs say
why each layer sits where it does).

    python3 tests/layout.py [src] [-v]

Reads `crate::` paths (and `super::`, and main.rs's `ebsnap::`) in the code
outside `#[cfg(test)]` modules; `-v` prints every module's imports. Exits 1
on a circle, an upward import, a module missing from LAYERS below, or a
decision module (DECISIONS below) that names the AWS SDK or tokio. Run by
tests/run-all.sh before the tests; `cargo modules dependencies --acyclic`
(crates.io: cargo-modules) gives the same verdict on circles.
"""
import os, re, sys

# The layers, lowest first: a module may use only modules of a lower rank.
# Inside backup/ and restore/ the order is the flow of a run: pacing and
# retries below the calls, the calls below the report, the report below
# its rendering and the command itself.
LAYERS = {
    "values": 0, "exit": 0, "notice": 0, "memory": 0, "lock": 0, "inventory": 0,
    "timing": 0,
    "cli::groups": 1, "cli": 1, "cli::reference": 1, "iam": 1,
    "config": 2,
    "aws::codes": 0, "aws": 3, "aws::accounts": 4,
    "retention": 4,
    # plan/, by job: the tags and the finished requests below the kinds a
    # plan holds, the decisions above them, and plan/mod.rs's build on top.
    "plan::tags": 4.1, "plan::requests": 4.2, "plan::kinds": 4.3,
    "plan::usage": 4.4, "plan::select": 4.4, "plan::archive": 4.4, "plan::guard": 4.4,
    "plan::orphans": 4.5, "plan::decide": 4.5, "plan::copies": 4.6,
    "discovery": 5, "plan": 5,
    "backup::control": 6, "backup::hooks": 6,
    "backup::retry": 7, "backup::entries": 7,
    "backup::snapshot": 8, "backup::purge": 8, "backup::archive": 8,
    "backup::wait": 9, "backup::copy": 9,
    "backup::report": 10, "backup::render": 11, "backup": 12,
    "restore::decide": 6, "restore::report": 7, "restore::ec2": 8, "restore": 9,
    "list": 6, "check": 6,
    "metrics": 13,
    "crate": 14, "main": 15,
}

# The decision modules: pure functions of what was read, tested with
# hand-built values and a fixed clock. They name neither the AWS SDK
# (aws_sdk_*, aws_config, aws_smithy_*, aws_types, aws_credential_types) nor
# tokio, outside their tests: EC2's types stay at the edges (discovery,
# backup/, restore/ec2.rs), and a decision never waits. A module under one
# of these (plan::tags) is one too.
DECISIONS = ["values", "inventory", "retention", "plan", "restore::decide"]
IO_CRATES = re.compile(r"\b(aws_sdk_\w+|aws_config|aws_smithy_\w+|aws_types|aws_credential_types|tokio)::")

args = [a for a in sys.argv[1:] if not a.startswith("-")]
root = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
mods = {}
for dp, _, fs in os.walk(root):
    for f in fs:
        if f.endswith(".rs"):
            p = os.path.join(dp, f)
            rel = os.path.relpath(p, root)[:-3].split(os.sep)
            if rel == ["main"]:
                mods["main"] = open(p).read().replace("ebsnap::", "crate::"); continue
            if rel[-1] in ("mod", "lib"): rel = rel[:-1]
            mods["::".join(rel) or "crate"] = open(p).read()
names = set(mods)
def strip_tests(t):
    m = re.search(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod \w+\s*\{", t)
    return t[:m.start()] if m else t
def resolve(path):
    parts = path.split("::")
    for i in range(len(parts), 0, -1):
        c = "::".join(parts[:i])
        if c in names and c != "main": return c
    return "crate"
edges = {m: set() for m in names}
for m, t in mods.items():
    t = strip_tests(t)
    t = re.sub(r"//[^\n]*", "", t)
    # expand use crate::{a, b::{c, d}} groups roughly
    for u in re.finditer(r"\buse\s+crate::([^;]+);", t, re.S):
        body = u.group(1)
        stack = [("", body)]
        while stack:
            pre, b = stack.pop()
            b = b.strip()
            if b.startswith("{") and b.endswith("}"):
                depth = 0; cur = ""; items = []
                for ch in b[1:-1]:
                    if ch == "{": depth += 1
                    if ch == "}": depth -= 1
                    if ch == "," and depth == 0: items.append(cur); cur = ""
                    else: cur += ch
                items.append(cur)
                for it in items:
                    if it.strip(): stack.append((pre, it))
                continue
            mm = re.match(r"([\w:]*?)(::)?\{(.*)\}$", b, re.S)
            if mm:
                stack.append((pre + mm.group(1) + "::", "{" + mm.group(3) + "}")); continue
            r = resolve((pre + b).split(" as ")[0].strip().rstrip(":"))
            if (pre + b).strip() in ("self", "*"): r = None
            if r and r != m: edges[m].add(r)
    for u in re.finditer(r"\bcrate::((?:\w+::)*\w+)", t):
        r = resolve(u.group(1))
        if r and r != m: edges[m].add(r)
    # super:: from a child module
    for u in re.finditer(r"\bsuper::((?:\w+::)*\w+)", t):
        parent = m.rsplit("::", 1)[0] if "::" in m else "crate"
        r = resolve((parent + "::" if parent != "crate" else "") + u.group(1)) or (parent if parent in names else None)
        if r and r != m: edges[m].add(r)
io_in_decisions = []
for m, t in mods.items():
    if not any(m == d or m.startswith(d + "::") for d in DECISIONS):
        continue
    code = re.sub(r"//[^\n]*", "", strip_tests(t))
    for crate in sorted(set(IO_CRATES.findall(code))):
        io_in_decisions.append((m, crate))
# Tarjan SCC
idx = {}; low = {}; st = []; on = set(); sccs = []; n = [0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v] = low[v] = n[0]; n[0] += 1; st.append(v); on.add(v)
    for w in edges[v]:
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        c = []
        while True:
            w = st.pop(); on.discard(w); c.append(w)
            if w == v: break
        sccs.append(c)
for v in sorted(names):
    if v not in idx: sc(v)
circles = [sorted(c) for c in sccs if len(c) > 1]
unranked = sorted(m for m in names if m not in LAYERS)
upward = sorted((a, b) for a in edges for b in edges[a]
                if a in LAYERS and b in LAYERS and LAYERS[b] >= LAYERS[a])
print(f"layout: {len(names)} modules, {sum(len(e) for e in edges.values())} imports, "
      f"{len(circles)} circles, {len(upward)} upward imports, "
      f"{len(io_in_decisions)} decision modules using the AWS SDK or tokio")
for c in circles: print("  circle:", " <-> ".join(c))
for a, b in upward: print(f"  upward: {a} (layer {LAYERS[a]}) uses {b} (layer {LAYERS[b]})")
for m in unranked: print(f"  {m}: not in tests/layout.py's LAYERS: give it a layer")
for m, crate in io_in_decisions:
    print(f"  {m}: a decision module uses {crate}: keep the AWS SDK and tokio at the edges "
          f"(discovery, backup/, restore/ec2.rs) and hand it plain values")
if "-v" in sys.argv:
    for m in sorted(edges): print(f"{m} -> {', '.join(sorted(edges[m]))}")
sys.exit(1 if circles or upward or unranked or io_in_decisions else 0)
