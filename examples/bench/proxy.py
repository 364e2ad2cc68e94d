#!/usr/bin/env python3
"""An HTTP proxy between an EC2 client and moto that behaves more like EC2.

  proxy.py --upstream http://127.0.0.1:MOTO_PORT --port PORT [--delay-ms 50]
           [--no-limits] [--consistency-window-ms MS] [--stats-file PATH]
           [--port-file PATH]

Python standard library only, one thread per connection. For every EC2 query
request (POST, form-encoded, `Action=...`) it

  - waits --delay-ms (default 50) before answering: the round trip to EC2;
  - takes a token from EC2's bucket for the action in the request's region
    (from the SigV4 credential scope, `Credential=AKID/DATE/REGION/ec2/...`),
    as EC2 documents them: CreateSnapshot, CreateSnapshots, DeleteSnapshot 100
    burst / 5 a second; CreateTags 100/10; a filtered or paginated Describe*
    100/20; an unfiltered DescribeInstances/Volumes/Snapshots 50/10; any
    other Describe* 100/20; any other action 50/5 (EC2's "mutating actions").
    An empty bucket answers HTTP 503 with EC2's `RequestLimitExceeded` XML
    error, without reaching moto. --no-limits turns the buckets off;
  - counts the call per action, and the throttled ones, and moto's error codes;
  - paginates DescribeSnapshots, DescribeInstances and DescribeVolumes when the
    request has MaxResults, as EC2 does and moto does not: the full answer is
    fetched from moto once per query (the query without NextToken and
    MaxResults), kept until a call that changes something passes through the
    proxy (or POST /__reset), and served as pages of MaxResults items with a
    <nextToken>. Concurrent or retried first pages of one query share one
    fetch, so a slow moto answer is fetched once;
  - with --consistency-window-ms MS (default 0: off), behaves as EC2's eventual
    consistency lets it. "Eventual consistency in the Amazon EC2 API"
    (https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html,
    formerly in the EC2 API Reference): "if you run a command to modify or
    describe the resource that you just created, its ID might not have
    propagated throughout the system, and you will get an error responding that
    the resource does not exist". For MS after moto carried out a
    CreateSnapshot, CreateSnapshots or CopySnapshot (its answer came back 200;
    the new ids are read from its <snapshotId>s), each new snapshot is
      * left out of DescribeSnapshots answers, filtered or not: its whole
        <item> of <snapshotSet> is dropped as the answer is served, pages from
        the proxy's cache included (judged at the time each page is served;
        pages keep their place in the whole answer, so one may hold fewer than
        MaxResults items, as EC2's may);
      * not found by a DescribeSnapshots naming it (SnapshotId.N), CreateTags
        on it (ResourceId.N) or DeleteSnapshot of it: HTTP 400
        `InvalidSnapshot.NotFound`, "The snapshot 'snap-...' does not exist.",
        without reaching moto (after the bucket: the call took its token).
    DryRun=true calls are not judged (as in tests/it/support/twin.rs). The stats'
    "window" counts the snapshots that entered the window, the requests it
    refused (per action; also among "errors") and the describe items it hid.

Control endpoints (not EC2):
  GET  /__stats   the counts as JSON
  POST /__reset   zero the counts, refill the buckets, drop the cached answers
                  and forget the consistency window's snapshots
                  (call it after seeding moto directly, before a measured run)
  POST /__prefetch  an EC2 query (form body, SigV4 header for the region):
                  fetch and cache its whole answer now, uncounted

--trace FILE appends one JSON line per call (time, action, status, throttled,
and "window": true on a refusal of the consistency window).

On SIGTERM/SIGINT it writes the counts to --stats-file, if given, and exits.
"""

import argparse
import http.client
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CREATE_DELETE = (100.0, 5.0)
TAGS = (100.0, 10.0)
DESCRIBE = (100.0, 20.0)
DESCRIBE_UNFILTERED = (50.0, 10.0)
MUTATING = (50.0, 5.0)

BUCKETS = {
    "CreateSnapshot": CREATE_DELETE,
    "CreateSnapshots": CREATE_DELETE,
    "DeleteSnapshot": CREATE_DELETE,
    "CreateTags": TAGS,
}
UNFILTERED_BUCKET_ACTIONS = {"DescribeInstances", "DescribeVolumes", "DescribeSnapshots"}

