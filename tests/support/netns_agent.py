"""A bus client for netns tests: publishes numbered messages and counts what it receives.

    python -m tests.support.netns_agent --publish EP --subscribe EP --origin A --expect A,B --count N

1. Subscribes to ``data/`` first and ``warm/`` second, then publishes ``warm/<origin>`` every
   50 ms. Because subscriptions travel in order, a warm message from X proves that X's data
   will reach us too. Once warm messages from every ``--expect`` origin arrived it prints
   {"warm": [...]}.
2. On the line ``go`` it publishes ``data/<origin>/<i>`` for i in 0..N-1.
3. On the line ``report`` it waits ``--quiet`` seconds after the last data message and prints
   {"counts": {"<origin>/<i>": times}} — exactly-once means every value is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter

import zmq


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--publish", required=True)
    parser.add_argument("--subscribe", required=True)
    parser.add_argument("--origin", required=True)
    parser.add_argument("--expect", required=True)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--quiet", type=float, default=1.0)
    args = parser.parse_args()
    expect = set(args.expect.split(","))

    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"data/")
    sub.setsockopt(zmq.SUBSCRIBE, b"warm/")
    sub.connect(args.subscribe)
    pub = context.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.connect(args.publish)

    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    poller.register(sys.stdin.fileno(), zmq.POLLIN)
    warm_seen: set[str] = set()
    announced = False
    warming = True
    counts: Counter[str] = Counter()
    next_warm = 0.0
    report_at: float | None = None
    last_data = time.monotonic()
    pending = b""
    while True:
        now = time.monotonic()
        if warming and now >= next_warm:
            pub.send(f"warm/{args.origin} {{}}".encode())
            next_warm = now + 0.05
        if report_at is not None and now - last_data >= args.quiet:
            print(json.dumps({"counts": dict(counts)}), flush=True)
            report_at = None
        for item, _ in poller.poll(50):
            if item is sub:
                topic = sub.recv().split(b" ", 1)[0].decode()
                kind, rest = topic.split("/", 1)
                if kind == "warm":
                    warm_seen.add(rest)
                else:
                    counts[rest] += 1
                    last_data = time.monotonic()
            else:
                chunk = os.read(sys.stdin.fileno(), 4096)  # not readline: poll sees the fd only
                if not chunk:
                    return
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line == b"go":
                        warming = False
                        for i in range(args.count):
                            pub.send(f'data/{args.origin}/{i} {{"i": {i}}}'.encode())
                    elif line == b"report":
                        report_at = time.monotonic()
                        last_data = max(last_data, report_at)
        if not announced and expect <= warm_seen:
            print(json.dumps({"warm": sorted(warm_seen)}), flush=True)
            announced = True


if __name__ == "__main__":
    main()