# action: (the list element of the answer, largest MaxResults EC2 accepts)
PAGINATED = {
    "DescribeSnapshots": ("snapshotSet", 1000),
    "DescribeInstances": ("reservationSet", 1000),
    "DescribeVolumes": ("volumeSet", 500),
}
CACHE_ENTRIES = 32
SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/ec2/aws4_request")
ERROR_CODE = re.compile(rb"<Code>([^<]+)</Code>")
ITEM_TAG = re.compile(rb"<(/?)item(?:\s[^>]*)?(/?)>")
SNAPSHOT_ID = re.compile(rb"<snapshotId>\s*([^<\s]+)\s*</snapshotId>")
# Creates whose answer names new snapshots, and what the window refuses:
# action -> the request parameters naming existing snapshots (a prefix ending
# in "." is an indexed list: SnapshotId.1, SnapshotId.2, ...).
CREATES = {"CreateSnapshot", "CreateSnapshots", "CopySnapshot"}
NAMING = {
    "DescribeSnapshots": "SnapshotId.",
    "CreateTags": "ResourceId.",
    "DeleteSnapshot": "SnapshotId",
}


def error_xml(code, message):
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
        f"</Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>"
    ).encode()


class Bucket:
    def __init__(self, capacity, rate):
        self.capacity, self.rate = capacity, rate
        self.tokens, self.last = capacity, time.monotonic()

    def take(self):
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def bucket_for(action, params):
    """(name, (capacity, rate)) of the bucket a call draws from."""
    if action in BUCKETS:
        return action, BUCKETS[action]
    if action.startswith("Describe"):
        filtered = any(
            k.startswith("Filter.") or k in ("MaxResults", "NextToken") for k in params
        )
        if action in UNFILTERED_BUCKET_ACTIONS and not filtered:
            return action + " (unfiltered)", DESCRIBE_UNFILTERED
        return action, DESCRIBE
    return action, MUTATING


def query_key(region, params):
    """A paginated query's cache key, and the request for its whole answer:
    the query without NextToken and MaxResults."""
    query = {k: v for k, v in params.items() if k not in ("NextToken", "MaxResults")}
    encoded = urllib.parse.urlencode(sorted(query.items()))
    return (region, encoded), encoded.encode()


def split_items(body, set_name):
    """The answer cut around its list: (head up to and including <set>, [each
    top-level <item>...</item>], tail from </set> on). None if not found."""
    open_tag = f"<{set_name}>".encode()
    empty_tag = f"<{set_name}/>".encode()
    close_tag = f"</{set_name}>".encode()
    start = body.find(open_tag)
    if start < 0:
        at = body.find(empty_tag)
        if at < 0:
            return None
        return body[:at] + open_tag, [], close_tag + body[at + len(empty_tag):]
    content_start = start + len(open_tag)
    end = body.rfind(close_tag)
    if end < content_start:
        return None
    items, depth, item_start = [], 0, None
    for m in ITEM_TAG.finditer(body, content_start, end):
        closing, self_closing = m.group(1), m.group(2)
        if self_closing:
            if depth == 0:
                items.append(m.group(0))
        elif not closing:
            if depth == 0:
                item_start = m.start()
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                items.append(body[item_start:m.end()])
    return body[:content_start], items, body[end:]


def item_snapshot_id(item):
    """The <snapshotId> of a <snapshotSet> item at its own level (not one in
    a nested <item>), or None."""
    depth = 0
    pos = 0
    for m in ITEM_TAG.finditer(item):
        if depth == 1:
            found = SNAPSHOT_ID.search(item, pos, m.start())
            if found:
                return found.group(1).decode()
        closing, self_closing = m.group(1), m.group(2)
        if not self_closing:
            depth += -1 if closing else 1
        pos = m.end()
    return None


def named_snapshots(action, params):
    """The snapshot ids a request names, for the window's refusals."""
    name = NAMING.get(action)
    if name is None:
        return []
    if not name.endswith("."):
        return [params[name]] if params.get(name) else []
    indexed = []
    for k, v in params.items():
        rest = k[len(name):] if k.startswith(name) else ""
        if rest.isdigit():
            indexed.append((int(rest), v))
    return [v for _, v in sorted(indexed)]


class Window:
    """EC2's consistency window: the snapshots created less than `seconds`
    ago, by monotonic time of moto's answer."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.lock = threading.Lock()
        self.created = {}  # snapshot id: monotonic time moto answered its create

    def reset(self):
        with self.lock:
            self.created.clear()

    def add(self, ids, at):
        if self.seconds <= 0:
            return
        with self.lock:
            for old in [i for i, t in self.created.items() if at >= t + self.seconds]:
                del self.created[old]  # out of the window for good
            for i in ids:
                self.created[i] = at

    def hidden(self, snapshot_id, now=None):
        if self.seconds <= 0:
            return False
        now = time.monotonic() if now is None else now
        with self.lock:
            at = self.created.get(snapshot_id)
        return at is not None and now < at + self.seconds

    def visible_items(self, items, now=None):
        """(the items outside the window, how many were hidden)."""
        if self.seconds <= 0 or not items:
            return items, 0
        now = time.monotonic() if now is None else now
        with self.lock:
            if not any(now < at + self.seconds for at in self.created.values()):
                return items, 0
        kept = [item for item in items if not self.hidden(item_snapshot_id(item) or "", now)]
        return kept, len(items) - len(kept)


class Stats:
    def __init__(self, window_ms=0):
        self.lock = threading.Lock()
        self.window_ms = window_ms
        self.reset()

    def reset(self):
        with self.lock:
            self.calls = {}
            self.throttled = {}
            self.errors = {}  # action: {code: n}
            self.pages_from_cache = 0
            self.pages = {}  # paginated query: pages served
            self.upstream_seconds = {}  # action: time spent waiting for moto
            self.window_created = 0  # snapshots that entered the consistency window
            self.window_refused = {}  # action: requests answered InvalidSnapshot.NotFound
            self.window_hidden = {}  # action: describe items left out
            self.started = time.time()

    def add(self, table, action, n=1):
        with self.lock:
            table[action] = table.get(action, 0) + n

    def error(self, action, code):
        with self.lock:
            per = self.errors.setdefault(action, {})
            per[code] = per.get(code, 0) + 1

    def snapshot(self):
        with self.lock:
            return {
                "calls": dict(sorted(self.calls.items())),
                "throttled": dict(sorted(self.throttled.items())),
                "errors": {k: dict(v) for k, v in sorted(self.errors.items())},
                "pages_from_cache": self.pages_from_cache,
                "pages_per_query": dict(self.pages),
                "upstream_seconds": {k: round(v, 3) for k, v in sorted(self.upstream_seconds.items())},
                "total_calls": sum(self.calls.values()),
                "total_throttled": sum(self.throttled.values()),
                "window": {
                    "ms": self.window_ms,
                    "created": self.window_created,
                    "refused": dict(sorted(self.window_refused.items())),
                    "hidden": dict(sorted(self.window_hidden.items())),
                    "total_refused": sum(self.window_refused.values()),
                    "total_hidden": sum(self.window_hidden.values()),
                },
                "since": self.started,
            }


class Proxy:
    def __init__(self, upstream, delay, limits, trace=None, window_ms=0):
        url = urllib.parse.urlsplit(upstream)
        if url.hostname not in ("127.0.0.1", "localhost"):
            sys.exit(f"proxy: {upstream} is not on 127.0.0.1; this proxy only fronts a local emulator")
        self.host, self.port = url.hostname, url.port or 80
        self.delay = delay
        self.limits = limits
        self.stats = Stats(window_ms)
        self.window = Window(window_ms / 1000.0)
        self.lock = threading.Lock()
        self.buckets = {}
        self.cache = {}  # query key: (generation, [items], head, tail); or an Event while fetching
        self.cache_order = []
        self.generation = 0
        self.trace = trace  # a file: one JSON line per call
        self.epoch = time.monotonic()

    def reset(self):
        self.stats.reset()
        self.window.reset()
        with self.lock:
            if self.trace:
                self.trace.write(json.dumps({"t": round(time.monotonic() - self.epoch, 4),
                                             "action": "__reset"}) + "\n")
            self.buckets.clear()
            self.cache.clear()
            self.cache_order.clear()
            self.generation += 1

    def take_token(self, region, action, params):
        if not self.limits:
            return True
        name, (capacity, rate) = bucket_for(action, params)
        with self.lock:
            bucket = self.buckets.get((region, name))
            if bucket is None:
                bucket = self.buckets[(region, name)] = Bucket(capacity, rate)
            return bucket.take()

    def forward(self, action, path, headers, body, counted=True):
        """(status, headers, body) of moto's answer."""
        started = time.monotonic()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        try:
            conn.request("POST", path, body, dict(headers, **{"Content-Length": str(len(body))}))
            resp = conn.getresponse()
            data = resp.read()
            out_headers = [
                (k, v) for k, v in resp.getheaders()
                if k.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server")
            ]
            return resp.status, out_headers, data
        finally:
            conn.close()
            if counted:
                self.stats.add(self.stats.upstream_seconds, action, time.monotonic() - started)

    def full_answer(self, action, key, path, headers, body, counted=True):
        """The whole answer to a paginated query, from the cache or from moto
        once: (status, headers, head, items, tail), or (status, headers, body)
        when moto answered with an error."""
        while True:
            with self.lock:
                entry = self.cache.get(key)
                if entry is None:
                    waiter = threading.Event()
                    self.cache[key] = waiter
                    generation = self.generation
                    break
            if isinstance(entry, threading.Event):
                entry.wait()
                continue
            if counted:
                with self.stats.lock:
                    self.stats.pages_from_cache += 1
            return entry
        try:
            status, out_headers, data = self.forward(action, path, headers, body, counted)
            if status != 200:
                return status, out_headers, data
            parts = split_items(data, PAGINATED[action][0])
            if parts is None:
                return status, out_headers, data
            head, items, tail = parts
            # moto never paginates; drop a nextToken it might send anyway.
            tail = re.sub(rb"<nextToken>[^<]*</nextToken>", b"", tail)
            result = (status, out_headers, head, items, tail)
            with self.lock:
                if generation == self.generation:
                    self.cache[key] = result
                    self.cache_order.append(key)
                    while len(self.cache_order) > CACHE_ENTRIES:
                        self.cache.pop(self.cache_order.pop(0), None)
            return result
        finally:
            with self.lock:
                if self.cache.get(key) is waiter:
                    del self.cache[key]
            waiter.set()

    def paginated(self, action, params, path, headers, region):
        max_results = int(params["MaxResults"])
        token = params.get("NextToken", "")
        offset = 0
        if token:
            m = re.fullmatch(r"bench-(\d+)", token)
            if not m:
                return 400, [("Content-Type", "text/xml")], error_xml(
                    "InvalidParameterValue", f"The token '{token}' is invalid.")
            offset = int(m.group(1))
        query = {k: v for k, v in params.items() if k not in ("NextToken", "MaxResults")}
        key, body = query_key(region, query)
        answer = self.full_answer(action, key, path, headers, body)
        if len(answer) == 3:
            return answer
        self.stats.add(self.stats.pages, key[1])
        status, out_headers, head, items, tail = answer
        page = items[offset:offset + max_results]
        if action == "DescribeSnapshots":
            # The window is judged now, as this page is served (from the
            # cache or not); the page keeps its place in the whole answer.
            page, hidden = self.window.visible_items(page)
            if hidden:
                self.stats.add(self.stats.window_hidden, action, hidden)
        next_token = b""
        if offset + max_results < len(items):
            next_token = f"<nextToken>bench-{offset + max_results}</nextToken>".encode()
        # tail starts with the list's closing tag; the token follows it.
        close = f"</{PAGINATED[action][0]}>".encode()
        return status, out_headers, head + b"".join(page) + close + next_token + tail[len(close):]


    def window_refusal(self, action, params):
        """EC2's answer to a request naming a snapshot inside the window, or
        None."""
        if self.window.seconds <= 0 or params.get("DryRun", "").lower() == "true":
            return None
        now = time.monotonic()
        for snapshot_id in named_snapshots(action, params):
            if self.window.hidden(snapshot_id, now):
                self.stats.add(self.stats.window_refused, action)
                return 400, [("Content-Type", "text/xml;charset=UTF-8")], error_xml(
                    "InvalidSnapshot.NotFound", f"The snapshot '{snapshot_id}' does not exist.")
        return None

    def window_after(self, action, params, answer):
        """Enters a create's new snapshots into the window; hides the window's
        snapshots from a (whole, unpaginated) DescribeSnapshots answer."""
        status, out_headers, data = answer
        if self.window.seconds <= 0 or status != 200:
            return answer
        if action in CREATES and params.get("DryRun", "").lower() != "true":
            ids = [m.group(1).decode() for m in SNAPSHOT_ID.finditer(data)]
            self.window.add(ids, time.monotonic())
            with self.stats.lock:
                self.stats.window_created += len(set(ids))
        elif action == "DescribeSnapshots":
            parts = split_items(data, "snapshotSet")
            if parts is not None:
                head, items, tail = parts
                kept, hidden = self.window.visible_items(items)
                if hidden:
                    self.stats.add(self.stats.window_hidden, action, hidden)
                    data = head + b"".join(kept) + tail
        return status, out_headers, data


def make_handler(proxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, status, headers, body):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path.startswith("/__stats"):
                body = json.dumps(proxy.stats.snapshot(), indent=1).encode()
                return self.reply(200, [("Content-Type", "application/json")], body)
            self.reply(404, [("Content-Type", "text/plain")], b"not found\n")

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path.startswith("/__reset"):
                proxy.reset()
                return self.reply(200, [("Content-Type", "application/json")], b"{}\n")
            params = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            action = params.get("Action", "(none)")
            m = SCOPE.search(self.headers.get("Authorization", ""))
            region = m.group(1) if m else "us-east-1"
            if self.path.startswith("/__prefetch"):
                # Fetch a paginated query's whole answer now, uncounted, so
                # the measured run does not wait for moto's full scan.
                if action not in PAGINATED:
                    return self.reply(400, [("Content-Type", "text/plain")], b"not a paginated action\n")
                key, full = query_key(region, params)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection")}
                answer = proxy.full_answer(action, key, "/", headers, full, counted=False)
                items = len(answer[3]) if len(answer) == 5 else -1
                return self.reply(200, [("Content-Type", "application/json")],
                                  json.dumps({"items": items}).encode() + b"\n")
            started = time.monotonic()
            proxy.stats.add(proxy.stats.calls, action)
            headers = {
                k: v for k, v in self.headers.items()
                if k.lower() not in ("host", "content-length", "connection", "expect", "transfer-encoding")
            }
            throttled = not proxy.take_token(region, action, params)
            refusal = None if throttled else proxy.window_refusal(action, params)
            if throttled:
                proxy.stats.add(proxy.stats.throttled, action)
                answer = 503, [("Content-Type", "text/xml;charset=UTF-8")], error_xml(
                    "RequestLimitExceeded", "Request limit exceeded.")
            elif refusal is not None:
                answer = refusal
            elif action in PAGINATED and "MaxResults" in params:
                answer = proxy.paginated(action, params, self.path, headers, region)
            else:
                if not action.startswith("Describe") and params.get("DryRun", "").lower() != "true":
                    with proxy.lock:  # it may change what a cached answer holds
                        proxy.cache.clear()
                        proxy.cache_order.clear()
                        proxy.generation += 1
                answer = proxy.window_after(
                    action, params, proxy.forward(action, self.path, headers, body))
            status, out_headers, data = answer
            if proxy.trace:
                entry = {"t": round(started - proxy.epoch, 4), "action": action,
                         "status": status, "throttled": throttled}
                if refusal is not None:
                    entry["window"] = True
                line = json.dumps(entry)
                with proxy.lock:
                    proxy.trace.write(line + "\n")
            if status >= 400 and not throttled:
                m = ERROR_CODE.search(data)
                proxy.stats.error(action, m.group(1).decode() if m else f"HTTP {status}")
            remaining = proxy.delay - (time.monotonic() - started)
            if remaining > 0:
                time.sleep(remaining)
            self.reply(status, out_headers, data)

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="moto's URL, http://127.0.0.1:PORT")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    parser.add_argument("--port-file", help="write the port listened on here once ready")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="round trip per request (default 50)")
    parser.add_argument("--no-limits", action="store_true", help="no token buckets: never throttle")
    parser.add_argument("--consistency-window-ms", type=float, default=0.0, metavar="MS",
                        help="EC2's eventual consistency: for MS after a create, its snapshots are "
                             "left out of DescribeSnapshots and not found by id (default 0: off)")
    parser.add_argument("--stats-file", help="write the counts here (JSON) on exit")
    parser.add_argument("--trace", help="append one JSON line per call here: time, action, status")
    args = parser.parse_args()

    trace = open(args.trace, "a", buffering=1) if args.trace else None
    if args.consistency_window_ms < 0:
        parser.error("--consistency-window-ms must be 0 or more")
    proxy = Proxy(args.upstream, args.delay_ms / 1000.0, not args.no_limits, trace,
                  args.consistency_window_ms)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(proxy))
    server.daemon_threads = True
    server.request_queue_size = 128

    def stop(*_):
        if args.stats_file:
            with open(args.stats_file, "w") as f:
                json.dump(proxy.stats.snapshot(), f, indent=1)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(f"{server.server_address[1]}\n")
        os.replace(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
